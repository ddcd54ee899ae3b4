import { Socket as NetSocket, type Socket, type Server } from 'node:net';
import { ErrorCode } from '../core/error-codes.ts';
import { call as callNative, loadAddon as load, SysError } from './addon.ts';

/**
 * The TypeScript face of the native socket options Node does not expose (the addon is loaded by
 * addon.ts; netns.ts and seqpacket.ts face its other parts).
 */
export { SysError };

/** The file descriptor behind a connected or listening socket (libuv's handle; Unix only). */
export function socketFd(socket: Socket | Server): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new SysError(ErrorCode.SYS_NO_FD, 'socket has no file descriptor (not connected or already closed)');
  return fd;
}

function call<T>(what: string, fn: () => T): T {
  return callNative(ErrorCode.SYS_SOCKOPT_FAILED, what, fn);
}

/** Where a REDIRECTed connection was going (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST). */
export function originalDestination(socket: Socket): { address: string; port: number; family: 'IPv4' | 'IPv6' } {
  const native = load();
  return call('original destination', () => native.originalDestination(socketFd(socket)));
}

/** Marks the socket's packets (SO_MARK; 0x539 lets ztunnel's own traffic past the pod's rules). Needs CAP_NET_ADMIN. */
export function setMark(socket: Socket | Server, mark: number): void {
  const native = load();
  call('SO_MARK', () => native.setMark(socketFd(socket), mark));
}

export function getMark(socket: Socket | Server): number {
  const native = load();
  return call('SO_MARK', () => native.getMark(socketFd(socket)));
}

/** Allows binding a non-local address (the client's, to keep its source IP). Needs CAP_NET_ADMIN. */
export function setTransparent(socket: Socket | Server): void {
  const native = load();
  call('IP_TRANSPARENT', () => native.setTransparent(socketFd(socket)));
}

export interface TcpSocketOptions {
  /** SO_MARK set before the first packet, so even the SYN carries it. Needs CAP_NET_ADMIN. */
  readonly mark?: number | undefined;
  /** IP_TRANSPARENT before bind, to connect from a non-local (the client's) address. Needs CAP_NET_ADMIN. */
  readonly transparent?: boolean | undefined;
}

/**
 * An unconnected TCP socket of `family` with its options set before any packet is sent; connect it
 * with `socket.connect(...)`. Without a mark or transparency it is a plain `new Socket()`.
 */
export function createTcpSocket(family: 4 | 6, options: TcpSocketOptions = {}): NetSocket {
  const mark = options.mark ?? 0;
  if (mark === 0 && !options.transparent) return new NetSocket({ allowHalfOpen: true });
  const native = load();
  const fd = call('socket', () => native.tcpSocket(family, mark, options.transparent ? 1 : 0));
  return new NetSocket({ fd, allowHalfOpen: true, readable: true, writable: true });
}
