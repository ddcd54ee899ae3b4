import { createServer as createH1Server } from 'node:http';
import { createServer as createH2Server, type ServerHttp2Stream } from 'node:http2';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { ErrorCode } from '../core/error-codes.ts';
import { errorCode, errorMessage } from '../core/errors.ts';
import type { HboneTarget } from '../hbone/authority.ts';
import type { HboneClient } from '../hbone/client.ts';
import type { HboneHandler, HboneRequest } from '../hbone/server.ts';
import type { SpiffeId } from '../identity/spiffe.ts';
import type { StateReader } from '../workload-api/store.ts';
import type { Port, Service, Workload } from '../workload-api/types.ts';
import type { Destinations, Endpoint } from './destinations.ts';
import { createHttpHandler, createUpgradeHandler, type HttpProxyDeps, type TunnelContext } from './http-proxy.ts';
import { shouldUpgrade } from './upgrade.ts';
import { TunnelSocket } from '../hbone/tunnel-socket.ts';
import { portProtocol, sniffProtocol, type PortProtocol } from './protocol.ts';

/**
 * The waypoint's HBONE handler: dispatch on the CONNECT authority (a service VIP:port, a service
 * hostname:port, or a workload IP:port), pick the port's protocol, then either parse HTTP inside the
 * tunnel (node's HTTP/1.1 or HTTP/2 server reading it through a TunnelSocket) or relay TCP to an
 * endpoint over a new HBONE tunnel.
 */

export type DispatchTarget =
  | { readonly kind: 'service'; readonly service: Service; readonly port: Port }
  | { readonly kind: 'workload'; readonly workload: Workload; readonly ip: string; readonly port: number };

/** Pure: what a CONNECT authority names, as the waypoint's state has it. */
export function resolveTarget(state: StateReader, target: HboneTarget, network: string): { ok: true; target: DispatchTarget } | { ok: false; reason: string } {
  if (target.kind === 'address') {
    const service = state.serviceByVip(network, target.ip);
    if (service) {
      const port = service.ports.find((p) => p.servicePort === target.port);
      if (!port) return { ok: false, reason: `service ${service.namespace}/${service.hostname} has no port ${target.port}` };
      return { ok: true, target: { kind: 'service', service, port } };
    }
    const workload = state.workloadByAddress(network, target.ip);
    if (workload) return { ok: true, target: { kind: 'workload', workload, ip: target.ip, port: target.port } };
    return { ok: false, reason: `no service or workload has address ${target.ip}` };
  }
  const [service] = state.servicesByHostname(target.hostname);
  if (!service) return { ok: false, reason: `no service ${target.hostname}` };
  const port = service.ports.find((p) => p.servicePort === target.port);
  if (!port) return { ok: false, reason: `service ${service.namespace}/${service.hostname} has no port ${target.port}` };
  return { ok: true, target: { kind: 'service', service, port } };
}

export interface TunnelHandlerDeps extends HttpProxyDeps {
  readonly state: StateReader;
  readonly network: string;
  readonly hbone: HboneClient;
  readonly identity: SpiffeId;
  readonly hbonePort: number;
  readonly destinations: Destinations;
  readonly maxHeaderBytes: number;
}

const SNIFF_LIMIT = 8192;

export function waypointHandler(deps: TunnelHandlerDeps): HboneHandler {
  return async (request) => {
    const resolved = resolveTarget(deps.state, request.target, deps.network);
    if (!resolved.ok) return { status: 503, code: ErrorCode.WAYPOINT_UNKNOWN_TARGET, reason: resolved.reason };
    const target = resolved.target;
    const protocol: PortProtocol = target.kind === 'service' ? portProtocol({ workloadApi: target.port.appProtocol }) : 'sniff';
    const sourceWorkload = sourceOf(deps.state, deps.network, request);
    const port = target.kind === 'service' ? target.port.servicePort : target.port;
    const context = (upstreamProtocol: 'http1' | 'http2'): TunnelContext => ({
      peer: request.peer,
      sourceWorkload,
      remoteAddress: clientAddress(request),
      port,
      target: target.kind === 'service' ? { kind: 'service', service: target.service } : { kind: 'workload', workload: target.workload, ip: target.ip },
      upstreamProtocol,
    });

    if (protocol === 'tcp') {
      const endpoint = tcpEndpoint(deps, target, request);
      if (!endpoint) return { status: 503, code: ErrorCode.PROXY_NO_HEALTHY_UPSTREAM, reason: `no healthy endpoint for ${request.authority}` };
      try {
        const tunnel = await openTcp(deps, endpoint);
        return { status: 200, upstream: tunnel };
      } catch (err) {
        return { status: 503, code: ErrorCode.WAYPOINT_TCP_UPSTREAM_FAILED, reason: errorMessage(err) };
      }
    }

    // node's HTTP server reads the tunnel's stream itself (no relay in between).
    const serve = (stream: ServerHttp2Stream) => {
      const socket = new TunnelSocket(stream, { destroyWithoutEnd: 'reset' });
      socket.on('error', () => {});
      if (protocol === 'http1') serveHttp1(socket, context('http1'), deps);
      else if (protocol === 'http2' || protocol === 'grpc') serveHttp2(socket, context('http2'), deps);
      else sniff(socket, deps, target, request, context);
    };
    return { status: 200, serve };
  };
}

/** The calling workload: the one at the tunnel's source address, if its identity is the peer's. */
function sourceOf(state: StateReader, network: string, request: HboneRequest): Workload | undefined {
  const ip = clientAddress(request);
  const w = isIP(ip) ? state.workloadByAddress(network, ip) : undefined;
  if (!w) return undefined;
  const p = request.peer;
  return w.namespace === p.namespace && w.serviceAccount === p.serviceAccount && (w.trustDomain || p.trustDomain) === p.trustDomain ? w : undefined;
}

