/**
 * The netns test tier: Kubernetes "nodes" simulated as Linux network namespaces joined by a bridge
 * that lives in its own namespace, so nothing touches the host's network and nothing leaves the machine.
 * Needs root plus iproute2 and iptables; on CI their absence fails the test, elsewhere it is a printed skip.
 */
import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { startNodeNetwork, type NetnsNode, type NodeNetwork, type NodeNetworkOptions } from '../../src/demo/node-network.ts';

export type { ExecOptions, NetnsNode, NodeNetwork } from '../../src/demo/node-network.ts';

let counter = 0;

/** Why netns tests cannot run here (not root, or ip/iptables missing), else undefined. */
export function netnsMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for network namespaces';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
    execFileSync('iptables', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'needs iproute2 and iptables';
  }
  return undefined;
}

/**
 * For use at the top of a netns test. On CI (`CI` set) a missing requirement throws; elsewhere it logs
 * `not run: <why>`, passes the test and returns false. Returns true when the test can go on.
 */
export function requireNetns(t: ExecutionContext): boolean {
  const missing = netnsMissing();
  if (missing === undefined) return true;
  if (process.env['CI']) throw new Error(`netns test cannot run on CI: ${missing}`);
  t.log(`not run: ${missing}`);
  t.pass();
  return false;
}

/**
 * `count` nodes (see `startNodeNetwork`) with names `an-<pid>-<n>-node<i>`, unique per process and call,
 * removed when the test ends.
 */
export async function createNodeNetwork(t: ExecutionContext, options: Omit<NodeNetworkOptions, 'prefix'>): Promise<NodeNetwork> {
  const network = await startNodeNetwork({ ...options, prefix: `an-${process.pid}-${++counter}` });
  t.teardown(() => network.close());
  return network;
}

/**
 * ztunnel's dedicated-mode capture in `node`, in nat OUTPUT: TCP marked `mark` (default 0x539) and TCP to
 * 127.0.0.0/8 RETURN; every other TCP packet is REDIRECTed to `port` (default 15001).
 */
export async function captureOutbound(node: NetnsNode, options: { port?: number; mark?: number } = {}): Promise<void> {
  const port = options.port ?? 15001;
  const mark = options.mark ?? 0x539;
  const rule = (...args: string[]) => node.exec('iptables', ['-w', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', ...args]);
  await rule('-m', 'mark', '--mark', `0x${mark.toString(16)}`, '-j', 'RETURN');
  await rule('-d', '127.0.0.0/8', '-j', 'RETURN');
  await rule('-j', 'REDIRECT', '--to-ports', String(port));
}

/** Runs in the node: retries a short connect until one succeeds (exit 0) or the deadline passes (exit 1). */
const WAIT_SCRIPT = `
const net = process.getBuiltinModule('node:net');
const host = process.env.WAIT_HOST, port = Number(process.env.WAIT_PORT);
const deadline = Date.now() + Number(process.env.WAIT_MS);
let last = 'no attempt';
function attempt() {
  let done = false;
  const socket = net.connect({ host, port });
  const retry = (why) => {
    if (done) return;
    done = true;
    last = why;
    socket.destroy();
    if (Date.now() >= deadline) {
      process.stderr.write(last);
      process.exit(1);
    }
    setTimeout(attempt, 50);
  };
  socket.setTimeout(500, () => retry('connect timed out'));
  socket.once('error', (err) => retry(err.code || err.message));
  socket.once('connect', () => {
    done = true;
    socket.destroy();
    process.exit(0);
  });
}
attempt();
`;

/** Resolves when something in `node` accepts TCP on ip:port; rejects after `timeoutMs` (default 10 s). */
export async function waitForPort(node: NetnsNode, ip: string, port: number, timeoutMs = 10_000): Promise<void> {
  try {
    await node.exec(process.execPath, ['-e', WAIT_SCRIPT], {
      env: { WAIT_HOST: ip, WAIT_PORT: String(port), WAIT_MS: String(timeoutMs) },
      timeoutMs: timeoutMs + 5000,
    });
  } catch (err) {
    throw new Error(`nothing in ${node.name} accepted TCP on ${ip}:${port} within ${timeoutMs} ms`, { cause: err });
  }
}
