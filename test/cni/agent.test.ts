import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseCniAgentConfig, type CniAgentConfig } from '../../src/cni/agent-config.ts';
import { shutdownCleanup, startCniAgent, type CniAgent } from '../../src/cni/agent.ts';
import { listProbeIps } from '../../src/cni/apply-rules.ts';
import { DEFAULT_ENABLEMENT_SELECTORS, REDIRECTION_ANNOTATION } from '../../src/cni/enrollment.ts';
import { LocalCaClient } from '../../src/identity/local-ca-client.ts';
import { closeFd, namedNetnsPath, openNetns } from '../../src/sys/netns.ts';
import { parseZtunnelConfig } from '../../src/ztunnel/config.ts';
import { startZtunnel, type Ztunnel } from '../../src/ztunnel/ztunnel.ts';
import { startFakeKube, type FakeKube, type KubeObjectJson } from '../../src/demo/api-server.ts';
import { inpodListening, webPodMesh } from '../helpers/inpod.ts';
import { captureLog, type CapturedLog } from '../helpers/log.ts';
import { createNodeNetwork, requireNetns, type NetnsNode } from '../helpers/netns.ts';
import { testPki } from '../helpers/pki.ts';
import { until } from '../helpers/prometheus.ts';
import { tempDir } from '../helpers/tmp.ts';
import { fakeProcRoot, runShim, type ShimRun } from '../helpers/cni.ts';

/**
 * The node agent end to end (netns tier): a fake API server, a pod netns, the real ztunnel in shared mode
 * in-process, the agent in-process, and the real static `build/ambient-cni` shim invoked as a runtime would.
 */

const MODE = 'istio.io/dataplane-mode';

// ---- unit tier: the config ----

test('parseCniAgentConfig: defaults, env names of §1.13, flags override env', (t) => {
  const r = parseCniAgentConfig({}, { NODE_NAME: 'node-a' });
  if (!r.ok) return t.fail(r.errors.join('\n'));
  t.is(r.value.nodeName, 'node-a');
  t.is(r.value.pluginSocket, '/var/run/istio-cni/pluginevent.sock');
  t.is(r.value.ztunnelSocket, '/var/run/ztunnel/ztunnel.sock');
  t.is(r.value.procRoot, '/proc');
  t.false(r.value.rules.dnsCapture, 'no DNS capture until ztunnel has a DNS proxy');
  t.is(r.value.kubeconfig, undefined);
  t.deepEqual(r.value.enrollment.excludeNamespaces, ['kube-system']);
  t.is(r.value.enrollment.systemNamespace, 'istio-system');
  t.true(Object.isFrozen(r.value));

  const o = parseCniAgentConfig(
    { 'ztunnel-uds-address': '/tmp/z.sock' },
    { NODE_NAME: 'n1', KUBECONFIG: '/k', EXCLUDE_NAMESPACES: 'a, b', ZTUNNEL_UDS_ADDRESS: '/ignored', AMBIENT_IPV6: 'false',
      AMBIENT_ENABLEMENT_SELECTOR: '- podSelector:\n    matchLabels: {x: "y"}\n' },
  );
  if (!o.ok) return t.fail(o.errors.join('\n'));
  t.is(o.value.ztunnelSocket, '/tmp/z.sock');
  t.is(o.value.kubeconfig, '/k');
  t.deepEqual(o.value.enrollment.excludeNamespaces, ['a', 'b']);
  t.false(o.value.rules.ipv6);
  t.deepEqual(o.value.enrollment.enablementSelectors, [{ podSelector: { matchLabels: { x: 'y' } } }]);
});

