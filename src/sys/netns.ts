import { fstatSync, statSync } from 'node:fs';
import { createServer, isIPv6, Socket as NetSocket, type Server, type ServerOpts, type Socket } from 'node:net';
import { once } from 'node:events';
import { ErrorCode } from '../core/error-codes.ts';
import { call, loadAddon, toSysError } from './addon.ts';
import type { TcpSocketOptions } from './socket-options.ts';

/**
 * Sockets inside another network namespace (a pod's), as ztunnel's in-pod mode creates each pod's
 * listeners and upstream sockets. The native side switches only the calling thread with setns(), creates
 * the socket and switches back before returning (aborting the process if it cannot); the socket keeps
 * the namespace it was created in. Node then adopts the fd.
 */

const NETNS_DIR = '/var/run/netns';

/** Where `ip netns add <name>` keeps a named namespace. */
export function namedNetnsPath(name: string): string {
  return `${NETNS_DIR}/${name}`;
}

/** The network namespace of process `pid`. */
export function pidNetnsPath(pid: number): string {
  return `/proc/${pid}/ns/net`;
}

/** Opens a namespace file (`/var/run/netns/<name>`, `/proc/<pid>/ns/net`) O_RDONLY|O_CLOEXEC; close it with closeFd. */
export function openNetns(path: string): number {
  const native = loadAddon();
  return call(ErrorCode.SYS_NETNS_FAILED, `open network namespace ${path}`, () => native.openNetns(path));
}

export function closeFd(fd: number): void {
  const native = loadAddon();
  call(ErrorCode.SYS_NETNS_FAILED, 'close', () => native.closeFd(fd));
}

/** A namespace's identity, `<st_dev>:<st_ino>` of its file (as ztunnel compares them); equal iff the same namespace. */
export function netnsInode(fd: number): string {
  try {
    const stat = fstatSync(fd, { bigint: true });
    return `${stat.dev}:${stat.ino}`;
  } catch (err) {
    throw toSysError(ErrorCode.SYS_NETNS_FAILED, 'fstat network namespace', err);
  }
}

/** The identity of the calling (main) thread's current network namespace, as netnsInode. */
export function threadNetnsInode(): string {
  const stat = statSync('/proc/thread-self/ns/net', { bigint: true });
  return `${stat.dev}:${stat.ino}`;
}

/**
 * An unconnected TCP socket created inside the namespace `netnsFd`, with SO_MARK / IP_TRANSPARENT set
 * before its first packet; `connect(...)` it like any socket. Needs CAP_SYS_ADMIN (setns), and
 * CAP_NET_ADMIN for the options.
 */
export function createTcpSocketIn(netnsFd: number, family: 4 | 6, options: TcpSocketOptions = {}): NetSocket {
  const native = loadAddon();
  const fd = call(ErrorCode.SYS_NETNS_FAILED, 'socket in network namespace', () =>
    native.tcpSocketIn(netnsFd, family, options.mark ?? 0, options.transparent ? 1 : 0),
  );
  return new NetSocket({ fd, allowHalfOpen: true, readable: true, writable: true });
}

export interface ListenInOptions {
  /** A numeric address ('0.0.0.0', '127.0.0.1', '::'). */
  readonly host: string;
  /** 0 picks a free port (read it back with server.address()). */
  readonly port: number;
  /** Defaults to the host's family. */
  readonly family?: 4 | 6 | undefined;
  /** Defaults to 511, as Node's. */
  readonly backlog?: number | undefined;
  readonly reusePort?: boolean | undefined;
  /** IP_TRANSPARENT, to accept connections to non-local addresses (TPROXY). Needs CAP_NET_ADMIN. */
  readonly transparent?: boolean | undefined;
}

const DEFAULT_BACKLOG = 511;

/** A bound, listening TCP socket inside the namespace `netnsFd`; returns its fd for `server.listen({ fd })`. */
export function listenTcpIn(netnsFd: number, options: ListenInOptions): number {
  const native = loadAddon();
  const family = options.family ?? (isIPv6(options.host) ? 6 : 4);
  return call(ErrorCode.SYS_NETNS_FAILED, `listen on ${options.host}:${options.port} in network namespace`, () =>
    native.tcpListenIn(
      netnsFd,
      family,
      options.host,
      options.port,
      options.backlog ?? DEFAULT_BACKLOG,
      options.reusePort ? 1 : 0,
      options.transparent ? 1 : 0,
    ),
  );
}

/**
 * A started net.Server listening inside the namespace `netnsFd` (listenTcpIn adopted by Node), serving
 * `onConnection`. Resolves once listening; `server.address()` reports the address inside the namespace.
 */
export async function createServerIn(
  netnsFd: number,
  options: ListenInOptions,
  onConnection: (socket: Socket) => void,
  serverOptions: ServerOpts = {},
): Promise<Server> {
  const fd = listenTcpIn(netnsFd, options);
  const server = createServer(serverOptions, onConnection);
  server.listen({ fd, backlog: options.backlog ?? DEFAULT_BACKLOG });
  try {
    await once(server, 'listening');
  } catch (err) {
    server.close();
    throw toSysError(ErrorCode.SYS_NETNS_FAILED, 'adopt listener from network namespace', err);
  }
  return server;
}
