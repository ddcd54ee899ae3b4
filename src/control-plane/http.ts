import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { errorMessage } from '../core/errors.ts';
import { onceClose, type ServerHandle } from '../core/lifecycle.ts';
import type { Logger } from '../core/logger.ts';

/** A small HTTP listener for the monitoring and readiness ports: binds before it resolves, never throws at a client. */
export async function startHttp(
  host: string,
  port: number,
  logger: Logger,
  route: (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>,
): Promise<ServerHandle> {
  const server = createServer((req, res) => {
    req.on('error', () => {});
    res.on('error', () => {});
    const url = new URL(req.url ?? '/', 'http://localhost');
    void (async () => route(req, res, url))().catch((err: unknown) => {
      logger.error({ err: errorMessage(err), path: url.pathname }, 'request failed');
      if (!res.headersSent) sendText(res, 500, 'internal error\n');
      else res.destroy();
    });
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  const listening = once(server, 'listening');
  server.listen({ host, port });
  await listening;
  const bound = server.address() as AddressInfo;
  return {
    address: () => ({ address: bound.address, port: bound.port, family: bound.family }),
    close: onceClose(async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      setTimeout(() => server.closeAllConnections(), 1000).unref();
      await closed;
    }),
  };
}

export function sendText(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}
