import { execFile } from 'node:child_process';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * What the demo leaves on the machine while it runs, and how it is found again after a run that was killed:
 * network namespaces named `<prefix>-*` (the nodes, their bridge, the pods; every iptables rule and ipset the
 * mesh makes lives inside them) and the state directory (the lock, the nodes' CNI dirs, logs).
 */

const run = promisify(execFile);

export const LOCK_FILE = 'demo.pid';

export type LockResult =
  | { readonly kind: 'taken'; readonly stale?: number }
  | { readonly kind: 'held'; readonly pid: number };

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes `<stateDir>/demo.pid` for this process. A lock whose process is still alive is `held`; one left by a
 * process that is gone is taken over and reported as `stale` (its leftovers are the caller's to remove).
 */
export async function takeLock(stateDir: string): Promise<LockResult> {
  await mkdir(stateDir, { recursive: true });
  const path = join(stateDir, LOCK_FILE);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const file = await open(path, 'wx');
      await file.writeFile(`${process.pid}\n`);
      await file.close();
      return { kind: 'taken' };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) return { kind: 'held', pid };
    await rm(path, { force: true });
    const taken = await takeLock(stateDir);
    return taken.kind === 'taken' ? { kind: 'taken', ...(pid > 0 ? { stale: pid } : {}) } : taken;
  }
  throw new Error(`could not take the lock ${path}`);
}

export async function releaseLock(stateDir: string): Promise<void> {
  const path = join(stateDir, LOCK_FILE);
  const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
  if (pid === process.pid) await rm(path, { force: true });
}

/** The network namespaces whose names start with `<prefix>-`, from `ip netns list`. */
export async function demoNamespaces(prefix: string): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith(`${prefix}-`));
}

/**
 * Removes what a demo made: its processes still running in its namespaces, the namespaces, and the state
 * directory except the lock and the logs (kept for a look after a failure). Returns the namespaces it deleted. Never throws for a piece already gone.
 */
export async function removeLeftovers(prefix: string, stateDir: string): Promise<string[]> {
  const namespaces = await demoNamespaces(prefix);
  for (const ns of namespaces) {
    const pids = await run('ip', ['netns', 'pids', ns]).then((r) => r.stdout.split('\n').filter(Boolean).map(Number), () => [] as number[]);
    for (const pid of pids) if (pid !== process.pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  for (const ns of namespaces) await run('ip', ['netns', 'delete', ns]).catch(() => {});
  for (const entry of ['nodes', 'root-cert.pem']) await rm(join(stateDir, entry), { recursive: true, force: true });
  return namespaces;
}
