import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/core/logger.ts';

export interface CapturedLog {
  readonly logger: Logger;
  readonly records: Array<Record<string, unknown>>;
  /** The number of records so far, to wait only for later ones. */
  mark(): number;
  /** Resolves with the first record at or after `since` (written or to come) whose `code` matches. */
  waitForCode(code: string, since?: number): Promise<Record<string, unknown>>;
}

/** A real pino logger whose JSON lines are parsed back into records. */
export function captureLog(): CapturedLog {
  const records: Array<Record<string, unknown>> = [];
  const waiters: Array<{ code: string; resolve: (r: Record<string, unknown>) => void }> = [];
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      for (const line of String(chunk).split('\n')) {
        if (!line) continue;
        const record = JSON.parse(line) as Record<string, unknown>;
        records.push(record);
        for (const w of [...waiters]) {
          if (record.code === w.code) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(record);
          }
        }
      }
      callback();
    },
  });
  return {
    logger: createLogger({ level: 'debug', destination: sink }),
    records,
    mark: () => records.length,
    waitForCode(code, since = 0) {
      const found = records.slice(since).find((r) => r.code === code);
      if (found) return Promise.resolve(found);
      return new Promise((resolve) => waiters.push({ code, resolve }));
    },
  };
}
