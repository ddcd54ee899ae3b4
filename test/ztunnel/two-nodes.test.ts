import test, { type ExecutionContext } from 'ava';
import { once } from 'node:events';
import { rename, writeFile } from 'node:fs/promises';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CertificateAuthority } from '../../src/identity/ca.ts';
import { captureOutbound, createNodeNetwork, requireNetns, waitForPort, type NetnsNode } from '../helpers/netns.ts';
import { tempDir } from '../helpers/tmp.ts';
import { total } from '../helpers/prometheus.ts';

/**
 * Two ztunnels as two "nodes" (dedicated mode, network namespaces joined by a bridge), each with its
 * workload's app; node A's outbound TCP is captured by a real iptables REDIRECT to 15001. The mesh
 * comes from one local config file that both read, so rewriting it updates both.
 */

/** The launcher a deployment runs (bin/ambientd, with its node flags), given this test's node. */
const AMBIENTD = join(import.meta.dirname, '..', '..', '..', 'bin', 'ambientd');
const FIXTURES = join(import.meta.dirname, 'fixtures');
const VIP = '10.96.0.10';
const OUTSIDE_IP = '10.88.0.100'; // on node B's link, unknown to the mesh: passthrough
const APP_PORT = 8080;
const PLAIN_PORT = 9090;

function meshYaml(policies = '', bPolicies: readonly string[] = []): string {
  const workload = (name: string, ip: string, node: string) => `
- uid: cluster1//v1/Pod/default/${name}
  name: ${name}
  namespace: default
  serviceAccount: sa-${name}
  trustDomain: cluster.local
  workloadIps: ["${ip}"]
  protocol: HBONE
  node: ${node}
  workloadName: ${name}
  canonicalName: app-${name}
  authorizationPolicies: [${name === 'b' ? bPolicies.join(', ') : ''}]
  services:
    "default/echo.default.svc.cluster.local":
      80: ${APP_PORT}`;
  return `workloads:${workload('a', '10.88.0.1', 'node-a')}${workload('b', '10.88.0.2', 'node-b')}
services:
- name: echo
  namespace: default
  hostname: echo.default.svc.cluster.local
  vips: ["/${VIP}"]
  ports:
    80: ${APP_PORT}
${policies}`;
}

/** Denies sa-a on workload b only (a WorkloadSelector policy b lists). */
const DENY_A_ON_B = `policies:
- name: deny-a
  namespace: default
  scope: WorkloadSelector
  action: Deny
  rules:
  - - - principals: [{Exact: cluster.local/ns/default/sa/sa-a}]
`;

interface Mesh {
  readonly a: NetnsNode;
  readonly b: NetnsNode;
  readonly ztunnels: { readonly a: ChildProcess; readonly b: ChildProcess };
  rewrite(yaml: string): Promise<void>;
  client(...args: string[]): Promise<Record<string, unknown>>;
  metrics(node: NetnsNode): Promise<string>;
  admin(node: NetnsNode, path: string): Promise<string>;
}

