import test, { type ExecutionContext } from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseCniAgentConfig } from '../../src/cni/agent-config.ts';
import { startCniAgent, type CniAgent } from '../../src/cni/agent.ts';
import { listProbeIps } from '../../src/cni/apply-rules.ts';
import { REDIRECTION_ANNOTATION } from '../../src/cni/enrollment.ts';
import { LocalCaClient } from '../../src/identity/local-ca-client.ts';
import { closeFd, namedNetnsPath, openNetns } from '../../src/sys/netns.ts';
import { CONNECTION_COMPLETE } from '../../src/ztunnel/access-log.ts';
import { parseZtunnelConfig, type ZtunnelConfig } from '../../src/ztunnel/config.ts';
import { startZtunnel, type Ztunnel } from '../../src/ztunnel/ztunnel.ts';
import { addFakePodProcess, SHIM } from '../helpers/cni.ts';
import { nodeAgentEnv, PRIMARY_CONF, runtimeAddPod, setPodIp, type ChainRun, type Json, type NetConfList, type SimNode } from '../../src/demo/cni-runtime.ts';
import { startFakeKube, type FakeKube } from '../../src/demo/api-server.ts';
import { inpodListening } from '../helpers/inpod.ts';
import { captureLog } from '../helpers/log.ts';
import { createNodeNetwork, requireNetns, type NetnsNode } from '../helpers/netns.ts';
import { readPcap } from '../helpers/pcap.ts';
import { testPki } from '../helpers/pki.ts';
import { total, until } from '../helpers/prometheus.ts';
import { tempDir } from '../helpers/tmp.ts';

/**
 * The capture issue's acceptance scenario, as close to a cluster as we get without a container runtime: two
 * node namespaces joined by a link, a node agent (with its CNI installer) and a shared-mode ztunnel per node,
 * one fake API server, and pods whose namespaces are set up the way a runtime does it: the runtime reads the
 * conflist the agent's installer chained `ambient-cni` into and runs each plugin of it (loopback, bridge +
 * host-local from Debian's containernetworking-plugins, then the static shim the installer copied) with CNI_*
 * environment and stdin, nothing else.
 *
 * Shown: the client pod on node A reaches the server pod on node B through both ztunnels, and what crosses the
 * nodes is TLS on 15008; the access log names both SPIFFE identities; a pod outside the mesh is untouched; a
 * kubelet-style probe from node B reaches the app without passing ztunnel (host probe SNAT); labelling a
 * namespace enrols its running pod; restarting ztunnel B loses no enrolled pod; deleting a pod takes its
 * listeners and its probe-set entry away.
 */

const FIXTURES = join(import.meta.dirname, '..', 'ztunnel', 'fixtures');
const MODE = 'istio.io/dataplane-mode';
const SERVER_PORT = 8080;
const ROUNDS = 5;

const exec = promisify(execFile);


interface MeshPod {
  readonly name: string;
  readonly namespace: string;
  readonly ip: string;
  readonly node: string;
}

function meshFile(pods: readonly MeshPod[]): string {
  return `workloads:${pods.map((p) => `
- uid: cluster1//v1/Pod/${p.namespace}/${p.name}
  name: ${p.name}
  namespace: ${p.namespace}
  serviceAccount: ${p.name}
  trustDomain: cluster.local
  workloadIps: ["${p.ip}"]
  protocol: HBONE
  node: ${p.node}
  workloadName: ${p.name}
`).join('')}`;
}

async function metricsOf(zt: Ztunnel): Promise<string> {
  return (await fetch(`http://127.0.0.1:${zt.ports().stats}/metrics`)).text();
}

interface Rounds {
  readonly byApp: Record<string, number>;
  readonly errors: string[];
  readonly bytesEchoed: number;
}

