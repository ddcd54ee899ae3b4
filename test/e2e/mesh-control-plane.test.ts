import test, { type ExecutionContext } from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseCniAgentConfig } from '../../src/cni/agent-config.ts';
import { startCniAgent, type CniAgent } from '../../src/cni/agent.ts';
import { REDIRECTION_ANNOTATION } from '../../src/cni/enrollment.ts';
import { parseControlPlaneConfig } from '../../src/control-plane/config.ts';
import { startControlPlane } from '../../src/control-plane/control-plane.ts';
import { parseZtunnelConfig } from '../../src/ztunnel/config.ts';
import { startZtunnel, type Ztunnel } from '../../src/ztunnel/ztunnel.ts';
import { SHIM } from '../helpers/cni.ts';
import { nodeAgentEnv, runtimeAddPod, setPodIp, type ChainRun } from '../../src/demo/cni-runtime.ts';
import { startFakeKube, type FakeKube } from '../../src/demo/api-server.ts';
import { nodeZtunnelEnv, ztunnelToken } from '../../src/demo/demo.ts';
import { captureLog } from '../helpers/log.ts';
import { createNodeNetwork, requireNetns, type NetnsNode } from '../helpers/netns.ts';
import { testPki } from '../helpers/pki.ts';
import { total, until } from '../helpers/prometheus.ts';
import { tempDir } from '../helpers/tmp.ts';

/**
 * The node side and the control plane together, nothing in between written by the test: the control plane
 * translates the (fake) cluster into the Workload API and signs certificates; on each of two nodes a node agent
 * enrols pods created through the CNI chain its installer wrote, and a shared-mode ztunnel gets its pods over
 * ZDS, its mesh over delta xDS and its certificates from the control plane's CA, authenticated by a TokenReview
 * of its own token and allowed to impersonate only the pods of its node.
 *
 * Shown: the redirection annotation the agent writes makes the control plane publish the pod with HBONE; a
 * client pod's connection to the service VIP is captured, balanced to the server pod on the other node and
 * carried as mTLS; an AuthorizationPolicy created in the cluster reaches the server's ztunnel and refuses the
 * client, and deleting it lets the client in again.
 */

const FIXTURES = join(import.meta.dirname, '..', 'ztunnel', 'fixtures');
const MODE = 'istio.io/dataplane-mode';
const VIP = '10.96.0.10';
const SERVICE_PORT = 80;
const APP_PORT = 8080;
const NODE_NAME_EXTRA = 'authentication.kubernetes.io/node-name';

const exec = promisify(execFile);

interface Rounds {
  readonly byApp: Record<string, number>;
  readonly errors: string[];
  readonly bytesEchoed: number;
}

