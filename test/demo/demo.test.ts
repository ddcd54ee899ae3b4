import test, { type ExecutionContext } from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { requireNetns } from '../helpers/netns.ts';
import { tempDir } from '../helpers/tmp.ts';

/**
 * `make demo` end to end, as a user runs it (the program `make demo` starts, after its install and build): the
 * report's facts, the URLs it prints answering, a second demo refused while the first runs, Ctrl-C removing
 * everything; then a run after a killed one (a leftover namespace, a stale lock) in the non-interactive mode
 * CI uses; and no root, no demo.
 */

const exec = promisify(execFile);
const MAIN = join(import.meta.dirname, '..', '..', 'src', 'demo', 'main.js');
let runs = 0;

interface Run {
  readonly child: ChildProcess;
  output(): string;
  errors(): string;
  waitFor(text: string | RegExp, timeoutMs?: number): Promise<string>;
  exit(): Promise<number | null>;
}

function startDemo(t: ExecutionContext, env: Record<string, string>): Run {
  const child = spawn(process.execPath, [MAIN], { env: { PATH: process.env['PATH'] ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr?.on('data', (c: Buffer) => (err += c.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
  });
  return {
    child,
    output: () => out,
    errors: () => err,
    async waitFor(text, timeoutMs = 150_000) {
      const deadline = Date.now() + timeoutMs;
      const found = () => (typeof text === 'string' ? out.includes(text) : text.test(out));
      while (!found()) {
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`demo never printed ${String(text)}; exit ${child.exitCode}\nstdout:\n${out}\nstderr:\n${err}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return out;
    },
    exit: () => exited,
  };
}

async function namespacesWith(prefix: string): Promise<string[]> {
  const { stdout } = await exec('ip', ['netns', 'list']);
  return stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(`${prefix}-`));
}

function setting(t: ExecutionContext, dir: string): { prefix: string; env: Record<string, string> } {
  const prefix = `an-demo-${process.pid}-${++runs}`;
  t.teardown(async () => {
    for (const ns of await namespacesWith(prefix)) await exec('ip', ['netns', 'delete', ns]).catch(() => {});
  });
  return { prefix, env: { UV_THREADPOOL_SIZE: '16', DEMO_STATE_DIR: dir, DEMO_PREFIX: prefix, DEMO_PORT: '0', DEMO_REQUESTS: '200' } };
}

/** The facts a user reads in the report. */
function checkReport(t: ExecutionContext, report: string): void {
  for (const id of ['ns/web/sa/frontend', 'ns/web/sa/tester', 'ns/shop/sa/reviews', 'ns/shop/sa/ratings', 'ns/shop/sa/waypoint']) t.true(report.includes(`spiffe://cluster.local/${id}`), id);
  t.regex(report, /mTLS: {3}ok {3}every one of \d+ connections was mutual TLS between SPIFFE identities/);
  t.regex(report, /policy: ok {3}shop\/deny-tester refused web\/tester → ratings\.shop\.svc\.cluster\.local: 5 of 5 requests failed, 5 connections counted DENY by ztunnel/);
  t.regex(report, /web\/frontend {3}→ ratings\.shop\.svc\.cluster\.local:9080 +10 requests: 10 × 200/);
  const split = /canary: ok {3}shop\/reviews-canary: reviews-v1 (\d+) \([\d.]+%, expected 90% ± [\d.]+\), reviews-v2 (\d+) .*within tolerance/.exec(report);
  t.truthy(split, 'the canary line');
  const [v1, v2] = [Number(split?.[1]), Number(split?.[2])];
  t.is(v1 + v2, 200);
  // 4 standard deviations of a binomial(200, 0.1): the report's own tolerance, checked independently here.
  t.true(Math.abs(v2 - 20) <= 4 * Math.sqrt(200 * 0.1 * 0.9), `reviews-v2 got ${v2} of 200`);
  t.regex(report, /web\/tester \(spiffe:\/\/cluster\.local\/ns\/web\/sa\/tester\) → shop\/ratings \(spiffe:\/\/cluster\.local\/ns\/shop\/sa\/ratings\): 5 opened, mTLS, 5 DENIED/);
}

test.serial('make demo: the report, the URLs, a second demo refused, and Ctrl-C leaves nothing behind', async (t) => {
  if (!requireNetns(t)) return;
  t.timeout(240_000);
  const dir = await tempDir(t, 'an-demo-');
  const { prefix, env } = setting(t, dir);
  const demo = startDemo(t, env);
  const out = await demo.waitFor('press Ctrl-C');
  checkReport(t, out);
  t.regex(out, /\[1\/8\] API server with \d+ objects/, 'progress is shown');

  // The URLs it prints answer, with the metrics they promise.
  const url = (name: string) => new RegExp(`^  ${name} +(http://\\S+)$`, 'm').exec(out)?.[1] ?? '';
  const zt = await (await fetch(url('ztunnel node-b metrics'))).text();
  t.regex(zt, /istio_tcp_connections_opened_total\{[^}]*reporter="destination"/);
  const wp = await (await fetch(url('waypoint shop/waypoint metrics'))).text();
  t.regex(wp, /istio_requests_total\{[^}]*reporter="waypoint"/);
  t.is((await fetch(url('node agent node-a metrics'))).status, 200);
  t.is((await fetch(url('control plane metrics'))).status, 200);

  // The control plane's live page draws what the data plane counted: the denial, mTLS, the waypoint's split.
  const page = await fetch(url('mesh page'));
  t.is(page.status, 200);
  t.regex(await page.text(), /<svg|createElementNS/);
  interface Edge { from: string; to: string; tcp?: { mtls: number; denied: number }; http?: { requests: number; split: Array<{ version: string }> } }
  const mesh = (await (await fetch(`${url('mesh page')}.json`)).json()) as { edges: Edge[]; targets: Array<{ up: boolean }> };
  t.is(mesh.targets.length, 3);
  t.true(mesh.targets.every((target) => target.up));
  t.is(mesh.edges.find((e) => e.from === 'wl:web/tester' && e.to === 'wl:shop/ratings')?.tcp?.denied, 5);
  t.is(mesh.edges.find((e) => e.from === 'wl:web/frontend' && e.to === 'wl:shop/ratings')?.tcp?.mtls, 1);
  const toV2 = mesh.edges.find((e) => e.from === 'wp:shop/waypoint' && e.to === 'wl:shop/reviews-v2');
  t.is(toV2?.http?.split[0]?.version, 'v2');

  // Two nodes, their bridge, five pods and the waypoint pod.
  const made = await namespacesWith(prefix);
  t.is(made.length, 9, made.join(' '));

  const second = startDemo(t, env);
  t.is(await second.exit(), 1);
  t.regex(second.errors(), new RegExp(`^make demo: another demo is running \\(pid ${demo.child.pid}\\)`));
  t.deepEqual((await namespacesWith(prefix)).sort(), made.sort(), 'the second demo touched nothing');

  demo.child.kill('SIGINT');
  t.is(await demo.exit(), 0);
  t.regex(demo.output(), /nothing of the demo is left/);
  t.deepEqual(await namespacesWith(prefix), []);
  t.false(existsSync(join(dir, 'demo.pid')));
  t.false(existsSync(join(dir, 'nodes')));
});

test.serial('DEMO_ONCE=1 after a killed demo: the leftovers are removed, the report checks out, the run stops by itself', async (t) => {
  if (!requireNetns(t)) return;
  t.timeout(240_000);
  const dir = await tempDir(t, 'an-demo-');
  const { prefix, env } = setting(t, dir);
  // What a `kill -9` of an earlier demo leaves: its lock (its pid gone) and a namespace.
  await writeFile(join(dir, 'demo.pid'), '4194303\n');
  await exec('ip', ['netns', 'add', `${prefix}-pod-web-frontend`]);

  const demo = startDemo(t, { ...env, DEMO_ONCE: '1' });
  t.is(await demo.exit(), 0, demo.errors());
  const out = demo.output();
  t.regex(out, /^cleaned up after an earlier demo that did not finish \(pid 4194303\): removed 1 network namespaces$/m);
  checkReport(t, out);
  t.notRegex(out, /press Ctrl-C/);
  t.deepEqual(await namespacesWith(prefix), []);
  t.false(existsSync(join(dir, 'demo.pid')));
});

test.serial('without root: one line saying why, and nothing made', async (t) => {
  if (process.getuid?.() !== 0) {
    // Already not root: the demo itself must refuse.
    const { prefix, env } = setting(t, await tempDir(t, 'an-demo-'));
    const run = startDemo(t, env);
    t.is(await run.exit(), 1);
    t.regex(run.errors(), /^make demo needs root: .*\n$/);
    t.deepEqual(await namespacesWith(prefix), []);
    return;
  }
  const dir = await tempDir(t, 'an-demo-');
  const { prefix, env } = setting(t, dir);
  const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const result = await exec('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', 'env', ...envArgs, process.execPath, MAIN]).then(
    () => ({ code: 0, stderr: '' }),
    (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
  );
  t.is(result.code, 1);
  t.regex(result.stderr, /^make demo needs root: it creates network namespaces, veths and iptables rules \(run it as root, e\.g\. with sudo\)\.\n$/);
  t.deepEqual(await namespacesWith(prefix), []);
  t.false(existsSync(join(dir, 'demo.pid')));
});
