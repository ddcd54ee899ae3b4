import { rmSync } from 'node:fs';
import { ErrorCode } from '../core/error-codes.ts';
import { call, loadAddon, Ready, SysError, toSysError } from './addon.ts';

/**
 * SOCK_SEQPACKET unix sockets with SCM_RIGHTS fd passing: the ZDS transport (one message per packet,
 * at most one fd per message). Node has no such socket, so the fds are non-blocking and raw: the
 * `seqpacket*` functions never block, and the classes wait for readiness with `pollReadable`, which
 * runs poll(2) on the libuv threadpool. Each wait holds a threadpool thread for at most POLL_SLICE_MS.
 */

/** ZDS's receive buffer (reference/ztunnel.md §1.3). */
export const DEFAULT_MAX_BYTES = 1024;
/** The longest single poll(2) on the threadpool; waits longer than this loop. */
const POLL_SLICE_MS = 1000;
const DEFAULT_BACKLOG = 16;

export interface SeqpacketMessage {
  /** The message's bytes (at most maxBytes of them). */
  readonly data: Buffer;
  /** The fd passed with SCM_RIGHTS (close-on-exec, now owned by the receiver), or -1. */
  readonly fd: number;
  /** The message or its control data did not fit (MSG_TRUNC / MSG_CTRUNC); any fd it carried was closed. */
  readonly truncated: boolean;
}

function seqpacketCall<T>(what: string, fn: () => T): T {
  return call(ErrorCode.SYS_SEQPACKET_FAILED, what, fn);
}

/** A connected, non-blocking SEQPACKET socket's fd; a full backlog at the listener throws errno EAGAIN. */
export function seqpacketConnect(path: string): number {
  const native = loadAddon();
  return seqpacketCall(`connect to ${path}`, () => native.seqpacketConnect(path));
}

/** A listening, non-blocking SEQPACKET socket's fd bound at `path` (which must not exist). */
export function seqpacketListen(path: string, backlog = DEFAULT_BACKLOG): number {
  const native = loadAddon();
  return seqpacketCall(`listen on ${path}`, () => native.seqpacketListen(path, backlog));
}

/** An accepted connection's fd, or null when none is pending. */
export function seqpacketAccept(fd: number): number | null {
  const native = loadAddon();
  return seqpacketCall('accept', () => native.seqpacketAccept(fd));
}

/** Sends one message (with `passFd` via SCM_RIGHTS unless -1); false when it would block. */
export function seqpacketSend(fd: number, data: Uint8Array, passFd = -1): boolean {
  const native = loadAddon();
  return seqpacketCall('send', () => native.seqpacketSend(fd, data, passFd));
}

/** Receives one message; null when none is waiting, `'end'` when the peer has closed. */
export function seqpacketRecv(fd: number, maxBytes = DEFAULT_MAX_BYTES): SeqpacketMessage | 'end' | null {
  const native = loadAddon();
  const message = seqpacketCall('recv', () => native.seqpacketRecv(fd, maxBytes));
  if (message === null) return null;
  if (message.end) return 'end';
  return { data: message.data, fd: message.fd, truncated: message.truncated };
}

async function pollFor(fd: number, events: number, timeoutMs: number): Promise<boolean> {
  const native = loadAddon();
  try {
    return (await native.pollFd(fd, events, timeoutMs)) !== 0;
  } catch (err) {
    throw toSysError(ErrorCode.SYS_SEQPACKET_FAILED, 'poll', err);
  }
}

/** True when reading `fd` will not block (data, a pending connection, hang-up or error); false on timeout. */
export function pollReadable(fd: number, timeoutMs: number): Promise<boolean> {
  return pollFor(fd, Ready.READABLE, timeoutMs);
}

/** True when writing `fd` will not block (or it has failed); false on timeout. */
export function pollWritable(fd: number, timeoutMs: number): Promise<boolean> {
  return pollFor(fd, Ready.WRITABLE, timeoutMs);
}