/** The client's IP: ztunnel's `forwarded: for="ip:port"` when present, else the tunnel's source address. */
function clientAddress(request: HboneRequest): string {
  const m = request.forwarded && /for="?\[?([0-9a-fA-F:.]+?)\]?(?::\d+)?"?(?:;|,|$)/.exec(request.forwarded);
  const ip = m?.[1];
  if (ip && isIP(ip)) return ip;
  return request.remoteAddress.replace(/^::ffff:/, '');
}

function tcpEndpoint(deps: TunnelHandlerDeps, target: DispatchTarget, request: HboneRequest): Endpoint | undefined {
  if (target.kind === 'workload') return { workload: target.workload, ip: target.ip, port: target.port };
  const picked = deps.destinations.pick({ namespace: target.service.namespace, hostname: target.service.hostname, port: target.port.servicePort, subset: '' }, {
    method: '', path: '/', query: '', authority: request.authority, scheme: 'http', headers: new Map(), port: target.port.servicePort,
    source: { principal: '', namespace: request.peer.namespace, ip: clientAddress(request) },
  });
  return picked.ok ? picked.endpoint : undefined;
}

async function openTcp(deps: TunnelHandlerDeps, e: Endpoint): Promise<Duplex> {
  const w = e.workload;
  const tunnel = await deps.hbone.connect({
    source: deps.identity,
    expectedIdentities: [{ trustDomain: w.trustDomain || deps.identity.trustDomain, namespace: w.namespace, serviceAccount: w.serviceAccount }],
    address: { host: e.ip, port: deps.hbonePort },
    authority: e.ip.includes(':') ? `[${e.ip}]:${e.port}` : `${e.ip}:${e.port}`,
  });
  return tunnel.stream;
}

function serveHttp1(socket: Duplex, ctx: TunnelContext, deps: TunnelHandlerDeps): void {
  const server = createH1Server({ maxHeaderSize: deps.maxHeaderBytes, requireHostHeader: false, keepAliveTimeout: 0, requestTimeout: 0, headersTimeout: 60_000, shouldUpgradeCallback: shouldUpgrade }, createHttpHandler(ctx, deps));
  server.on('upgrade', createUpgradeHandler(ctx, deps));
  server.on('clientError', (err, sock) => {
    deps.log.info({ code: ErrorCode.WAYPOINT_BAD_REQUEST, err: errorMessage(err), reason: errorCode(err) }, 'malformed HTTP/1.1 request');
    const status = errorCode(err) === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
    if (sock.writable) sock.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    else sock.destroy();
  });
  server.emit('connection', socket);
}

function serveHttp2(socket: TunnelSocket, ctx: TunnelContext, deps: TunnelHandlerDeps): void {
  socket.copyWrites = true; // node's HTTP/2 over a JS stream reuses its write buffers
  const handler = createHttpHandler(ctx, deps);
  const server = createH2Server({ maxSessionMemory: 16, settings: { maxConcurrentStreams: 100, maxHeaderListSize: deps.maxHeaderBytes, enableConnectProtocol: true } }, handler);
  server.on('connect', handler); // RFC 8441 extended CONNECT (WebSocket over HTTP/2), and plain CONNECT (refused)
  server.on('sessionError', (err) => deps.log.info({ code: ErrorCode.WAYPOINT_BAD_REQUEST, err: errorMessage(err) }, 'HTTP/2 session error'));
  server.on('session', (session) => session.on('error', (err) => deps.log.debug({ code: errorCode(err), err: errorMessage(err) }, 'HTTP/2 session error')));
  server.emit('connection', socket);
}

/** Envoy's HTTP inspector: read until the first bytes decide, put them back, and serve. */
function sniff(socket: TunnelSocket, deps: TunnelHandlerDeps, target: DispatchTarget, request: HboneRequest, context: (p: 'http1' | 'http2') => TunnelContext): void {
  let seen = Buffer.alloc(0);
  const decide = (verdict: 'http1' | 'http2' | 'tcp') => {
    socket.off('data', onData);
    socket.off('end', onEnd);
    socket.pause();
    if (verdict !== 'tcp') {
      socket.unshift(seen);
      if (verdict === 'http1') serveHttp1(socket, context('http1'), deps);
      else serveHttp2(socket, context('http2'), deps);
      socket.resume();
      return;
    }
    // TCP: the sniffed bytes go first, then the rest of the stream (which may already have ended).
    const endpoint = tcpEndpoint(deps, target, request);
    if (!endpoint) return void socket.destroy();
    openTcp(deps, endpoint).then(
      (upstream) => {
        upstream.on('error', () => socket.destroy());
        socket.on('error', () => upstream.destroy());
        upstream.once('close', () => socket.destroy());
        upstream.write(seen);
        if (socket.readableEnded || ended) upstream.end();
        else socket.pipe(upstream);
        upstream.pipe(socket);
        socket.resume();
      },
      (err: unknown) => {
        deps.log.info({ code: ErrorCode.WAYPOINT_TCP_UPSTREAM_FAILED, err: errorMessage(err) }, 'TCP upstream failed');
        socket.destroy();
      },
    );
  };
  let ended = false;
  const onData = (chunk: Buffer) => {
    seen = Buffer.concat([seen, chunk]);
    const verdict = sniffProtocol(seen);
    if (verdict !== 'more') decide(verdict);
    else if (seen.length >= SNIFF_LIMIT) decide('tcp');
  };
  const onEnd = () => {
    ended = true;
    decide(seen.length > 0 ? (() => { const v = sniffProtocol(seen); return v === 'more' ? 'tcp' : v; })() : 'tcp');
  };
  socket.on('data', onData);
  socket.once('end', onEnd);
}
