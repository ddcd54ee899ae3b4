import test, { type ExecutionContext } from 'ava';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1DaemonSet, V1Deployment } from '@kubernetes/client-node';
import { createCniAgentMetrics, startAgentMonitoring } from '../../src/cni/agent-monitoring.ts';
import { decideWaypoint, waypointGateway } from '../../src/control-plane/waypoint-objects.ts';
import { createHboneClient } from '../../src/hbone/client.ts';
import { LocalCaClient } from '../../src/identity/local-ca-client.ts';
import { parseZtunnelConfig } from '../../src/ztunnel/config.ts';
import { startZtunnel, type Ztunnel } from '../../src/ztunnel/ztunnel.ts';
import { captureLog } from '../helpers/log.ts';
import { dashboardQueries, instantiate, loadDashboard } from '../helpers/dashboard.ts';
import { loadManifests, REPO } from '../helpers/manifests.ts';
import { testPki } from '../helpers/pki.ts';
import { kubernetesPodsConfig, podTargets, promtoolCheckMetrics, requirePrometheus, startPrometheus, type PromSample } from '../helpers/prometheus-server.ts';
import { sample, total, until } from '../helpers/prometheus.ts';
import { echo, readAll, tcpServer } from '../helpers/tcp.ts';
import { tempDir } from '../helpers/tmp.ts';
import { startFixture, VIP } from '../waypoint/harness.ts';

/**
 * Observability end to end: Debian's Prometheus scrapes a real ztunnel (in-process, dedicated mode, loopback) at the
 * path and on the server the DaemonSet's scrape annotations name, after known HBONE traffic, and the standard Istio
 * series come back through Prometheus's HTTP API with exact values and labels. `promtool check metrics` lints the
 * ztunnel's and the CNI agent's expositions.
 */

const SERVER_IP = '127.0.0.1';
const CLIENT_IP = '127.0.0.2';
const TUNNELS = 3;
const PAYLOAD = 'hello prometheus';

const daemonSets = loadManifests().filter((m) => m.object.kind === 'DaemonSet').map((m) => m.object as unknown as V1DaemonSet);
const annotationsOf = (name: string) => daemonSets.find((ds) => ds.metadata?.name === name)!.spec!.template.metadata!.annotations ?? {};

function meshYaml(appPort: number): string {
  return `
workloads:
- uid: Kubernetes//Pod/default/server
  name: server
  namespace: default
  serviceAccount: server
  trustDomain: cluster.local
  workloadIps: ["${SERVER_IP}"]
  protocol: HBONE
  node: node-a
  clusterId: Kubernetes
  canonicalName: echo
  canonicalRevision: v1
  workloadName: server
  services:
    "default/echo.default.svc.cluster.local":
      80: ${appPort}
- uid: Kubernetes//Pod/default/client
  name: client
  namespace: default
  serviceAccount: client
  trustDomain: cluster.local
  workloadIps: ["${CLIENT_IP}"]
  protocol: HBONE
  node: node-b
  clusterId: Kubernetes
  canonicalName: sleep
  canonicalRevision: v2
  workloadName: client
services:
- name: echo
  namespace: default
  hostname: echo.default.svc.cluster.local
  vips: ["/10.96.0.10"]
  ports:
    80: ${appPort}
`;
}

