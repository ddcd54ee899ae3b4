import { connect, type Socket } from 'node:net';
import { ErrorCode } from '../core/error-codes.ts';
import { errorMessage } from '../core/errors.ts';
import type { HboneDecision, HboneHandler, HboneRequest } from './server.ts';
import { Timeouts } from './settings.ts';

/**
 * Opens a TCP connection: returns the socket at once, still connecting (it emits `connect` or
 * `error`). The default is `net.connect`; ztunnel passes one that marks sockets (SO_MARK) or
 * creates them inside a pod's network namespace.
 */
export type ConnectSocket = (target: { readonly host: string; readonly port: number; readonly localAddress?: string | undefined }) => Socket;

export const defaultConnectSocket: ConnectSocket = ({ host, port, localAddress }) =>
  connect({ host, port, allowHalfOpen: true, noDelay: true, ...(localAddress ? { localAddress } : {}) });

export interface ForwardOptions {
  readonly connectTimeoutMs?: number;
  /** Consulted before dialing; a refusal is answered as given (401 for authorization). */
  readonly admit?: (request: HboneRequest) => Extract<HboneDecision, { code: ErrorCode }> | undefined;
}

/**
 * The plainest HBONE handler: dial the authority's `ip:port` over TCP and tunnel to it; 503 when
 * that fails or the authority names a hostname (no service resolution here).
 */
export function forwardToTarget(options: ForwardOptions = {}): HboneHandler {
  const timeoutMs = options.connectTimeoutMs ?? Timeouts.upstreamConnectMs;
  return async (request) => {
    const refused = options.admit?.(request);
    if (refused) return refused;
    if (request.target.kind !== 'address') {
      return { status: 503, code: ErrorCode.HBONE_UPSTREAM_CONNECT_FAILED, reason: `no service resolution for ${request.authority}` };
    }
    try {
      const upstream = await dial(request.target.ip, request.target.port, timeoutMs, request.signal);
      return { status: 200, upstream };
    } catch (err) {
      return { status: 503, code: ErrorCode.HBONE_UPSTREAM_CONNECT_FAILED, reason: `connect to ${request.authority} failed: ${errorMessage(err)}` };
    }
  };
}

/** A half-open-capable TCP connection, or a rejection on error, timeout or abort. */
export function dial(host: string, port: number, timeoutMs: number, signal?: AbortSignal, connectSocket: ConnectSocket = defaultConnectSocket): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connectSocket({ host, port });
    socket.setTimeout(timeoutMs);
    const fail = (err: Error) => {
      cleanup();
      socket.destroy();
      reject(err);
    };
    const onTimeout = () => fail(Object.assign(new Error(`timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    const onAbort = () => fail(new Error('the client went away'));
    const cleanup = () => {
      socket.off('timeout', onTimeout);
      socket.off('error', fail);
      signal?.removeEventListener('abort', onAbort);
    };
    socket.once('timeout', onTimeout);
    socket.once('error', fail);
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => {
      cleanup();
      socket.setTimeout(0);
      socket.setNoDelay(true);
      socket.on('error', () => {}); // the relay reports errors from here on
      resolve(socket);
    });
  });
}
