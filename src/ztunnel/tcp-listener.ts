import { createServer, type Server, type Socket } from 'node:net';
import { ErrorCode } from '../core/error-codes.ts';
import { errorCode, errorMessage } from '../core/errors.ts';
import { Drain, onceClose, type ServerHandle } from '../core/lifecycle.ts';
import type { Logger } from '../core/logger.ts';
import { Timeouts } from '../hbone/settings.ts';
import { originalDestination } from '../sys/socket-options.ts';
import { unmapIpv4, type SocketAddr } from './route.ts';
import type { SocketFactory } from './socket-factory.ts';

/**
 * The capture listeners' shared shell (outbound 15001, plaintext 15006): accepts paused, half-open
 * capable sockets and hands each to `handle`; a handler failure closes that socket and is logged,
 * never thrown. `close()` stops accepting, lets live connections finish until the drain deadline,
 * then destroys the rest.
 */

export interface TcpListener extends ServerHandle {
  /** Live connections (accepted and not yet closed). */
  connections(): number;
}

export interface TcpListenerOptions {
  readonly factory: SocketFactory;
  readonly port: number;
  /** Component name in log lines (`outbound`, `inbound-plaintext`). */
  readonly name: string;
  readonly logger: Logger;
  readonly drainMs?: number | undefined;
}

export async function startTcpListener(options: TcpListenerOptions, handle: (socket: Socket) => Promise<void>): Promise<TcpListener> {
  const log = options.logger.child({ component: options.name });
  const drain = new Drain();
  const live = new Set<Socket>();
  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
    socket.on('error', () => {}); // reported by the relay or the access log
    if (drain.draining) return void socket.destroy();
    live.add(socket);
    const untrack = drain.track(socket);
    socket.once('close', () => {
      live.delete(socket);
      untrack();
    });
    handle(socket).catch((err: unknown) => {
      log.error({ code: errorCode(err), err: errorMessage(err) }, 'connection handling failed');
      socket.destroy();
    });
  });
  server.on('error', (err) => log.error({ code: errorCode(err), err: errorMessage(err) }, 'listener error'));
  await options.factory.listen(server, options.port);
  const bound = server.address();
  if (!bound || typeof bound === 'string') throw new Error(`${options.name} listener has no TCP address`);
  log.info({ address: bound.address, port: bound.port }, 'listening');

  const close = onceClose(async () => {
    const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
    const clean = await drain.drain(options.drainMs ?? Timeouts.drainMs);
    if (!clean) log.warn({ code: ErrorCode.CORE_DRAIN_TIMEOUT, connections: live.size }, 'drain deadline passed, closing remaining connections');
    for (const socket of live) socket.destroy();
    await stopped;
  });
  return { address: () => ({ address: bound.address, port: bound.port, family: bound.family }), close, connections: () => live.size };
}

/** The original destination of a captured connection; without REDIRECT, the address it reached. */
export function capturedDestination(socket: Socket): SocketAddr {
  try {
    const original = originalDestination(socket);
    return { ip: original.address, port: original.port };
  } catch {
    return { ip: unmapIpv4(socket.localAddress ?? ''), port: socket.localPort ?? 0 };
  }
}
