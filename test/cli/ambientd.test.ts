import test from 'ava';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseFlags } from '../../src/cli/flags.ts';

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
