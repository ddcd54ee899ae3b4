/**
 * Child processes for the benchmarks (bench/hbone.ts, bench/l4.ts): every one started here is
 * tracked, and killed when the benchmark stops, exits or is interrupted (see `cleanupOnExit`).
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  /** The exit code; -1 when killed by a signal or when the spawn failed. */
  readonly exited: Promise<number | null>;
  /** stdout so far (capped at 1 MiB) and the last few KiB of stderr. */
  stdout(): string;
  stderr(): string;
}

export interface StartOptions {
  /** Added to (and overriding) this process's environment. */
  readonly env?: Record<string, string>;
}

const children = new Set<Child>();

/** Starts `command args` with piped stdio and tracks it until it exits. */
export function start(name: string, command: string, args: readonly string[], options: StartOptions = {}): Child {
  // stdin is a pipe that is never written: our node children exit when it closes (if we die).
  const proc = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
  proc.stdin?.on('error', () => {});
  let out = '';
  let err = '';
  proc.stdout?.setEncoding('utf8').on('data', (text: string) => {
    if (out.length < 1 << 20) out += text;
    else out = out.slice(-(1 << 19)) + text;
  });
  proc.stderr?.setEncoding('utf8').on('data', (text: string) => (err = (err + text).slice(-4096)));
  const exited = new Promise<number | null>((resolve) => {
    proc.once('exit', (code, signal) => resolve(code ?? (signal ? -1 : null)));
    proc.once('error', (e) => {
      err += `\nspawn failed: ${e.message}`;
      resolve(-1);
    });
  });
  const child: Child = { name, proc, exited, stdout: () => out, stderr: () => err };
  children.add(child);
  void exited.then(() => children.delete(child));
  return child;
}

/** True while `child` has not exited. */
export function running(child: Child): boolean {
  return children.has(child);
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stop(child: Child, graceMs = 3000): Promise<void> {
  if (!children.has(child)) return;
  child.proc.kill('SIGTERM');
  const timer = setTimeout(() => child.proc.kill('SIGKILL'), graceMs);
  await child.exited;
  clearTimeout(timer);
}

/** Stops every running child, the most recently started first. */
export async function stopAll(): Promise<void> {
  await Promise.all([...children].reverse().map((c) => stop(c)));
}

export interface ExitCleanup {
  /** Appended to the "stopping N child process(es)" line printed on SIGINT/SIGTERM. */
  readonly describe?: () => string;
  /** Extra synchronous cleanup, run after the children are killed (on exit) or stopped (on a signal). */
  readonly after?: () => void;
}

/**
 * On process exit SIGKILLs the children still running; on SIGINT/SIGTERM stops them and exits 130.
 * Either way then runs `after`.
 */
export function cleanupOnExit(extra: ExitCleanup = {}): void {
  process.once('exit', () => {
    for (const child of children) child.proc.kill('SIGKILL');
    extra.after?.();
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: stopping ${children.size} child process(es)${extra.describe?.() ?? ''}\n`);
      void stopAll()
        .then(() => extra.after?.())
        .finally(() => process.exit(130));
    });
  }
}