async function startMesh(t: ExecutionContext): Promise<Mesh> {
  const network = await createNodeNetwork(t, { count: 2, extraRoutes: ['10.96.0.0/16'] });
  const [a, b] = network.nodes as [NetnsNode, NetnsNode];
  await b.exec('ip', ['addr', 'add', `${OUTSIDE_IP}/24`, 'dev', 'eth0']);
  const dir = await tempDir(t);
  const meshFile = join(dir, 'mesh.yaml');
  await writeFile(meshFile, meshYaml());
  // One trust root for both nodes: FAKE_CA loads the authority from FAKE_CA_DIR.
  await CertificateAuthority.generate('cluster.local').save(join(dir, 'ca'));

  const ztunnel = (node: NetnsNode, workload: string, nodeName: string) => {
    const child = node.spawn(AMBIENTD, ['ztunnel'], {
      env: {
        NODE: process.execPath,
        PROXY_MODE: 'dedicated',
        PROXY_WORKLOAD_INFO: `default/${workload}/sa-${workload}`,
        XDS_ADDRESS: '',
        LOCAL_XDS_PATH: meshFile,
        FAKE_CA: 'true',
        FAKE_CA_DIR: join(dir, 'ca'),
        NODE_NAME: nodeName,
        PACKET_MARK: '1337',
        CONNECTION_TERMINATION_DEADLINE: '5s',
        RUST_LOG: 'info',
      },
    });
    const lines: string[] = [];
    createInterface({ input: child.stdout! }).on('line', (line) => lines.push(line));
    child.stderr!.on('data', (d: Buffer) => lines.push(String(d)));
    t.teardown(() => {
      if (lines.some((l) => l.includes('"level":"fatal"') || l.includes('"level":"error"') && !l.includes('"component":"access"'))) t.log(`${nodeName} log:\n${lines.slice(-30).join('\n')}`);
    });
    return child;
  };
  const ztunnels = { a: ztunnel(a, 'a', 'node-a'), b: ztunnel(b, 'b', 'node-b') };
  a.spawn(process.execPath, [join(FIXTURES, 'app.js'), 'a', String(APP_PORT)]);
  b.spawn(process.execPath, [join(FIXTURES, 'app.js'), 'b', String(APP_PORT), String(PLAIN_PORT)]);
  for (const [node, ports] of [[a, [15001, 15008, 15021, APP_PORT]], [b, [15008, 15021, APP_PORT, PLAIN_PORT]]] as const) {
    for (const port of ports) await waitForPort(node, '127.0.0.1', port, 15_000);
  }
  await captureOutbound(a, { port: 15001, mark: 0x539 });

  const fetchIn = async (node: NetnsNode, url: string) => (await node.exec(process.execPath, ['-e', `fetch(${JSON.stringify(url)}).then((r) => r.text()).then((t) => process.stdout.write(t))`])).stdout;
  return {
    a,
    b,
    ztunnels,
    async rewrite(yaml) {
      await writeFile(`${meshFile}.next`, yaml);
      await rename(`${meshFile}.next`, meshFile);
    },
    async client(...args) {
      const { stdout } = await a.exec(process.execPath, [join(FIXTURES, 'client.js'), ...args], { timeoutMs: 60_000 });
      return JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
    },
    metrics: (node) => fetchIn(node, 'http://127.0.0.1:15020/metrics'),
    admin: (node, path) => fetchIn(node, `http://127.0.0.1:15000${path}`),
  };
}