/**
 * Owns a raw fd waited on through the threadpool. close() shuts the socket down first, which wakes any
 * poll in flight, waits for those polls, and only then closes the fd, so no poll can see a reused number.
 */
class PolledFd {
  readonly #fd: number;
  readonly #polls = new Set<Promise<boolean>>();
  #closing: Promise<void> | undefined;

  constructor(fd: number) {
    this.#fd = fd;
  }

  get fd(): number {
    return this.#fd;
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  check(what: string): void {
    if (this.#closing) throw new SysError(ErrorCode.CORE_CLOSED, `${what}: the socket is closed`);
  }

  async wait(events: number): Promise<void> {
    const poll = pollFor(this.#fd, events, POLL_SLICE_MS);
    this.#polls.add(poll);
    try {
      await poll;
    } finally {
      this.#polls.delete(poll);
    }
  }

  close(): Promise<void> {
    return (this.#closing ??= (async () => {
      const native = loadAddon();
      try {
        native.shutdownFd(this.#fd);
      } catch {
        // ENOTCONN when the peer is gone: nothing to wake.
      }
      await Promise.allSettled([...this.#polls]);
      seqpacketCall('close', () => native.closeFd(this.#fd));
    })());
  }
}

/** One end of a SEQPACKET connection. Messages keep their boundaries; each may carry one fd. */
export class SeqpacketConnection {
  readonly #socket: PolledFd;

  /** Takes ownership of a connected SEQPACKET fd (non-blocking, as seqpacketConnect/seqpacketAccept make them). */
  constructor(fd: number) {
    this.#socket = new PolledFd(fd);
  }

  static connect(path: string): SeqpacketConnection {
    return new SeqpacketConnection(seqpacketConnect(path));
  }

  get fd(): number {
    return this.#socket.fd;
  }

  /** Sends one message, with `passFd` (still owned by the caller) via SCM_RIGHTS unless -1. */
  async send(data: Uint8Array, passFd = -1): Promise<void> {
    for (;;) {
      this.#socket.check('send');
      if (seqpacketSend(this.#socket.fd, data, passFd)) return;
      await this.#socket.wait(Ready.WRITABLE);
    }
  }

  /**
   * The next message, or null once the peer has closed. A received fd belongs to the caller.
   * Rejects with CORE_CLOSED when this end is closed while waiting. One recv at a time.
   */
  async recv(maxBytes = DEFAULT_MAX_BYTES): Promise<SeqpacketMessage | null> {
    for (;;) {
      this.#socket.check('recv');
      const message = seqpacketRecv(this.#socket.fd, maxBytes);
      if (message === 'end') return null;
      if (message !== null) return message;
      await this.#socket.wait(Ready.READABLE);
    }
  }

  /** Idempotent; the peer sees the end of the stream. */
  close(): Promise<void> {
    return this.#socket.close();
  }
}

/** A SEQPACKET listener at a filesystem path, removed again on close. */
export class SeqpacketServer {
  readonly #socket: PolledFd;
  readonly #path: string;

  private constructor(fd: number, path: string) {
    this.#socket = new PolledFd(fd);
    this.#path = path;
  }

  /** Listens at `path`, which must not exist (remove a stale socket first). */
  static listen(path: string, backlog = DEFAULT_BACKLOG): SeqpacketServer {
    return new SeqpacketServer(seqpacketListen(path, backlog), path);
  }

  get path(): string {
    return this.#path;
  }

  /** The next connection; rejects with CORE_CLOSED when the server is closed while waiting. */
  async accept(): Promise<SeqpacketConnection> {
    for (;;) {
      this.#socket.check('accept');
      const fd = seqpacketAccept(this.#socket.fd);
      if (fd !== null) return new SeqpacketConnection(fd);
      await this.#socket.wait(Ready.READABLE);
    }
  }

  /** Stops listening and removes the path; accepted connections are not affected. Idempotent. */
  async close(): Promise<void> {
    const first = !this.#socket.closed;
    await this.#socket.close();
    if (first) rmSync(this.#path, { force: true });
  }
}
