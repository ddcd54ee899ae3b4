import { connect as h2connect, constants as h2, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { errorCode, errorMessage } from '../core/errors.ts';
import { ErrorCode } from '../core/error-codes.ts';
import { onceClose, type Handle } from '../core/lifecycle.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import type { CertificateProvider } from '../identity/cert-manager.ts';
import { formatSpiffeId, type SpiffeId } from '../identity/spiffe.ts';
import { HboneError } from './errors.ts';
import { HboneHeader, newTraceparent } from './headers.ts';
import { defaultConnectSocket, type ConnectSocket } from './forward.ts';
import { keepalive } from './keepalive.ts';
import { Http2Settings, Timeouts } from './settings.ts';
import { clientTlsOptions, peerSpiffeId } from './tls.ts';

export interface HboneConnectRequest {
  /** The workload the tunnel speaks for; its certificate is presented. */
  readonly source: SpiffeId;
  /** The server must present one of these. */
  readonly expectedIdentities: readonly SpiffeId[];
  /** The HBONE listener to dial (`podIP:15008`, a waypoint). */
  readonly address: { readonly host: string; readonly port: number };
  /** The CONNECT target (`ip:port` or `hostname:port`). */
  readonly authority: string;
  /** Local address to dial from; part of the pool key. */
  readonly sourceIp?: string;
  readonly baggage?: string;
  readonly forwarded?: string;
  /** Defaults to a new random traceparent per tunnel. */
  readonly traceparent?: string;
  readonly extraHeaders?: Readonly<Record<string, string>>;
}

export interface HboneTunnel {
  /** The CONNECT stream: write to send to the target, read what it sends; `end()` half-closes. */
  readonly stream: ClientHttp2Stream;
  readonly responseHeaders: IncomingHttpHeaders;
  /** The identity the server proved. */
  readonly peer: SpiffeId;
}

export interface HboneClientOptions {
  readonly certificates: CertificateProvider;
  /** Opens the TCP connection under TLS (ztunnel marks it, or opens it in the pod's namespace). */
  readonly connectSocket?: ConnectSocket;
  readonly logger?: Logger;
  readonly maxStreamsPerConnection?: number;
  readonly idleReleaseMs?: number;
  readonly dialTimeoutMs?: number;
  readonly keepaliveIntervalMs?: number;
  readonly keepaliveTimeoutMs?: number;
  /** How long `close()` lets open tunnels finish before destroying their connections (default 5 s). */
  readonly closeDeadlineMs?: number;
}

export interface HboneClient extends Handle {
  connect(request: HboneConnectRequest): Promise<HboneTunnel>;
  /** Closes every pooled connection at once. */
  destroy(): void;
  stats(): { readonly connections: number; readonly streams: number };
}

interface PooledConnection {
  readonly key: string;
  readonly ready: Promise<{ session: ClientHttp2Session; peer: SpiffeId }>;
  session?: ClientHttp2Session;
  /** Streams open or being opened on this connection. */
  reserved: number;
  /** When a stream last started or ended on it. */
  lastUsed: number;
  /** No new streams: GOAWAY, error, idle release or pool close. */
  retired: boolean;
}

/**
 * A pool of HBONE connections keyed by (source identity, expected identities, source IP, address).
 * A connection carries up to `min(100, peer's SETTINGS_MAX_CONCURRENT_STREAMS)` streams; concurrent
 * requests for a key share one dial; idle connections are released; GOAWAY'd ones are not reused.
 */
export function createHboneClient(options: HboneClientOptions): HboneClient {
  const log = (options.logger ?? silentLogger()).child({ component: 'hbone-client' });
  const maxStreams = options.maxStreamsPerConnection ?? Http2Settings.poolMaxStreamsPerConnection;
  const idleReleaseMs = options.idleReleaseMs ?? Timeouts.poolIdleReleaseMs;
  const pool = new Map<string, PooledConnection[]>();
  const all = new Set<PooledConnection>();
  let closed = false;

  const sweep = setInterval(() => {
    const now = Date.now();
    // Only a connection with no stream open or being opened is idle; a dial in progress never is.
    for (const conn of all) if (!conn.retired && conn.reserved === 0 && now - conn.lastUsed >= idleReleaseMs) retire(conn, 'idle');
  }, Math.max(10, Math.min(idleReleaseMs, 30_000)));
  sweep.unref();

  function retire(conn: PooledConnection, why: string): void {
    if (!conn.retired) log.debug({ key: conn.key, why }, 'connection retired');
    conn.retired = true;
    const list = pool.get(conn.key);
    const at = list?.indexOf(conn) ?? -1;
    if (list && at >= 0) {
      list.splice(at, 1);
      if (list.length === 0) pool.delete(conn.key);
    }
    if (conn.session && !conn.session.closed) conn.session.close(); // GOAWAY after its streams end
  }

  function forget(conn: PooledConnection): void {
    retire(conn, 'closed');
    all.delete(conn);
  }

  function capacity(conn: PooledConnection): number {
    const peerLimit = conn.session?.remoteSettings.maxConcurrentStreams ?? maxStreams;
    return Math.min(maxStreams, peerLimit);
  }

  function checkout(key: string, request: HboneConnectRequest): PooledConnection {
    const list = pool.get(key) ?? [];
    let conn = list.find((c) => !c.retired && !c.session?.closed && !c.session?.destroyed && c.reserved < capacity(c));
    if (!conn) {
      conn = dial(key, request);
      list.push(conn);
      pool.set(key, list);
      all.add(conn);
    }
    conn.reserved++;
    conn.lastUsed = Date.now();
    return conn;
  }

  function dial(key: string, request: HboneConnectRequest): PooledConnection {
    const conn: PooledConnection = { key, reserved: 0, lastUsed: Date.now(), retired: false, ready: undefined as never };
    const ready = (async () => {
      const certificate = await options.certificates.fetch(request.source);
      const socket = await openTls(request, clientTlsOptions(certificate, request.expectedIdentities), options.dialTimeoutMs ?? Timeouts.dialMs, options.connectSocket ?? defaultConnectSocket);
      const peer = peerSpiffeId(socket);
      if (!peer) {
        socket.destroy();
        throw new HboneError(ErrorCode.HBONE_PEER_NO_IDENTITY, 'server certificate has no SPIFFE URI SAN');
      }
      const session = h2connect(`https://${request.address.host}:${request.address.port}`, {
        createConnection: () => socket,
        settings: {
          enablePush: false,
          initialWindowSize: Http2Settings.streamWindow,
          maxFrameSize: Http2Settings.maxFrameSize,
          maxHeaderListSize: Http2Settings.clientMaxHeaderList,
        },
        peerMaxConcurrentStreams: maxStreams,
        maxSessionMemory: Http2Settings.maxSessionMemoryMiB,
      });
      conn.session = session;
      session.on('error', (err) => log.debug({ key, code: errorCode(err), err: errorMessage(err) }, 'session error'));
      session.on('goaway', () => retire(conn, 'goaway'));
      session.once('close', () => forget(conn));
      session.setLocalWindowSize(Http2Settings.connectionWindow);
      keepalive(session, options.keepaliveIntervalMs ?? Timeouts.keepaliveIntervalMs, options.keepaliveTimeoutMs ?? Timeouts.keepaliveTimeoutMs, log);
      if (conn.retired) session.close();
      return { session, peer };
    })();
    ready.catch((err: unknown) => {
      log.info({ key, code: errorCode(err), err: errorMessage(err) }, 'HBONE dial failed');
      forget(conn);
    });
    return Object.assign(conn, { ready });
  }

  async function connect(request: HboneConnectRequest): Promise<HboneTunnel> {
    if (closed) throw new HboneError(ErrorCode.HBONE_POOL_CLOSED, 'HBONE client is closed');
    const key = poolKey(request);
    const conn = checkout(key, request);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      conn.reserved--;
      conn.lastUsed = Date.now();
    };
    try {
      const { session, peer } = await conn.ready;
      if (session.closed || session.destroyed) throw new HboneError(ErrorCode.HBONE_SESSION_CLOSED, 'HBONE connection closed before the stream could open');
      const stream = session.request(
        {
          [h2.HTTP2_HEADER_METHOD]: 'CONNECT',
          [h2.HTTP2_HEADER_AUTHORITY]: request.authority,
          [HboneHeader.traceparent]: request.traceparent ?? newTraceparent(),
          ...(request.baggage ? { [HboneHeader.baggage]: request.baggage } : {}),
          ...(request.forwarded ? { [HboneHeader.forwarded]: request.forwarded } : {}),
          ...request.extraHeaders,
        },
        { endStream: false },
      );
      stream.once('close', release);
      const responseHeaders = await awaitResponse(stream);
      const status = Number(responseHeaders[h2.HTTP2_HEADER_STATUS]);
      if (status !== 200) {
        stream.close(h2.NGHTTP2_CANCEL);
        throw new HboneError(ErrorCode.HBONE_CONNECT_REJECTED, `CONNECT ${request.authority} answered ${status}`, { status });
      }
      return { stream, responseHeaders, peer };
    } catch (err) {
      release();
      throw asHboneError(err, request);
    }
  }

  const close = onceClose(async () => {
    closed = true;
    clearInterval(sweep);
    const sessions = [...all].map((conn) => conn.session).filter((s): s is ClientHttp2Session => !!s && !s.destroyed);
    for (const conn of [...all]) retire(conn, 'pool closed');
    // GOAWAY lets open tunnels finish; a peer that is gone (or a tunnel that never ends) must not hold
    // the close forever, so whatever is still open at the deadline is destroyed.
    const allClosed = Promise.all(sessions.map((s) => new Promise<void>((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())))));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, options.closeDeadlineMs ?? Timeouts.drainMs)));
    await Promise.race([allClosed, deadline]);
    clearTimeout(timer);
    for (const session of sessions) if (!session.destroyed) session.destroy();
  });

  return {
    connect,
    close,
    destroy() {
      closed = true;
      clearInterval(sweep);
      for (const conn of [...all]) {
        retire(conn, 'pool destroyed');
        conn.session?.destroy();
      }
    },
    stats() {
      let streams = 0;
      let connections = 0;
      for (const conn of all) {
        if (conn.session && !conn.session.destroyed) connections++;
        streams += conn.reserved;
      }
      return { connections, streams };
    },
  };
}