test('parseCniAgentConfig: the installer, host netns, probe SNAT, monitoring and shutdown settings', (t) => {
  const d = parseCniAgentConfig({}, { NODE_NAME: 'n' });
  if (!d.ok) return t.fail(d.errors.join('\n'));
  t.deepEqual(d.value.install, { binSource: '/opt/cni/bin/ambient-cni', binDir: '/host/opt/cni/bin', confDir: '/host/etc/cni/net.d', confName: undefined });
  t.is(d.value.cniAgentRunDir, '/var/run/istio-cni');
  t.deepEqual(d.value.hostNetns, { kind: 'self' });
  t.is(d.value.hostProbe.snatIpv4, '169.254.7.127');
  t.true(d.value.reconcileOnStartup);
  t.deepEqual([d.value.monitoringPort, d.value.readinessPort], [15014, 8000]);
  t.deepEqual([d.value.podNamespace, d.value.daemonSetName, d.value.disableSafeUpgrade], ['istio-system', 'istio-cni-node', false]);

  const o = parseCniAgentConfig({ 'cni-bin-dir': '/b' }, {
    NODE_NAME: 'n', CNI_AGENT_RUN_DIR: '/run/x/', MOUNTED_CNI_NET_DIR: '/c', CNI_CONF_NAME: '10-x.conflist', ALLOW_SWITCH_TO_HOST_NS: 'true',
    PROC_ROOT: '/host/proc', HOST_PROBE_SNAT_IP: '169.254.1.1', MONITORING_PORT: '0', AMBIENT_DISABLE_SAFE_UPGRADE: 'true', POD_NAMESPACE: 'mesh',
  });
  if (!o.ok) return t.fail(o.errors.join('\n'));
  t.is(o.value.cniAgentRunDir, '/run/x');
  t.is(o.value.pluginSocket, '/run/x/pluginevent.sock', 'the socket follows the run dir, where the shim looks');
  t.deepEqual(o.value.install, { binSource: '/opt/cni/bin/ambient-cni', binDir: '/b', confDir: '/c', confName: '10-x.conflist' });
  t.deepEqual(o.value.hostNetns, { kind: 'path', path: '/host/proc/1/ns/net' }, "istio-cni's host netns");
  t.deepEqual([o.value.hostProbe.snatIpv4, o.value.monitoringPort, o.value.disableSafeUpgrade, o.value.podNamespace], ['169.254.1.1', 0, true, 'mesh']);
  const off = parseCniAgentConfig({}, { NODE_NAME: 'n', INSTALL_CNI: 'false', HOST_NETNS: '/var/run/netns/node' });
  if (!off.ok) return t.fail(off.errors.join('\n'));
  t.is(off.value.install, undefined);
  t.deepEqual(off.value.hostNetns, { kind: 'path', path: '/var/run/netns/node' });

  const bad = parseCniAgentConfig({}, { NODE_NAME: 'n', HOST_PROBE_SNAT_IP: '300.1.1.1', HOST_PROBE_SNAT_IPV6: 'nope', READINESS_PORT: '70000', HOST_NETNS: 'rel' });
  t.false(bad.ok);
  if (!bad.ok) {
    t.deepEqual([...bad.errors], [
      'HOST_NETNS: "rel" must be an absolute path',
      'HOST_PROBE_SNAT_IP: "300.1.1.1" is not an IPv4 address',
      'HOST_PROBE_SNAT_IPV6: "nope" is not an IPv6 address',
      'READINESS_PORT: "70000" must be a port number (0-65535)',
    ]);
  }
});

test('parseCniAgentConfig: every problem at once, naming the variable or flag', (t) => {
  const r = parseCniAgentConfig(
    { bogus: '1', 'plugin-socket': 'relative.sock' },
    { AMBIENT_DNS_CAPTURE: 'yes', AMBIENT_ENABLEMENT_SELECTOR: '- podselector: {}\n', LOG_LEVEL: 'loud' },
  );
  t.false(r.ok);
  if (r.ok) return;
  t.deepEqual([...r.errors], [
    '--bogus: unknown flag',
    'NODE_NAME: required (the node this agent runs on)',
    '--plugin-socket: "relative.sock" must be an absolute path',
    'AMBIENT_ENABLEMENT_SELECTOR[0].podselector: unknown field (expected podSelector, namespaceSelector)',
    'AMBIENT_DNS_CAPTURE: "yes" must be true or false',
    'LOG_LEVEL: "loud" must be one of fatal, error, warn, info, debug, trace, silent',
  ]);
});