test('two nodes: pods set up by a real CNI chain with ambient-cni are captured; client on node A reaches server on node B through both ztunnels over mTLS HBONE', async (t: ExecutionContext) => {
  if (!requireNetns(t)) return;
  if (!existsSync(SHIM)) throw new Error(`${SHIM} is missing: run \`make build\` first`);
  for (const tool of ['tcpdump', 'ipset']) {
    await exec(tool, ['--version']).catch((err: unknown) => {
      throw new Error(`${tool} is needed (Debian package ${tool}; \`make deps\` installs it)`, { cause: err });
    });
  }
  t.timeout(180_000);

  // ---- the nodes ----
  const network = await createNodeNetwork(t, { count: 2 });
  const [nodeA, nodeB] = network.nodes as [NetnsNode, NetnsNode];
  const dir = await tempDir(t, 'an-e2e-');
  const specs: [SimNode, SimNode] = [
    { node: nodeA, name: 'node-a', podCidr: '10.244.1.0/24', dir: join(dir, 'node-a') },
    { node: nodeB, name: 'node-b', podCidr: '10.244.2.0/24', dir: join(dir, 'node-b') },
  ];
  await nodeA.exec('sysctl', ['-w', 'net.ipv4.ip_forward=1']);
  await nodeB.exec('sysctl', ['-w', 'net.ipv4.ip_forward=1']);
  await nodeA.exec('ip', ['route', 'add', specs[1].podCidr, 'via', nodeB.ip]);
  await nodeB.exec('ip', ['route', 'add', specs[0].podCidr, 'via', nodeA.ip]);
  const ip = { client: '10.244.1.2', legacy: '10.244.1.3', late: '10.244.1.4', server: '10.244.2.2' } as const;

  // ---- the API server ----
  const fake = await startFakeKube();
  fake.create('namespaces', { metadata: { name: 'default', labels: { [MODE]: 'ambient' } } });
  fake.create('namespaces', { metadata: { name: 'legacy' } });
  fake.create('namespaces', { metadata: { name: 'late' } });
  const podObject = (namespace: string, name: string, nodeName: string): string =>
    fake.create('pods', {
      metadata: { name, namespace },
      spec: { nodeName, serviceAccountName: name, containers: [{ name: 'app', image: 'app' }] },
      status: { phase: 'Pending' },
    } as Parameters<FakeKube['create']>[1]).metadata?.uid ?? '';
  const uid = {
    client: podObject('default', 'client', 'node-a'),
    server: podObject('default', 'server', 'node-b'),
    legacy: podObject('legacy', 'legacy', 'node-a'),
    late: podObject('late', 'late', 'node-a'),
  };

  // ---- per node: agent (installing the plugin) + shared-mode ztunnel ----
  const mesh = join(dir, 'mesh.yaml');
  const meshPods: MeshPod[] = [
    { name: 'client', namespace: 'default', ip: ip.client, node: 'node-a' },
    { name: 'server', namespace: 'default', ip: ip.server, node: 'node-b' },
    { name: 'late', namespace: 'late', ip: ip.late, node: 'node-a' },
  ];
  await writeFile(mesh, meshFile(meshPods));
  const pki = testPki();
  const log = captureLog();
  const agents: CniAgent[] = [];
  const ztunnels: Ztunnel[] = [];
  const ztunnelConfigs: ZtunnelConfig[] = [];
  const procRoots: string[] = [];
  const podNamespaces: string[] = [];
  const chains: ChainRun[] = [];
  const children: ChildProcess[] = [];
  const fds: number[] = [];

  t.teardown(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const fd of fds) closeFd(fd);
    // ztunnels close before the CNI DELs, so their pooled HBONE sessions can end gracefully; after DEL took
    // the server pod's veth away they could only be cut at the termination deadline (hbone/client.ts).
    for (const zt of ztunnels) await zt.close().catch(() => {});
    for (const chain of chains.reverse()) await chain.del().catch((err: unknown) => t.log(`teardown: ${String(err)}`));
    for (const agent of agents) await agent.close().catch(() => {});
    await pki.close();
    await fake.close();
    for (const ns of podNamespaces) await exec('ip', ['netns', 'delete', ns]).catch(() => {});
  });

  const startNodeZtunnel = async (config: ZtunnelConfig, nodeName: string): Promise<Ztunnel> => {
    const zt = await startZtunnel(config, { logger: log.logger.child({ node: nodeName }), ca: new LocalCaClient(pki.ca) });
    ztunnels.push(zt);
    await until(async () => (await fetch(`http://127.0.0.1:${zt.ports().readiness}/healthz/ready`)).status === 200, `ztunnel on ${nodeName} to be ready`, 10_000);
    return zt;
  };

  for (const spec of specs) {
    const parsed = parseCniAgentConfig({}, await nodeAgentEnv(spec, fake.kubeconfigPath, SHIM));
    if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
    const agent = await startCniAgent(parsed.value, { logger: log.logger.child({ node: spec.name }) });
    agents.push(agent);
    await agent.ready;
    await agent.installer?.installed;
    procRoots.push(parsed.value.procRoot);

    const zparsed = parseZtunnelConfig(
      { 'admin-port': '0', 'stats-port': '0', 'readiness-port': '0' },
      { PROXY_MODE: 'shared', XDS_ADDRESS: '', LOCAL_XDS_PATH: mesh, INPOD_UDS: parsed.value.ztunnelSocket, NODE_NAME: spec.name,
        CONNECTION_TERMINATION_DEADLINE: '1s' },
    );
    if (!zparsed.ok) throw new Error(zparsed.errors.join('\n'));
    ztunnelConfigs.push(zparsed.value);
    await startNodeZtunnel(zparsed.value, spec.name);
  }
  let [ztA, ztB] = ztunnels as [Ztunnel, Ztunnel];

  // The installer chained our plugin into the node's primary config and copied the shim into its bin dir.
  const installed = JSON.parse(await readFile(join(specs[0].dir, 'net.d', PRIMARY_CONF), 'utf8')) as NetConfList;
  t.deepEqual(installed.plugins.map((p) => p['type']), ['bridge', 'ambient-cni'], 'the primary conflist now ends with ambient-cni');
  t.is(installed.plugins[1]?.['cni_agent_run_dir'], specs[0].dir, 'the entry tells the shim where the agent is');
  t.true(existsSync(join(specs[0].dir, 'bin', 'ambient-cni')));

  // ---- the pods, as a runtime creates them: loopback, then the installed conflist ----
  const createPod = async (index: 0 | 1, namespace: string, name: string, podUid: string): Promise<{ ip: string; ns: string }> => {
    const spec = specs[index];
    const podNs = `${nodeA.name.replace(/-node0$/, '')}-pod-${name}`;
    await exec('ip', ['netns', 'add', podNs]);
    podNamespaces.push(podNs);
    const added = await runtimeAddPod(spec, { containerId: `sandbox-${name}`, podNs, podName: name, podNamespace: namespace, podUid });
    chains.push(...added.chains);
    const chain = added.chains[1]!;
    const [bridge, ours] = chain.results as [Json, Json];
    t.deepEqual(ours, bridge, `${name}: ambient-cni prints its prevResult`);
    const podIp = (bridge['ips'] as Array<{ address: string }>)[0]?.address.split('/')[0] ?? '';
    await setPodIp(fake, namespace, name, podIp);
    return { ip: podIp, ns: podNs };
  };
  const client = await createPod(0, 'default', 'client', uid.client);
  const server = await createPod(1, 'default', 'server', uid.server);
  const legacy = await createPod(0, 'legacy', 'legacy', uid.legacy);
  const late = await createPod(0, 'late', 'late', uid.late);
  t.deepEqual([client.ip, server.ip, legacy.ip, late.ip], [ip.client, ip.server, ip.legacy, ip.late], 'host-local handed out the expected addresses');

  const annotation = (namespace: string, name: string): string | undefined =>
    fake.get('pods', namespace, name)?.metadata?.annotations?.[REDIRECTION_ANNOTATION];
  await until(() => annotation('default', 'server') === 'enabled', 'server redirection annotation');
  await until(() => annotation('default', 'client') === 'enabled', 'client redirection annotation');
  const iptablesIn = async (ns: string): Promise<string> => (await exec('ip', ['netns', 'exec', ns, 'iptables-save'])).stdout;
  const netnsFd = (ns: string): number => {
    const fd = openNetns(namedNetnsPath(ns));
    fds.push(fd);
    return fd;
  };

  // ---- a pod outside the mesh is untouched ----
  t.is(annotation('legacy', 'legacy'), undefined);
  t.notRegex(await iptablesIn(legacy.ns), /ISTIO_/, 'no redirection rules in the legacy pod');
  t.deepEqual(await inpodListening(netnsFd(legacy.ns)), [false, false, false], 'no ztunnel listeners in the legacy pod');
  t.is(annotation('late', 'late'), undefined, 'late is not enrolled while its namespace is not ambient');

  // ---- the apps, and a capture on node A's link ----
  const app = spawn('ip', ['netns', 'exec', server.ns, process.execPath, join(FIXTURES, 'app.js'), 'server', String(SERVER_PORT)], { stdio: 'pipe' });
  app.on('error', () => {});
  children.push(app);
  await once(app.stdout, 'data');
  const pcapPath = join(dir, 'link.pcap');
  const tcpdump = spawn('ip', ['netns', 'exec', nodeA.name, 'tcpdump', '-Z', 'root', '-i', 'eth0', '-n', '--immediate-mode', '-U', '-s', '0', '-w', pcapPath, 'tcp'], { stdio: 'pipe' });
  tcpdump.on('error', () => {});
  children.push(tcpdump);
  let tcpdumpErr = '';
  await new Promise<void>((resolve, reject) => {
    tcpdump.stderr.on('data', (d: Buffer) => {
      tcpdumpErr += String(d);
      const err = tcpdumpErr;
      if (/listening on/.test(err)) resolve();
    });
    tcpdump.once('exit', () => reject(new Error(`tcpdump exited: ${tcpdumpErr}`)));
  });

  const rounds = async (from: string | NetnsNode, count = ROUNDS, bytes = 2000): Promise<Rounds> => {
    const where = typeof from === 'string' ? from : from.name;
    const { stdout } = await exec('ip', ['netns', 'exec', where, process.execPath, join(FIXTURES, 'client.js'), 'rounds', ip.server, String(SERVER_PORT), String(count), String(bytes)], { timeout: 20_000 })
      .catch(async (err: unknown) => {
        for (const ns of [where, server.ns, nodeA.name, nodeB.name]) {
          t.log(ns, (await exec('ip', ['netns', 'exec', ns, 'sh', '-c', 'ip addr; ip route; ip rule; iptables-save -c; ss -tanp']).catch((e: unknown) => ({ stdout: String(e) }))).stdout);
        }
        t.log(log.records.filter((r) => (r['level'] as number) >= 40).map((r) => JSON.stringify(r)).join('\n'));
        throw err;
      });
    return JSON.parse(stdout) as Rounds;
  };
  const everyRound = (count = ROUNDS, bytes = 2000): Rounds => ({ byApp: { server: count }, errors: [], bytesEchoed: count * bytes });

  t.deepEqual(await rounds(client.ns), everyRound(), 'every round echoed intact by the server');

  // ---- through the mesh ----
  const opened = 'istio_tcp_connections_opened_total';
  const mtls = 'connection_security_policy="mutual_tls"';
  const fromClient = 'source_workload="client"';
  await until(async () => total(await metricsOf(ztB), opened, 'reporter="destination"', mtls, fromClient) >= ROUNDS, 'ztunnel B to count the inbound connections', 5000)
    .catch(() => {});
  t.is(total(await metricsOf(ztB), opened, 'reporter="destination"', mtls, fromClient, 'destination_workload="server"'), ROUNDS, 'ztunnel B saw 5 mTLS connections from client');
  t.is(total(await metricsOf(ztA), opened, 'reporter="source"', mtls, fromClient, 'destination_workload="server"'), ROUNDS, 'ztunnel A proxied 5 connections from client');

  // The access log names both SPIFFE identities, on both sides.
  const completed = log.records.filter((r) => r.msg === CONNECTION_COMPLETE && r['src.workload'] === 'client' && r['dst.workload'] === 'server');
  t.true(completed.length >= 2 * ROUNDS, `a record per connection on each ztunnel (${completed.length})`);
  for (const record of completed) {
    t.is(record['src.identity'], 'spiffe://cluster.local/ns/default/sa/client');
    t.is(record['dst.identity'], 'spiffe://cluster.local/ns/default/sa/server');
  }

  // What crossed between the nodes was TLS to 15008: no segment to the app port, no plaintext of the app.
  tcpdump.kill('SIGINT');
  await once(tcpdump, 'exit');
  const segments = (await readPcap(pcapPath)).filter((s) => s.payload.length > 0);
  const between = segments.filter((s) => [s.src, s.dst].some((a) => a === ip.client || a === ip.server));
  t.true(between.length > 0, `the capture saw the pods talk (${segments.length} segments: ${segments.slice(0, 5).map((s) => `${s.src}:${s.sport}>${s.dst}:${s.dport}`).join(' ')})`);
  t.deepEqual(between.filter((s) => s.sport !== 15008 && s.dport !== 15008).map((s) => `${s.src}:${s.sport}>${s.dst}:${s.dport}`), [], 'every segment is to or from 15008');
  t.true(between.some((s) => s.dport === 15008 && s.payload[0] === 0x16 && s.payload[1] === 0x03), 'a TLS handshake record to 15008');
  t.true(between.some((s) => s.payload[0] === 0x17 && s.payload[1] === 0x03), 'TLS application data records');
  t.false(between.some((s) => s.payload.includes('server\n')), "the app's plaintext never crossed the link");

  // ---- the legacy pod is not captured: its connection bypasses ztunnel A ----
  const sourceTotal = async (): Promise<number> => total(await metricsOf(ztA), opened, 'reporter="source"');
  const before = await sourceTotal();
  t.deepEqual(await rounds(legacy.ns, 1), everyRound(1), 'legacy reaches the server (plaintext, permitted by policy)');
  t.is(await sourceTotal(), before, 'ztunnel A proxied nothing for the legacy pod');

  // ---- a kubelet-style probe from node B reaches the app, SNATed past ztunnel ----
  t.deepEqual(await listProbeIps({ kind: 'name', name: nodeB.name }), [{ ip: ip.server, comment: uid.server }], 'the server is in node B\'s probe set');
  const inboundB = async (): Promise<number> => total(await metricsOf(ztB), opened, 'reporter="destination"');
  const inboundBefore = await inboundB();
  t.deepEqual(await rounds(nodeB, 1, 100), everyRound(1, 100), 'the probe from the node reached the app');
  t.is(await inboundB(), inboundBefore, 'the probe did not pass through ztunnel B');

  // ---- labelling a namespace enrols its running pod ----
  await addFakePodProcess(procRoots[0] ?? '', { pid: 5151, uid: uid.late, netns: late.ns });
  fake.update('namespaces', { metadata: { name: 'late', labels: { [MODE]: 'ambient' } } });
  await until(() => annotation('late', 'late') === 'enabled', 'late to be enrolled by the namespace label', 15_000);
  t.regex(await iptablesIn(late.ns), /-j REDIRECT --to-ports 15001/);
  const lateFd = netnsFd(late.ns);
  t.deepEqual(await inpodListening(lateFd), [true, true, true], 'ztunnel A listens in the late pod');
  t.deepEqual(await rounds(late.ns, 2), everyRound(2));
  await until(async () => total(await metricsOf(ztA), opened, 'reporter="source"', mtls, 'source_workload="late"') === 2, 'ztunnel A to carry late\'s connections', 5000);

  // ---- restarting ztunnel B loses no enrolled pod ----
  await ztB.close();
  ztunnels.splice(ztunnels.indexOf(ztB), 1);
  ztB = await startNodeZtunnel(ztunnelConfigs[1]!, 'node-b');
  t.deepEqual(await rounds(client.ns), everyRound(), 'client reaches the server through the new ztunnel B');
  t.is(total(await metricsOf(ztB), opened, 'reporter="destination"', mtls, fromClient), ROUNDS, 'the new ztunnel B carried them');

  // ---- deleting a pod takes its listeners and its probe-set entry away ----
  t.true((await listProbeIps({ kind: 'name', name: nodeA.name })).some((e) => e.ip === ip.late));
  fake.delete('pods', 'late', 'late');
  await until(async () => (await inpodListening(lateFd)).every((up) => !up), 'ztunnel A to close the late pod\'s listeners', 10_000);
  await until(async () => !(await listProbeIps({ kind: 'name', name: nodeA.name })).some((e) => e.ip === ip.late), 'late to leave the probe set', 5000);
  t.false(agents[0]!.pods().some((p) => p.name === 'late'));
  t.deepEqual((await listProbeIps({ kind: 'name', name: nodeA.name })).map((e) => e.ip), [ip.client], 'only the client stays in node A\'s probe set');
});