function poolKey(request: HboneConnectRequest): string {
  const expected = request.expectedIdentities.map(formatSpiffeId).sort().join(',');
  return `${formatSpiffeId(request.source)}|${expected}|${request.sourceIp ?? ''}|${request.address.host}:${request.address.port}`;
}

function openTls(request: HboneConnectRequest, tlsOptions: object, timeoutMs: number, connectSocket: ConnectSocket): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const tcp = connectSocket({ host: request.address.host, port: request.address.port, localAddress: request.sourceIp });
    const socket = tlsConnect({ ...tlsOptions, socket: tcp });
    tcp.once('error', (err) => socket.destroy(err));
    // The dialed socket may allow half-open (ztunnel's do, for relayed TCP), and then a TLS socket over it
    // stays open after the server's FIN: the HTTP/2 session would see nothing until its keepalive PING timed
    // out. A server that closes (or refuses our certificate after the TLS 1.3 handshake) is done with us.
    socket.once('end', () => socket.destroy(new HboneError(ErrorCode.HBONE_SESSION_CLOSED, `${request.address.host}:${request.address.port} closed the connection (no GOAWAY); a server that refuses the client certificate does so`)));
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new HboneError(ErrorCode.HBONE_CONNECT_TIMEOUT, `dialing ${request.address.host}:${request.address.port} timed out after ${timeoutMs} ms; maybe a NetworkPolicy is blocking HBONE port 15008`));
    }, timeoutMs);
    timer.unref();
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      socket.on('error', () => {}); // from now on reported by the HTTP/2 session
      if (socket.alpnProtocol !== 'h2') {
        socket.destroy();
        reject(new HboneError(ErrorCode.HBONE_ALPN_MISMATCH, `server negotiated ALPN "${socket.alpnProtocol || ''}", not h2`));
        return;
      }
      resolve(socket);
    });
    const onError = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once('error', onError);
  });
}

