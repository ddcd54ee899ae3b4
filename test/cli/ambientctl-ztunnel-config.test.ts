import test from 'ava';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYamlText } from 'yaml';
import { LocalCaClient } from '../../src/identity/local-ca-client.ts';
import { parseZtunnelConfig } from '../../src/ztunnel/config.ts';
import { startZtunnel, type Ztunnel } from '../../src/ztunnel/ztunnel.ts';
import { captureLog } from '../helpers/log.ts';
import { testPki } from '../helpers/pki.ts';
import { until } from '../helpers/prometheus.ts';
import { tempDir } from '../helpers/tmp.ts';

/**
 * The real `ambientctl ztunnel-config` (a child process) against a real in-process ztunnel's admin
 * listener: the tables come from what that ztunnel actually holds (its local mesh file and the
 * certificate its CA issued).
 */

const run = promisify(execFile);
const AMBIENTCTL = join(import.meta.dirname, '..', '..', 'src', 'cli', 'ambientctl.js');

const MESH = `
workloads:
- uid: cluster1//v1/Pod/prod/server-1
  name: server-1
  namespace: prod
  serviceAccount: server
  trustDomain: cluster.local
  workloadIps: ["127.0.0.1"]
  protocol: HBONE
  node: node-a
  workloadName: server
  services:
    "prod/echo.prod.svc.cluster.local":
      80: 8080
- uid: cluster1//v1/Pod/prod/waypoint-1
  name: waypoint-1
  namespace: prod
  serviceAccount: waypoint
  trustDomain: cluster.local
  workloadIps: ["127.0.0.3"]
  node: node-b
  workloadName: waypoint
  services:
    "prod/waypoint.prod.svc.cluster.local":
      15008: 15008
- uid: cluster1//v1/Pod/web/client-1
  name: client-1
  namespace: web
  serviceAccount: client
  trustDomain: cluster.local
  workloadIps: ["127.0.0.2"]
  protocol: HBONE
  node: node-b
  workloadName: client
services:
- name: echo
  namespace: prod
  hostname: echo.prod.svc.cluster.local
  vips: ["/10.96.0.10"]
  ports:
    80: 8080
  waypoint:
    destination: "/10.96.0.11"
    hboneMtlsPort: 15008
- name: waypoint
  namespace: prod
  hostname: waypoint.prod.svc.cluster.local
  vips: ["/10.96.0.11"]
  ports:
    15008: 15008
policies:
- name: deny-client
  namespace: prod
  scope: Namespace
  action: Deny
  rules:
  - - - principals: [{Exact: cluster.local/ns/web/sa/client}]
`;

let zt: Ztunnel;
let admin: string;
let dir: string;
const closers: Array<() => Promise<void>> = [];
test.after.always(async () => {
  for (const close of closers.reverse()) await close();
});

test.before(async (t) => {
  dir = await tempDir({ teardown: (fn) => void closers.push(fn) });
  const meshFile = join(dir, 'mesh.yaml');
  await writeFile(meshFile, MESH);
  const parsed = parseZtunnelConfig(
    { 'admin-port': '0', 'stats-port': '0', 'readiness-port': '0', 'outbound-port': '0', 'inbound-port': '0', 'inbound-plaintext-port': '0' },
    { PROXY_MODE: 'dedicated', PROXY_WORKLOAD_INFO: 'prod/server-1/server', XDS_ADDRESS: '', LOCAL_XDS_PATH: meshFile, NODE_NAME: 'node-a', CONNECTION_TERMINATION_DEADLINE: '1s' },
  );
  if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
  const pki = testPki();
  closers.push(() => pki.close());
  zt = await startZtunnel(parsed.value, { logger: captureLog().logger, ca: new LocalCaClient(pki.ca) });
  closers.push(() => zt.close());
  admin = `127.0.0.1:${zt.ports().admin}`;
  // The dedicated workload's certificate is fetched in the background; the tables below expect it.
  await until(async () => {
    const dump = (await (await fetch(`http://${admin}/config_dump`)).json()) as { certificates: Array<{ state: string }> };
    return dump.certificates.some((c) => c.state === 'Available');
  }, 'the ztunnel holds its certificate');
  t.log(`ztunnel admin on ${admin}`);
});

async function ctl(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [AMBIENTCTL, ...args], { env: { PATH: process.env['PATH'] ?? '' } });
    return { stdout, stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number };
    return { stdout: e.stdout ?? '', stderr: e.stderr ?? '', code: e.code ?? -1 };
  }
}

test('ztunnel-config workloads: the table of what the ztunnel holds, and the namespace and node filters', async (t) => {
  const all = await ctl('ztunnel-config', 'workloads', '--admin-address', admin);
  t.is(all.code, 0, all.stderr);
  t.is(
    all.stdout,
    [
      'NAMESPACE POD NAME   ADDRESS   NODE   WAYPOINT PROTOCOL',
      'prod      server-1   127.0.0.1 node-a None     HBONE',
      'prod      waypoint-1 127.0.0.3 node-b None     TCP',
      'web       client-1   127.0.0.2 node-b None     HBONE',
      '',
    ].join('\n'),
  );
  const web = await ctl('ztunnel-config', 'w', '--admin-address', admin, '-n', 'web');
  t.is(web.stdout.trim().split('\n').length, 2);
  t.regex(web.stdout, /client-1/);
  const nodeB = await ctl('zc', 'workloads', `--admin-address=${admin}`, '--workload-node', 'node-b', '-o', 'json');
  t.deepEqual((JSON.parse(nodeB.stdout) as Array<{ name: string }>).map((w) => w.name).sort(), ['client-1', 'waypoint-1']);
});

