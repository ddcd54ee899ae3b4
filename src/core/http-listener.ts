import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ErrorCode } from './error-codes.ts';
import { errorCode, errorMessage } from './errors.ts';
import { onceClose, type ServerHandle } from './lifecycle.ts';
import type { Logger } from './logger.ts';

/** A request handler for one of the small HTTP listeners (admin, stats, readiness); `url` is already parsed. */
export type HttpRoute = (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>;

export interface HttpListenerOptions {
  /** Omitted: every address (node's default, `::` or `0.0.0.0`). */
  readonly host?: string;
  readonly port: number;
  readonly logger: Logger;
  /** Name in log lines ('admin', 'stats', 'readiness'). */
  readonly name: string;
  /** How long `close()` lets in-flight responses finish before cutting their sockets. */
  readonly closeDeadlineMs?: number;
}

const DEFAULT_CLOSE_DEADLINE_MS = 1000;

/**
 * A small node:http listener shared by the admin, stats and readiness servers: binds before it
 * resolves, answers 500 (and logs) when a route throws, and closes gracefully and idempotently.
 */
export async function startHttpListener(options: HttpListenerOptions, route: HttpRoute): Promise<ServerHandle> {
  const log = options.logger;
  const inFlight = new Set<ServerResponse>();
  const server: Server = createServer((req, res) => {
    inFlight.add(res);
    res.once('close', () => inFlight.delete(res));
    req.on('error', (err) => log.debug({ code: errorCode(err), err: errorMessage(err) }, 'request error'));
    res.on('error', (err) => log.debug({ code: errorCode(err), err: errorMessage(err) }, 'response error'));
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      return sendText(res, 400, 'malformed request target\n');
    }
    void (async () => route(req, res, url))().catch((err: unknown) => {
      log.error({ code: ErrorCode.ADMIN_HANDLER_FAILED, cause: errorCode(err), err: errorMessage(err), method: req.method, path: req.url }, `${options.name} request failed`);
      if (!res.headersSent) sendText(res, 500, `internal error: ${errorMessage(err)}\n`);
      else res.destroy();
    });
  });
  server.on('clientError', (err, socket) => {
    log.debug({ code: errorCode(err), err: errorMessage(err) }, 'bad HTTP request');
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });

  const listening = once(server, 'listening');
  server.listen(options.host === undefined ? { port: options.port } : { host: options.host, port: options.port });
  await listening; // a bind error rejects here (once() rejects on 'error')
  server.on('error', (err) => log.error({ code: errorCode(err), err: errorMessage(err) }, `${options.name} listener error`));
  const bound = server.address() as AddressInfo;
  log.info({ address: bound.address, port: bound.port }, `${options.name} listening`);

  const close = onceClose(async () => {
    const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    if (inFlight.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, options.closeDeadlineMs ?? DEFAULT_CLOSE_DEADLINE_MS);
        timer.unref();
      });
      await Promise.race([deadline, Promise.all([...inFlight].map((res) => once(res, 'close')))]);
      clearTimeout(timer);
    }
    server.closeAllConnections();
    await stopped;
  });

  return {
    address: () => ({ address: bound.address, port: bound.port, family: bound.family }),
    close,
  };
}

export function sendText(res: ServerResponse, status: number, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), ...extra });
  res.end(body);
}