function awaitResponse(stream: ClientHttp2Stream): Promise<IncomingHttpHeaders> {
  return new Promise((resolve, reject) => {
    const onClose = () => reject(new HboneError(ErrorCode.HBONE_STREAM_RESET, `CONNECT stream closed before a response (RST code ${stream.rstCode ?? 'none'})`));
    stream.once('response', (headers) => {
      stream.off('close', onClose);
      stream.off('error', reject);
      resolve(headers);
    });
    stream.once('close', onClose);
    stream.once('error', reject);
    stream.on('error', () => {}); // later errors belong to whoever relays the stream
  });
}

function asHboneError(err: unknown, request: HboneConnectRequest): HboneError {
  if (err instanceof HboneError) return err;
  const code = errorCode(err);
  const target = `${request.address.host}:${request.address.port}`;
  if (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || code.startsWith('UNABLE_TO') || code.includes('CERT')) {
    return new HboneError(ErrorCode.HBONE_TLS_HANDSHAKE_FAILED, `TLS to ${target} failed: ${errorMessage(err)}`, { cause: err });
  }
  if (code.startsWith('ERR_HTTP2')) return new HboneError(ErrorCode.HBONE_SESSION_CLOSED, `HTTP/2 to ${target} failed: ${errorMessage(err)}`, { cause: err });
  return new HboneError(ErrorCode.HBONE_UPSTREAM_CONNECT_FAILED, `connecting to ${target} failed: ${errorMessage(err)}`, { cause: err });
}