// ---- netns tier ----

async function iptablesSave(pod: NetnsNode): Promise<string> {
  return (await promisify(execFile)('ip', ['netns', 'exec', pod.name, 'iptables-save'])).stdout;
}

function annotation(fake: FakeKube): string | undefined {
  return fake.get('pods', 'default', 'web')?.metadata?.annotations?.[REDIRECTION_ANNOTATION];
}

interface Rig {
  readonly fake: FakeKube;
  readonly pod: NetnsNode;
  readonly host: NetnsNode;
  readonly probeFd: number;
  readonly config: CniAgentConfig;
  readonly log: CapturedLog;
  startAgent(): Promise<CniAgent>;
}

/** `procfs: 'empty'` lets the informer path find no netns (enrolment only through CNI ADD); 'pod' shows the pod's process. */
async function rig(t: ExecutionContext, procfs: 'empty' | 'pod'): Promise<Rig> {
  const network = await createNodeNetwork(t, { count: 2 });
  // The second namespace plays the node (host) for the probe SNAT rules and ipsets.
  const [pod, host] = network.nodes as [NetnsNode, NetnsNode];
  const probeFd = openNetns(namedNetnsPath(pod.name));
  t.teardown(() => closeFd(probeFd));

  const fake = await startFakeKube();
  t.teardown(() => fake.close());
  fake.create('namespaces', { metadata: { name: 'default', labels: { [MODE]: 'ambient' } } });
  const created = fake.create('pods', {
    metadata: { name: 'web', namespace: 'default' },
    spec: { nodeName: 'node-a', serviceAccountName: 'web', containers: [{ name: 'app', image: 'app' }] },
    status: { phase: 'Running', podIP: pod.ip, podIPs: [{ ip: pod.ip }] },
  } as Parameters<FakeKube['create']>[1]);

  const dir = await tempDir(t);
  const parsed = parseCniAgentConfig({}, {
    NODE_NAME: 'node-a', KUBECONFIG: fake.kubeconfigPath, PLUGIN_SOCKET: join(dir, 'pluginevent.sock'), ZTUNNEL_UDS_ADDRESS: join(dir, 'ztunnel.sock'),
    AMBIENT_IPV6: 'false', INSTALL_CNI: 'false', HOST_NETNS: namedNetnsPath(host.name), MONITORING_PORT: '0', READINESS_PORT: '0',
  });
  if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
  const procRoot = await fakeProcRoot(t, procfs === 'pod' ? [{ pid: 4242, uid: created.metadata?.uid ?? '', netns: pod.name }] : []);
  const config: CniAgentConfig = { ...parsed.value, procRoot };
  const log = captureLog();
  const agents = new Set<CniAgent>();
  t.teardown(async () => {
    for (const a of agents) await a.close();
  });

  const meshFile = join(dir, 'mesh.yaml');
  await writeFile(meshFile, webPodMesh(pod.ip));
  const zparsed = parseZtunnelConfig(
    { 'admin-port': '0', 'stats-port': '0', 'readiness-port': '0' },
    { PROXY_MODE: 'shared', XDS_ADDRESS: '', LOCAL_XDS_PATH: meshFile, INPOD_UDS: config.ztunnelSocket, NODE_NAME: 'node-a', CONNECTION_TERMINATION_DEADLINE: '1s' },
  );
  if (!zparsed.ok) throw new Error(zparsed.errors.join('\n'));
  const pki = testPki();
  t.teardown(() => pki.close());
  let ztunnel: Ztunnel | undefined;
  t.teardown(async () => ztunnel?.close());

  return {
    fake, pod, host, probeFd, config, log,
    async startAgent() {
      const agent = await startCniAgent(config, { logger: log.logger });
      agents.add(agent);
      await agent.ready;
      // ztunnel connects to the agent's ZDS socket once it exists (after ready); it is started once.
      if (ztunnel === undefined) {
        const zt = await startZtunnel(zparsed.value, { logger: log.logger, ca: new LocalCaClient(pki.ca) });
        ztunnel = zt;
        // Ready once its ZDS snapshot from the agent is ACKed.
        await until(async () => (await fetch(`http://127.0.0.1:${zt.ports().readiness}/healthz/ready`)).status === 200, 'ztunnel to be ready', 10_000);
      }
      return agent;
    },
  };
}

