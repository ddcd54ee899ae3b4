import test, { type ExecutionContext } from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseCniAgentConfig } from '../../src/cni/agent-config.ts';
import { startCniAgent, type CniAgent } from '../../src/cni/agent.ts';
import { REDIRECTION_ANNOTATION } from '../../src/cni/enrollment.ts';
import { pluginEntry } from '../../src/cni/installer.ts';
import { LocalCaClient } from '../../src/identity/local-ca-client.ts';
import { namedNetnsPath } from '../../src/sys/netns.ts';
import { parseZtunnelConfig } from '../../src/ztunnel/config.ts';
import { startZtunnel, type Ztunnel } from '../../src/ztunnel/ztunnel.ts';
import { startFakeKube, type FakeKube, type KubeObjectJson } from '../helpers/fake-kube.ts';
import { captureLog } from '../helpers/log.ts';
import { createNodeNetwork, requireNetns, type NetnsNode } from '../helpers/netns.ts';
import { testPki } from '../helpers/pki.ts';
import { total, until } from '../helpers/prometheus.ts';
import { tempDir } from '../helpers/tmp.ts';

/**
 * The capture issue's acceptance scenario, as close to a cluster as we get without a container runtime:
 * two node namespaces joined by a bridge, pods whose namespaces are set up by the real CNI plugins run as a
 * runtime runs a conflist (bridge + host-local, then the real static `ambient-cni` shim), a node agent and a
 * shared-mode ztunnel per node, and one fake API server. A plain TCP client in the client pod on node A talks
 * to the server pod on node B; the traffic is captured in both pods and crosses the nodes as mTLS HBONE.
 */

const ROOT = join(import.meta.dirname, '..', '..', '..');
const SHIM = join(ROOT, 'build', 'ambient-cni');
const FIXTURES = join(import.meta.dirname, '..', 'ztunnel', 'fixtures');
const CNI_BIN = '/usr/lib/cni';
const CNI_VERSION = '1.0.0';
const MODE = 'istio.io/dataplane-mode';
const SERVER_PORT = 8080;
const ROUNDS = 5;

const exec = promisify(execFile);

type Json = Record<string, unknown>;

interface NetConfList {
  readonly name: string;
  readonly cniVersion: string;
  readonly plugins: readonly Json[];
}

interface CniArgs {
  readonly containerId: string;
  readonly podNs: string;
  readonly podName: string;
  readonly podNamespace: string;
  readonly podUid: string;
}

