/**
 * Simulated Kubernetes nodes: Linux network namespaces joined by a bridge that lives in a namespace of its
 * own, so nothing touches the host's network and nothing leaves the machine. Used by `make demo` and by the
 * netns test tier (test/helpers/netns.ts). Needs root and iproute2.
 */
import { execFile, spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Grace between SIGTERM and SIGKILL for processes still running when a network closes. */
const KILL_GRACE_MS = 2000;
/** Third octet of the shared link; each network has its own namespaces, so addresses may repeat across networks. */
const SUBNET = '10.88.0';
const CIDR = /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/;

export interface ExecOptions {
  /** Added to (and overriding) the test process's environment. */
  readonly env?: Record<string, string>;
  /** The command is SIGKILLed and the promise rejects after this long. */
  readonly timeoutMs?: number;
  /** Written to the command's stdin, which is then closed. */
  readonly input?: string;
}

export interface NetnsNode {
  /** The namespace's name (as in `ip netns list`). */
  readonly name: string;
  /** Its address on the shared link (10.88.0.<i+1>). */
  readonly ip: string;
  /** `ip netns exec <name> command args`; rejects on a non-zero exit with stderr in the message. */
  exec(command: string, args: readonly string[], options?: ExecOptions): Promise<{ stdout: string; stderr: string }>;
  /** A long-running process inside the namespace, stdio piped; killed when the network closes. */
  spawn(command: string, args: readonly string[], options?: { readonly env?: Record<string, string> }): ChildProcess;
}

export interface NodeNetwork {
  readonly nodes: readonly NetnsNode[];
  /** Kills processes started in the nodes, then deletes the namespaces (and so the veths); idempotent, never throws. */
  close(): Promise<void>;
}

export interface NodeNetworkOptions {
  /** How many nodes, 2..4. */
  readonly count: number;
  /** CIDRs (e.g. a service VIP range '10.96.0.0/16') routed onto the link so connect() to them is not ENETUNREACH. */
  readonly extraRoutes?: readonly string[];
  /** Namespace names start with it; unique per network. */
  readonly prefix: string;
}

/** Runs `ip args`, turning a failure into an error that names the command and carries its stderr. */
async function ip(...args: string[]): Promise<void> {
  try {
    await run('ip', args);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new Error(`ip ${args.join(' ')} failed: ${stderr || String(err)}`, { cause: err });
  }
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** SIGTERM, then SIGKILL after the grace period; gives up waiting shortly after that (a process stuck in the kernel). */
async function stop(child: ChildProcess): Promise<void> {
  if (exited(child)) return;
  const gone = once(child, 'exit').then(
    () => true,
    () => true,
  );
  const within = (ms: number) =>
    Promise.race([gone, new Promise<boolean>((resolve) => setTimeout(resolve, ms, false).unref())]);
  child.kill('SIGTERM');
  if (await within(KILL_GRACE_MS)) return;
  child.kill('SIGKILL');
  await within(KILL_GRACE_MS);
}

class Node implements NetnsNode {
  readonly name: string;
  readonly ip: string;
  readonly #children: Set<ChildProcess>;

  constructor(name: string, address: string, children: Set<ChildProcess>) {
    this.name = name;
    this.ip = address;
    this.#children = children;
  }

  #track(child: ChildProcess): ChildProcess {
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
    return child;
  }

  exec(command: string, args: readonly string[], options: ExecOptions = {}): Promise<{ stdout: string; stderr: string }> {
    const argv = ['netns', 'exec', this.name, command, ...args];
    return new Promise((resolve, reject) => {
      const child = execFile(
        'ip',
        argv,
        {
          env: { ...process.env, ...options.env },
          encoding: 'utf8',
          maxBuffer: 64 * 1024 * 1024,
          killSignal: 'SIGKILL',
          ...(options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs }),
        },
        (err, stdout, stderr) => {
          if (!err) {
            resolve({ stdout, stderr });
            return;
          }
          const why = err.killed ? `killed after ${options.timeoutMs} ms` : `exit ${err.code ?? err.signal}`;
          reject(new Error(`in ${this.name}: ${command} ${args.join(' ')}: ${why}: ${stderr.trim()}`, { cause: err }));
        },
      );
      this.#track(child);
      child.stdin?.on('error', () => {});
      child.stdin?.end(options.input ?? '');
    });
  }

  spawn(command: string, args: readonly string[], options: { readonly env?: Record<string, string> } = {}): ChildProcess {
    const child = spawnChild('ip', ['netns', 'exec', this.name, command, ...args], {
      env: { ...process.env, ...options.env },
      stdio: 'pipe',
    });
    child.on('error', () => {});
    child.stdin.on('error', () => {});
    return this.#track(child);
  }
}

/**
 * `count` nodes joined by a bridge in an extra namespace (never the host's). Each node has lo up and one
 * veth `eth0` to the bridge with 10.88.0.<i+1>/24, plus a device route for each of `extraRoutes`.
 * Namespace names are `<prefix>-node<i>` and `<prefix>-bridge`. A failed setup removes what it made before
 * rejecting; `close()` removes the rest.
 */
export async function startNodeNetwork(options: NodeNetworkOptions): Promise<NodeNetwork> {
  const { count, extraRoutes = [], prefix } = options;
  if (!Number.isInteger(count) || count < 2 || count > 4) throw new RangeError(`count must be 2..4, not ${count}`);
  for (const cidr of extraRoutes) if (!CIDR.test(cidr)) throw new RangeError(`extraRoutes: not an IPv4 CIDR: ${cidr}`);

  const bridge = `${prefix}-bridge`;
  const children = new Set<ChildProcess>();
  const created: string[] = [];
  const nodes: Node[] = [];
  let closing: Promise<void> | undefined;

  const close = (): Promise<void> =>
    (closing ??= (async () => {
      await Promise.all([...children].map((child) => stop(child).catch(() => {})));
      await Promise.all(created.map((ns) => run('ip', ['netns', 'delete', ns]).catch(() => {})));
    })());

  try {
    await ip('netns', 'add', bridge);
    created.push(bridge);
    await ip('-n', bridge, 'link', 'set', 'lo', 'up');
    await ip('-n', bridge, 'link', 'add', 'br0', 'type', 'bridge');
    await ip('-n', bridge, 'link', 'set', 'br0', 'up');
    for (let i = 0; i < count; i++) {
      const name = `${prefix}-node${i}`;
      const address = `${SUBNET}.${i + 1}`;
      await ip('netns', 'add', name);
      created.push(name);
      await ip('-n', name, 'link', 'set', 'lo', 'up');
      await ip('-n', bridge, 'link', 'add', `port${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name);
      await ip('-n', bridge, 'link', 'set', `port${i}`, 'master', 'br0', 'up');
      await ip('-n', name, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
      await ip('-n', name, 'link', 'set', 'eth0', 'up');
      for (const cidr of extraRoutes) await ip('-n', name, 'route', 'add', cidr, 'dev', 'eth0');
      nodes.push(new Node(name, address, children));
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { nodes, close };
}
