import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

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