/** A dedicated-mode ztunnel for default/server that has carried `TUNNELS` echoed HBONE connections from default/client. */
async function ztunnelWithTraffic(t: ExecutionContext): Promise<{ zt: Ztunnel; metrics: () => Promise<string> }> {
  const dir = await tempDir(t);
  const app = await tcpServer(echo);
  const meshFile = join(dir, 'mesh.yaml');
  await writeFile(meshFile, meshYaml(app.port));
  const parsed = parseZtunnelConfig(
    { 'admin-port': '0', 'stats-port': '0', 'readiness-port': '0', 'outbound-port': '0', 'inbound-port': '0', 'inbound-plaintext-port': '0' },
    {
      PROXY_MODE: 'dedicated',
      PROXY_WORKLOAD_INFO: 'default/server/server',
      XDS_ADDRESS: '',
      LOCAL_XDS_PATH: meshFile,
      NODE_NAME: 'node-a',
      CONNECTION_TERMINATION_DEADLINE: '2s',
      ISTIO_META_ISTIO_VERSION: '0.1.0',
    },
  );
  if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
  const pki = testPki();
  const zt = await startZtunnel(parsed.value, { logger: captureLog().logger, ca: new LocalCaClient(pki.ca) });
  const client = createHboneClient({ certificates: pki.certificates });
  t.teardown(async () => {
    await client.close();
    await zt.close();
    await app.close();
    await pki.close();
  });
  const ports = zt.ports();
  for (let i = 0; i < TUNNELS; i++) {
    const tunnel = await client.connect({
      source: pki.id('default', 'client'),
      expectedIdentities: [pki.id('default', 'server')],
      address: { host: '127.0.0.1', port: ports.proxy!.inbound },
      sourceIp: CLIENT_IP,
      authority: `${SERVER_IP}:${app.port}`,
    });
    tunnel.stream.end(PAYLOAD);
    t.is(await readAll(tunnel.stream), PAYLOAD);
  }
  const path = annotationsOf('ztunnel')['prometheus.io/path'] ?? '/metrics';
  const metrics = async () => (await fetch(`http://127.0.0.1:${ports.stats}${path}`)).text();
  await until(async () => sample(await metrics(), 'istio_tcp_connections_closed_total', 'reporter="destination"') === TUNNELS, 'every close to be counted');
  return { zt, metrics };
}

const single = (samples: readonly PromSample[]): PromSample => {
  if (samples.length !== 1) throw new Error(`expected one series, got ${JSON.stringify(samples)}`);
  return samples[0]!;
};

