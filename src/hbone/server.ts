import { createServer as createH2Server, constants as h2, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { once } from 'node:events';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { errorCode, errorMessage } from '../core/errors.ts';
import { ErrorCode } from '../core/error-codes.ts';
import { Drain, onceClose, type ServerHandle } from '../core/lifecycle.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import { formatSpiffeId, type SpiffeId } from '../identity/spiffe.ts';
import type { WorkloadCertificate } from '../identity/workload-certificate.ts';
import { parseAuthority, type HboneTarget } from './authority.ts';
import { HboneHeader, traceparentOrNew } from './headers.ts';
import { relay, type RelayResult } from './relay.ts';
import { keepalive } from './keepalive.ts';
import { Http2Settings, Timeouts } from './settings.ts';
import { peerSpiffeId, serverTlsOptions } from './tls.ts';

/** A validated CONNECT, handed to the handler. */
export interface HboneRequest {
  readonly peer: SpiffeId;
  readonly authority: string;
  readonly target: HboneTarget;
  readonly baggage: string | undefined;
  readonly forwarded: string | undefined;
  /** The request's traceparent, or a new one when it was missing or malformed. */
  readonly traceparent: string;
  readonly headers: IncomingHttpHeaders;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  /** Aborted when the client gives up on the stream before an answer. */
  readonly signal: AbortSignal;
}

/**
 * What the handler decides: open the tunnel to `upstream` (relayed both ways), take the tunnel's stream
 * and `serve` it itself (the waypoint's HTTP server reads the stream with no relay in between), or
 * refuse with Istio's status.
 */
export type HboneDecision =
  | {
      readonly status: 200;
      readonly upstream: Duplex;
      readonly responseHeaders?: Readonly<Record<string, string>>;
      /** Called once when the tunnel is done, with byte counts and how it ended. */
      readonly onClose?: (result: RelayResult) => void;
    }
  | {
      readonly status: 200;
      /** Called once the 200 is sent; the stream is the handler's from then on. */
      readonly serve: (stream: ServerHttp2Stream) => void;
      readonly responseHeaders?: Readonly<Record<string, string>>;
    }
  | { readonly status: 400 | 401 | 503; readonly code: ErrorCode; readonly reason: string };

export type HboneHandler = (request: HboneRequest) => Promise<HboneDecision>;

export interface HboneServerOptions {
  readonly host: string;
  readonly port: number;
  /** This server's certificate (the destination workload's); replaced with `setCertificate` on rotation. */
  readonly certificate: WorkloadCertificate;
  readonly handler: HboneHandler;
  readonly logger?: Logger;
  /** How long `close()` waits for open tunnels before destroying them. */
  readonly drainMs?: number;
  readonly keepaliveIntervalMs?: number;
  readonly keepaliveTimeoutMs?: number;
  /**
   * Starts the TLS server listening; the default binds `host:port`. ztunnel's in-pod mode passes
   * one that listens inside the pod's network namespace.
   */
  readonly listen?: (server: NetServer) => Promise<void>;
}

export interface HboneServer extends ServerHandle {
  setCertificate(certificate: WorkloadCertificate): void;
  /** Open TLS connections and streams, for tests and admin. */
  stats(): { readonly connections: number; readonly streams: number };
}

/**
 * The HBONE listener: mutual TLS 1.3 with ALPN h2, then HTTP/2 where only CONNECT is accepted.
 * Answers 400 for a bad method or authority before the handler sees it, and whatever the handler
 * decides after. No input from a peer throws out of here.
 */
export async function startHboneServer(options: HboneServerOptions): Promise<HboneServer> {
  const log = (options.logger ?? silentLogger()).child({ component: 'hbone-server' });
  const drain = new Drain();
  let certificate = options.certificate;
  const sockets = new Set<Socket>();
  const sessions = new Set<Http2Session>();
  let streams = 0;

  const h2server = createH2Server({
    settings: {
      initialWindowSize: Http2Settings.streamWindow,
      maxFrameSize: Http2Settings.maxFrameSize,
      maxConcurrentStreams: Http2Settings.serverMaxConcurrentStreams,
      maxHeaderListSize: Http2Settings.serverMaxHeaderList,
    },
    maxSessionMemory: Http2Settings.maxSessionMemoryMiB,
  });

  const tlsServer = createTlsServer(serverTlsOptions(certificate));
  tlsServer.on('tlsClientError', (err, socket) => {
    log.info({ code: ErrorCode.HBONE_TLS_HANDSHAKE_FAILED, err: errorMessage(err), remote: socket.remoteAddress }, 'TLS handshake failed');
  });
  tlsServer.on('connection', (socket: Socket) => {
    socket.on('error', () => {}); // reported through tlsClientError or the session
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  tlsServer.on('secureConnection', (socket: TLSSocket) => {
    socket.on('error', (err) => log.debug({ code: errorCode(err), err: errorMessage(err) }, 'connection error'));
    const refused = refuseConnection(socket, certificate.identity);
    if (refused) {
      log.info({ code: refused.code, err: refused.reason, remote: socket.remoteAddress }, 'connection refused');
      socket.destroy();
      return;
    }
    h2server.emit('connection', socket);
  });

  h2server.on('session', (session: Http2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.on('error', (err) => log.debug({ code: errorCode(err), err: errorMessage(err) }, 'session error'));
    session.setLocalWindowSize(Http2Settings.connectionWindow);
    keepalive(session, options.keepaliveIntervalMs ?? Timeouts.keepaliveIntervalMs, options.keepaliveTimeoutMs ?? Timeouts.keepaliveTimeoutMs, log);
    if (drain.draining) session.close();
  });
  h2server.on('sessionError', (err) => log.debug({ code: errorCode(err), err: errorMessage(err) }, 'session error'));

  h2server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    streams++;
    const untrack = drain.track(stream);
    stream.once('close', () => {
      streams--;
      untrack();
    });
    stream.on('error', (err) => log.debug({ code: errorCode(err), err: errorMessage(err) }, 'stream error'));
    handleStream(stream, headers, options.handler, log).catch((err: unknown) => {
      log.error({ code: ErrorCode.HBONE_HANDLER_FAILED, err: errorMessage(err) }, 'stream handling failed');
      if (!stream.destroyed) stream.close(h2.NGHTTP2_INTERNAL_ERROR);
    });
  });

  if (options.listen) {
    await options.listen(tlsServer);
  } else {
    tlsServer.listen({ host: options.host, port: options.port });
    await once(tlsServer, 'listening');
  }
  const bound = tlsServer.address() as AddressInfo;
  log.info({ address: bound.address, port: bound.port }, 'HBONE listening');

  const close = onceClose(async () => {
    const stopped = new Promise<void>((resolve) => tlsServer.close(() => resolve()));
    for (const session of sessions) session.close(); // GOAWAY; open streams go on
    const clean = await drain.drain(options.drainMs ?? Timeouts.drainMs);
    if (!clean) log.warn({ code: ErrorCode.CORE_DRAIN_TIMEOUT, streams }, 'drain deadline passed, closing remaining tunnels');
    for (const session of sessions) session.destroy();
    for (const socket of sockets) socket.destroy();
    await stopped;
  });

  return {
    address: () => ({ address: bound.address, port: bound.port, family: bound.family }),
    close,
    setCertificate(next) {
      certificate = next;
      tlsServer.setSecureContext(serverTlsOptions(next));
    },
    stats: () => ({ connections: sessions.size, streams }),
  };
}

/** Why a TLS connection must be dropped after the handshake, if it must. */
function refuseConnection(socket: TLSSocket, own: SpiffeId): { code: ErrorCode; reason: string } | undefined {
  if (!socket.authorized) {
    const reason = socket.getPeerX509Certificate() ? String(socket.authorizationError) : 'no client certificate';
    return { code: ErrorCode.HBONE_TLS_HANDSHAKE_FAILED, reason: `client certificate rejected: ${reason}` };
  }
  if (socket.alpnProtocol !== 'h2') return { code: ErrorCode.HBONE_ALPN_MISMATCH, reason: `ALPN "${socket.alpnProtocol || ''}" is not h2` };
  const peer = peerSpiffeId(socket);
  if (!peer) return { code: ErrorCode.HBONE_PEER_NO_IDENTITY, reason: 'client certificate has no SPIFFE URI SAN' };
  if (peer.trustDomain !== own.trustDomain) {
    return { code: ErrorCode.HBONE_PEER_TRUST_DOMAIN_MISMATCH, reason: `client trust domain ${peer.trustDomain} is not ${own.trustDomain}` };
  }
  return undefined;
}

async function handleStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, handler: HboneHandler, log: Logger): Promise<void> {
  const method = headers[h2.HTTP2_HEADER_METHOD];
  const authority = String(headers[h2.HTTP2_HEADER_AUTHORITY] ?? '');
  if (method !== 'CONNECT') {
    return refuse(stream, { status: 400, code: ErrorCode.HBONE_METHOD_NOT_ALLOWED, reason: `method ${String(method)} is not CONNECT` }, log);
  }
  const target = parseAuthority(authority);
  if (!target.ok) return refuse(stream, { status: 400, code: ErrorCode.HBONE_BAD_AUTHORITY, reason: target.errors.join('; ') }, log);

  const socket = stream.session?.socket as TLSSocket | undefined;
  const peer = socket && peerSpiffeId(socket);
  if (!socket || !peer) return; // the session went away meanwhile
  const abort = new AbortController();
  const onAbort = () => abort.abort();
  stream.once('close', onAbort);
  const header = (name: string) => {
    const value = headers[name];
    return Array.isArray(value) ? value.join(',') : value;
  };
  const request: HboneRequest = {
    peer,
    authority,
    target: target.value,
    baggage: header(HboneHeader.baggage),
    forwarded: header(HboneHeader.forwarded),
    traceparent: traceparentOrNew(header(HboneHeader.traceparent)),
    headers,
    remoteAddress: socket.remoteAddress ?? '',
    remotePort: socket.remotePort ?? 0,
    localAddress: socket.localAddress ?? '',
    localPort: socket.localPort ?? 0,
    signal: abort.signal,
  };
  const decision = await handler(request);
  stream.off('close', onAbort);
  if (decision.status !== 200) return refuse(stream, decision, log, formatSpiffeId(peer));
  if (stream.destroyed || stream.closed) {
    if ('upstream' in decision) decision.upstream.destroy();
    return;
  }
  stream.respond({ [h2.HTTP2_HEADER_STATUS]: 200, ...decision.responseHeaders });
  if ('serve' in decision) return decision.serve(stream);
  const result = await relay(stream, decision.upstream);
  decision.onClose?.(result);
}

function refuse(stream: ServerHttp2Stream, decision: Extract<HboneDecision, { code: ErrorCode }>, log: Logger, peer?: string): void {
  log.info({ code: decision.code, status: decision.status, err: decision.reason, peer }, 'CONNECT refused');
  if (!stream.destroyed && !stream.headersSent) stream.respond({ [h2.HTTP2_HEADER_STATUS]: decision.status }, { endStream: true });
}
