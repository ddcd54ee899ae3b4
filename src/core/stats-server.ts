import type { ServerHandle } from './lifecycle.ts';
import { silentLogger, type Logger } from './logger.ts';
import { exposition, type MetricsRegistry } from './metrics.ts';
import { sendText, startHttpListener } from './http-listener.ts';

/**
 * The proxies' stats listener (ztunnel and the waypoint; reference ztunnel.md §7, port 15020): the Prometheus text at `/metrics`
 * and `/stats/prometheus`, on its own listener so a scrape never shares the data path or admin.
 */

export const STATS_PATHS: readonly string[] = ['/metrics', '/stats/prometheus'];

export interface StatsServerOptions {
  /** Omitted: every address (ztunnel binds the wildcard). */
  readonly host?: string;
  /** 15020 in ztunnel; 0 in tests. */
  readonly port: number;
  readonly registry: MetricsRegistry;
  readonly logger?: Logger;
  readonly closeDeadlineMs?: number;
}

export async function startStatsServer(options: StatsServerOptions): Promise<ServerHandle> {
  const log = (options.logger ?? silentLogger()).child({ component: 'stats' });
  return startHttpListener(
    {
      ...(options.host !== undefined ? { host: options.host } : {}),
      port: options.port,
      logger: log,
      name: 'stats',
      ...(options.closeDeadlineMs !== undefined ? { closeDeadlineMs: options.closeDeadlineMs } : {}),
    },
    async (req, res, url) => {
      if (!STATS_PATHS.includes(url.pathname)) return sendText(res, 404, 'not found\n');
      if (req.method !== 'GET' && req.method !== 'HEAD') return sendText(res, 405, 'method not allowed\n', { allow: 'GET' });
      const { contentType, body } = await exposition(options.registry, req.headers.accept);
      res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    },
  );
}
