import { Agent, type ClientRequestArgs } from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * The waypoint's HTTP/1.1 upstream connections, kept alive and reused per endpoint as Envoy's HTTP/1.1
 * connection pool does. Each connection is one HBONE CONNECT stream (opened by the caller's `open`)
 * with node's HTTP/1.1 client on it; node's `http.Agent` keeps the idle list and hands a connection back
 * only once its response has fully ended and neither side said `Connection: close`. On top of it:
 *
 * - the pool key is the caller's (endpoint, expected identity, client address): the destination ztunnel
 *   takes the client's address from the tunnel's `Forwarded` header, so connections are not shared
 *   across clients;
 * - `maxRequestsPerConnection` (DestinationRule `http.maxRequestsPerConnection`): a connection that has
 *   carried that many requests is closed instead of going back to the idle list;
 * - `maxIdle` (the cluster's `maxConnections`): no more idle connections kept per key than that;
 * - an idle timeout, and an idle connection whose tunnel ended (the upstream closed it) is dropped at
 *   once rather than handed to the next request.
 */

/** What a request tells the pool, besides where to connect. */
export interface Http1PoolLimits {
  /** Requests a connection carries before it is closed; 0 or undefined: no limit. */
  readonly maxRequestsPerConnection?: number | undefined;
  /** Idle connections kept per key at most; undefined: no limit of our own (node's 256). */
  readonly maxIdle?: number | undefined;
}

/** Extra request options the pool reads (node passes request options through to the agent). */
export interface Http1PoolRequestOptions {
  /** The pool key: connections are reused only between requests with the same key. */
  readonly poolKey: string;
  /** Opens the connection's transport (an HBONE tunnel) and returns it as a socket-like duplex. */
  readonly openConnection: () => Promise<Http1Transport>;
}

export interface Http1Transport {
  /** What node's HTTP client reads and writes. */
  readonly socket: Duplex;
  /** Resolves once the transport below the socket has ended or closed (the upstream is gone). */
  readonly gone: Promise<void>;
}

interface ConnectionState {
  key: string;
  served: number;
  maxRequests: number;
  maxIdle: number;
  ended: boolean;
  free: boolean;
  idleTimer: NodeJS.Timeout | undefined;
}

/** The no-op parts of net.Socket that node's Agent and HTTP client call on a connection. */
function netLike(socket: Duplex): Duplex {
  const s = socket as Duplex & Record<string, unknown>;
  const self = () => socket;
  s['setKeepAlive'] = self;
  s['setNoDelay'] = self;
  s['setTimeout'] = self;
  s['ref'] = self;
  s['unref'] = self;
  return socket;
}

export class Http1Pool extends Agent {
  readonly #idleTimeoutMs: number;
  readonly #states = new WeakMap<Duplex, ConnectionState>();
  #opened = 0;

  constructor(options: { readonly idleTimeoutMs: number }) {
    super({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: Infinity, scheduling: 'lifo' });
    this.#idleTimeoutMs = options.idleTimeoutMs;
  }

  /** Connections opened so far (for the dump and tests). */
  get opened(): number {
    return this.#opened;
  }

  override getName(options?: ClientRequestArgs): string {
    return (options as Partial<Http1PoolRequestOptions> | undefined)?.poolKey ?? '';
  }

  /** node calls this for a new connection; the tunnel opens asynchronously, then `callback`. */
  override createConnection(args: ClientRequestArgs, callback?: (err: Error | null, socket: Duplex) => void): undefined {
    const options = args as Partial<Http1PoolRequestOptions>;
    const open = options.openConnection;
    if (!callback) throw new Error('Http1Pool: createConnection without a callback');
    if (!open) {
      callback(new Error('Http1Pool: a request without openConnection'), undefined as never);
      return undefined;
    }
    open().then(
      ({ socket, gone }) => {
        this.#opened++;
        netLike(socket);
        const state: ConnectionState = { key: options.poolKey ?? '', served: 0, maxRequests: 0, maxIdle: Infinity, ended: false, free: false, idleTimer: undefined };
        this.#states.set(socket, state);
        void gone.then(() => {
          state.ended = true;
          if (state.free) socket.destroy();
        });
        socket.once('close', () => clearTimeout(state.idleTimer));
        callback(null, socket);
      },
      (err: unknown) => callback(err instanceof Error ? err : new Error(String(err)), undefined as never),
    );
    return undefined;
  }

  /** Call on a request's 'socket' event: counts the request against its connection, which is in use again. */
  assigned(socket: Duplex, limits: Http1PoolLimits): void {
    const state = this.#states.get(socket);
    if (!state) return;
    state.served++;
    state.free = false;
    clearTimeout(state.idleTimer);
    state.idleTimer = undefined;
    state.maxRequests = limits.maxRequestsPerConnection ?? 0;
    state.maxIdle = limits.maxIdle ?? Infinity;
  }

  /** node asks whether a connection whose response ended may go back to the idle list. */
  override keepSocketAlive(socket: Duplex): boolean {
    const state = this.#states.get(socket);
    if (!state || state.ended || socket.destroyed) return false;
    if (state.maxRequests > 0 && state.served >= state.maxRequests) return false;
    if ((this.freeSockets[state.key]?.length ?? 0) >= state.maxIdle) return false;
    state.free = true;
    state.idleTimer = setTimeout(() => socket.destroy(), this.#idleTimeoutMs);
    state.idleTimer.unref();
    return true;
  }

  /** Drops every idle connection of `key` (they are suspect once one of them turned out dead). */
  dropIdle(key: string): void {
    const list = this.freeSockets[key];
    if (!list) return;
    delete (this.freeSockets as Record<string, unknown>)[key];
    for (const socket of list) socket?.destroy();
  }

  /** Idle connections of `key` now (tests, the dump). */
  idle(key: string): number {
    return this.freeSockets[key]?.length ?? 0;
  }
}
