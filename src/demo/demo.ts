import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseCniAgentConfig } from '../cni/agent-config.ts';
import { startCniAgent, type CniAgent } from '../cni/agent.ts';
import { REDIRECTION_ANNOTATION } from '../cni/enrollment.ts';
import { parseControlPlaneConfig } from '../control-plane/config.ts';
import { startControlPlane, type ControlPlane } from '../control-plane/control-plane.ts';
import { L7_COLLECTIONS, l7Extension } from '../control-plane/l7/extension.ts';
import { gatewayFeed, waypointControllerHook } from '../control-plane/waypoint-hook.ts';
import { ErrorCode } from '../core/error-codes.ts';
import { MeshError } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/logger.ts';
import { parsePrometheusText, type PromSample } from '../core/prometheus-text.ts';
import { namedNetnsPath } from '../sys/netns.ts';
import { parseZtunnelConfig } from '../ztunnel/config.ts';
import { startZtunnel, type Ztunnel } from '../ztunnel/ztunnel.ts';
import { startFakeKube, type FakeKube, type KubeObjectJson } from './api-server.ts';
import { nodeAgentEnv, runtimeAddPod, setPodIp, type ChainRun, type SimNode } from './cni-runtime.ts';
import type { DemoConfig } from './config.ts';
import type { ExampleObject } from './examples.ts';
import { forwardInto, forwardOutOf, type Forwarder } from './forward.ts';
import { startNodeNetwork, type NetnsNode, type NodeNetwork } from './node-network.ts';
import { buildReport, metricDelta, type CallResult, type DemoCall, type DemoReport, type DemoWorkload } from './report.ts';
import { removeLeftovers } from './state.ts';
import { WAYPOINT_NODE_FLAGS } from '../waypoint/config.ts';

/**
 * `make demo`: an embedded mesh on this machine. The cluster is the demo's API server holding `examples/`; the
 * control plane runs against it as it would against a real one; two nodes are network namespaces, each with a
 * node agent (which installs the CNI plugin into the node's config) and a ztunnel; the demo plays kubelet and
 * container runtime: it runs each pod's sandbox through the node's installed CNI chain, starts the pod's app in
 * it, reports the pod's IP, and does the same for the waypoint Deployment the control plane creates.
 */

export class DemoError extends MeshError {}

const APP_IMAGE = 'ambient-node/demo-app';
const TRUST_DOMAIN = 'cluster.local';
const NODE_NAME_EXTRA = 'authentication.kubernetes.io/node-name';
const CP_HOSTNAME = 'istiod.istio-system.svc';
const SERVICE_RANGE = '10.96.0.0/16';
const STEP_TIMEOUT_MS = 10_000;

/** What the demo's mesh is built from; fixed because examples/ names these nodes. */
const NODES = [
  { name: 'node-a', podCidr: '10.244.1.0/24' },
  { name: 'node-b', podCidr: '10.244.2.0/24' },
] as const;

export interface DemoDeps {
  /** Progress lines ("[3/8] ..."). */
  readonly progress: (line: string) => void;
  /** The compiled demo scripts and ambientd: `<dist>/src/demo/app.js`, `<dist>/src/cli/ambientd.js`. */
  readonly distDir: string;
  /** The static CNI shim (`build/ambient-cni`). */
  readonly shim: string;
}

export interface DemoUrls {
  readonly [component: string]: string;
}

export interface Demo {
  readonly report: DemoReport;
  readonly urls: DemoUrls;
  /** Stops everything and removes every namespace and file it made; idempotent. */
  close(): Promise<void>;
}

