import type { Http2Session } from 'node:http2';
import { ErrorCode } from '../core/error-codes.ts';
import type { Logger } from '../core/logger.ts';

/** PINGs a session every interval; a PING unanswered past the timeout drops the connection. */
export function keepalive(session: Http2Session, intervalMs: number, timeoutMs: number, log: Logger): void {
  let outstandingSince = 0;
  const timer = setInterval(() => {
    if (session.destroyed || session.closed) return clearInterval(timer);
    if (outstandingSince && Date.now() - outstandingSince > timeoutMs) {
      log.info({ code: ErrorCode.HBONE_KEEPALIVE_TIMEOUT }, 'keepalive PING unanswered, dropping connection');
      clearInterval(timer);
      session.destroy();
      return;
    }
    if (outstandingSince) return;
    outstandingSince = Date.now();
    const sent = session.ping((err) => {
      if (!err) outstandingSince = 0;
    });
    if (!sent) outstandingSince = 0;
  }, intervalMs);
  timer.unref();
  session.once('close', () => clearInterval(timer));
}
