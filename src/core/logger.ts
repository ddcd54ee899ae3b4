import { pino, type DestinationStream, type Logger as PinoLogger, type LevelWithSilent } from 'pino';

export type Logger = PinoLogger;
export type LogLevel = LevelWithSilent;

export interface LoggerOptions {
  readonly level?: LogLevel;
  /** Where lines go; stdout by default. Tests pass a stream to read the lines back. */
  readonly destination?: NodeJS.WritableStream | DestinationStream;
}

/** The root logger of a process: JSON lines, ISO time, never a key or token (redacted by path). */
export function createLogger(options: LoggerOptions = {}): Logger {
  const config = {
    level: options.level ?? 'info',
    base: null,
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: ['key', 'privateKey', 'token', '*.key', '*.privateKey', '*.token'], censor: '[redacted]' },
    formatters: { level: (label: string) => ({ level: label }) },
  };
  return options.destination ? pino(config, options.destination) : pino(config);
}

/** A destination that writes lines in batches, and what `close()` flushes. */
export interface BufferedDestination {
  readonly destination: DestinationStream;
  /** Writes what is still buffered (call it before the process exits). */
  close(): void;
}

const BUFFERED_BYTES = 8192;

/**
 * Lines to `fd` written once 8 KiB are buffered, and at least every `flushMs` (Envoy writes its access log
 * on a flush interval too). The writes are synchronous and whole, so lines never interleave with the
 * unbuffered logger's on the same fd.
 */
export function bufferedDestination(fd: number, flushMs: number): BufferedDestination {
  const destination = pino.destination({ dest: fd, sync: true, minLength: BUFFERED_BYTES, periodicFlush: flushMs });
  return { destination, close: () => destination.flushSync() };
}

/** A logger that writes nothing, for code paths where no logger was injected. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

export function componentLogger(root: Logger, component: string): Logger {
  return root.child({ component });
}