test('Prometheus scrapes a real ztunnel (and the CNI agent\'s metrics server) as the DaemonSets annotate them and answers the standard TCP series with exact values and labels', async (t) => {
  if (!requirePrometheus(t)) return;
  const { zt } = await ztunnelWithTraffic(t);
  const annotations = annotationsOf('ztunnel');
  t.is(annotations['prometheus.io/scrape'], 'true');
  const address = `127.0.0.1:${zt.ports().stats}`;
  // The CNI agent's metrics server as the agent runs it, after one answered CNI ADD, with one ztunnel connected.
  const agentMetrics = createCniAgentMetrics();
  agentMetrics.pluginRequests.inc({ response_code: '200' });
  agentMetrics.ztunnelConnected.set({}, 1);
  const agent = await startAgentMonitoring({
    metrics: agentMetrics, pending: () => [], monitoringPort: 0, readinessPort: 0, host: '127.0.0.1', logger: captureLog().logger,
  });
  t.teardown(() => agent.close());
  const prometheus = await startPrometheus(t, [
    { job: 'ztunnel', address, metricsPath: annotations['prometheus.io/path'] ?? '/metrics' },
    { job: 'istio-cni', address: `127.0.0.1:${agent.ports.metrics}`, metricsPath: annotationsOf('istio-cni-node')['prometheus.io/path'] ?? '/metrics' },
  ]);

  const up = await prometheus.waitFor('up{job="ztunnel"}', (s) => s.length === 1 && s[0]!.value[1] === '1');
  t.is(single(up).metric['instance'], address);

  const opened = single(await prometheus.waitFor('istio_tcp_connections_opened_total{job="ztunnel"}', (s) => s.length > 0));
  t.is(opened.value[1], String(TUNNELS));
  t.deepEqual(opened.metric, {
    __name__: 'istio_tcp_connections_opened_total',
    job: 'ztunnel',
    instance: address,
    reporter: 'destination',
    source_workload: 'client',
    source_canonical_service: 'sleep',
    source_canonical_revision: 'v2',
    source_workload_namespace: 'default',
    source_principal: 'spiffe://cluster.local/ns/default/sa/client',
    source_app: 'sleep',
    source_version: 'v2',
    source_cluster: 'Kubernetes',
    source_region: 'unknown',
    source_zone: 'unknown',
    destination_service: 'echo.default.svc.cluster.local',
    destination_service_namespace: 'default',
    destination_service_name: 'echo',
    destination_workload: 'server',
    destination_canonical_service: 'echo',
    destination_canonical_revision: 'v1',
    destination_workload_namespace: 'default',
    destination_principal: 'spiffe://cluster.local/ns/default/sa/server',
    destination_app: 'echo',
    destination_version: 'v1',
    destination_cluster: 'Kubernetes',
    destination_region: 'unknown',
    destination_zone: 'unknown',
    request_protocol: 'tcp',
    response_flags: '-',
    connection_security_policy: 'mutual_tls',
  });

  // The same through PromQL aggregation, as a dashboard asks it.
  const bytes = single(await prometheus.query('sum by (destination_workload) (istio_tcp_received_bytes_total{reporter="destination"})'));
  t.deepEqual(bytes.metric, { destination_workload: 'server' });
  t.is(bytes.value[1], String(TUNNELS * PAYLOAD.length));
  const closed = single(await prometheus.query('sum(istio_tcp_connections_closed_total{connection_security_policy="mutual_tls"})'));
  t.is(closed.value[1], String(TUNNELS));
  // Prometheus asks for OpenMetrics first, and knows the family as a counter with its help (a base-name TYPE line in
  // the classic text format would have left the _total series untyped).
  const metadata = (await prometheus.api(`/api/v1/targets/metadata?match_target=${encodeURIComponent('{job="ztunnel"}')}&metric=istio_tcp_connections_opened`)) as Array<{ type: string; help: string }>;
  t.is(metadata.length, 1);
  t.is(metadata[0]?.type, 'counter');
  t.not(metadata[0]?.help, '');
  // The agent's series, typed as the agent declares them.
  await prometheus.waitFor('up{job="istio-cni"}', (r) => r.length === 1 && r[0]!.value[1] === '1');
  t.is(single(await prometheus.query('istio_cni_plugin_requests_total{job="istio-cni"}')).metric['response_code'], '200');
  t.is(single(await prometheus.query('ztunnel_connected{job="istio-cni"}')).value[1], '1');
  const agentMetadata = (await prometheus.api(`/api/v1/targets/metadata?match_target=${encodeURIComponent('{job="istio-cni"}')}`)) as Array<{ metric: string; type: string }>;
  t.deepEqual(Object.fromEntries(agentMetadata.map((m) => [m.metric, m.type])), { istio_cni_plugin_requests: 'counter', ztunnel_connected: 'gauge' });
  const build = single(await prometheus.query('istio_build{component="ztunnel"}'));
  t.is(build.metric['tag'], '0.1.0');

  // The Grafana dashboard's queries, as Grafana sends them: every one is valid PromQL for this Prometheus, and the
  // ztunnel panels about what the destination saw have data for the traffic above.
  await prometheus.waitFor('sum(rate(istio_tcp_connections_opened_total[1m]))', (r) => r.length === 1);
  const dashboard = loadDashboard(join(REPO, 'deploy', 'dashboards', 'ambient-mesh.json'));
  for (const q of dashboardQueries(dashboard)) {
    const variable = /^label_values\((.*), (\w+)\)$/.exec(q.expr);
    if (variable) {
      const values = await prometheus.api(`/api/v1/label/${variable[2]}/values?match[]=${encodeURIComponent(variable[1]!)}`);
      t.deepEqual(values, ['default'], q.where);
      continue;
    }
    const result = await prometheus.query(instantiate(q.expr));
    const expectsData = q.row.startsWith('ztunnel') && q.expr.includes('reporter="destination"') && !q.expr.includes('connections_failed');
    if (expectsData) t.true(result.length > 0, `${q.where} has data: ${q.expr}`);
  }
  const byWorkload = dashboardQueries(dashboard).find((q) => q.where.includes('"Connections opened by destination workload"'))!;
  t.deepEqual((await prometheus.query(instantiate(byWorkload.expr))).map((r) => r.metric), [{ destination_workload_namespace: 'default', destination_workload: 'server' }]);
  await prometheus.close();
});