/** CNI ADD for default/web through the real shim; returns the run and the prevResult it was given. */
async function cniAdd(rig: Rig, netns = namedNetnsPath(rig.pod.name)): Promise<{ run: ShimRun; prev: unknown }> {
  const prev = {
    cniVersion: '1.0.0',
    interfaces: [{ name: 'eth0', sandbox: namedNetnsPath(rig.pod.name) }],
    ips: [{ interface: 0, address: `${rig.pod.ip}/24`, gateway: '10.88.0.254' }],
  };
  const conf = {
    cniVersion: '1.0.0',
    name: 'k8s-pod-network',
    type: 'istio-cni',
    ambient_enabled: true,
    enablement_selectors: DEFAULT_ENABLEMENT_SELECTORS,
    exclude_namespaces: ['kube-system'],
    pod_namespace: 'istio-system',
    prevResult: prev,
  };
  const run = await runShim({
    AMBIENT_CNI_SOCKET: rig.config.pluginSocket,
    CNI_COMMAND: 'ADD',
    CNI_CONTAINERID: 'c0ffee',
    CNI_NETNS: netns,
    CNI_IFNAME: 'eth0',
    CNI_PATH: '/opt/cni/bin',
    CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=c0ffee',
  }, JSON.stringify(conf));
  return { run, prev };
}

test('CNI ADD through the real shim enrols the pod (rules, ztunnel listeners, annotation); removing the namespace label un-enrols it', async (t) => {
  if (!requireNetns(t)) return;
  const r = await rig(t, 'empty');
  const agent = await r.startAgent();

  const { run, prev } = await cniAdd(r);
  t.is(run.code, 0, `shim stdout: ${run.stdout} stderr: ${run.stderr}`);
  t.deepEqual(JSON.parse(run.stdout), prev, 'stdout is the prevResult');

  t.deepEqual(agent.pods().map((p) => [p.name, p.redirection]), [['web', 'enabled']]);
  t.regex(await iptablesSave(r.pod), /:ISTIO_PRERT|:ISTIO_OUTPUT/, 'the in-pod rules are in');
  t.deepEqual(await inpodListening(r.probeFd), [true, true, true], 'ztunnel listens on 15001, 15006, 15008 in the pod');
  await until(() => annotation(r.fake) === 'enabled', 'the redirection annotation to be enabled');

  // §1.9 on the host: the probe SNAT chain, and the pod's IP in the probe set under its uid.
  const uid = r.fake.get('pods', 'default', 'web')?.metadata?.uid ?? '';
  t.regex(await iptablesSave(r.host), /-A ISTIO_POSTRT -p tcp -m owner --socket-exists -m set --match-set istio-inpod-probes-v4 dst -j SNAT --to-source 169\.254\.7\.127/);
  t.deepEqual(await listProbeIps({ kind: 'name', name: r.host.name }), [{ ip: r.pod.ip, comment: uid }]);

  // The pod's IP changes (kubelet's view): its probe-set entry follows, under the same uid.
  const moved = '10.88.0.77';
  const current = r.fake.get('pods', 'default', 'web') as KubeObjectJson;
  const status = (current['status'] ?? {}) as Record<string, unknown>;
  r.fake.update('pods', { ...current, status: { ...status, podIP: moved, podIPs: [{ ip: moved }] } } as Parameters<FakeKube['update']>[1]);
  await until(async () => JSON.stringify(await listProbeIps({ kind: 'name', name: r.host.name })) === JSON.stringify([{ ip: moved, comment: uid }]), 'the probe set to follow the new IP');

  // Metrics and health.
  const metrics = await (await fetch(`http://127.0.0.1:${agent.ports.metrics}/metrics`)).text();
  t.regex(metrics, /^istio_cni_plugin_requests_total\{response_code="200"\} 1$/m);
  t.regex(metrics, /^ztunnel_connected 1$/m);
  t.regex(metrics, /^nodeagent_reconcile_events_total\{type="update"\} \d+$/m);
  t.is((await fetch(`http://127.0.0.1:${agent.ports.readiness}/healthz`)).status, 200);
  t.is((await fetch(`http://127.0.0.1:${agent.ports.readiness}/readyz`)).status, 200);

  // The namespace stops being ambient: the agent removes the pod from the mesh.
  r.fake.update('namespaces', { metadata: { name: 'default', labels: {} } });
  await until(() => annotation(r.fake) === undefined, 'the annotation to be removed');
  await until(async () => (await inpodListening(r.probeFd)).every((up) => !up), 'the pod listeners to close');
  t.notRegex(await iptablesSave(r.pod), /ISTIO_/, 'the in-pod rules are gone');
  t.deepEqual(await listProbeIps({ kind: 'name', name: r.host.name }), [], 'the pod left the probe set');

  // No DaemonSet of ours on the API server: closing is an uninstall, which takes the host rules and sets away.
  await agent.close();
  t.notRegex(await iptablesSave(r.host), /ISTIO_POSTRT/);
  const sets = await promisify(execFile)('ip', ['netns', 'exec', r.host.name, 'ipset', 'list', '-n']);
  t.notRegex(sets.stdout, /istio-inpod-probes/);
});

