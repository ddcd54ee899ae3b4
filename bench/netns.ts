/**
 * Two simulated nodes for bench/l4.ts: network namespaces `<prefix>-a` (10.88.0.1/24) and
 * `<prefix>-b` (10.88.0.2/24) joined by one veth pair created directly between them, so nothing is
 * added to or changed in the host's own namespace. Needs root, iproute2 and iptables (`netnsMissing`,
 * shared with the netns test tier, says which is missing).
 *
 * Processes are started through `ip netns exec <ns> bash -c 'ulimit -n <hard> && exec "$0" "$@"' cmd ...`
 * (the soft open-files limit raised to the hard one; raising the hard one needs CAP_SYS_RESOURCE):
 * `ip netns exec` and the shell both exec, so the returned child's pid is the command's own pid
 * (its /proc/<pid>/status and /proc/<pid>/net/tcp are readable from here).
 */
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';

export { netnsMissing } from '../test/helpers/netns.ts';

const run = promisify(execFile);

export const SUBNET = '10.88.0';

export interface BenchNode {
  /** Namespace name (as in `ip netns list`). */
  readonly ns: string;
  /** Address on the link. */
  readonly ip: string;
}

export interface NodePair {
  readonly a: BenchNode;
  readonly b: BenchNode;
  /** Both namespace names, for cleanup. */
  readonly namespaces: readonly string[];
}

/** Runs a command, turning a failure into an error carrying the command line and its stderr. */
export async function sh(command: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await run(command, args, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new Error(`${command} ${args.join(' ')} failed: ${stderr || String(err)}`, { cause: err });
  }
}

/** `command args` inside `node`'s namespace; resolves with stdout. */
export function inNode(node: BenchNode, command: string, args: readonly string[]): Promise<string> {
  return sh('ip', ['netns', 'exec', node.ns, command, ...args]);
}

/** argv for spawning a long-running `command` inside `node`, its soft open-files limit raised to the hard limit. */
export function nodeArgv(node: BenchNode, command: string, args: readonly string[]): { command: string; args: string[] } {
  return { command: 'ip', args: ['netns', 'exec', node.ns, 'bash', '-c', 'ulimit -n "$(ulimit -Hn)" && exec "$0" "$@"', command, ...args] };
}

/** This process's hard open-files limit (what `nodeArgv` children get), from /proc/self/limits. */
export function openFilesHardLimit(): number {
  const row = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
  const hard = row?.split(/\s{2,}/)[2];
  return hard === undefined || hard === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(hard);
}

/**
 * Creates `<prefix>-a` and `<prefix>-b` with lo up and a veth `eth0` in each end to end. On failure
 * removes whatever it made before rejecting.
 */
export async function createNodePair(prefix: string): Promise<NodePair> {
  const a: BenchNode = { ns: `${prefix}-a`, ip: `${SUBNET}.1` };
  const b: BenchNode = { ns: `${prefix}-b`, ip: `${SUBNET}.2` };
  const created: string[] = [];
  try {
    for (const node of [a, b]) {
      await sh('ip', ['netns', 'add', node.ns]);
      created.push(node.ns);
      await sh('ip', ['-n', node.ns, 'link', 'set', 'lo', 'up']);
    }
    // Made inside A with its peer placed in B: the host namespace never holds either end.
    await sh('ip', ['-n', a.ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', b.ns]);
    for (const node of [a, b]) {
      await sh('ip', ['-n', node.ns, 'addr', 'add', `${node.ip}/24`, 'dev', 'eth0']);
      await sh('ip', ['-n', node.ns, 'link', 'set', 'eth0', 'up']);
      // Many short connections per run: a wide ephemeral range and TIME_WAIT reuse (both per namespace).
      await inNode(node, 'sysctl', ['-q', '-w', 'net.ipv4.ip_local_port_range=32768 65000', 'net.ipv4.tcp_tw_reuse=1']);
    }
  } catch (err) {
    removeNamespacesSync(created);
    throw err;
  }
  return { a, b, namespaces: created };
}

/** Deletes the namespaces (and with them the veth pair); never throws. Synchronous so an exit handler can use it. */
export function removeNamespacesSync(namespaces: readonly string[]): void {
  for (const ns of namespaces) {
    try {
      execFileSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
}

/**
 * ztunnel's dedicated-mode capture in `node` (nat OUTPUT): TCP with `mark` and TCP to 127.0.0.0/8
 * RETURN, TCP to the destination ports `exclude` (a range like `20000:29999`, for the baselines)
 * RETURN, everything else is REDIRECTed to `port`.
 */
export async function captureOutbound(node: BenchNode, options: { port: number; mark: number; exclude: string }): Promise<void> {
  const rule = (...args: string[]) => inNode(node, 'iptables', ['-w', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', ...args]);
  await rule('-m', 'mark', '--mark', `0x${options.mark.toString(16)}`, '-j', 'RETURN');
  await rule('-d', '127.0.0.0/8', '-j', 'RETURN');
  await rule('--dport', options.exclude, '-j', 'RETURN');
  await rule('-j', 'REDIRECT', '--to-ports', String(options.port));
}
