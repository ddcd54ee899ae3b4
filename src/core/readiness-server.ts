import type { Readiness, ServerHandle } from './lifecycle.ts';
import { silentLogger, type Logger } from './logger.ts';
import { sendText, startHttpListener } from './http-listener.ts';

/**
 * The proxies' readiness listener (ztunnel and the waypoint; reference ztunnel.md §7, port 15021): `GET /healthz/ready` answers
 * 200 `ready` once no readiness task is pending, else 500 `not ready, pending: <tasks>`.
 */

export const READINESS_PATH = '/healthz/ready';

export interface ReadinessServerOptions {
  /** Omitted: every address (ztunnel binds the wildcard). */
  readonly host?: string;
  /** 15021 in ztunnel; 0 in tests. */
  readonly port: number;
  readonly readiness: Readiness;
  readonly logger?: Logger;
  readonly closeDeadlineMs?: number;
}

/** The body and status of one readiness probe (pure; the pending tasks in sorted order). */
export function readinessResponse(readiness: Readiness): { readonly status: 200 | 500; readonly body: string } {
  const report = readiness.report();
  return report.ready ? { status: 200, body: 'ready' } : { status: 500, body: `not ready, pending: ${report.pending.join(', ')}` };
}

export async function startReadinessServer(options: ReadinessServerOptions): Promise<ServerHandle> {
  const log = (options.logger ?? silentLogger()).child({ component: 'readiness' });
  return startHttpListener(
    {
      ...(options.host !== undefined ? { host: options.host } : {}),
      port: options.port,
      logger: log,
      name: 'readiness',
      ...(options.closeDeadlineMs !== undefined ? { closeDeadlineMs: options.closeDeadlineMs } : {}),
    },
    (req, res, url) => {
      if (url.pathname !== READINESS_PATH) return sendText(res, 404, 'not found\n');
      if (req.method !== 'GET') return sendText(res, 405, 'method not allowed\n', { allow: 'GET' });
      const { status, body } = readinessResponse(options.readiness);
      return sendText(res, status, body);
    },
  );
}
