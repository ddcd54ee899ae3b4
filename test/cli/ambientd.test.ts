import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseFlags } from '../../src/cli/flags.ts';
import { startFakeKube } from '../../src/demo/api-server.ts';
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