interface RunningPod {
  readonly namespace: string;
  readonly name: string;
  readonly node: SimNode;
  readonly netns: string;
  readonly ip: string;
  readonly chains: ChainRun[];
  readonly process: ChildProcess;
}

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await condition()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new DemoError(ErrorCode.DEMO_START_FAILED, `timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function scrape(url: string): Promise<PromSample[]> {
  const res = await fetch(url);
  return [...parsePrometheusText(await res.text()).samples];
}

/** The env of a container with the downward-API fields kubelet fills in. */
function containerEnv(container: { env?: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath?: string } } }> }, fields: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of container.env ?? []) {
    const value = e.value ?? (e.valueFrom?.fieldRef?.fieldPath !== undefined ? fields[e.valueFrom.fieldRef.fieldPath] : undefined);
    if (value !== undefined) env[e.name] = value;
  }
  return env;
}

/** The token the demo's API server accepts from a node's ztunnel, bound to that node as kubelet's would be. */
export const ztunnelToken = (nodeName: string): string => `ztunnel-${nodeName}`;

/**
 * A shared-mode ztunnel's environment on a simulated node: its pods from the node agent's ZDS socket, its mesh
 * and certificates from the control plane on this machine's loopback (verified as istiod's service name), the
 * node's ztunnel token.
 */
export function nodeZtunnelEnv(node: { readonly nodeName: string; readonly ztunnelSocket: string; readonly controlPlane: ControlPlane }): Record<string, string> {
  const grpc = `https://localhost:${node.controlPlane.ports().grpc}`;
  const root = node.controlPlane.rootCertPem();
  return {
    PROXY_MODE: 'shared', INPOD_UDS: node.ztunnelSocket, NODE_NAME: node.nodeName, CONNECTION_TERMINATION_DEADLINE: '1s',
    XDS_ADDRESS: grpc, CA_ADDRESS: grpc, XDS_ROOT_CA: root, CA_ROOT_CA: root,
    ALT_XDS_HOSTNAME: CP_HOSTNAME, ALT_CA_HOSTNAME: CP_HOSTNAME, AUTH_TOKEN: ztunnelToken(node.nodeName),
  };
}

