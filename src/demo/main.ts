/**
 * `make demo`: the embedded mesh of src/demo/demo.ts, started with progress, its report printed, then up until
 * Ctrl-C (or, with DEMO_ONCE=1, stopped at once). Refuses without root, without the tools it drives, and while
 * another demo runs; cleans up after a demo that was killed.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { parseDemoConfig, type DemoConfig } from './config.ts';
import { startDemo, type Demo } from './demo.ts';
import { loadExamples } from './examples.ts';
import { releaseLock, removeLeftovers, takeLock } from './state.ts';

const root = resolve(import.meta.dirname, '..', '..', '..');
const distDir = join(root, 'dist');
const shim = join(root, 'build', 'ambient-cni');

const say = (line: string) => process.stdout.write(`${line}\n`);
const stop = (line: string, code = 1): never => {
  process.stderr.write(`${line}\n`);
  process.exit(code);
};

/** What the demo drives, with the Debian package that brings it. */
const TOOLS: ReadonlyArray<readonly [string, string]> = [
  ['/usr/lib/cni/bridge', 'containernetworking-plugins'],
  ['/usr/lib/cni/host-local', 'containernetworking-plugins'],
  ['/usr/lib/cni/loopback', 'containernetworking-plugins'],
];
const COMMANDS: ReadonlyArray<readonly [string, string]> = [
  ['ip', 'iproute2'],
  ['iptables', 'iptables'],
  ['ipset', 'ipset'],
];

function missingPackages(): string[] {
  const missing = new Set<string>();
  for (const [path, pkg] of TOOLS) if (!existsSync(path)) missing.add(pkg);
  for (const [command, pkg] of COMMANDS) {
    try {
      execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    } catch {
      missing.add(pkg);
    }
  }
  return [...missing];
}

async function portFree(port: number): Promise<boolean> {
  if (port === 0) return true;
  return new Promise((done) => {
    const server = createServer();
    server.once('error', () => done(false));
    server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
  });
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) stop('make demo needs root: it creates network namespaces, veths and iptables rules (run it as root, e.g. with sudo).');
  const parsed = parseDemoConfig(process.env);
  if (!parsed.ok) stop(`make demo: ${parsed.errors.join('; ')}`, 2);
  let config: DemoConfig = (parsed as { value: DemoConfig }).value;
  const missing = missingPackages();
  if (missing.length) stop(`make demo needs the Debian packages ${missing.join(', ')} (run \`make demo\` as root to install them, or apt-get install ${missing.join(' ')}).`);
  for (const [what, path] of [['the CNI shim', shim], ['the compiled sources', join(distDir, 'src', 'demo', 'app.js')]] as const) {
    if (!existsSync(path)) stop(`make demo: ${what} (${path}) is missing: run \`make build\` first.`);
  }

  const lock = await takeLock(config.stateDir);
  if (lock.kind === 'held') stop(`make demo: another demo is running (pid ${lock.pid}); stop it with Ctrl-C where it runs, or \`kill ${lock.pid}\`.`);
  const release = () => releaseLock(config.stateDir).catch(() => {});
  const leftovers = await removeLeftovers(config.prefix, config.stateDir);
  if (lock.kind === 'taken' && (lock.stale !== undefined || leftovers.length)) {
    say(`cleaned up after an earlier demo that did not finish${lock.stale ? ` (pid ${lock.stale})` : ''}: removed ${leftovers.length} network namespaces`);
  }

  const examples = await loadExamples(config.examplesDir);
  if (!examples.ok) {
    await release();
    stop(`make demo: ${config.examplesDir} is not usable:\n  ${examples.problems.join('\n  ')}`, 2);
  }
  if (!(await portFree(config.controlPlaneMonitoringPort))) {
    say(`port ${config.controlPlaneMonitoringPort} is taken; the control plane's page gets another one`);
    config = { ...config, controlPlaneMonitoringPort: 0 };
  }

  let demo: Demo | undefined;
  let stopping = false;
  const shutdown = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('\nstopping: removing every namespace and rule the demo made ...');
    if (demo) await demo.close();
    else await removeLeftovers(config.prefix, config.stateDir);
    await release();
    say('done: nothing of the demo is left.');
    process.exit(code);
  };
  // Ctrl-C is how a demo that came up is meant to end; during the start it is an interruption.
  process.on('SIGINT', () => void shutdown(demo ? 0 : 130));
  process.on('SIGTERM', () => void shutdown(143));

  say(`ambient-node demo: an embedded mesh from ${config.examplesDir}/ (state and logs in ${config.stateDir})`);
  try {
    demo = await startDemo(config, (examples as { objects: Parameters<typeof startDemo>[1] }).objects, { progress: (line) => say(`  ${line}`), distDir, shim });
  } catch (err) {
    process.stderr.write(`make demo failed: ${(err as Error).message}\n(logs in ${join(config.stateDir, 'logs')}; everything it made was removed)\n`);
    await removeLeftovers(config.prefix, config.stateDir);
    await release();
    process.exit(1);
  }
  if (stopping) return;
  say('');
  say(demo.report.text);
  say('');
  say('URLs');
  for (const [name, url] of Object.entries(demo.urls)) say(`  ${name.padEnd(34)} ${url}`);
  const verdicts = Object.values(demo.report.verdicts);
  if (config.once) {
    await shutdown(verdicts.every((v) => v.ok) ? 0 : 1);
    return;
  }
  say('\nThe mesh stays up; press Ctrl-C to stop it and remove everything.');
}

// The ZDS sockets of two agents and two ztunnels each hold a libuv threadpool thread while they wait
// (src/sys/seqpacket.ts); with libuv's default 4, file work in this process would queue behind them. The pool
// size is read once at start, so without it set, the demo runs itself again with it (as bin/ambientd does).
if (!process.env['UV_THREADPOOL_SIZE']) {
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1] ?? ''], { env: { ...process.env, UV_THREADPOOL_SIZE: '16' }, stdio: 'inherit' });
  // Ctrl-C reaches both processes (one process group); the child handles it, this one waits for it.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => child.kill('SIGTERM'));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
} else {
  await main();
}
