/**
 * Child processes for the benchmarks (bench/hbone.ts, bench/l4.ts): every one started here is
 * tracked, and killed when the benchmark stops, exits or is interrupted (see `cleanupOnExit`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

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
  /** A file descriptor for the child's stdout instead of a pipe (a busy logger's lines to a file). */
  readonly stdoutFd?: number;
  /** Run on these CPUs only (`taskset -c`; the pid is still the command's own). */
  readonly cpus?: string;
}

const children = new Set<Child>();

/** Starts `command args` with piped stdio and tracks it until it exits. */
export function start(name: string, command: string, args: readonly string[], options: StartOptions = {}): Child {
  // stdin is a pipe that is never written: our node children exit when it closes (if we die).
  const [file, argv] = options.cpus ? ['taskset', ['-c', options.cpus, command, ...args]] : [command, args];
  const proc = spawn(file, argv, { stdio: ['pipe', options.stdoutFd ?? 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
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

/** How long a child gets to print its ready line. */
export const READY_TIMEOUT_MS = 15_000;

/** Rejects with `what timed out` after `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves with the first stdout line matching `test`; rejects if the child exits first. */
export async function readyLine<T>(child: Child, test: (line: string) => T | undefined, stream: 'stdout' | 'stderr' = 'stdout', timeoutMs = READY_TIMEOUT_MS): Promise<T> {
  const source = child.proc[stream];
  if (!source) throw new Error(`${child.name}: no ${stream}`);
  const lines = createInterface({ input: source });
  const found = new Promise<T>((resolve, reject) => {
    lines.on('line', (line) => {
      const value = test(line);
      if (value !== undefined) {
        lines.close();
        resolve(value);
      }
    });
    void child.exited.then((code) => reject(new Error(`${child.name} exited (${code}) before it was ready: ${child.stderr().trim()}`)));
  });
  try {
    return await withTimeout(found, timeoutMs, `${child.name} start`);
  } finally {
    lines.close();
    source.resume(); // keep draining so the child never blocks on a full pipe
  }
}


/**
 * Resolves once the kernel lists 127.0.0.1:`port` as listening, for programs that print no ready line
 * (stunnel at level `warning`, nginx) and where a probe connection would be forwarded to the target.
 */
export async function listening(child: Child, port: number): Promise<void> {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!running(child)) throw new Error(`${child.name} exited: ${child.stderr().trim()}`);
    const listening = readFileSync('/proc/net/tcp', 'utf8')
      .split('\n')
      .some((row) => {
        const cols = row.trim().split(/\s+/);
        return cols[1] === local && cols[3] === '0A'; // 0A = TCP_LISTEN
      });
    if (listening) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`${child.name} did not listen on ${port}: ${child.stderr().trim()}`);
}

