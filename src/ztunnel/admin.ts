import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { ErrorCode } from '../core/error-codes.ts';
import { errorCode, errorMessage, MeshError } from '../core/errors.ts';
import type { ServerHandle } from '../core/lifecycle.ts';
import type { Logger } from '../core/logger.ts';
import { sendText, startHttpListener, type HttpRoute } from '../core/http-listener.ts';

/**
 * ztunnel's admin listener (reference ztunnel.md §7, port 15000): `/config_dump`, `/logging`,
 * `/quitquitquit` and an index. Loopback only: it can change log levels and stop the process.
 */

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = `${JSON.stringify(value, null, 2)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** ztunnel's level names (§7) and the pino level each sets. */
const LEVELS = { error: 'error', warn: 'warn', info: 'info', debug: 'debug', trace: 'trace', off: 'silent' } as const;
type AdminLevel = keyof typeof LEVELS;
const VALID_LEVELS = Object.keys(LEVELS) as AdminLevel[];

function isAdminLevel(value: string): value is AdminLevel {
  return Object.hasOwn(LEVELS, value);
}

/** The pino level shown with ztunnel's name ('silent' → 'off'; 'fatal' shown as is). */
function adminLevelName(level: string): string {
  return level === 'silent' ? 'off' : level;
}

function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || /^::ffff:127\./i.test(host);
  return false;
}

export interface AdminServerOptions {
  /** Loopback only (ztunnel binds 127.0.0.1 and ::1); 127.0.0.1 when omitted. */
  readonly host?: string;
  /** 15000 in ztunnel; 0 in tests. */
  readonly port: number;
  /** The JSON body of `/config_dump` (workloads, services, policies, config …); may be async. */
  readonly configDump: () => unknown;
  /** The process's root logger: `/logging` reads and sets its level, and it logs admin failures. */
  readonly logger: Logger;
  /** Called once, after the first `POST /quitquitquit` has been answered: starts the graceful shutdown. */
  readonly onQuit: () => void;
  readonly closeDeadlineMs?: number;
}

export const ADMIN_INDEX_HTML = `<!DOCTYPE html>
<html><head><title>ztunnel admin</title></head><body>
<ul>
<li><a href="/config_dump">/config_dump</a>: the workloads, services, policies and configuration</li>
<li>/logging (POST, <code>?level=error|warn|info|debug|trace|off</code>, <code>?reset</code>): the log level</li>
<li>/quitquitquit (POST): drain and shut down</li>
</ul>
</body></html>
`;

export async function startAdminServer(options: AdminServerOptions): Promise<ServerHandle> {
  const host = options.host ?? '127.0.0.1';
  if (!isLoopback(host)) {
    throw new MeshError(ErrorCode.CONFIG_INVALID, `admin host "${host}" is not a loopback address: the admin listener must stay local`);
  }
  const root = options.logger;
  const log = root.child({ component: 'admin' });
  const defaultLevel = root.level;
  let quitting = false;

  const route: HttpRoute = async (req, res, url) => {
    switch (url.pathname) {
      case '/':
        if (req.method !== 'GET' && req.method !== 'HEAD') return sendText(res, 405, 'method not allowed\n', { allow: 'GET' });
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(ADMIN_INDEX_HTML) });
        return void res.end(ADMIN_INDEX_HTML);
      case '/config_dump':
        return sendJson(res, 200, await options.configDump());
      case '/logging':
        return logging(req, res, url);
      case '/quitquitquit':
        if (req.method !== 'POST') return sendText(res, 405, 'method not allowed\n', { allow: 'POST' });
        res.once('finish', () => {
          if (quitting) return;
          quitting = true;
          log.info('shutdown requested through /quitquitquit');
          try {
            options.onQuit();
          } catch (err) {
            log.error({ code: errorCode(err), err: errorMessage(err) }, 'shutdown callback failed');
          }
        });
        return sendText(res, 200, 'shutdown now\n');
      default:
        return sendText(res, 404, 'not found\n');
    }
  };

  function logging(req: IncomingMessage, res: ServerResponse, url: URL): void {
    if (req.method !== 'GET' && req.method !== 'POST') return sendText(res, 405, 'method not allowed\n', { allow: 'GET, POST' });
    const current = (): string => `current log level is ${adminLevelName(root.level)}\n`;
    if (req.method === 'GET') return sendText(res, 200, current());
    if (url.searchParams.has('reset')) {
      root.level = defaultLevel;
      log.info({ level: defaultLevel }, 'log level reset through admin');
      return sendText(res, 200, current());
    }
    const requested = url.searchParams.get('level');
    if (requested === null) return sendText(res, 200, current());
    const level = requested.trim().toLowerCase();
    if (!isAdminLevel(level)) {
      return sendText(res, 400, `invalid level "${requested}": valid levels are ${VALID_LEVELS.join(', ')}\n`);
    }
    root.level = LEVELS[level];
    log.warn({ level }, 'log level changed through admin');
    return sendText(res, 200, current());
  }

  return startHttpListener(
    { host, port: options.port, logger: log, name: 'admin', ...(options.closeDeadlineMs !== undefined ? { closeDeadlineMs: options.closeDeadlineMs } : {}) },
    route,
  );
}