async function until<T>(probe: () => Promise<T>, ok: (value: T) => boolean, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(value).slice(0, 500)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The next JSON line a long-running fixture prints. */
async function nextJson(child: ChildProcess): Promise<Record<string, unknown>> {
  const lines = createInterface({ input: child.stdout! });
  const [line] = (await once(lines, 'line')) as [string];
  lines.close();
  return JSON.parse(line) as Record<string, unknown>;
}

test('two nodes: VIP traffic is balanced over both nodes with exact bytes and metrics; passthrough; config_dump; DENY resets and is counted; a policy update closes a live connection', async (t) => {
  if (!requireNetns(t)) return;
  const mesh = await startMesh(t);

  // 1. Service VIP → both endpoints, every byte echoed intact.
  const rounds = await mesh.client('rounds', VIP, '80', '40', '5000');
  t.deepEqual(rounds['errors'], []);
  const byApp = rounds['byApp'] as Record<string, number>;
  t.is((byApp['a'] ?? 0) + (byApp['b'] ?? 0), 40);
  t.true((byApp['a'] ?? 0) > 0 && (byApp['b'] ?? 0) > 0, `both nodes serve the VIP: ${JSON.stringify(byApp)}`);
  t.is(rounds['bytesEchoed'], 40 * 5000);

  // 2. The source-reported metrics on A are exact for that known set of connections.
  const source = ['reporter="source"', 'destination_service="echo.default.svc.cluster.local"', 'source_workload="a"', 'source_principal="spiffe://cluster.local/ns/default/sa/sa-a"', 'connection_security_policy="mutual_tls"'];
  const metricsA = await until(() => mesh.metrics(mesh.a), (m) => total(m, 'istio_tcp_connections_closed_total', ...source) === 40, 'A to count 40 closes');
  t.is(total(metricsA, 'istio_tcp_connections_opened_total', ...source), 40);
  t.is(total(metricsA, 'istio_tcp_received_bytes_total', ...source), 40 * 5000, 'client→server bytes');
  t.is(total(metricsA, 'istio_tcp_sent_bytes_total', ...source), 40 * (5000 + 2), 'server→client bytes: the echo plus the app line ("a\\n" or "b\\n")');
  t.is(total(metricsA, 'istio_tcp_connections_opened_total', ...source, 'destination_workload="b"', 'destination_principal="spiffe://cluster.local/ns/default/sa/sa-b"'), byApp['b'] ?? 0);
  t.is(total(metricsA, 'istio_tcp_connections_failed_total'), 0);
  const metricsB = await until(() => mesh.metrics(mesh.b), (m) => total(m, 'istio_tcp_connections_closed_total', 'reporter="destination"') === (byApp['b'] ?? 0), 'B to count its closes');
  t.is(total(metricsB, 'istio_tcp_received_bytes_total', 'reporter="destination"', 'source_workload="a"', 'destination_workload="b"'), (byApp['b'] ?? 0) * 5000);

  // 3. An address outside the mesh is passed through as plain TCP.
  const outside = await mesh.client('rounds', OUTSIDE_IP, String(PLAIN_PORT), '3', '1000');
  t.deepEqual(outside, { byApp: { b: 3 }, errors: [], bytesEchoed: 3000 });
  const passthrough = await until(() => mesh.metrics(mesh.a), (m) => total(m, 'istio_tcp_connections_closed_total', 'connection_security_policy="unknown"') === 3, 'passthrough closes');
  t.is(total(passthrough, 'istio_tcp_connections_opened_total', 'reporter="source"', 'destination_workload="unknown"', 'connection_security_policy="unknown"'), 3);

  // 4. /config_dump shows what was loaded.
  const dump = JSON.parse(await mesh.admin(mesh.a, '/config_dump')) as { workloads: Array<{ uid: string }>; services: Array<{ hostname: string }>; certificates: Array<{ identity: string; state: string }> };
  t.deepEqual(dump.workloads.map((w) => w.uid).sort(), ['cluster1//v1/Pod/default/a', 'cluster1//v1/Pod/default/b']);
  t.deepEqual(dump.services.map((s) => s.hostname), ['echo.default.svc.cluster.local']);
  t.like(dump.certificates.find((c) => c.identity === 'spiffe://cluster.local/ns/default/sa/sa-a'), { state: 'Available' });

  // 5. A live connection to b, then a policy denying a on b: the connection is closed.
  const holder = mesh.a.spawn(process.execPath, [join(FIXTURES, 'client.js'), 'hold', '10.88.0.2', String(APP_PORT)]);
  t.deepEqual(await nextJson(holder), { held: 'b' });
  await mesh.rewrite(meshYaml(DENY_A_ON_B, ['default/deny-a']));
  const ended = await nextJson(holder);
  t.is(ended['ended'], 'reset', 'the policy change resets the live connection');

  // 6. New connections a → b are now refused (401 on B, a reset for the client) and counted as DENY.
  const denied = await mesh.client('rounds', '10.88.0.2', String(APP_PORT), '2', '100');
  t.deepEqual(denied['byApp'], {});
  t.is((denied['errors'] as string[]).length, 2);
  const deniedB = await until(() => mesh.metrics(mesh.b), (m) => total(m, 'istio_tcp_connections_failed_total', 'reporter="destination"', 'response_flags="DENY"') === 3, 'three DENY failures on B');
  t.is(total(deniedB, 'istio_tcp_connections_failed_total', 'response_flags="DENY"', 'source_principal="spiffe://cluster.local/ns/default/sa/sa-a"'), 3, 'the closed live connection and the two refused ones');
  // On A, each of the three is a failed connection to b: the reset live one and the two refused (401).
  const refusedA = await until(() => mesh.metrics(mesh.a), (m) => total(m, 'istio_tcp_connections_failed_total', 'reporter="source"') >= 3, 'A to count the failed connections');
  t.is(total(refusedA, 'istio_tcp_connections_failed_total', 'reporter="source"', 'destination_workload="b"', 'response_flags="CONNECT"'), 3);
  // a itself is still reachable: the policy applies to b only.
  t.deepEqual((await mesh.client('rounds', '10.88.0.1', String(APP_PORT), '1', '100'))['byApp'], { a: 1 });
});

test('two nodes: SIGTERM drains — an in-flight transfer through A finishes, new connections are refused, and ztunnel exits 0', async (t) => {
  if (!requireNetns(t)) return;
  const mesh = await startMesh(t);
  // 20 chunks 100 ms apart: about two seconds in flight through A and B.
  const slow = mesh.a.spawn(process.execPath, [join(FIXTURES, 'client.js'), 'slow', '10.88.0.2', String(APP_PORT), '20', '10000', '100']);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const exited = once(mesh.ztunnels.a, 'exit');
  mesh.ztunnels.a.kill('SIGTERM');
  await new Promise((resolve) => setTimeout(resolve, 300));
  const refused = await mesh.client('rounds', '10.88.0.2', String(APP_PORT), '1', '100');
  t.deepEqual(refused['byApp'], {}, 'a connection after SIGTERM is not proxied');
  t.like(await nextJson(slow), { ok: true, app: 'b', bytes: 200_000 }, 'the in-flight transfer completed intact');
  const [code] = (await exited) as [number | null];
  t.is(code, 0);
});
