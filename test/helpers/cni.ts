import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { namedNetnsPath } from '../../src/sys/netns.ts';
import { tempDir } from './tmp.ts';

/** The static CNI plugin shim built by `make build`. */
export const SHIM = join(import.meta.dirname, '..', '..', '..', 'build', 'ambient-cni');

export interface ShimRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the shim as a container runtime does: exactly `env` (no PATH, nothing inherited) and `stdin`. */
export async function runShim(env: Record<string, string>, stdin: string): Promise<ShimRun> {
  if (!existsSync(SHIM)) throw new Error(`${SHIM} is missing: run \`make build\` first`);
  const child = spawn(SHIM, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => err.push(c));
  child.stdin.on('error', () => {}); // VERSION may exit before reading stdin
  child.stdin.end(stdin);
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
}

export interface FakePodProcess {
  readonly pid: number;
  /** The pod uid its cgroup path names. */
  readonly uid: string;
  /** The named netns (`ip netns add`) its `ns/net` links to. */
  readonly netns: string;
}

/** Adds one pod sandbox process to a fake procRoot: `<pid>/cgroup` (cgroupfs layout), `<pid>/stat`, `<pid>/ns/net`. */
export async function addFakePodProcess(root: string, proc: FakePodProcess): Promise<void> {
  const dir = join(root, String(proc.pid));
  await mkdir(join(dir, 'ns'), { recursive: true });
  await writeFile(join(dir, 'cgroup'), `0::/kubepods/besteffort/pod${proc.uid}/c0ffee\n`);
  await writeFile(join(dir, 'stat'), `${proc.pid} (pause) S 1 ${proc.pid} ${proc.pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 1000 0 0\n`);
  await symlink(namedNetnsPath(proc.netns), join(dir, 'ns', 'net'));
}

/**
 * A procRoot as `/host/proc` shows pod sandboxes to the node agent: one process per entry (none: empty).
 * Removed after the test.
 */
export async function fakeProcRoot(t: ExecutionContext, processes: readonly FakePodProcess[]): Promise<string> {
  const root = await tempDir(t, 'an-agent-proc-');
  for (const proc of processes) await addFakePodProcess(root, proc);
  return root;
}
