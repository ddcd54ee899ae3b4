import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { MeshError } from '../core/errors.ts';
import { ErrorCode } from '../core/error-codes.ts';

/**
 * The native addon (src/sys/native/ambient_sys.c, built by `make native` into build/ambient_sys.node),
 * loaded once for the three files that face it: socket-options.ts, netns.ts and seqpacket.ts.
 * Native failures throw an Error whose `code` is the errno name; `call` turns them into a SysError.
 */
export interface Addon {
  originalDestination(fd: number): { address: string; port: number; family: 'IPv4' | 'IPv6' };
  setMark(fd: number, mark: number): void;
  getMark(fd: number): number;
  setTransparent(fd: number): void;
  tcpSocket(family: number, mark: number, transparent: number): number;
  openNetns(path: string): number;
  closeFd(fd: number): void;
  shutdownFd(fd: number): void;
  tcpSocketIn(netnsFd: number, family: number, mark: number, transparent: number): number;
  tcpListenIn(netnsFd: number, family: number, host: string, port: number, backlog: number, reusePort: number, transparent: number): number;
  seqpacketConnect(path: string): number;
  seqpacketListen(path: string, backlog: number): number;
  seqpacketAccept(fd: number): number | null;
  seqpacketSend(fd: number, data: Uint8Array, passFd: number): boolean;
  seqpacketRecv(fd: number, maxBytes: number): { data: Buffer; fd: number; truncated: boolean; end: boolean } | null;
  /** Resolves with READY_* bits (0 on timeout); runs poll(2) on the libuv threadpool. */
  pollFd(fd: number, events: number, timeoutMs: number): Promise<number>;
}

/** pollFd's event and result bits (mirrors READY_* in ambient_sys.c). */
export const Ready = {
  READABLE: 1,
  WRITABLE: 2,
  HANGUP: 4,
  ERROR: 8,
  INVALID: 16,
} as const;

/** A failed system call; `errno` is the system's code (`EPERM`, `ENOENT`, …). */
export class SysError extends MeshError {
  readonly errno: string | undefined;

  constructor(code: ErrorCode, message: string, errno?: string, cause?: unknown) {
    super(code, message, cause === undefined ? {} : { cause });
    this.errno = errno;
  }
}

let addon: Addon | undefined;

export function loadAddon(): Addon {
  if (addon) return addon;
  for (let dir = import.meta.dirname; dir !== dirname(dir); dir = dirname(dir)) {
    const path = join(dir, 'build', 'ambient_sys.node');
    if (existsSync(path)) return (addon = createRequire(import.meta.url)(path) as Addon);
  }
  throw new SysError(ErrorCode.SYS_ADDON_MISSING, 'native addon build/ambient_sys.node not found; run `make native`');
}

/** Runs a native call, turning its errno-coded Error into a SysError with `code` and the errno kept. */
export function call<T>(code: ErrorCode, what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw toSysError(code, what, err);
  }
}

export function toSysError(code: ErrorCode, what: string, err: unknown): SysError {
  if (err instanceof SysError) return err;
  const errno = (err as { code?: string }).code;
  return new SysError(code, `${what}: ${(err as Error).message}`, errno, err);
}
