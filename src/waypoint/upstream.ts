import { request as h1request, type IncomingMessage, type RequestOptions } from 'node:http';
import { connect as h2connect, constants as h2, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import type { Duplex, Readable } from 'node:stream';
import { TunnelSocket } from '../hbone/tunnel-socket.ts';
import { errorCode, errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { HboneClient } from '../hbone/client.ts';
import type { SpiffeId } from '../identity/spiffe.ts';
import type { ConnectionPool } from '../workload-api/l7-types.ts';
import type { Endpoint } from './destinations.ts';
import { Http1Pool, type Http1PoolRequestOptions, type Http1Transport } from './http1-pool.ts';
import type { TryOutcome } from './retry.ts';

/**
 * One try of a request to one endpoint, over a new HBONE tunnel to `podIP:15008` (authority
 * `podIP:targetPort`) with the waypoint's identity: HTTP/1.1 on kept-alive connections (one tunnel
 * each) reused per endpoint and client (http1-pool.ts), HTTP/2 on one session per endpoint, kept while
 * it lives. A failure is a `TryFailure` naming its Envoy kind
 * (connect failure, reset, refused stream), which the retry decision reads.
 */

export interface UpstreamRequest {
  readonly endpoint: Endpoint;
  readonly protocol: 'http1' | 'http2';
  readonly method: string;
  /** Path with query. */
  readonly path: string;
  readonly authority: string;
  readonly headers: ReadonlyMap<string, string>;
  /** A buffered body, or a stream (then this try is the only one). */
  readonly body: Buffer | Readable;
  readonly signal: AbortSignal;
  readonly traceparent: string;
  readonly clientAddress: string;
  /** The destination's connection-pool limits (maxRequestsPerConnection, maxConnections). */
  readonly connectionPool?: ConnectionPool | undefined;
}

export interface UpstreamResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Readable;
  /** Trailers as they arrived (HTTP/2), once the body ended. */
  trailers(): IncomingHttpHeaders | undefined;
  /** Stops reading and releases the stream (a response not passed on). */
  discard(): void;
}

export class TryFailure extends Error {
  readonly outcome: Exclude<TryOutcome, { kind: 'response' }>;
  readonly code: string;
  constructor(outcome: Exclude<TryOutcome, { kind: 'response' }>, message: string, code: string) {
    super(message);
    this.outcome = outcome;
    this.code = code;
  }
}

export interface UpstreamOptions {
  readonly hbone: HboneClient;
  readonly identity: SpiffeId;
  /** The HBONE port of the destination's ztunnel (15008). */
  readonly hbonePort: number;
  readonly logger: Logger;
  /** How long an idle HTTP/1.1 upstream connection is kept (default HTTP1_IDLE_TIMEOUT_MS). */
  readonly http1IdleTimeoutMs?: number;
}

/**
 * Idle HTTP/1.1 upstream connections are closed after this long. Istio's default idle timeout is 1 h;
 * ours is shorter because an idle connection holds a CONNECT stream, and so its HBONE connection, open.
 */
export const HTTP1_IDLE_TIMEOUT_MS = 60_000;

/** A try that failed on a reused HTTP/1.1 connection before any response byte. */
class ReusedConnectionReset extends Error {
  readonly failure: TryFailure;
  constructor(failure: TryFailure) {
    super(failure.message);
    this.failure = failure;
  }
}

const hostPort = (ip: string, port: number): string => (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);

export class Upstream {
  readonly #options: UpstreamOptions;
  readonly #sessions = new Map<string, Promise<ClientHttp2Session>>();
  readonly #http1: Http1Pool;

  constructor(options: UpstreamOptions) {
    this.#options = options;
    this.#http1 = new Http1Pool({ idleTimeoutMs: options.http1IdleTimeoutMs ?? HTTP1_IDLE_TIMEOUT_MS });
  }

  /** HTTP/1.1 upstream connections opened so far (tests, the dump). */
  http1Stats(): { readonly opened: number } {
    return { opened: this.#http1.opened };
  }

  async #tunnel(r: UpstreamRequest) {
    const { workload } = r.endpoint;
    try {
      return await this.#options.hbone.connect({
        source: this.#options.identity,
        expectedIdentities: [{ trustDomain: workload.trustDomain || this.#options.identity.trustDomain, namespace: workload.namespace, serviceAccount: workload.serviceAccount }],
        address: { host: r.endpoint.ip, port: this.#options.hbonePort },
        authority: hostPort(r.endpoint.ip, r.endpoint.port),
        traceparent: r.traceparent,
        ...(r.clientAddress ? { forwarded: `for="${r.clientAddress}"` } : {}),
      });
    } catch (err) {
      throw new TryFailure({ kind: 'connect-failure' }, `HBONE to ${hostPort(r.endpoint.ip, r.endpoint.port)} failed: ${errorMessage(err)}`, errorCode(err));
    }
  }

  send(r: UpstreamRequest): Promise<UpstreamResponse> {
    return r.protocol === 'http2' ? this.#sendH2(r) : this.#sendH1(r);
  }

  /** The HTTP/1.1 pool key: endpoint, the identity it must prove, and the client (the tunnel's `Forwarded`). */
  #poolKey(r: UpstreamRequest): string {
    const w = r.endpoint.workload;
    return `${hostPort(r.endpoint.ip, r.endpoint.port)}|${w.namespace}/${w.serviceAccount}|${r.clientAddress}`;
  }

  async #sendH1(r: UpstreamRequest): Promise<UpstreamResponse> {
    try {
      return await this.#tryH1(r);
    } catch (err) {
      // A reused connection that was dead before any response byte: Envoy retries once on a new one.
      if (err instanceof ReusedConnectionReset && Buffer.isBuffer(r.body) && !r.signal.aborted) {
        this.#http1.dropIdle(this.#poolKey(r));
        return this.#tryH1(r);
      }
      throw err instanceof ReusedConnectionReset ? err.failure : err;
    }
  }

  #tryH1(r: UpstreamRequest): Promise<UpstreamResponse> {
    if (r.signal.aborted) return Promise.reject(new TryFailure({ kind: 'per-try-timeout' }, 'aborted', 'ABORTED'));
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { host: r.authority };
      for (const [k, v] of r.headers) headers[k] = v;
      const pooled: Http1PoolRequestOptions = { poolKey: this.#poolKey(r), openConnection: () => this.#openHttp1(r) };
      const req = h1request({ agent: this.#http1, ...pooled, method: r.method, path: r.path, headers, setHost: false } as RequestOptions);
      let answered = false;
      const onAbort = () => req.destroy(new Error('try aborted'));
      r.signal.addEventListener('abort', onAbort, { once: true });
      const limits = { maxRequestsPerConnection: r.connectionPool?.maxRequestsPerConnection, maxIdle: r.connectionPool?.maxConnections };
      req.once('socket', (socket: Duplex) => this.#http1.assigned(socket, limits));
      req.on('response', (res: IncomingMessage) => {
        answered = true;
        res.on('error', () => {});
        res.once('close', () => r.signal.removeEventListener('abort', onAbort));
        resolve({
          status: res.statusCode ?? 502,
          headers: res.headers,
          body: res,
          trailers: () => (Object.keys(res.trailers).length > 0 ? res.trailers : undefined),
          discard: () => res.destroy(),
        });
      });
      req.on('error', (err) => {
        r.signal.removeEventListener('abort', onAbort);
        req.socket?.destroy();
        if (answered) return;
        if (err instanceof TryFailure) reject(err); // the tunnel did not open
        else if (r.signal.aborted) reject(new TryFailure({ kind: 'per-try-timeout' }, 'try aborted', 'ABORTED'));
        else {
          const failure = new TryFailure({ kind: 'reset' }, `upstream reset: ${errorMessage(err)}`, errorCode(err));
          reject(req.reusedSocket ? new ReusedConnectionReset(failure) : failure);
        }
      });
      writeBody(req, r.body);
    });
  }

  /** A new HTTP/1.1 upstream connection: an HBONE tunnel, a plain duplex over it for node's client. */
  async #openHttp1(r: UpstreamRequest): Promise<Http1Transport> {
    const tunnel = await this.#tunnel(r);
    const stream = tunnel.stream;
    const gone = new Promise<void>((resolve) => {
      stream.once('end', resolve);
      stream.once('close', resolve);
    });
    return { socket: new TunnelSocket(stream), gone };
  }

  #session(r: UpstreamRequest): Promise<ClientHttp2Session> {
    const key = hostPort(r.endpoint.ip, r.endpoint.port);
    let pending = this.#sessions.get(key);
    if (!pending) {
      pending = (async () => {
        const tunnel = await this.#tunnel(r);
        const session = h2connect(`http://${key}`, { createConnection: () => new TunnelSocket(tunnel.stream, { copyWrites: true }) as never });
        session.on('error', (err) => this.#options.logger.debug({ code: errorCode(err), err: errorMessage(err), endpoint: key }, 'upstream HTTP/2 session error'));
        const forget = () => {
          if (this.#sessions.get(key) === pending) this.#sessions.delete(key);
        };
        session.once('close', forget);
        session.once('goaway', forget);
        tunnel.stream.once('close', () => session.destroy());
        return session;
      })();
      pending.catch(() => this.#sessions.delete(key));
      this.#sessions.set(key, pending);
    }
    return pending;
  }

  async #sendH2(r: UpstreamRequest): Promise<UpstreamResponse> {
    const session = await this.#session(r);
    if (session.closed || session.destroyed) {
      this.#sessions.delete(hostPort(r.endpoint.ip, r.endpoint.port));
      throw new TryFailure({ kind: 'reset' }, 'upstream HTTP/2 session closed', 'ERR_HTTP2_INVALID_SESSION');
    }
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { [h2.HTTP2_HEADER_METHOD]: r.method, [h2.HTTP2_HEADER_PATH]: r.path, [h2.HTTP2_HEADER_AUTHORITY]: r.authority, [h2.HTTP2_HEADER_SCHEME]: 'http' };
      for (const [k, v] of r.headers) headers[k] = v;
      let stream;
      try {
        stream = session.request(headers, { endStream: Buffer.isBuffer(r.body) && r.body.length === 0 });
      } catch (err) {
        reject(new TryFailure({ kind: 'reset' }, `upstream HTTP/2 request failed: ${errorMessage(err)}`, errorCode(err)));
        return;
      }
      const s = stream;
      let answered = false;
      let trailers: IncomingHttpHeaders | undefined;
      const onAbort = () => s.close(h2.NGHTTP2_CANCEL);
      r.signal.addEventListener('abort', onAbort, { once: true });
      s.on('error', () => {});
      s.on('trailers', (t) => (trailers = t));
      s.once('response', (h) => {
        answered = true;
        resolve({ status: Number(h[h2.HTTP2_HEADER_STATUS]), headers: h, body: s, trailers: () => trailers, discard: () => s.close(h2.NGHTTP2_CANCEL) });
      });
      s.once('close', () => {
        r.signal.removeEventListener('abort', onAbort);
        if (answered) return;
        if (r.signal.aborted) reject(new TryFailure({ kind: 'per-try-timeout' }, 'try aborted', 'ABORTED'));
        else reject(new TryFailure({ kind: 'reset', refusedStream: s.rstCode === h2.NGHTTP2_REFUSED_STREAM }, `upstream reset the stream (code ${s.rstCode})`, 'UPSTREAM_RESET'));
      });
      if (!(Buffer.isBuffer(r.body) && r.body.length === 0)) writeBody(s, r.body);
    });
  }

  close(): void {
    this.#http1.destroy();
    for (const pending of this.#sessions.values()) pending.then((s) => s.destroy(), () => {});
    this.#sessions.clear();
  }
}

function writeBody(target: NodeJS.WritableStream & { destroy(err?: Error): void }, body: Buffer | Readable): void {
  if (Buffer.isBuffer(body)) {
    if (body.length > 0) target.end(body);
    else target.end();
    return;
  }
  body.on('error', (err) => target.destroy(err));
  body.pipe(target);
}
