import { EventEmitter } from 'node:events';
import { mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode } from '../core/error-codes.ts';
import { errorCode, errorMessage, MeshError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { closeFd } from '../sys/netns.ts';
import { SeqpacketServer, type SeqpacketConnection, type SeqpacketMessage } from '../sys/seqpacket.ts';
import { decodeAck, decodeZdsHello, encodeWorkloadRequest, type ZdsRequest, type ZdsWorkloadInfo } from '../workload-api/zds.ts';

/**
 * The node agent's side of ZDS (reference istio-ambient.md §1.11, §1.12): a SOCK_SEQPACKET server that
 * ztunnels connect to. Each connection says ZdsHello{V1}, gets the agent's cache replayed as a snapshot
 * (Add with the pod's netns fd, or Keep when the netns is unknown, then SnapshotSent), and afterwards
 * the agent's updates: Add to the newest connection only, Del broadcast to all. Every request waits for
 * exactly one WorkloadResponse; requests on one connection go through one queue, never two in flight.
 *
 * Each connection has one reader that is always receiving (it holds one libuv threadpool thread in
 * POLL_SLICE_MS slices): a response completes the request in flight, the end of the stream drops the
 * connection at once (liveness), and anything else (data with no request in flight, an fd, a truncated
 * packet) is a protocol error that closes the connection.
 */

export const DEFAULT_ZDS_TIMEOUTS: ZdsTimeouts = Object.freeze({
  /** How long a new connection has to send ZdsHello. */
  helloMs: 5000,
  /** How long a send may block before the connection is dropped. */
  writeMs: 5000,
  /** How long to wait for the ack of one request. */
  ackMs: 5000,
});

export interface ZdsTimeouts {
  readonly helloMs: number;
  readonly writeMs: number;
  readonly ackMs: number;
}

/** The accept loop takes at most this many connections per second (§1.11). */
const ACCEPTS_PER_SECOND = 5;

export class ZdsServerError extends MeshError {}

export interface ZdsPod extends ZdsWorkloadInfo {
  /** The Kubernetes pod's metadata.uid. */
  readonly uid: string;
  /**
   * An open fd of the pod's network namespace. The server takes ownership: it keeps it for snapshots and
   * closes it on removePod, on a later addPod of the same uid with another fd, or on close.
   */
  readonly netnsFd: number;
}

export interface ZdsServerEvents {
  /** A ztunnel said hello and was registered; its snapshot is queued. Argument: the connection count. */
  connected: [count: number];
  /** A connection's snapshot (through SnapshotSent) was acknowledged or failed. */
  snapshotSent: [error: Error | undefined];
  /** A connection was dropped (closed by ztunnel, write failure, protocol error). Argument: the count. */
  disconnected: [count: number];
}

export interface ZdsServer {
  readonly path: string;
  /** Registration and disconnection of ztunnels, for the agent's metrics and for tests. */
  readonly events: EventEmitter<ZdsServerEvents>;
  /**
   * Caches the pod with its netns and sends Add to the newest ztunnel. Resolves on its ACK; rejects with
   * ZDS_NO_ZTUNNEL, ZDS_NACK, ZDS_ACK_TIMEOUT, or the reason
   * the connection was dropped meanwhile (ZDS_CONNECTION_FAILED, ZDS_PROTOCOL_ERROR, CORE_CLOSED). The pod stays cached either way,
   * so the next ztunnel to connect gets it in its snapshot.
   */
  addPod(pod: ZdsPod): Promise<void>;
  /** Records a pod whose netns is unknown (cache rebuilt after an agent restart): snapshots send Keep{uid}. */
  keepPod(uid: string): void;
  /** Drops the pod from the cache (closing its fd) and broadcasts Del to every ztunnel; rejects if any fails. */
  removePod(uid: string): Promise<void>;
  /** Registered ztunnel connections (those that said hello). */
  connections(): number;
  /** The cached pod uids, for diagnostics. */
  pods(): string[];
  /** Closes the connections, the cached fds and the socket (removing its file). Idempotent. */
  close(): Promise<void>;
}

export interface ZdsServerOptions {
  /** The socket path (`/var/run/ztunnel/ztunnel.sock`); a stale file there is removed first. */
  readonly path: string;
  readonly logger: Logger;
  readonly timeouts?: Partial<ZdsTimeouts>;
}

function zdsError(code: ErrorCode, message: string, cause?: unknown): ZdsServerError {
  return new ZdsServerError(code, message, cause === undefined ? undefined : { cause });
}

/** A netns fd shared by the cache and queued Adds; closed when the last holder lets go. */
class NetnsRef {
  readonly fd: number;
  #holders = 1;

  constructor(fd: number) {
    this.fd = fd;
  }

  acquire(): NetnsRef {
    this.#holders++;
    return this;
  }

  release(logger: Logger): void {
    if (--this.#holders > 0) return;
    try {
      closeFd(this.fd);
    } catch (err) {
      logger.warn({ err, code: errorCode(err), fd: this.fd }, 'closing a pod netns fd failed');
    }
  }
}

interface CacheEntry {
  readonly uid: string;
  readonly info: ZdsWorkloadInfo | undefined;
  readonly netns: NetnsRef | undefined;
}

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(err: Error): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}

const TIMED_OUT = Symbol('timed out');

/** `promise`, or TIMED_OUT after `ms` (the timer is unref'd and cleared). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
    timer.unref();
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function describe(request: ZdsRequest): string {
  return request.kind === 'snapshotSent' ? 'SnapshotSent' : `${request.kind} ${request.uid}`;
}

/** One ztunnel: its reader, its request queue and the request in flight. */
class ZtunnelConnection {
  readonly #conn: SeqpacketConnection;
  readonly #timeouts: ZdsTimeouts;
  readonly #onDrop: (c: ZtunnelConnection) => void;
  readonly logger: Logger;
  readonly #helloReceived = deferred<void>();
  #awaitingHello = true;
  /** The request sent and not yet answered (it stays after its caller timed out, until an answer arrives). */
  #inFlight: Deferred<string> | undefined;
  #tail: Promise<unknown> = Promise.resolve();
  #dropped: Error | undefined;

  constructor(conn: SeqpacketConnection, timeouts: ZdsTimeouts, logger: Logger, onDrop: (c: ZtunnelConnection) => void) {
    this.#conn = conn;
    this.#timeouts = timeouts;
    this.logger = logger;
    this.#onDrop = onDrop;
    void this.#read();
  }

  get dropped(): boolean {
    return this.#dropped !== undefined;
  }

  /** Resolves once a valid ZdsHello arrived; rejects (after dropping the connection) otherwise. */
  async hello(): Promise<void> {
    const result = await within(this.#helloReceived.promise, this.#timeouts.helloMs);
    if (result === TIMED_OUT) {
      const err = zdsError(ErrorCode.ZDS_BAD_HELLO, `no ZdsHello within ${this.#timeouts.helloMs} ms`);
      this.drop(err);
      throw err;
    }
  }

  /** Queues a request; resolves on its ACK. `netns` (an acquired ref) is released once sent. */
  request(request: ZdsRequest, netns?: NetnsRef): Promise<void> {
    const run = this.#tail.then(async () => {
      try {
        return await this.#run(request, netns?.fd ?? -1);
      } finally {
        netns?.release(this.logger);
      }
    });
    this.#tail = run.catch(() => {});
    return run;
  }

  async #run(request: ZdsRequest, fd: number): Promise<void> {
    const what = describe(request);
    if (this.#dropped) throw this.#closedError(what);
    const { ackMs, writeMs } = this.#timeouts;
    if (this.#inFlight) {
      // An earlier request timed out and its answer is still due: never two in flight.
      const previous = await within(this.#inFlight.promise.catch(() => ''), ackMs);
      if (previous === TIMED_OUT) {
        throw zdsError(ErrorCode.ZDS_ACK_TIMEOUT, `${what}: not sent, ztunnel has still not answered the previous request after ${ackMs} ms`);
      }
      if (this.#dropped) throw this.#closedError(what);
    }
    const answer = deferred<string>();
    this.#inFlight = answer;
    let sent: unknown;
    try {
      sent = await within(this.#conn.send(encodeWorkloadRequest(request), fd), writeMs);
    } catch (err) {
      const failure = zdsError(ErrorCode.ZDS_CONNECTION_FAILED, `${what}: write to ztunnel failed: ${errorMessage(err)}`, err);
      this.drop(failure);
      throw failure;
    }
    if (sent === TIMED_OUT) {
      const failure = zdsError(ErrorCode.ZDS_CONNECTION_FAILED, `${what}: write to ztunnel blocked for ${writeMs} ms`);
      this.drop(failure);
      throw failure;
    }
    const ack = await within(answer.promise, ackMs);
    if (ack === TIMED_OUT) {
      throw zdsError(ErrorCode.ZDS_ACK_TIMEOUT, `${what}: no answer from ztunnel within ${ackMs} ms`);
    }
    if (ack !== '') throw zdsError(ErrorCode.ZDS_NACK, `${what}: ztunnel refused it: ${ack}`);
  }

  #closedError(what: string): ZdsServerError {
    return zdsError(ErrorCode.ZDS_CONNECTION_FAILED, `${what}: the ztunnel connection is closed (${errorMessage(this.#dropped)})`, this.#dropped);
  }

  async #read(): Promise<void> {
    for (;;) {
      let message: SeqpacketMessage | null;
      try {
        message = await this.#conn.recv();
      } catch (err) {
        this.drop(zdsError(ErrorCode.ZDS_CONNECTION_FAILED, `read from ztunnel failed: ${errorMessage(err)}`, err));
        return;
      }
      if (this.#dropped) {
        if (message && message.fd >= 0) closeFd(message.fd);
        return;
      }
      if (message === null) {
        this.drop(zdsError(ErrorCode.ZDS_CONNECTION_FAILED, 'ztunnel closed the connection'));
        return;
      }
      const violation = this.#receive(message);
      if (violation) {
        const err = zdsError(this.#awaitingHello ? ErrorCode.ZDS_BAD_HELLO : ErrorCode.ZDS_PROTOCOL_ERROR, violation);
        this.drop(err);
        return;
      }
    }
  }

  /** Handles one packet; returns the protocol violation, if any. */
  #receive(message: SeqpacketMessage): string | undefined {
    if (message.fd >= 0) {
      closeFd(message.fd);
      return 'ztunnel sent a file descriptor';
    }
    if (message.truncated) return 'ztunnel sent a message larger than 1024 bytes';
    if (this.#awaitingHello) {
      const version = decodeZdsHello(message.data);
      if (!version.ok) return version.errors.join('; ');
      if (version.value !== 'V1') return `ZdsHello version ${version.value}, expected V1`;
      this.#awaitingHello = false;
      this.#helloReceived.resolve();
      return undefined;
    }
    const answer = this.#inFlight;
    if (!answer) return 'ztunnel sent a message while no request was in flight';
    const ack = decodeAck(message.data);
    if (!ack.ok) return ack.errors.join('; ');
    this.#inFlight = undefined;
    answer.resolve(ack.value);
    return undefined;
  }

  /** Closes the connection and fails what waits on it; idempotent. */
  drop(reason: Error): void {
    if (this.#dropped) return;
    this.#dropped = reason;
    this.#helloReceived.reject(reason);
    this.#inFlight?.reject(reason);
    this.#inFlight = undefined;
    this.#conn.close().catch((err: unknown) => this.logger.debug({ err }, 'closing the ztunnel connection failed'));
    this.#onDrop(this);
  }

  /** Drops the connection and waits for its socket to be closed. */
  async close(reason: Error): Promise<void> {
    this.drop(reason);
    await this.#conn.close().catch(() => {});
  }
}

/** Listens at `options.path` and starts accepting ztunnels. */
export async function startZdsServer(options: ZdsServerOptions): Promise<ZdsServer> {
  const logger = options.logger.child({ component: 'zds-server' });
  const timeouts: ZdsTimeouts = Object.freeze({ ...DEFAULT_ZDS_TIMEOUTS, ...options.timeouts });
  mkdirSync(dirname(options.path), { recursive: true });
  rmSync(options.path, { force: true });
  const server = SeqpacketServer.listen(options.path);
  const events = new EventEmitter<ZdsServerEvents>();
  const cache = new Map<string, CacheEntry>();
  /** Registered connections, oldest first. */
  const conns: ZtunnelConnection[] = [];
  const pending = new Set<ZtunnelConnection>();
  let closing: Promise<void> | undefined;
  let nextId = 0;

  const onDrop = (conn: ZtunnelConnection): void => {
    pending.delete(conn);
    const index = conns.indexOf(conn);
    if (index < 0) return;
    conns.splice(index, 1);
    conn.logger.info({ connections: conns.length }, 'ztunnel disconnected');
    events.emit('disconnected', conns.length);
  };

  const sendSnapshot = async (conn: ZtunnelConnection, entries: readonly CacheEntry[]): Promise<void> => {
    const sends: Array<Promise<void>> = [];
    for (const entry of entries) {
      const request: ZdsRequest =
        entry.netns && entry.info ? { kind: 'add', uid: entry.uid, workloadInfo: entry.info } : { kind: 'keep', uid: entry.uid };
      sends.push(
        conn.request(request, entry.netns?.acquire()).catch((err: unknown) => {
          conn.logger.warn({ err, code: errorCode(err), uid: entry.uid }, 'snapshot entry failed');
        }),
      );
    }
    await Promise.all(sends);
    await conn.request({ kind: 'snapshotSent' });
  };

  const handle = async (socket: SeqpacketConnection): Promise<void> => {
    const id = ++nextId;
    const conn = new ZtunnelConnection(socket, timeouts, logger.child({ conn: id }), onDrop);
    pending.add(conn);
    try {
      await conn.hello();
    } catch (err) {
      conn.logger.warn({ err, code: errorCode(err) }, 'ztunnel connection closed before a valid ZdsHello');
      return;
    }
    pending.delete(conn);
    if (conn.dropped) return;
    if (closing) {
      await conn.close(zdsError(ErrorCode.CORE_CLOSED, 'the ZDS server is closing'));
      return;
    }
    conns.push(conn);
    conn.logger.info({ connections: conns.length, pods: cache.size }, 'ztunnel connected, sending snapshot');
    // Queued synchronously with the registration, so any addPod from now on follows the snapshot.
    const snapshot = sendSnapshot(conn, [...cache.values()]);
    events.emit('connected', conns.length);
    try {
      await snapshot;
      conn.logger.info('snapshot acknowledged');
      events.emit('snapshotSent', undefined);
    } catch (err) {
      conn.logger.warn({ err, code: errorCode(err) }, 'snapshot failed');
      events.emit('snapshotSent', err instanceof Error ? err : new Error(String(err)));
    }
  };

  // Aborted by close(), so closing never waits out (unref'd) rate-limit pauses.
  const stop = new AbortController();
  const pause = (ms: number): Promise<void> => sleep(ms, undefined, { ref: false, signal: stop.signal }).catch(() => {});
  const acceptLoop = async (): Promise<void> => {
    let last = -Infinity;
    while (!closing) {
      const wait = last + 1000 / ACCEPTS_PER_SECOND - performance.now();
      if (wait > 0) await pause(wait);
      if (closing) return;
      let socket: SeqpacketConnection;
      try {
        socket = await server.accept();
      } catch (err) {
        if (closing) return;
        logger.error({ err, code: errorCode(err) }, 'accepting a ztunnel connection failed');
        await pause(100);
        continue;
      }
      last = performance.now();
      if (closing) {
        await socket.close().catch(() => {});
        return;
      }
      void handle(socket);
    }
  };
  const accepting = acceptLoop();
  logger.info({ path: options.path }, 'ZDS server listening');

  const remember = (entry: CacheEntry): void => {
    const previous = cache.get(entry.uid);
    cache.set(entry.uid, entry);
    if (previous?.netns && previous.netns !== entry.netns) previous.netns.release(logger);
  };

  return {
    path: options.path,
    events,

    async addPod(pod) {
      if (closing) {
        closeFd(pod.netnsFd);
        throw zdsError(ErrorCode.CORE_CLOSED, `add ${pod.uid}: the ZDS server is closed`);
      }
      const info: ZdsWorkloadInfo = Object.freeze({ name: pod.name, namespace: pod.namespace, serviceAccount: pod.serviceAccount });
      const current = cache.get(pod.uid);
      const netns = current?.netns?.fd === pod.netnsFd ? current.netns : new NetnsRef(pod.netnsFd);
      remember({ uid: pod.uid, info, netns });
      const newest = conns.at(-1);
      if (!newest) throw zdsError(ErrorCode.ZDS_NO_ZTUNNEL, `add ${pod.uid}: no ztunnel is connected`);
      await newest.request({ kind: 'add', uid: pod.uid, workloadInfo: info }, netns.acquire());
    },

    keepPod(uid) {
      if (closing || cache.get(uid)?.netns) return;
      remember({ uid, info: undefined, netns: undefined });
    },

    async removePod(uid) {
      const entry = cache.get(uid);
      cache.delete(uid);
      entry?.netns?.release(logger);
      const results = await Promise.allSettled(conns.map((conn) => conn.request({ kind: 'del', uid })));
      const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
      if (failures.length === 1) throw failures[0];
      if (failures.length > 1) throw new AggregateError(failures, `del ${uid}: ${failures.length} ztunnels failed`);
    },

    connections: () => conns.length,
    pods: () => [...cache.keys()],

    close() {
      return (closing ??= (async () => {
        const reason = zdsError(ErrorCode.CORE_CLOSED, 'the ZDS server is closing');
        stop.abort();
        await server.close().catch((err: unknown) => logger.warn({ err }, 'closing the ZDS socket failed'));
        await accepting;
        await Promise.all([...conns, ...pending].map((conn) => conn.close(reason)));
        for (const entry of cache.values()) entry.netns?.release(logger);
        cache.clear();
        logger.info('ZDS server closed');
      })());
    },
  };
}
