import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createHboneClient } from '../../src/hbone/client.ts';
import { forwardToTarget } from '../../src/hbone/forward.ts';
import { startHboneServer } from '../../src/hbone/server.ts';
import { CertificateAuthority } from '../../src/identity/ca.ts';
import { CertManager } from '../../src/identity/cert-manager.ts';
import { LocalCaClient } from '../../src/identity/local-ca-client.ts';
import { spiffeId } from '../../src/identity/spiffe.ts';
import { socketOver } from '../helpers/duplex-pair.ts';
import { WAYPOINT_NODE_FLAGS } from '../../src/waypoint/config.ts';
import { tempDir } from '../helpers/tmp.ts';

/**
 * `bin/ambientd waypoint` as a real process: FAKE_CA from a shared FAKE_CA_DIR, the mesh from
 * LOCAL_XDS_PATH, routes from L7_CONFIG_PATH, ports 0 (read back from its start-up log line); a request
 * over HBONE is routed to a pod behind a ztunnel-like HBONE server; SIGTERM drains and exits 0, a second
 * SIGINT during the drain exits 1 at once; either way the buffered access-log record is written.
 */

const ROOT = join(import.meta.dirname, '..', '..', '..');

const waypointProcess = test.macro(async (t, stop: 'SIGTERM' | 'SIGINT twice') => {
  const dir = await tempDir(t, 'waypoint-proc-');
  const ca = CertificateAuthority.generate('cluster.local');
  await ca.save(join(dir, 'ca'));
  const certificates = new CertManager({ ca: new LocalCaClient(ca) });
  t.teardown(() => certificates.close());

  const app = createServer((s) => s.on('error', () => {}).once('data', () => s.end('HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-app: yes\r\n\r\nhello')));
  app.listen({ host: '127.0.0.2', port: 0 });
  await once(app, 'listening');
  t.teardown(() => void app.close());
  const pod = await startHboneServer({ host: '127.0.0.2', port: 0, certificate: await certificates.fetch(spiffeId('cluster.local', 'prod', 'api')), handler: forwardToTarget() });
  t.teardown(() => pod.close());

  await writeFile(join(dir, 'mesh.yaml'), `
workloads:
- uid: Kubernetes//Pod/prod/api
  name: api
  namespace: prod
  serviceAccount: api
  trustDomain: cluster.local
  workloadIps: ["127.0.0.2"]
  protocol: HBONE
  services: { "prod/api.prod.svc.cluster.local": { 80: ${(app.address() as AddressInfo).port} } }
services:
- name: api
  namespace: prod
  hostname: api.prod.svc.cluster.local
  vips: ["/10.96.1.1"]
  ports: { 80: 80 }
`);
  await writeFile(join(dir, 'l7.yaml'), `routeConfigurations: [{ namespace: prod, hostname: api.prod.svc.cluster.local, routes: [{ name: all, responseHeaders: { set: [{ name: x-waypoint, value: "1" }] } }] }]\n`);
  const child = spawn(join(ROOT, 'bin', 'ambientd'), ['waypoint', '--bind-address', '127.0.0.1', '--hbone-port', '0', '--stats-port', '0', '--readiness-port', '0', '--upstream-hbone-port', String(pod.address().port)], {
    env: { ...process.env, XDS_ADDRESS: '', FAKE_CA: 'true', FAKE_CA_DIR: join(dir, 'ca'), LOCAL_XDS_PATH: join(dir, 'mesh.yaml'), L7_CONFIG_PATH: join(dir, 'l7.yaml'), POD_NAMESPACE: 'prod', SERVICE_ACCOUNT: 'waypoint', ACCESS_LOG_FLUSH_INTERVAL: '1h', ...(stop === 'SIGINT twice' ? { CONNECTION_TERMINATION_DEADLINE: '1h' } : {}) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => void child.kill('SIGKILL'));
  const lines = createInterface({ input: child.stdout });
  const linesClosed = once(lines, 'close');
  const records: Array<Record<string, unknown>> = [];
  const started = new Promise<Record<string, unknown>>((resolve) => lines.on('line', (line) => {
    const record = JSON.parse(line) as Record<string, unknown>;
    records.push(record);
    if (record['msg'] === 'waypoint started') resolve(record);
  }));
  const ports = await started;
  // bin/ambientd gives the waypoint its young generation (WAYPOINT_NODE_FLAGS), ztunnel's 8 MiB otherwise.
  const cmdline = (await readFile(`/proc/${child.pid}/cmdline`, 'utf8')).split('\0');
  for (const flag of WAYPOINT_NODE_FLAGS) t.true(cmdline.includes(flag), `${flag} in ${cmdline.join(' ')}`);

  const ready = await fetch(`http://127.0.0.1:${ports['readiness']}/healthz/ready`);
  t.is(ready.status, 200);
  const client = createHboneClient({ certificates });
  t.teardown(() => client.close());
  const tunnel = await client.connect({ source: spiffeId('cluster.local', 'prod', 'web'), expectedIdentities: [spiffeId('cluster.local', 'prod', 'waypoint')], address: { host: '127.0.0.1', port: Number(ports['hbone']) }, authority: '10.96.1.1:80' });
  const res = await new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
    const r = request({ createConnection: () => socketOver(tunnel.stream) as never, path: '/x', headers: { host: '10.96.1.1' } }, (response) => {
      let body = '';
      response.on('data', (c: Buffer) => (body += c));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }));
    });
    r.on('error', reject);
    r.end();
  });
  t.is(res.status, 200);
  t.is(res.body, 'hello');
  t.is(res.headers['x-waypoint'], '1');
  t.is(res.headers['x-app'], 'yes');
  const metrics = await (await fetch(`http://127.0.0.1:${ports['stats']}/stats/prometheus`)).text();
  t.regex(metrics, /istio_requests_total\{reporter="waypoint",[^}]*destination_service="api\.prod\.svc\.cluster\.local"[^}]*response_code="200"[^}]*\} 1/);
  const accessRecords = () => records.filter((r) => r['component'] === 'access' && r['response_code'] === 200);
  t.is(accessRecords().length, 0, 'the access log is buffered (ACCESS_LOG_FLUSH_INTERVAL=1h)');

  const exited = once(child, 'exit') as Promise<[number]>;
  if (stop === 'SIGTERM') {
    child.kill('SIGTERM');
  } else {
    // An idle tunnel keeps the drain waiting (for an hour), so only the second SIGINT can end the process.
    const idle = await client.connect({ source: spiffeId('cluster.local', 'prod', 'web'), expectedIdentities: [spiffeId('cluster.local', 'prod', 'waypoint')], address: { host: '127.0.0.1', port: Number(ports['hbone']) }, authority: '10.96.1.1:80' });
    t.teardown(() => void idle.stream.destroy());
    child.kill('SIGINT');
    while (!records.some((r) => r['msg'] === 'draining')) await new Promise((resolve) => setTimeout(resolve, 20));
    child.kill('SIGINT');
  }
  const [code] = await exited;
  t.is(code, stop === 'SIGTERM' ? 0 : 1);
  if (stop === 'SIGINT twice') t.true(records.some((r) => r['msg'] === 'second SIGINT: exiting now'));
  await linesClosed;
  t.is(accessRecords().length, 1, 'the buffered record is written on exit');
});

test('ambientd waypoint serves HBONE, stats and readiness as a process, and exits 0 on SIGTERM', waypointProcess, 'SIGTERM');
test('ambientd waypoint exits 1 at once on a second SIGINT, and still writes its buffered access log', waypointProcess, 'SIGINT twice');