test('CNI ADD with a netns that no longer exists: CNI error JSON naming it, nothing applied, no annotation, the agent keeps serving', async (t) => {
  if (!requireNetns(t)) return;
  const r = await rig(t, 'empty');
  const agent = await r.startAgent();
  const gone = '/var/run/netns/an-gone-' + process.pid;
  const { run } = await cniAdd(r, gone);
  t.is(run.code, 1);
  const error = JSON.parse(run.stdout) as { code: number; msg: string; details?: string };
  t.true(error.code > 0);
  t.true(`${error.msg} ${error.details ?? ''}`.includes(gone), run.stdout);
  t.deepEqual(agent.pods(), [], 'the pod is not tracked');
  t.is(annotation(r.fake), undefined);
  t.notRegex(await iptablesSave(r.pod), /ISTIO_/, 'no rules anywhere');
  t.deepEqual(await listProbeIps({ kind: 'name', name: r.host.name }), []);
  t.true(r.log.records.some((rec) => rec['code'] === 'CNI_POD_NETNS_FAILED'), 'logged with its code');

  // The same pod with its real netns is then enrolled normally.
  const ok = await cniAdd(r);
  t.is(ok.run.code, 0, ok.run.stdout);
  await until(() => annotation(r.fake) === 'enabled', 'the annotation after the good ADD');
});

test('our DaemonSet still there at shutdown is an upgrade: the host rules and sets stay; with AMBIENT_DISABLE_SAFE_UPGRADE they go', async (t) => {
  if (!requireNetns(t)) return;
  const r = await rig(t, 'empty');
  r.fake.create('daemonsets', { metadata: { name: 'istio-cni-node', namespace: 'istio-system' }, spec: {} } as Parameters<FakeKube['create']>[1]);
  const upgraded = await r.startAgent();
  await upgraded.close();
  t.regex(await iptablesSave(r.host), /-A POSTROUTING -j ISTIO_POSTRT/, 'left for the next agent');
  t.true(r.log.records.some((rec) => rec.msg === 'cni agent stopped' && rec['cleanup'] === 'leave'));

  const forced = await startCniAgent({ ...r.config, disableSafeUpgrade: true }, { logger: r.log.logger });
  await forced.ready;
  await forced.close();
  t.notRegex(await iptablesSave(r.host), /ISTIO_POSTRT/, 'the override uninstalls despite the DaemonSet');
});

