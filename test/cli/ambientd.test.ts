import test, { type ExecutionContext } from 'ava';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseFlags } from '../../src/cli/flags.ts';
import { startFakeKube } from '../../src/demo/api-server.ts';
import { CertificateAuthority } from '../../src/identity/ca.ts';
import { tempDir } from '../helpers/tmp.ts';

const run = promisify(execFile);
const AMBIENTD = join(import.meta.dirname, '..', '..', 'src', 'cli', 'ambientd.js');

test('parseFlags: --name value and --name=value; a stray argument or a missing value is an error', (t) => {
  t.deepEqual(parseFlags(['--a', '1', '--b=2', '--c=']), { flags: { a: '1', b: '2', c: '' }, errors: [] });
  t.deepEqual(parseFlags(['stray', '--last']), { flags: {}, errors: ['stray: unexpected argument', '--last: missing value'] });
  t.deepEqual(parseFlags(['--a', '--b', '2']).errors, ['--a: missing value']);
});

test('ambientd ztunnel: a bad configuration exits 2 and names every problem', async (t) => {
  const failure = await run(process.execPath, [AMBIENTD, 'ztunnel', '--bogus', '1'], { env: { PATH: process.env['PATH'] ?? '', PROXY_MODE: 'dedicated', PACKET_MARK: 'x' } }).then(
    () => undefined,
    (err: { code?: number; stderr?: string }) => err,
  );
  t.is(failure?.code, 2);
  t.regex(failure?.stderr ?? '', /--bogus: unknown flag/);
  t.regex(failure?.stderr ?? '', /PROXY_WORKLOAD_INFO: required in dedicated mode/);
  t.regex(failure?.stderr ?? '', /PACKET_MARK: "x" is not an integer/);
});

test('ambientd: an unknown component prints the usage and exits 2', async (t) => {
  const failure = await run(process.execPath, [AMBIENTD, 'nope']).then(
    () => undefined,
    (err: { code?: number; stderr?: string }) => err,
  );
  t.is(failure?.code, 2);
  t.regex(failure?.stderr ?? '', /usage: ambientd ztunnel/);
});

test('ambientd cni-agent: a bad configuration exits 2 and names every problem', async (t) => {
  const failure = await run(process.execPath, [AMBIENTD, 'cni-agent', '--bogus', '1'], { env: { PATH: process.env['PATH'] ?? '', AMBIENT_IPV6: 'maybe' } }).then(
    () => undefined,
    (err: { code?: number; stderr?: string }) => err,
  );
  t.is(failure?.code, 2);
  t.regex(failure?.stderr ?? '', /--bogus: unknown flag/);
  t.regex(failure?.stderr ?? '', /NODE_NAME: required/);
  t.regex(failure?.stderr ?? '', /AMBIENT_IPV6: "maybe" must be true or false/);
  t.regex(failure?.stderr ?? '', /usage: ambientd cni-agent/);
});

test('ambientd cni-agent: starts against the API server, opens both sockets, and exits 0 on SIGTERM', async (t) => {
  const fake = await startFakeKube();
  t.teardown(() => fake.close());
  const dir = await tempDir(t);
  const plugin = join(dir, 'pluginevent.sock');
  const zds = join(dir, 'ztunnel.sock');
  const child = spawn(process.execPath, [AMBIENTD, 'cni-agent', '--plugin-socket', plugin, '--proc-root', dir], {
    env: { PATH: process.env['PATH'] ?? '', NODE_NAME: 'node-a', KUBECONFIG: fake.kubeconfigPath, ZTUNNEL_UDS_ADDRESS: zds },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
  await new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (out.includes('cni agent ready')) resolve();
    };
    child.stdout.on('data', check);
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
  });
  t.true(existsSync(plugin) && existsSync(zds), 'both sockets exist');
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const [code] = (await exited) as [number | null];
  t.is(code, 0, out);
  t.false(existsSync(plugin) || existsSync(zds), 'both sockets are removed');
});

/**
 * Runs `ambientd <component> <args>` with a module hook that records every module it resolves, until it logs
 * `readiness listening`, then stops it with SIGTERM: what it loaded, and its exit code.
 */
async function modulesLoadedBy(t: ExecutionContext, component: string, args: readonly string[], env: Record<string, string>): Promise<{ modules: string[]; code: number | null; out: string }> {
  const dir = await tempDir(t);
  const hook = join(dir, 'record-modules.mjs');
  const list = join(dir, 'modules.txt');
  writeFileSync(hook, `import { registerHooks } from 'node:module';
import { appendFileSync } from 'node:fs';
registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); appendFileSync(${JSON.stringify(list)}, r.url + '\\n'); return r; } });
`);
  const ca = join(dir, 'ca');
  await CertificateAuthority.generate('cluster.local').save(ca);
  const mesh = join(dir, 'mesh.yaml');
  writeFileSync(mesh, 'workloads: []\nservices: []\n');
  const child = spawn(process.execPath, ['--import', hook, AMBIENTD, component, ...args], {
    env: { PATH: process.env['PATH'] ?? '', XDS_ADDRESS: '', LOCAL_XDS_PATH: mesh, FAKE_CA: 'true', FAKE_CA_DIR: ca, CONNECTION_TERMINATION_DEADLINE: '1s', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      if (out.includes('"msg":"readiness listening"')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
  });
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const [code] = (await exited) as [number | null];
  return { modules: readFileSync(list, 'utf8').trim().split('\n'), code, out };
}

/** The project's own modules under src/<area>/ that `modules` holds, and every @kubernetes/client-node one. */
const loadedFrom = (modules: readonly string[], area: string) =>
  modules.filter((m) => (area === 'kubernetes' ? m.includes('/node_modules/@kubernetes/client-node/') : !m.includes('/node_modules/') && m.includes(`/src/${area}/`)));

test('ambientd ztunnel and ambientd waypoint load only their own component: no control plane, CNI agent or Kubernetes client', async (t) => {
  const ports = ['admin-port', 'stats-port', 'readiness-port', 'outbound-port', 'inbound-port', 'inbound-plaintext-port'].flatMap((p) => [`--${p}`, '0']);
  const ztunnel = await modulesLoadedBy(t, 'ztunnel', ports, { PROXY_MODE: 'dedicated', PROXY_WORKLOAD_INFO: 'default/a/sa-a', NODE_NAME: 'node-a' });
  t.is(ztunnel.code, 0, ztunnel.out);
  t.true(loadedFrom(ztunnel.modules, 'ztunnel').some((m) => m.endsWith('/ztunnel/ztunnel.js')), 'the ztunnel itself was loaded');
  for (const area of ['control-plane', 'cni', 'waypoint', 'kubernetes']) t.deepEqual(loadedFrom(ztunnel.modules, area), [], `ambientd ztunnel loaded ${area} modules`);

  const waypoint = await modulesLoadedBy(t, 'waypoint', ['--bind-address', '127.0.0.1', ...['hbone-port', 'stats-port', 'readiness-port'].flatMap((p) => [`--${p}`, '0'])], { POD_NAMESPACE: 'default', SERVICE_ACCOUNT: 'wp' });
  t.is(waypoint.code, 0, waypoint.out);
  t.true(loadedFrom(waypoint.modules, 'waypoint').some((m) => m.endsWith('/waypoint/waypoint.js')), 'the waypoint itself was loaded');
  for (const area of ['control-plane', 'cni', 'ztunnel', 'kubernetes']) t.deepEqual(loadedFrom(waypoint.modules, area), [], `ambientd waypoint loaded ${area} modules`);
});