export async function startDemo(config: DemoConfig, examples: readonly ExampleObject[], deps: DemoDeps): Promise<Demo> {
  const steps = 8;
  let step = 0;
  const progress = (text: string) => deps.progress(`[${++step}/${steps}] ${text}`);
  const logsDir = join(config.stateDir, 'logs');
  await mkdir(logsDir, { recursive: true });
  const logFile: WriteStream = createWriteStream(join(logsDir, 'mesh.log'));
  const logger: Logger = createLogger({ level: 'info', destination: logFile });

  const closers: Array<() => Promise<void>> = [];
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      // Each step gets a bounded time, so a stuck piece cannot keep the rest from being removed.
      for (const [index, fn] of [...closers.entries()].reverse()) {
        const started = Date.now();
        const outcome = await Promise.race([fn().then(() => 'done', (err: unknown) => `failed: ${String(err)}`), sleep(STEP_TIMEOUT_MS).then(() => 'timed out')]);
        logger.info({ step: index, outcome, ms: Date.now() - started }, 'demo teardown step');
      }
      await removeLeftovers(config.prefix, config.stateDir);
      await new Promise<void>((resolve) => logFile.end(() => resolve()));
    })());

  try {
    // ---- the cluster ----
    progress(`API server with ${examples.length} objects from ${config.examplesDir}`);
    const api: FakeKube = await startFakeKube({ serviceClusterIpRange: SERVICE_RANGE });
    closers.push(() => api.close());
    for (const n of NODES) api.create('nodes', { metadata: { name: n.name, labels: { 'topology.kubernetes.io/zone': `zone-${n.name}`, 'kubernetes.io/hostname': n.name } } });
    for (const { resource, object } of examples) {
      const obj = resource === 'pods' ? { ...object, status: { phase: 'Pending' } } : object;
      api.create(resource, obj as Parameters<FakeKube['create']>[1]);
    }
    for (const n of NODES) api.registerToken(ztunnelToken(n.name), { username: 'system:serviceaccount:istio-system:ztunnel', audiences: ['istio-ca'], extra: { [NODE_NAME_EXTRA]: [n.name] } });

    // ---- the control plane ----
    progress('control plane (xDS, CA, waypoint controller)');
    const cpParsed = parseControlPlaneConfig(
      { 'listen-address': '127.0.0.1', 'grpc-port': '0', 'monitoring-port': String(config.controlPlaneMonitoringPort), 'readiness-port': '0' },
      { KUBECONFIG: api.kubeconfigPath, TRUST_DOMAIN },
    );
    if (!cpParsed.ok) throw new DemoError(ErrorCode.DEMO_START_FAILED, cpParsed.errors.join('; '));
    const cpLogger = logger.child({ component: 'control-plane' });
    const cp: ControlPlane = await startControlPlane(cpParsed.value, {
      logger: cpLogger,
      extensions: [l7Extension({ logger: cpLogger })],
      extraCollections: L7_COLLECTIONS,
      waypointController: waypointControllerHook({ image: cpParsed.value.waypointImage, localCommand: [], feed: gatewayFeed() }),
      backoff: { initialMs: 50, maxMs: 1000 },
      // The demo names the data plane's metrics itself (below): the pods' own addresses are inside their namespaces.
      meshDiscovery: false,
    });
    closers.push(() => cp.close());
    await cp.ready;
    const rootCaPath = join(config.stateDir, 'root-cert.pem');
    await writeFile(rootCaPath, cp.rootCertPem());

    // ---- the nodes ----
    progress('two nodes: network namespaces, a node agent and a ztunnel on each');
    const network: NodeNetwork = await startNodeNetwork({ count: 2, prefix: config.prefix });
    closers.push(() => network.close());
    const simNodes: SimNode[] = NODES.map((n, i) => ({ node: network.nodes[i] as NetnsNode, name: n.name, podCidr: n.podCidr, dir: join(config.stateDir, 'nodes', n.name) }));
    const [a, b] = simNodes as [SimNode, SimNode];
    for (const n of simNodes) await n.node.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    await a.node.exec('ip', ['route', 'add', b.podCidr, 'via', b.node.ip]);
    await b.node.exec('ip', ['route', 'add', a.podCidr, 'via', a.node.ip]);

    const agents = new Map<string, CniAgent>();
    const ztunnels = new Map<string, Ztunnel>();
    for (const n of simNodes) {
      const nodeLogger = logger.child({ node: n.name });
      const parsed = parseCniAgentConfig({}, await nodeAgentEnv(n, api.kubeconfigPath, deps.shim));
      if (!parsed.ok) throw new DemoError(ErrorCode.DEMO_START_FAILED, parsed.errors.join('; '));
      const agent = await startCniAgent(parsed.value, { logger: nodeLogger });
      closers.push(() => agent.close());
      agents.set(n.name, agent);
      await agent.ready;
      await agent.installer?.installed;
      const zparsed = parseZtunnelConfig(
        { 'admin-port': '0', 'stats-port': '0', 'readiness-port': '0' },
        nodeZtunnelEnv({ nodeName: n.name, ztunnelSocket: parsed.value.ztunnelSocket, controlPlane: cp }),
      );
      if (!zparsed.ok) throw new DemoError(ErrorCode.DEMO_START_FAILED, zparsed.errors.join('; '));
      const zt = await startZtunnel(zparsed.value, { logger: nodeLogger });
      closers.push(() => zt.close());
      ztunnels.set(n.name, zt);
      await until(async () => (await fetch(`http://127.0.0.1:${zt.ports().readiness}/healthz/ready`)).status === 200, `ztunnel on ${n.name} to be ready`);
    }

    // ---- the pods, as kubelet and the container runtime create them ----
    const pods: RunningPod[] = [];
    closers.push(async () => {
      for (const pod of pods) if (pod.process.exitCode === null && pod.process.signalCode === null) pod.process.kill('SIGTERM');
      for (const pod of [...pods].reverse()) for (const chain of [...pod.chains].reverse()) await chain.del().catch(() => {});
    });
    const runPod = async (obj: KubeObjectJson, command: (ip: string) => { argv: string[]; env: Record<string, string> }): Promise<RunningPod> => {
      const namespace = obj.metadata?.namespace ?? 'default';
      const name = obj.metadata?.name ?? '';
      const spec = obj['spec'] as { nodeName?: string };
      const node = simNodes.find((n) => n.name === spec.nodeName) ?? (pods.filter((p) => p.node === a).length <= pods.filter((p) => p.node === b).length ? a : b);
      if (spec.nodeName !== node.name) api.update('pods', { ...api.get('pods', namespace, name), spec: { ...spec, nodeName: node.name } } as Parameters<FakeKube['update']>[1]);
      const netns = `${config.prefix}-pod-${namespace}-${name}`;
      const started = Date.now();
      await run('ip', ['netns', 'add', netns]);
      // IPv4 only, as the demo's pod network: no IPv6 duplicate address detection for the bridge plugin to wait out.
      await run('ip', ['netns', 'exec', netns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
      const uid = api.get('pods', namespace, name)?.metadata?.uid ?? '';
      const added = await runtimeAddPod(node, { containerId: `sandbox-${namespace}-${name}`, podNs: netns, podName: name, podNamespace: namespace, podUid: uid });
      logger.info({ pod: `${namespace}/${name}`, node: node.name, ip: added.ip, ms: Date.now() - started }, 'pod sandbox created through the CNI chain');
      const { argv, env } = command(added.ip);
      const [program, ...args] = argv as [string, ...string[]];
      const out = createWriteStream(join(logsDir, `${namespace}-${name}.log`));
      const child = spawn('ip', ['netns', 'exec', netns, program, ...args], { env: { PATH: process.env['PATH'] ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      child.on('error', () => {});
      child.stdout.pipe(out);
      child.stderr.pipe(out);
      const pod: RunningPod = { namespace, name, node, netns, ip: added.ip, chains: added.chains, process: child };
      pods.push(pod);
      await setPodIp(api, namespace, name, added.ip, { ready: true });
      return pod;
    };

    const appPods = api.list('pods');
    progress(`${appPods.length} pods through each node's CNI chain (bridge + host-local + ambient-cni)`);
    for (const obj of appPods) {
      const container = ((obj['spec'] as { containers?: Array<{ image?: string; args?: string[]; env?: [] }> }).containers ?? [])[0];
      const image = (container?.image ?? '').split(':')[0];
      if (image !== APP_IMAGE) throw new DemoError(ErrorCode.DEMO_BAD_EXAMPLE, `pod ${obj.metadata?.namespace}/${obj.metadata?.name}: the demo runs only ${APP_IMAGE} images, not "${container?.image ?? ''}"`);
      await runPod(obj, () => ({
        argv: [process.execPath, join(deps.distDir, 'src', 'demo', 'app.js'), ...(container?.args ?? ['idle'])],
        env: { POD_NAME: obj.metadata?.name ?? '', POD_NAMESPACE: obj.metadata?.namespace ?? '', APP_VERSION: obj.metadata?.labels?.['version'] ?? '' },
      }));
    }
    const ambientNamespaces = new Set(api.list('namespaces').filter((ns) => ns.metadata?.labels?.['istio.io/dataplane-mode'] === 'ambient').map((ns) => ns.metadata?.name));
    for (const pod of pods) {
      if (!ambientNamespaces.has(pod.namespace)) continue;
      await until(() => api.get('pods', pod.namespace, pod.name)?.metadata?.annotations?.[REDIRECTION_ANNOTATION] === 'enabled', `${pod.namespace}/${pod.name} to be enrolled by the node agent`);
    }

    // ---- the waypoint: the Deployment the control plane made, run as a pod on node-a ----
    progress('waypoint: the Deployment the control plane created, run as a pod');
    const forwarders: Forwarder[] = [];
    closers.push(async () => {
      for (const f of forwarders) await f.close();
    });
    const gateways = api.list('gateways').filter((g) => (g['spec'] as { gatewayClassName?: string }).gatewayClassName === 'istio-waypoint');
    const waypoints: Array<{ key: string; pod: RunningPod; statsPort: number; readyPort: number }> = [];
    for (const gw of gateways) {
      const namespace = gw.metadata?.namespace ?? 'default';
      const name = gw.metadata?.name ?? '';
      await until(() => api.get('deployments', namespace, name) !== undefined, `the control plane to create the waypoint Deployment ${namespace}/${name}`);
      const deployment = api.get('deployments', namespace, name) as KubeObjectJson;
      const template = (deployment['spec'] as { template: { metadata: { labels?: Record<string, string>; annotations?: Record<string, string> }; spec: Record<string, unknown> & { serviceAccountName?: string; containers: Array<{ env?: [] }> } } }).template;
      // As the Deployment controller names them: <deployment>-<pod-template-hash>-<5 chars>, owned by that ReplicaSet.
      const hash = Math.random().toString(36).slice(2, 12);
      const replicaSet = `${name}-${hash}`;
      const podName = `${replicaSet}-${Math.random().toString(36).slice(2, 7)}`;
      const sa = template.spec.serviceAccountName ?? 'default';
      api.create('pods', {
        metadata: {
          name: podName, namespace, labels: { ...template.metadata.labels, 'pod-template-hash': hash }, annotations: template.metadata.annotations ?? {},
          ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: replicaSet, uid: `${deployment.metadata?.uid ?? ''}-rs`, controller: true }],
        }, spec: { ...template.spec, nodeName: a.name }, status: { phase: 'Pending' } } as Parameters<FakeKube['create']>[1]);
      const token = `waypoint-${namespace}-${name}`;
      api.registerToken(token, { username: `system:serviceaccount:${namespace}:${sa}`, audiences: ['istio-ca'], extra: { [NODE_NAME_EXTRA]: [a.name] } });
      const pod = await runPod(api.get('pods', namespace, podName) as KubeObjectJson, (ip) => ({
        argv: [process.execPath, ...WAYPOINT_NODE_FLAGS, join(deps.distDir, 'src', 'cli', 'ambientd.js'), 'waypoint'],
        env: {
          ...containerEnv(template.spec.containers[0] ?? {}, { 'metadata.name': podName, 'metadata.namespace': namespace, 'status.podIP': ip, 'status.hostIP': a.node.ip, 'spec.serviceAccountName': sa, 'spec.nodeName': a.name }),
          XDS_ADDRESS: 'https://localhost:15012', CA_ADDRESS: 'https://localhost:15012', XDS_ROOT_CA: rootCaPath, CA_ROOT_CA: rootCaPath,
          ALT_XDS_HOSTNAME: CP_HOSTNAME, ALT_CA_HOSTNAME: CP_HOSTNAME, AUTH_TOKEN: token, UV_THREADPOOL_SIZE: '16',
        },
      }));
      // The pod's way to istiod: its loopback 15012 leads to the control plane on this machine's loopback.
      forwarders.push(await forwardOutOf(namedNetnsPath(pod.netns), { host: '127.0.0.1', port: 15012 }, { host: '127.0.0.1', port: cp.ports().grpc }));
      const stats = await forwardInto({ host: '127.0.0.1', port: 0 }, namedNetnsPath(pod.netns), { host: pod.ip, port: 15020 });
      const ready = await forwardInto({ host: '127.0.0.1', port: 0 }, namedNetnsPath(pod.netns), { host: pod.ip, port: 15021 });
      forwarders.push(stats, ready);
      waypoints.push({ key: `${namespace}/${name}`, pod, statsPort: stats.port, readyPort: ready.port });
      await until(async () => (await fetch(`http://127.0.0.1:${ready.port}/healthz/ready`)).status === 200, `waypoint ${namespace}/${name} to be ready`, 60_000);
    }

    // The mesh page draws what the ztunnels' and the waypoint's metrics say.
    cp.setMeshTargets([
      ...[...ztunnels.values()].map((zt) => `http://127.0.0.1:${zt.ports().stats}/metrics`),
      ...waypoints.map((w) => `http://127.0.0.1:${w.statsPort}/stats/prometheus`),
    ]);

    // ---- the mesh settles: every captured pod an HBONE workload everywhere, the policy at ratings' ztunnel ----
    progress('waiting for every ztunnel to know every pod, service and policy');
    const captured = pods.filter((p) => ambientNamespaces.has(p.namespace) && !waypoints.some((w) => w.pod === p));
    for (const zt of ztunnels.values()) {
      for (const pod of captured) await until(() => zt.state.workloadByUid(`Kubernetes//Pod/${pod.namespace}/${pod.name}`)?.tunnelProtocol === 'HBONE', `${pod.namespace}/${pod.name} to reach every ztunnel`);
      await until(() => zt.state.service('shop', 'reviews.shop.svc.cluster.local')?.waypoint !== undefined, 'the reviews service to be bound to its waypoint');
    }
    const ratings = pods.find((p) => p.name === 'ratings');
    const ratingsZt = ratings ? ztunnels.get(ratings.node.name) : undefined;
    if (ratings && ratingsZt) await until(() => ratingsZt.state.workloadByUid(`Kubernetes//Pod/shop/ratings`)?.authorizationPolicies.includes('shop/deny-tester') === true, 'the DENY policy to reach the ztunnel of ratings');

    const service = (name: string, namespace: string) => api.get('services', namespace, name)?.['spec'] as { clusterIP?: string } | undefined;
    const vip = (name: string, namespace: string) => service(name, namespace)?.clusterIP ?? '';
    const podOf = (namespace: string, name: string): RunningPod => {
      const pod = pods.find((p) => p.namespace === namespace && p.name === name);
      if (!pod) throw new DemoError(ErrorCode.DEMO_BAD_EXAMPLE, `examples/ has no pod ${namespace}/${name}, which the demo's traffic starts from`);
      return pod;
    };
    const load = async (from: RunningPod, host: string, port: number, requests: number, connections: number): Promise<CallResult> => {
      const { stdout } = await from.node.node.exec('ip', ['netns', 'exec', from.netns, process.execPath, join(deps.distDir, 'src', 'demo', 'load.js'), host, String(port), String(requests), String(connections)], { timeoutMs: 120_000 });
      return JSON.parse(stdout) as CallResult;
    };

    // The route has reached the waypoint once its access log names it for a request.
    const [waypoint] = waypoints;
    const frontend = podOf('web', 'frontend');
    const tester = podOf('web', 'tester');
    if (waypoint) {
      await until(async () => {
        await load(frontend, vip('reviews', 'shop'), 9080, 2, 1);
        return (await readFile(join(logsDir, `${waypoint.pod.namespace}-${waypoint.pod.name}.log`), 'utf8')).includes('"route_name":"shop/reviews-canary.');
      }, 'the canary route to reach the waypoint', 30_000);
    }

    // ---- traffic ----
    progress(`traffic: ${config.requests} requests to reviews (the 90/10 canary), ratings from both callers (one refused)`);
    const ztStats = () => Promise.all([...ztunnels].map(async ([name, zt]) => [`ztunnel ${name}`, await scrape(`http://127.0.0.1:${zt.ports().stats}/metrics`)] as const));
    const wpStats = async () => (waypoint ? scrape(`http://127.0.0.1:${waypoint.statsPort}/stats/prometheus`) : []);
    const ztBefore = await ztStats();
    const wpBefore = await wpStats();
    const calls: DemoCall[] = [];
    const call = async (from: RunningPod, name: string, namespace: string, port: number, requests: number, connections: number, via?: string) => {
      const result = await load(from, vip(name, namespace), port, requests, connections);
      calls.push({ from: `${from.namespace}/${from.name}`, service: `${name}.${namespace}.svc.cluster.local`, port, requests, result, ...(via ? { waypoint: via } : {}) });
    };
    await call(frontend, 'reviews', 'shop', 9080, config.requests, 4, waypoint?.key);
    await call(frontend, 'ratings', 'shop', 9080, 10, 1);
    await call(tester, 'ratings', 'shop', 9080, 5, 1);
    await call(tester, 'reviews', 'shop', 9080, 10, 1, waypoint?.key);
    await sleep(300);
    const ztAfter = await ztStats();
    const wpAfter = await wpStats();

    progress('report');
    const workloads: DemoWorkload[] = pods.map((p) => {
      const obj = api.get('pods', p.namespace, p.name);
      const sa = (obj?.['spec'] as { serviceAccountName?: string } | undefined)?.serviceAccountName ?? 'default';
      const isWaypoint = waypoints.some((w) => w.pod === p);
      return {
        namespace: p.namespace, name: p.name, node: p.node.name, ip: p.ip, identity: `spiffe://${TRUST_DOMAIN}/ns/${p.namespace}/sa/${sa}`,
        captured: ambientNamespaces.has(p.namespace) && !isWaypoint, role: isWaypoint ? 'the waypoint' : 'not in an ambient namespace',
      };
    });
    const report = buildReport({
      workloads,
      calls,
      split: { route: 'shop/reviews-canary', service: 'reviews.shop.svc.cluster.local', weights: { 'reviews-v1': 90, 'reviews-v2': 10 } },
      denial: { policy: 'shop/deny-tester', from: 'web/tester', service: 'ratings.shop.svc.cluster.local' },
      ztunnelMetrics: Object.fromEntries(ztAfter.map(([name, after]) => [name, metricDelta(ztBefore.find(([n]) => n === name)?.[1] ?? [], after)])),
      waypointMetrics: metricDelta(wpBefore, wpAfter),
    });

    const urls: Record<string, string> = {
      'mesh page': `http://127.0.0.1:${cp.ports().monitoring}/mesh`,
      'control plane metrics': `http://127.0.0.1:${cp.ports().monitoring}/metrics`,
      'control plane problems': `http://127.0.0.1:${cp.ports().monitoring}/debug/problems`,
    };
    for (const [name, zt] of ztunnels) {
      urls[`ztunnel ${name} metrics`] = `http://127.0.0.1:${zt.ports().stats}/metrics`;
      urls[`ztunnel ${name} config dump`] = `http://127.0.0.1:${zt.ports().admin}/config_dump`;
    }
    for (const [name, agent] of agents) urls[`node agent ${name} metrics`] = `http://127.0.0.1:${agent.ports.metrics}/metrics`;
    for (const w of waypoints) urls[`waypoint ${w.key} metrics`] = `http://127.0.0.1:${w.statsPort}/stats/prometheus`;
    urls['logs'] = logsDir;
    return { report, urls, close };
  } catch (err) {
    await close();
    throw err;
  }
}