test('an agent that cannot ask the API server at shutdown leaves the host rules in place (upgrade-safe)', async (t) => {
  if (!requireNetns(t)) return;
  const r = await rig(t, 'empty');
  const agent = await r.startAgent();
  t.regex(await iptablesSave(r.host), /:ISTIO_POSTRT/);
  await r.fake.close();
  await agent.close();
  t.regex(await iptablesSave(r.host), /-A POSTROUTING -j ISTIO_POSTRT/, 'the probe SNAT stays for the next agent');
  const sets = await promisify(execFile)('ip', ['netns', 'exec', r.host.name, 'ipset', 'list', '-n']);
  t.regex(sets.stdout, /istio-inpod-probes-v4/);
  t.true(r.log.records.some((rec) => rec['code'] === 'CNI_CLEANUP_FAILED'), 'the reason is logged with its code');
});

test('shutdownCleanup: only an absent or deleting DaemonSet (or the override) uninstalls', (t) => {
  t.is(shutdownCleanup('present', false), 'leave');
  t.is(shutdownCleanup('unknown', false), 'leave');
  t.is(shutdownCleanup('absent', false), 'uninstall');
  t.is(shutdownCleanup('deleting', false), 'uninstall');
  t.is(shutdownCleanup('present', true), 'uninstall');
  t.is(shutdownCleanup('unknown', true), 'uninstall');
});

test('informer path and restart: a selected pod with a netns in procfs is enrolled without CNI; a restarted agent re-adds it from the snapshot and can still un-enrol it', async (t) => {
  if (!requireNetns(t)) return;
  const r = await rig(t, 'pod');
  const first = await r.startAgent();
  // Startup reconciles every cached pod: web is selected, has an IP, and its netns is found under procRoot.
  await until(() => annotation(r.fake) === 'enabled', 'the informer-driven enrolment', 10_000);
  t.deepEqual(await inpodListening(r.probeFd), [true, true, true]);
  t.regex(await iptablesSave(r.pod), /:ISTIO_PRERT/);

  const snapshots = (): number => r.log.records.filter((rec) => rec.msg === 'snapshot acknowledged').length;
  const adds = (): number => r.log.records.filter((rec) => rec.component === 'zds' && rec.request === 'add').length;
  // Counted once the first agent is closed, so none of its late log lines (a retried Add, its own snapshot ack) count.
  await first.close();
  const before = { snapshots: snapshots(), adds: adds() };
  // Damage the pod's rules while no agent runs: the next agent's startup reconcile (§1.7) must restore them.
  await promisify(execFile)('ip', ['netns', 'exec', r.pod.name, 'iptables', '-t', 'nat', '-F', 'ISTIO_OUTPUT']);
  t.notRegex(await iptablesSave(r.pod), /--to-ports 15001/);
  const second = await r.startAgent();
  t.regex(await iptablesSave(r.pod), /-A ISTIO_OUTPUT .*-j REDIRECT --to-ports 15001/, 'the restarted agent re-applied the rules');
  t.is((await iptablesSave(r.pod)).match(/--to-ports 15001/g)?.length, 1, 'exactly one copy');
  t.deepEqual(second.pods().map((p) => [p.name, p.redirection, p.netns]), [['web', 'enabled', join(r.config.procRoot, '4242', 'ns', 'net')]]);
  await until(() => snapshots() > before.snapshots, 'ztunnel to reconnect and ACK the new snapshot', 20_000);
  if (adds() !== before.adds + 1) t.log(JSON.stringify(before), r.log.records.filter((rec) => rec.component === 'zds' || rec.msg === 'snapshot acknowledged' || rec['zds']).map((rec) => `${rec.msg} ${rec['request'] ?? ''}`).join('\n'));
  t.is(adds(), before.adds + 1, 'the snapshot carried Add for the pod (its netns was found)');
  t.deepEqual(await inpodListening(r.probeFd), [true, true, true]);

  r.fake.update('namespaces', { metadata: { name: 'default', labels: {} } });
  await until(() => annotation(r.fake) === undefined, 'the annotation to be removed');
  await until(async () => (await inpodListening(r.probeFd)).every((up) => !up), 'the pod listeners to close');
  t.notRegex(await iptablesSave(r.pod), /ISTIO_/, 'the restarted agent removed the rules through the netns it found');
  t.deepEqual(second.pods(), []);
});