test('promtool check metrics passes on the ztunnel\'s exposition after traffic and on the CNI agent\'s', async (t) => {
  if (!requirePrometheus(t)) return;
  const { metrics } = await ztunnelWithTraffic(t);
  const ztunnelText = await metrics();
  t.regex(ztunnelText, /^istio_tcp_connections_opened_total\{/m, 'the exposition has the traffic\'s series');
  t.deepEqual(await promtoolCheckMetrics(ztunnelText), { code: 0, output: '' });

  // The agent's metrics server as the agent starts it, with every family carrying a sample.
  const agentMetrics = createCniAgentMetrics();
  agentMetrics.pluginRequests.inc({ response_code: '200' });
  agentMetrics.reconcileEvents.inc({ type: 'update' });
  agentMetrics.ztunnelConnected.set({}, 1);
  const monitoring = await startAgentMonitoring({
    metrics: agentMetrics, pending: () => [], monitoringPort: 0, readinessPort: 0, host: '127.0.0.1', logger: captureLog().logger,
  });
  t.teardown(() => monitoring.close());
  const agentPath = annotationsOf('istio-cni-node')['prometheus.io/path'] ?? '/metrics';
  const agentText = await (await fetch(`http://127.0.0.1:${monitoring.ports.metrics}${agentPath}`)).text();
  t.regex(agentText, /^istio_cni_plugin_requests_total\{response_code="200"\} 1$/m);
  t.regex(agentText, /^ztunnel_connected 1$/m);
  t.deepEqual(await promtoolCheckMetrics(agentText), { code: 0, output: '' });

  // And the lint can fail: a counter without _total and without HELP is reported.
  const bad = await promtoolCheckMetrics('# TYPE connections counter\nconnections 1\n');
  t.not(bad.output, '');
});

test('Istio\'s annotation-driven kubernetes-pods job keeps the ztunnel pod by the DaemonSet\'s annotations, scrapes it at the annotated port and path, and labels it with the pod\'s labels', async (t) => {
  if (!requirePrometheus(t)) return;
  const { zt } = await ztunnelWithTraffic(t);
  const dir = await tempDir(t);
  const ds = daemonSets.find((d) => d.metadata?.name === 'ztunnel')!;
  const template = ds.spec!.template;
  const statsPort = zt.ports().stats;
  // The pod the DaemonSet controller would create, on loopback. Only the port is this test's (the ztunnel bound 0):
  // manifests.test.ts checks that the annotation is the stats port ztunnel really uses (15020).
  t.is(template.metadata!.annotations!['prometheus.io/port'], '15020');
  const ztunnelPod = podTargets({
    namespace: ds.metadata!.namespace!, name: 'ztunnel-x7k2p', ip: '127.0.0.1', phase: 'Running',
    labels: { ...template.metadata!.labels },
    annotations: { ...template.metadata!.annotations, 'prometheus.io/port': String(statsPort) },
    containers: template.spec!.containers.map((c) => ({ name: c.name, ports: (c.ports ?? []).map((p) => ({ containerPort: p.containerPort, ...(p.name ? { name: p.name } : {}) })) })),
  });
  // A pod without the annotation, and a finished one with it: the job leaves both out.
  const others = [
    ...podTargets({ namespace: 'default', name: 'app', ip: '127.0.0.3', phase: 'Running', labels: { app: 'sleep' }, annotations: {}, containers: [{ name: 'app', ports: [{ containerPort: 8080 }] }] }),
    ...podTargets({ namespace: 'default', name: 'job', ip: '127.0.0.4', phase: 'Succeeded', labels: {}, annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9090' }, containers: [{ name: 'job', ports: [{ containerPort: 9090 }] }] }),
  ];
  const sdFile = join(dir, 'pods.json');
  await writeFile(sdFile, JSON.stringify([...ztunnelPod, ...others]));

  const prometheus = await startPrometheus(t, kubernetesPodsConfig(sdFile));
  const up = single(await prometheus.waitFor('up{job="kubernetes-pods"}', (s) => s.length > 0 && s.every((x) => x.value[1] === '1')));
  t.deepEqual(up.metric, {
    __name__: 'up',
    job: 'kubernetes-pods',
    instance: `127.0.0.1:${statsPort}`,
    namespace: 'istio-system',
    pod: 'ztunnel-x7k2p',
    app: 'ztunnel',
    app_kubernetes_io_name: 'ztunnel',
    app_kubernetes_io_part_of: 'ambient-node',
    sidecar_istio_io_inject: 'false',
    istio_io_dataplane_mode: 'none',
  });
  const opened = single(await prometheus.waitFor('sum by (pod, namespace) (istio_tcp_connections_opened_total{reporter="destination"})', (s) => s.length > 0));
  t.deepEqual(opened.metric, { pod: 'ztunnel-x7k2p', namespace: 'istio-system' });
  t.is(opened.value[1], String(TUNNELS));
  await prometheus.close();
});

test('Prometheus scrapes a real waypoint where its Deployment is annotated, and answers istio_requests_total and the duration histogram with reporter="waypoint"; promtool finds only Istio\'s metric name', async (t) => {
  if (!requirePrometheus(t)) return;
  const f = await startFixture(t);
  for (let i = 0; i < 4; i++) t.is((await f.http1(`${VIP.reviews}:9080`, { path: '/hello', headers: { 'x-version': 'v2' } })).status, 200);
  t.is((await f.http1(`${VIP.reviews}:9080`, { method: 'DELETE', path: '/hello' })).status, 403, 'the no-delete policy');
  await until(async () => total(await f.metrics(), 'istio_requests_total') === 5, 'five requests counted');

  // Where the waypoint controller's Deployment tells Prometheus to scrape.
  const decision = decideWaypoint(waypointGateway({ name: 'waypoint', namespace: 'prod' }), {
    clusterDomain: 'cluster.local', trustDomain: 'cluster.local', clusterId: 'Kubernetes',
    xdsAddress: 'istiod.istio-system.svc:15012', caAddress: 'istiod.istio-system.svc:15012', image: 'ambient-node:0.1.0',
  });
  if (decision.kind !== 'deploy') throw new Error(decision.kind);
  const annotations = (decision.objects.deployment as unknown as V1Deployment).spec!.template.metadata!.annotations ?? {};
  t.is(annotations['prometheus.io/port'], '15020');
  const address = `127.0.0.1:${f.waypoint.ports().stats}`;
  const prometheus = await startPrometheus(t, [{ job: 'waypoint', address, metricsPath: annotations['prometheus.io/path']! }]);
  await prometheus.waitFor('up{job="waypoint"}', (r) => r.length === 1 && r[0]!.value[1] === '1');

  const ok = single(await prometheus.waitFor('istio_requests_total{job="waypoint",reporter="waypoint",response_code="200"}', (r) => r.length > 0));
  t.is(ok.value[1], '4');
  t.like(ok.metric, {
    instance: address,
    source_workload: 'web',
    source_principal: 'spiffe://cluster.local/ns/prod/sa/web',
    destination_service: 'reviews.prod.svc.cluster.local',
    destination_service_name: 'reviews',
    destination_workload: 'reviews-v2',
    destination_version: 'v2',
    destination_principal: 'spiffe://cluster.local/ns/prod/sa/reviews',
    request_protocol: 'http',
    response_flags: '-',
    connection_security_policy: 'mutual_tls',
  });
  const denied = single(await prometheus.query('istio_requests_total{reporter="waypoint",response_code="403"}'));
  t.is(denied.value[1], '1');
  t.is(denied.metric['response_flags'], 'RBAC');
  t.is(single(await prometheus.query('sum(istio_request_duration_milliseconds_count{reporter="waypoint"})')).value[1], '5');
  const metadata = (await prometheus.api(`/api/v1/targets/metadata?match_target=${encodeURIComponent('{job="waypoint"}')}`)) as Array<{ metric: string; type: string }>;
  const types = Object.fromEntries(metadata.map((m) => [m.metric, m.type]));
  t.is(types['istio_requests'], 'counter');
  t.is(types['istio_request_duration_milliseconds'], 'histogram');

  // Every waypoint panel of the dashboard has data.
  await prometheus.waitFor('sum(rate(istio_requests_total[1m]))', (r) => r.length === 1);
  const dashboard = loadDashboard(join(REPO, 'deploy', 'dashboards', 'ambient-mesh.json'));
  for (const q of dashboardQueries(dashboard).filter((x) => x.row.startsWith('waypoint'))) {
    t.true((await prometheus.query(instantiate(q.expr))).length > 0, `${q.where} has data: ${q.expr}`);
  }
  await prometheus.close();

  // promtool's one finding is the lint on the name Istio itself gives the duration histogram (Prometheus wants
  // seconds); the name is kept for compatibility with every Istio dashboard, and nothing about the format is wrong.
  const text = await f.metrics();
  t.regex(text, /^istio_request_duration_milliseconds_bucket\{/m);
  t.deepEqual(await promtoolCheckMetrics(text), { code: 3, output: 'istio_request_duration_milliseconds use base unit "seconds" instead of "milliseconds"\n' });
});