/** One plugin binary run inside the node namespace, as the runtime on that node would run it. */
async function runPlugin(node: NetnsNode, command: 'ADD' | 'DEL', conf: Json, args: CniArgs, env: Record<string, string>): Promise<string> {
  const type = String(conf['type']);
  const binary = type === 'ambient-cni' ? SHIM : join(CNI_BIN, type);
  try {
    const { stdout } = await node.exec(binary, [], {
      env: {
        ...env,
        CNI_COMMAND: command,
        CNI_CONTAINERID: args.containerId,
        CNI_NETNS: namedNetnsPath(args.podNs),
        CNI_IFNAME: 'eth0',
        CNI_PATH: CNI_BIN,
        CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${args.podNamespace};K8S_POD_NAME=${args.podName};` +
          `K8S_POD_INFRA_CONTAINER_ID=${args.containerId};K8S_POD_UID=${args.podUid}`,
      },
      input: JSON.stringify(conf),
      timeoutMs: 30_000,
    });
    return stdout;
  } catch (err) {
    // A CNI error is printed on stdout.
    const stdout = (err as { cause?: { stdout?: string } }).cause?.stdout ?? '';
    throw new Error(`CNI ${command} ${type}: ${(err as Error).message} ${stdout}`, { cause: err });
  }
}

interface ChainRun {
  /** The result of each plugin's ADD, in order. */
  readonly results: Json[];
  /** DEL through the list in reverse order, each with the cached final result as prevResult (as libcni does). */
  del(): Promise<void>;
}

/**
 * libcni's AddNetworkList: each plugin gets its conf plus the list's name and cniVersion, and the previous
 * plugin's result as `prevResult`.
 */
async function runCniChain(node: NetnsNode, list: NetConfList, args: CniArgs, env: Record<string, string> = {}): Promise<ChainRun> {
  const results: Json[] = [];
  let prev: Json | undefined;
  for (const plugin of list.plugins) {
    const conf: Json = { ...plugin, name: list.name, cniVersion: list.cniVersion, ...(prev === undefined ? {} : { prevResult: prev }) };
    const stdout = await runPlugin(node, 'ADD', conf, args, env);
    prev = JSON.parse(stdout) as Json;
    results.push(prev);
  }
  const cached = prev;
  return {
    results,
    async del() {
      for (const plugin of [...list.plugins].reverse()) {
        const conf: Json = { ...plugin, name: list.name, cniVersion: list.cniVersion, ...(cached === undefined ? {} : { prevResult: cached }) };
        await runPlugin(node, 'DEL', conf, args, env);
      }
    },
  };
}

/** The node's pod network conflist: bridge + host-local for its pod CIDR, then our plugin chained as the installer would. */
function podNetwork(name: string, podCidr: string, ipamDir: string): NetConfList {
  const { name: _name, cniVersion: _version, ...ours } = pluginEntry();
  return {
    name,
    cniVersion: CNI_VERSION,
    plugins: [
      {
        type: 'bridge',
        bridge: 'cni0',
        isGateway: true,
        ipMasq: false,
        ipam: { type: 'host-local', ranges: [[{ subnet: podCidr }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: ipamDir },
      },
      ours,
    ],
  };
}

const LOOPBACK: NetConfList = { name: 'cni-loopback', cniVersion: CNI_VERSION, plugins: [{ type: 'loopback' }] };

function twoPodMesh(clientIp: string, serverIp: string): string {
  const workload = (name: string, ip: string, node: string) => `
- uid: cluster1//v1/Pod/default/${name}
  name: ${name}
  namespace: default
  serviceAccount: ${name}
  trustDomain: cluster.local
  workloadIps: ["${ip}"]
  protocol: HBONE
  node: ${node}
  workloadName: ${name}
`;
  return `workloads:${workload('client', clientIp, 'node-a')}${workload('server', serverIp, 'node-b')}`;
}

interface NodeSpec {
  readonly node: NetnsNode;
  readonly nodeName: string;
  readonly podCidr: string;
}

/** Sets kubelet's view of the pod's IP, keeping whatever the agent wrote meanwhile (retries on a conflict). */
async function setPodIp(fake: FakeKube, name: string, ip: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const current = fake.get('pods', 'default', name) as KubeObjectJson;
    const status = (current['status'] ?? {}) as Json;
    try {
      fake.update('pods', { ...current, status: { ...status, phase: 'Running', podIP: ip, podIPs: [{ ip }] } } as Parameters<FakeKube['update']>[1]);
      return;
    } catch (err) {
      if ((err as { status?: number }).status !== 409 || attempt > 20) throw err;
    }
  }
}

async function metricsOf(zt: Ztunnel): Promise<string> {
  return (await fetch(`http://127.0.0.1:${zt.ports().stats}/metrics`)).text();
}

test('two nodes: pods set up by a real CNI chain with ambient-cni are captured; client on node A reaches server on node B through both ztunnels over mTLS HBONE', async (t: ExecutionContext) => {
  if (!requireNetns(t)) return;
  if (!existsSync(SHIM)) throw new Error(`${SHIM} is missing: run \`make build\` first`);
  t.timeout(120_000);

  // ---- the nodes ----
  const network = await createNodeNetwork(t, { count: 2 });
  const [nodeA, nodeB] = network.nodes as [NetnsNode, NetnsNode];
  const specs: [NodeSpec, NodeSpec] = [
    { node: nodeA, nodeName: 'node-a', podCidr: '10.244.1.0/24' },
    { node: nodeB, nodeName: 'node-b', podCidr: '10.244.2.0/24' },
  ];
  await nodeA.exec('sysctl', ['-w', 'net.ipv4.ip_forward=1']);
  await nodeB.exec('sysctl', ['-w', 'net.ipv4.ip_forward=1']);
  await nodeA.exec('ip', ['route', 'add', specs[1].podCidr, 'via', nodeB.ip]);
  await nodeB.exec('ip', ['route', 'add', specs[0].podCidr, 'via', nodeA.ip]);
  const clientIp = '10.244.1.2';
  const serverIp = '10.244.2.2';

  // ---- the API server ----
  const fake = await startFakeKube();
  fake.create('namespaces', { metadata: { name: 'default', labels: { [MODE]: 'ambient' } } });
  const podObject = (name: string, nodeName: string) =>
    fake.create('pods', {
      metadata: { name, namespace: 'default' },
      spec: { nodeName, serviceAccountName: name, containers: [{ name: 'app', image: 'app' }] },
      status: { phase: 'Pending' },
    } as Parameters<FakeKube['create']>[1]);
  const clientUid = podObject('client', 'node-a').metadata?.uid ?? '';
  const serverUid = podObject('server', 'node-b').metadata?.uid ?? '';

  // ---- per node: agent + shared-mode ztunnel ----
  const dir = await tempDir(t, 'an-e2e-');
  const meshFile = join(dir, 'mesh.yaml');
  await writeFile(meshFile, twoPodMesh(clientIp, serverIp));
  const pki = testPki();
  const log = captureLog();
  const agents: CniAgent[] = [];
  const ztunnels: Ztunnel[] = [];
  const pluginSockets: string[] = [];
  const podNamespaces: string[] = [];
  const chains: ChainRun[] = [];
  const children: ChildProcess[] = [];

  t.teardown(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    // ztunnels close before the CNI DELs, so their pooled HBONE sessions can end gracefully; after DEL took
    // the server pod's veth away they could only be cut at the termination deadline (hbone/client.ts).
    for (const zt of ztunnels) await zt.close().catch(() => {});
    for (const chain of chains.reverse()) await chain.del().catch((err: unknown) => t.log(`teardown: ${String(err)}`));
    for (const agent of agents) await agent.close().catch(() => {});
    await pki.close();
    await fake.close();
    for (const ns of podNamespaces) await exec('ip', ['netns', 'delete', ns]).catch(() => {});
  });

  for (const spec of specs) {
    const nodeDir = join(dir, spec.nodeName);
    const procRoot = join(nodeDir, 'proc');
    await exec('mkdir', ['-p', procRoot]);
    const parsed = parseCniAgentConfig({}, {
      NODE_NAME: spec.nodeName, KUBECONFIG: fake.kubeconfigPath,
      PLUGIN_SOCKET: join(nodeDir, 'pluginevent.sock'), ZTUNNEL_UDS_ADDRESS: join(nodeDir, 'ztunnel.sock'),
      AMBIENT_IPV6: 'false',
    });
    if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
    const config = { ...parsed.value, procRoot };
    const agent = await startCniAgent(config, { logger: log.logger.child({ node: spec.nodeName }) });
    agents.push(agent);
    await agent.ready;
    pluginSockets.push(config.pluginSocket);

    const zparsed = parseZtunnelConfig(
      { 'admin-port': '0', 'stats-port': '0', 'readiness-port': '0' },
      { PROXY_MODE: 'shared', XDS_ADDRESS: '', LOCAL_XDS_PATH: meshFile, INPOD_UDS: config.ztunnelSocket, NODE_NAME: spec.nodeName,
        CONNECTION_TERMINATION_DEADLINE: '1s' },
    );
    if (!zparsed.ok) throw new Error(zparsed.errors.join('\n'));
    const zt = await startZtunnel(zparsed.value, { logger: log.logger.child({ node: spec.nodeName }), ca: new LocalCaClient(pki.ca) });
    ztunnels.push(zt);
    await until(async () => (await fetch(`http://127.0.0.1:${zt.ports().readiness}/healthz/ready`)).status === 200, `ztunnel on ${spec.nodeName} to be ready`, 10_000);
  }
  const [ztA, ztB] = ztunnels as [Ztunnel, Ztunnel];

  // ---- the pods, as a runtime creates them ----
  const createPod = async (index: 0 | 1, name: string, uid: string): Promise<string> => {
    const spec = specs[index];
    const podNs = `${nodeA.name.replace(/-node0$/, '')}-pod-${name}`;
    await exec('ip', ['netns', 'add', podNs]);
    podNamespaces.push(podNs);
    const args: CniArgs = { containerId: `sandbox-${name}`, podNs, podName: name, podNamespace: 'default', podUid: uid };
    chains.push(await runCniChain(spec.node, LOOPBACK, args));
    const list = podNetwork(`pods-${spec.nodeName}`, spec.podCidr, join(dir, spec.nodeName, 'ipam'));
    const chain = await runCniChain(spec.node, list, args, { AMBIENT_CNI_SOCKET: pluginSockets[index] ?? '' });
    chains.push(chain);
    const [bridge, ours] = chain.results as [Json, Json];
    t.deepEqual(ours, bridge, `${name}: ambient-cni prints its prevResult`);
    const ips = bridge['ips'] as Array<{ address: string }>;
    const ip = ips[0]?.address.split('/')[0] ?? '';
    await setPodIp(fake, name, ip);
    return ip;
  };
  t.is(await createPod(0, 'client', clientUid), clientIp, 'host-local gave the client the first address of node A');
  t.is(await createPod(1, 'server', serverUid), serverIp, 'host-local gave the server the first address of node B');
  const [clientNs, serverNs] = podNamespaces as [string, string];

  await until(() => fake.get('pods', 'default', 'server')?.metadata?.annotations?.[REDIRECTION_ANNOTATION] === 'enabled', 'server redirection annotation');
  await until(() => fake.get('pods', 'default', 'client')?.metadata?.annotations?.[REDIRECTION_ANNOTATION] === 'enabled', 'client redirection annotation');
  t.is(fake.get('pods', 'default', 'server')?.metadata?.annotations?.[REDIRECTION_ANNOTATION], 'enabled');

  // ---- the apps ----
  const server = spawn('ip', ['netns', 'exec', serverNs, process.execPath, join(FIXTURES, 'app.js'), 'server', String(SERVER_PORT)], { stdio: 'pipe' });
  server.on('error', () => {});
  children.push(server);
  await once(server.stdout, 'data');

  const { stdout } = await exec('ip', ['netns', 'exec', clientNs, process.execPath, join(FIXTURES, 'client.js'), 'rounds', serverIp, String(SERVER_PORT), String(ROUNDS), '2000'], { timeout: 15_000 }).catch(async (err: unknown) => {
    // What the namespaces and the data plane looked like, for the failure report.
    for (const ns of [clientNs, serverNs, nodeA.name, nodeB.name]) {
      t.log(ns, (await exec('ip', ['netns', 'exec', ns, 'sh', '-c', 'ip addr; ip route; ip rule; iptables-save -c; ss -tanp']).catch((e: unknown) => ({ stdout: String(e) }))).stdout);
    }
    t.log(log.records.filter((r) => (r['level'] as number) >= 40).map((r) => JSON.stringify(r)).join('\n'));
    throw err;
  });
  const outcome = JSON.parse(stdout) as { byApp: Record<string, number>; errors: string[]; bytesEchoed: number };
  t.deepEqual(outcome, { byApp: { server: ROUNDS }, errors: [], bytesEchoed: ROUNDS * 2000 }, 'every round echoed intact by the server');

  // ---- through the mesh ----
  const opened = 'istio_tcp_connections_opened_total';
  const mtls = 'connection_security_policy="mutual_tls"';
  const fromClient = 'source_workload="client"';
  await until(async () => total(await metricsOf(ztB), opened, 'reporter="destination"', mtls, fromClient) >= ROUNDS, 'ztunnel B to count the inbound connections', 5000)
    .catch(() => {});
  const metricsB = await metricsOf(ztB);
  const metricsA = await metricsOf(ztA);
  t.is(total(metricsB, opened, 'reporter="destination"', mtls, fromClient, 'destination_workload="server"'), ROUNDS, 'ztunnel B saw 5 mTLS connections from client');
  t.is(total(metricsA, opened, 'reporter="source"', mtls, fromClient, 'destination_workload="server"'), ROUNDS, 'ztunnel A proxied 5 connections from client');
});