test('control plane + two nodes: the agents enrol, the control plane publishes, the ztunnels carry client → service VIP → server over mTLS, and a policy from the cluster is enforced', async (t: ExecutionContext) => {
  if (!requireNetns(t)) return;
  if (!existsSync(SHIM)) throw new Error(`${SHIM} is missing: run \`make build\` first`);
  t.timeout(120_000);

  const network = await createNodeNetwork(t, { count: 2 });
  const [nodeA, nodeB] = network.nodes as [NetnsNode, NetnsNode];
  const dir = await tempDir(t, 'an-mesh-');
  const nodes = [
    { node: nodeA, name: 'node-a', podCidr: '10.244.1.0/24', dir: join(dir, 'node-a') },
    { node: nodeB, name: 'node-b', podCidr: '10.244.2.0/24', dir: join(dir, 'node-b') },
  ] as const;
  await nodeA.exec('sysctl', ['-w', 'net.ipv4.ip_forward=1']);
  await nodeB.exec('sysctl', ['-w', 'net.ipv4.ip_forward=1']);
  await nodeA.exec('ip', ['route', 'add', nodes[1].podCidr, 'via', nodeB.ip]);
  await nodeB.exec('ip', ['route', 'add', nodes[0].podCidr, 'via', nodeA.ip]);

  // ---- the cluster ----
  const fake: FakeKube = await startFakeKube();
  fake.create('namespaces', { metadata: { name: 'istio-system' } });
  fake.create('namespaces', { metadata: { name: 'default', labels: { [MODE]: 'ambient' } } });
  for (const n of nodes) fake.create('nodes', { metadata: { name: n.name, labels: { 'topology.kubernetes.io/zone': `zone-${n.name}` } } });
  const pod = (name: string, node: string): void => {
    fake.create('pods', {
      metadata: { name, namespace: 'default', labels: { app: name } },
      spec: { nodeName: node, serviceAccountName: name, containers: [{ name: 'app', image: 'app', ports: [{ name: 'echo', containerPort: APP_PORT }] }] },
      status: { phase: 'Pending' },
    } as Parameters<FakeKube['create']>[1]);
  };
  pod('client', 'node-a');
  pod('server', 'node-b');
  fake.create('services', {
    metadata: { name: 'server', namespace: 'default' },
    spec: { selector: { app: 'server' }, clusterIP: VIP, clusterIPs: [VIP], ports: [{ name: 'tcp-echo', port: SERVICE_PORT, targetPort: 'echo', protocol: 'TCP' }] },
  } as Parameters<FakeKube['create']>[1]);
  for (const n of nodes) {
    fake.registerToken(ztunnelToken(n.name), { username: 'system:serviceaccount:istio-system:ztunnel', audiences: ['istio-ca'], extra: { [NODE_NAME_EXTRA]: [n.name] } });
  }

  // ---- the control plane ----
  const pki = testPki();
  const log = captureLog();
  const cpConfig = parseControlPlaneConfig({ 'listen-address': '127.0.0.1', 'grpc-port': '0', 'monitoring-port': '0', 'readiness-port': '0' }, { KUBECONFIG: fake.kubeconfigPath });
  if (!cpConfig.ok) throw new Error(cpConfig.errors.join('; '));
  const cp = await startControlPlane(cpConfig.value, { logger: log.logger.child({ node: 'control-plane' }), ca: pki.ca, backoff: { initialMs: 5, maxMs: 50 } });
  await cp.ready;

  const agents: CniAgent[] = [];
  const ztunnels: Ztunnel[] = [];
  const chains: ChainRun[] = [];
  const podNamespaces: string[] = [];
  const children: ChildProcess[] = [];
  t.teardown(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const zt of ztunnels) await zt.close().catch(() => {});
    for (const chain of chains.reverse()) await chain.del().catch((err: unknown) => t.log(`teardown: ${String(err)}`));
    for (const agent of agents) await agent.close().catch(() => {});
    await cp.close();
    await pki.close();
    await fake.close();
    for (const ns of podNamespaces) await exec('ip', ['netns', 'delete', ns]).catch(() => {});
  });

  // ---- per node: the agent (installing the plugin) and a ztunnel fed by the control plane ----
  for (const n of nodes) {
    const parsed = parseCniAgentConfig({}, await nodeAgentEnv(n, fake.kubeconfigPath, SHIM));
    if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
    const agent = await startCniAgent(parsed.value, { logger: log.logger.child({ node: n.name }) });
    agents.push(agent);
    await agent.ready;
    await agent.installer?.installed;

    const zparsed = parseZtunnelConfig(
      { 'admin-port': '0', 'stats-port': '0', 'readiness-port': '0' },
      nodeZtunnelEnv({ nodeName: n.name, ztunnelSocket: parsed.value.ztunnelSocket, controlPlane: cp }),
    );
    if (!zparsed.ok) throw new Error(zparsed.errors.join('\n'));
    const zt = await startZtunnel(zparsed.value, { logger: log.logger.child({ node: n.name }) });
    ztunnels.push(zt);
    await until(async () => (await fetch(`http://127.0.0.1:${zt.ports().readiness}/healthz/ready`)).status === 200, `ztunnel on ${n.name} to be ready`, 15_000);
  }
  const [ztA, ztB] = ztunnels as [Ztunnel, Ztunnel];

  // ---- the pods, as a runtime creates them ----
  const createPod = async (index: 0 | 1, name: string): Promise<string> => {
    const n = nodes[index];
    const podNs = `${nodeA.name.replace(/-node0$/, '')}-pod-${name}`;
    await exec('ip', ['netns', 'add', podNs]);
    podNamespaces.push(podNs);
    const uid = fake.get('pods', 'default', name)?.metadata?.uid ?? '';
    const added = await runtimeAddPod(n, { containerId: `sandbox-${name}`, podNs, podName: name, podNamespace: 'default', podUid: uid });
    chains.push(...added.chains);
    const ip = added.ip;
    await setPodIp(fake, 'default', name, ip, { ready: true });
    return podNs;
  };
  const clientNs = await createPod(0, 'client');
  const serverNs = await createPod(1, 'server');
  for (const name of ['client', 'server']) {
    await until(() => fake.get('pods', 'default', name)?.metadata?.annotations?.[REDIRECTION_ANNOTATION] === 'enabled', `${name} to be enrolled`);
  }

  // The control plane saw the agent's annotation: both ztunnels now know the server as an HBONE endpoint of the VIP.
  const serverUid = 'Kubernetes//Pod/default/server';
  for (const zt of ztunnels) {
    await until(() => zt.state.workloadByUid(serverUid)?.tunnelProtocol === 'HBONE' && zt.state.endpoints('default', 'server.default.svc.cluster.local').length === 1, 'the server as an HBONE endpoint', 10_000);
  }

  const app = spawn('ip', ['netns', 'exec', serverNs, process.execPath, join(FIXTURES, 'app.js'), 'server', String(APP_PORT)], { stdio: 'pipe' });
  app.on('error', () => {});
  children.push(app);
  await once(app.stdout, 'data');
  const rounds = async (count: number): Promise<Rounds> => {
    const { stdout } = await exec('ip', ['netns', 'exec', clientNs, process.execPath, join(FIXTURES, 'client.js'), 'rounds', VIP, String(SERVICE_PORT), String(count), '1000'], { timeout: 20_000 });
    return JSON.parse(stdout) as Rounds;
  };

  // ---- client → VIP → server, through both ztunnels ----
  t.deepEqual(await rounds(4), { byApp: { server: 4 }, errors: [], bytesEchoed: 4000 });
  const opened = 'istio_tcp_connections_opened_total';
  const labels = ['connection_security_policy="mutual_tls"', 'source_workload="client"', 'destination_workload="server"', 'destination_service="server.default.svc.cluster.local"'];
  await until(async () => total(await (await fetch(`http://127.0.0.1:${ztB.ports().stats}/metrics`)).text(), opened, 'reporter="destination"', ...labels) === 4, 'ztunnel B to count 4 mTLS connections', 5000);
  t.is(total(await (await fetch(`http://127.0.0.1:${ztA.ports().stats}/metrics`)).text(), opened, 'reporter="source"', ...labels), 4);

  // Each ztunnel holds exactly the certificates of its own node's pods, from the control plane's CA.
  const identities = async (zt: Ztunnel): Promise<string[]> => {
    const dump = JSON.parse(await (await fetch(`http://127.0.0.1:${zt.ports().admin}/config_dump`)).text()) as { certificates: Array<{ identity: string; state: string }> };
    return dump.certificates.filter((c) => c.state === 'Available').map((c) => c.identity).sort();
  };
  t.deepEqual(await identities(ztA), ['spiffe://cluster.local/ns/default/sa/client']);
  t.deepEqual(await identities(ztB), ['spiffe://cluster.local/ns/default/sa/server']);

  // ---- a policy created in the cluster reaches the server's ztunnel ----
  fake.create('authorizationpolicies', {
    metadata: { name: 'deny-client', namespace: 'default' },
    spec: { selector: { matchLabels: { app: 'server' } }, action: 'DENY', rules: [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/client'] } }] }] },
  } as Parameters<FakeKube['create']>[1]);
  await until(() => ztB.state.workloadByUid(serverUid)?.authorizationPolicies.includes('default/deny-client') === true, 'the policy to reach ztunnel B', 10_000);
  const denied = await rounds(2);
  t.deepEqual(denied.byApp, {}, 'no round reached the server');
  t.is(denied.errors.length, 2);
  await until(async () => total(await (await fetch(`http://127.0.0.1:${ztB.ports().stats}/metrics`)).text(), 'istio_tcp_connections_closed_total', 'reporter="destination"', 'response_flags="DENY"') === 2, 'two denials counted', 5000);

  fake.delete('authorizationpolicies', 'default', 'deny-client');
  await until(() => ztB.state.workloadByUid(serverUid)?.authorizationPolicies.includes('default/deny-client') === false, 'the deletion to reach ztunnel B', 10_000);
  t.deepEqual(await rounds(2), { byApp: { server: 2 }, errors: [], bytesEchoed: 2000 }, 'allowed again');
});
