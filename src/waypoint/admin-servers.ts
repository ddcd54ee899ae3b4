import { once } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { errorCode, errorMessage } from '../core/errors.ts';
import { onceClose, type Readiness, type ServerHandle } from '../core/lifecycle.ts';
import type { Logger } from '../core/logger.ts';
import { exposition, type MetricsRegistry } from '../core/metrics.ts';

/**
 * The waypoint's two side listeners, apart from the data path: 15020 `/stats/prometheus` (and
 * `/metrics`), and 15021 `/healthz/ready` (200 `ready`, or 500 naming the pending tasks).
 */

function text(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

async function listen(name: string, host: string | undefined, port: number, log: Logger, route: (path: string, method: string, res: ServerResponse, accept: string | undefined) => Promise<void> | void): Promise<ServerHandle> {
  const server = createServer((req, res) => {
    req.on('error', () => {});
    res.on('error', () => {});
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    void (async () => route(path, req.method ?? 'GET', res, req.headers.accept))().catch((err: unknown) => {
      log.error({ code: errorCode(err), err: errorMessage(err) }, `${name} request failed`);
      if (!res.headersSent) text(res, 500, 'internal error\n');
    });
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  server.listen(host === undefined ? { port } : { host, port });
  await once(server, 'listening');
  const bound = server.address() as AddressInfo;
  log.info({ address: bound.address, port: bound.port }, `${name} listening`);
  return {
    address: () => ({ address: bound.address, port: bound.port, family: bound.family }),
    close: onceClose(async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    }),
  };
}

export function startStatsServer(options: { host?: string | undefined; port: number; registry: MetricsRegistry; logger: Logger }): Promise<ServerHandle> {
  return listen('stats', options.host, options.port, options.logger, async (path, method, res, accept) => {
    if (path !== '/stats/prometheus' && path !== '/metrics') return text(res, 404, 'not found\n');
    if (method !== 'GET') return text(res, 405, 'method not allowed\n');
    // OpenMetrics when the scraper asks for it, else the classic text format (core/metrics.ts).
    const { contentType, body } = await exposition(options.registry, accept);
    text(res, 200, body, contentType);
  });
}

export function startReadinessServer(options: { host?: string | undefined; port: number; readiness: Readiness; logger: Logger }): Promise<ServerHandle> {
  return listen('readiness', options.host, options.port, options.logger, (path, method, res) => {
    if (path !== '/healthz/ready') return text(res, 404, 'not found\n');
    if (method !== 'GET') return text(res, 405, 'method not allowed\n');
    const report = options.readiness.report();
    return report.ready ? text(res, 200, 'ready') : text(res, 500, `not ready, pending: ${report.pending.join(', ')}`);
  });
}