test('ztunnel-config services and policies: VIP, waypoint by VIP, endpoint counts; Deny/Namespace', async (t) => {
  const svc = await ctl('ztunnel-config', 'services', '--admin-address', admin);
  t.is(svc.code, 0, svc.stderr);
  t.is(
    svc.stdout,
    ['NAMESPACE SERVICE NAME SERVICE VIP WAYPOINT ENDPOINTS', 'prod      echo         10.96.0.10  waypoint 1/1', 'prod      waypoint     10.96.0.11  None     1/1', ''].join('\n'),
  );
  const pol = await ctl('ztunnel-config', 'policies', '--admin-address', admin);
  t.is(pol.stdout, 'NAMESPACE POLICY NAME ACTION SCOPE\nprod      deny-client Deny   Namespace\n');
  const yaml = await ctl('ztunnel-config', 'policies', '--admin-address', admin, '-o', 'yaml');
  t.like((parseYamlText(yaml.stdout) as unknown[])[0], { name: 'deny-client', action: 'DENY', scope: 'NAMESPACE' });
});

test('ztunnel-config certificates: the leaf the CA issued (hex serial as the certificate has it) and its root', async (t) => {
  const out = await ctl('ztunnel-config', 'certs', '--admin-address', admin);
  t.is(out.code, 0, out.stderr);
  const lines = out.stdout.trim().split('\n');
  t.regex(lines[0] ?? '', /^CERTIFICATE NAME {5,}TYPE {5,}STATUS {5,}VALID CERT {5,}SERIAL NUMBER {5,}NOT AFTER {5,}NOT BEFORE$/);
  const rows = lines.slice(1).map((l) => l.split(/\s+/));
  t.deepEqual(rows.map((r) => [r[0], r[1], r[2], r[3]]), [
    ['spiffe://cluster.local/ns/prod/sa/server', 'Leaf', 'Available', 'true'],
    ['spiffe://cluster.local/ns/prod/sa/server', 'Root', 'Available', 'true'],
  ]);
  // The serial printed is the certificate's own, in lower-case hex.
  const { X509Certificate } = await import('node:crypto');
  const dump = (await (await fetch(`http://${admin}/config_dump`)).json()) as { certificates: Array<{ certChain: Array<{ pem: string; serialNumber: string }> }> };
  const leaf = dump.certificates[0]!.certChain[0]!;
  const x509 = new X509Certificate(Buffer.from(leaf.pem, 'base64').toString('utf8'));
  t.is(rows[0]?.[4], BigInt(`0x${x509.serialNumber}`).toString(16));
  t.regex(leaf.serialNumber, /^\d+$/, 'the dump carries the serial in decimal, as ztunnel does');
  t.regex(rows[0]?.[5] ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
});

test('ztunnel-config all: the four tables; -o json is the whole dump; --file reads a saved dump', async (t) => {
  const all = await ctl('ztunnel-config', 'all', '--admin-address', admin);
  t.is(all.code, 0, all.stderr);
  t.regex(all.stdout, /^\nNAMESPACE POD NAME[\s\S]*\nNAMESPACE SERVICE NAME[\s\S]*\nNAMESPACE POLICY NAME[\s\S]*\nCERTIFICATE NAME/);
  const json = await ctl('ztunnel-config', 'all', '--admin-address', admin, '-o', 'json');
  const dump = JSON.parse(json.stdout) as { config: unknown; workloads: unknown[] };
  t.truthy(dump.config);
  t.is(dump.workloads.length, 3);
  const saved = join(dir, 'dump.json');
  await writeFile(saved, json.stdout);
  const fromFile = await ctl('ztunnel-config', 'services', '--file', saved);
  t.is(fromFile.code, 0, fromFile.stderr);
  t.regex(fromFile.stdout, /prod +echo +10\.96\.0\.10 +waypoint +1\/1/);
});

test('ztunnel-config: bad usage exits 2 with the usage; an unreachable admin or a bad dump exits 1 and says why', async (t) => {
  const unknown = await ctl('ztunnel-config', 'pods');
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /unknown kind "pods"[\s\S]*usage: ambientctl ztunnel-config/);
  const format = await ctl('ztunnel-config', 'workloads', '-o', 'xml', '--admin-address', admin);
  t.is(format.code, 2);
  t.regex(format.stderr, /output format "xml" not supported/);
  const flag = await ctl('ztunnel-config', 'workloads', '--bogus');
  t.is(flag.code, 2);
  t.regex(flag.stderr, /--bogus: unknown flag/);
  // A port nothing listens on: the admin listener is closed at the end of this file, so take one now and free it.
  const { createServer } = await import('node:net');
  const server = createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  const down = await ctl('ztunnel-config', 'workloads', '--admin-address', `127.0.0.1:${port}`);
  t.is(down.code, 1);
  t.regex(down.stderr, new RegExp(`could not read the config dump from http://127\\.0\\.0\\.1:${port}/config_dump`));
  const badFile = join(dir, 'bad.json');
  await writeFile(badFile, '{"workloads": "x"}');
  const bad = await ctl('ztunnel-config', 'workloads', '--file', badFile);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /workloads: expected a list or a map/);
  const none = await ctl('nope');
  t.is(none.code, 2);
  t.regex(none.stderr, /unknown command "nope"/);
});
