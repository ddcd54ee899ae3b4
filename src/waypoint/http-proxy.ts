import { randomBytes, randomUUID } from 'node:crypto';
import { ServerResponse, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { Readable, type Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode } from '../core/error-codes.ts';
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { SpiffeId } from '../identity/spiffe.ts';
import type { L7Reader } from '../workload-api/l7-store.ts';
import type { Service, Workload } from '../workload-api/types.ts';
import { authorizeRequest, RBAC_DENIED_BODY } from './authz.ts';
import { clusterName, type Destinations, type Endpoint } from './destinations.ts';
import { authenticate, JwksCache } from './jwt.ts';
import { httpLabels, type WaypointMetrics } from './metrics.ts';
import { normalizeRequestTarget, type PathNormalization } from './path.ts';
import { headerMap, type L7Request } from './request.ts';
import { retryBackoffMs, shouldRetry, type TryOutcome } from './retry.ts';
import { applyHeaderMutations, routeRequest, type ForwardDecision } from './router.ts';
import { readRequestBody, streamCopies, type RequestBody } from './body.ts';
import { evaluateCors } from './cors.ts';
import { classifyUpgrade, switchingProtocolsHead, type UpgradeClass, type UpgradeConnector, type UpgradeResult } from './upgrade.ts';
import { relay } from '../hbone/relay.ts';
import { TryFailure, type Upstream, type UpstreamResponse } from './upstream.ts';

/**
 * The waypoint's HTTP pipeline for one request, the same for HTTP/1.1 and HTTP/2 (node's compat
 * request/response): normalize the path, authorize (L7 policy), route, inject faults, then forward
 * with retries and timeouts to an endpoint chosen by the destination's load balancer, and report one
 * metric sample and one access-log record. Every decision comes from the pure functions; this file
 * only carries them out.
 */

/** What the HBONE tunnel told us: who is calling, and what it addressed. */
export interface TunnelContext {
  readonly peer: SpiffeId;
  readonly sourceWorkload: Workload | undefined;
  readonly remoteAddress: string;
  readonly port: number;
  readonly target: { readonly kind: 'service'; readonly service: Service } | { readonly kind: 'workload'; readonly workload: Workload; readonly ip: string };
  /** What the upstream speaks: the downstream protocol for sniffed ports. */
  readonly upstreamProtocol: 'http1' | 'http2';
}

export interface HttpProxyDeps {
  readonly l7: L7Reader;
  readonly destinations: Destinations;
  readonly upstream: Upstream;
  readonly metrics: WaypointMetrics;
  readonly accessLog: Logger;
  readonly log: Logger;
  readonly pathNormalization: PathNormalization;
  readonly clusterId: string;
  readonly random?: () => number;
  readonly jwks?: JwksCache;
  /** For HTTP/1.1 upgrades (WebSocket); without it an upgrade is answered 503. */
  readonly upgrades?: UpgradeConnector;
}

/**
 * An upgrade request's downstream side: an HTTP/1.1 connection handed over by node's `upgrade` event, or an
 * HTTP/2 extended CONNECT stream (RFC 8441, `:protocol`), answered 200 instead of 101.
 */
interface DownstreamUpgrade {
  readonly class: Exclude<UpgradeClass, { kind: 'none' | 'h2c' }>;
  readonly socket: Duplex;
  readonly head: Buffer;
  readonly h2: boolean;
}

const SHARED_JWKS = new JwksCache();
const NOT_AUTHENTICATED = { kind: 'none' } as const;

type Req = IncomingMessage | Http2ServerRequest;
type Res = ServerResponse | Http2ServerResponse;

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'host', 'http2-settings', 'trailer']);
const MAX_BUFFERED_BODY = 1024 * 1024;
const NO_BODY = Buffer.alloc(0);

interface Outcome {
  status: number;
  flags: string[];
  grpcStatus: string | undefined;
  responseBytes: number;
  upstream: Endpoint | undefined;
  cluster: string;
  route: string;
  details: string;
}

function headerBytes(headers: IncomingHttpHeaders | Record<string, string | string[] | number | undefined>): number {
  let n = 0;
  for (const [k, v] of Object.entries(headers)) n += k.length + String(v ?? '').length + 4;
  return n;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$/;
const ZERO_TRACE = '0'.repeat(32);

/** Random hex from a pool refilled 4 KiB at a time (one getrandom per 170 requests, not two per request). */
let randomPool = Buffer.alloc(0);
let randomAt = 0;
function randomHex(bytes: number): string {
  if (randomAt + bytes > randomPool.length) {
    randomPool = randomBytes(4096);
    randomAt = 0;
  }
  const hex = randomPool.toString('hex', randomAt, randomAt + bytes);
  randomAt += bytes;
  return hex;
}

/** A new traceparent continuing the request's trace (new parent span), or a new trace. */
export function propagateTraceparent(incoming: string | undefined): string {
  const m = incoming ? TRACEPARENT.exec(incoming) : null;
  const span = randomHex(8);
  if (m && m[1] !== ZERO_TRACE) return `00-${m[1]}-${span}-${m[2]}`;
  return `00-${randomHex(16)}-${span}-00`;
}

export function createHttpHandler(ctx: TunnelContext, deps: HttpProxyDeps): (req: Req, res: Res) => void {
  const random = deps.random ?? Math.random;
  return (req, res) => {
    req.on('error', () => {});
    res.on('error', () => {});
    handle(ctx, deps, random, req, res).catch((err: unknown) => {
      deps.log.error({ code: ErrorCode.WAYPOINT_REQUEST_FAILED, err: errorMessage(err) }, 'request handling failed');
      if (!res.headersSent) sendLocal(res, 500, 'internal error');
      else res.destroy();
    });
  };
}

/**
 * The handler of node's `upgrade` event (an HTTP/1.1 request with `Connection: upgrade`): the same pipeline
 * as any request, answered locally through a response bound to the socket, or upgraded and relayed.
 */
export function createUpgradeHandler(ctx: TunnelContext, deps: HttpProxyDeps): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const random = deps.random ?? Math.random;
  return (req, socket, head) => {
    socket.on('error', () => {});
    req.on('error', () => {});
    const c = classifyUpgrade(req.headers);
    if (c.kind === 'none' || c.kind === 'h2c') return void socket.destroy(); // node asked only for these (shouldUpgrade)
    const res = new ServerResponse(req);
    res.on('error', () => {});
    res.shouldKeepAlive = false;
    res.assignSocket(socket as Socket);
    res.once('finish', () => socket.end());
    handle(ctx, deps, random, req, res, { class: c, socket, head, h2: false }).catch((err: unknown) => {
      deps.log.error({ code: ErrorCode.WAYPOINT_REQUEST_FAILED, err: errorMessage(err) }, 'upgrade handling failed');
      if (!res.headersSent && !socket.destroyed) sendLocal(res, 500, 'internal error');
      else socket.destroy();
    });
  };
}

function sendLocal(res: Res, status: number, body: string, headers: Record<string, string> = {}): number {
  const bytes = Buffer.byteLength(body);
  const out = { ...(body ? { 'content-type': 'text/plain' } : {}), 'content-length': String(bytes), ...headers };
  if (res.headersSent) return 0;
  (res as ServerResponse).writeHead(status, out);
  res.end(body);
  return bytes + headerBytes(out);
}

async function handle(ctx: TunnelContext, deps: HttpProxyDeps, random: () => number, req: Req, res: Res, upgrade?: DownstreamUpgrade): Promise<void> {
  const start = Date.now();
  const startTime = new Date(start).toISOString();
  const isH2 = req.httpVersionMajor === 2;
  if (isH2 && req.method === 'CONNECT') {
    // RFC 8441 extended CONNECT: seen by routing and policy as the HTTP/1.1 upgrade it stands for (GET), as
    // Envoy's HTTP/2 codec turns it into one; any other CONNECT is an upgrade that is not configured.
    const protocol = String(req.headers[':protocol'] ?? '').toLowerCase();
    upgrade = { class: protocol === 'websocket' ? { kind: 'websocket' } : { kind: 'unsupported', token: protocol || 'connect' }, socket: (req as Http2ServerRequest).stream, head: Buffer.alloc(0), h2: true };
  }
  const headers = headerMap(req.headers as IncomingHttpHeaders);
  const authority = String((isH2 ? req.headers[':authority'] : undefined) ?? req.headers.host ?? '');
  const requestId = headers.get('x-request-id') || randomUUID();
  headers.set('x-request-id', requestId);
  const isGrpc = (headers.get('content-type') ?? '').startsWith('application/grpc');
  const protocol: 'http' | 'grpc' = isGrpc ? 'grpc' : 'http';
  const service = ctx.target.kind === 'service' ? ctx.target.service : undefined;
  let requestBytes = headerBytes(req.headers as IncomingHttpHeaders);
  const outcome: Outcome = { status: 0, flags: [], grpcStatus: undefined, responseBytes: 0, upstream: undefined, cluster: '', route: '', details: '' };
  let downstreamGone = false;
  res.once('close', () => {
    if (!res.writableFinished) downstreamGone = true;
  });

  const finish = () => {
    const flags = outcome.flags.length > 0 ? [...new Set(outcome.flags)].join(',') : '-';
    const durationMs = Date.now() - start;
    deps.metrics.record({
      labels: httpLabels({
        source: { identity: ctx.peer, workload: ctx.sourceWorkload },
        destination: { service, workload: outcome.upstream?.workload ?? (ctx.target.kind === 'workload' ? ctx.target.workload : undefined) },
        protocol,
        responseCode: outcome.status,
        grpcStatus: outcome.grpcStatus,
        responseFlags: flags,
        clusterId: deps.clusterId,
        trustDomain: ctx.peer.trustDomain,
      }),
      durationMs,
      requestBytes,
      responseBytes: outcome.responseBytes,
    });
    deps.accessLog.info({
      start_time: startTime,
      method: req.method,
      path: req.url,
      protocol: isH2 ? 'HTTP/2' : `HTTP/${req.httpVersion}`,
      response_code: outcome.status,
      response_flags: flags,
      response_code_details: outcome.details || 'via_upstream',
      bytes_received: requestBytes,
      bytes_sent: outcome.responseBytes,
      duration: durationMs,
      x_forwarded_for: headers.get('x-forwarded-for'),
      user_agent: headers.get('user-agent'),
      request_id: requestId,
      authority,
      upstream_host: outcome.upstream ? `${outcome.upstream.ip}:${outcome.upstream.port}` : undefined,
      upstream_cluster: outcome.cluster || undefined,
      downstream_remote_address: ctx.remoteAddress,
      route_name: outcome.route || undefined,
      source_principal: `spiffe://${ctx.peer.trustDomain}/ns/${ctx.peer.namespace}/sa/${ctx.peer.serviceAccount}`,
      grpc_status: outcome.grpcStatus,
    }, 'request');
  };
  // CORS headers for the response, once the route's policy has been evaluated (local replies get them too).
  let corsHeaders: ReadonlyArray<readonly [string, string]> = [];
  const local = (status: number, body: string, flag: string | undefined, details: string, extra: Record<string, string> = {}) => {
    outcome.status = status;
    if (flag) outcome.flags.push(flag);
    outcome.details = details;
    outcome.responseBytes = sendLocal(res, status, body, { ...extra, ...Object.fromEntries(corsHeaders) });
    req.resume();
    finish();
  };

  const target = normalizeRequestTarget(req.url ?? '/', deps.pathNormalization);
  if (!target.ok) return local(400, 'Bad Request', 'DPE', `path_normalization_failed: ${target.errors.join('; ')}`);

  // RequestAuthentication: a token that fails is refused; a verified one gives request.auth.*.
  const authentications = service ? deps.l7.requestAuthenticationsFor(service.namespace, service.hostname) : deps.l7.requestAuthenticationsFor('', '');
  const jwt = authentications.length === 0 ? NOT_AUTHENTICATED : await authenticate(authentications, headers, target.value.query, deps.jwks ?? SHARED_JWKS);
  if (jwt.kind === 'invalid') {
    deps.log.info({ code: ErrorCode.WAYPOINT_JWT_INVALID, reason: jwt.reason, request_id: requestId }, 'JWT refused');
    return local(401, 'Jwt verification fails', undefined, `jwt_authn_access_denied{${jwt.reason.replace(/[^\w.: -]/g, '_')}}`, { 'www-authenticate': 'Bearer realm="http://' + authority + '", error="invalid_token"' });
  }
  if (jwt.kind === 'verified') for (const name of jwt.strip) headers.delete(name);

  const l7request: L7Request = {
    ...(jwt.kind === 'verified' ? { auth: { principal: jwt.principal, claims: jwt.claims, audiences: jwt.audiences, presenter: jwt.presenter } } : {}),
    method: upgrade?.h2 && upgrade.class.kind === 'websocket' ? 'GET' : (req.method ?? 'GET'),
    path: target.value.path,
    query: target.value.query,
    authority,
    scheme: 'http',
    headers,
    port: ctx.port,
    source: {
      principal: `${ctx.peer.trustDomain}/ns/${ctx.peer.namespace}/sa/${ctx.peer.serviceAccount}`,
      namespace: ctx.peer.namespace,
      ip: ctx.remoteAddress,
    },
  };

  // An upgrade other than WebSocket on a request that has a route: Envoy's 403 `upgrade_failed`, before any filter.
  if (upgrade?.class.kind === 'unsupported') {
    const routed = service ? routeRequest({ request: l7request, service: { namespace: service.namespace, hostname: service.hostname }, config: deps.l7.routeConfiguration(service.namespace, service.hostname), random }) : undefined;
    if (routed?.kind !== 'no-route') {
      deps.log.info({ code: ErrorCode.WAYPOINT_UPGRADE_REJECTED, upgrade: upgrade.class.token, request_id: requestId }, 'upgrade refused: only websocket is configured');
      return local(403, '', undefined, 'upgrade_failed');
    }
  }

  // L7 authorization: the policies attached to the service (or to the whole waypoint).
  const policies = service ? deps.l7.authorizationPoliciesFor(service.namespace, service.hostname) : deps.l7.authorizationPoliciesFor('', '');
  const authz = authorizeRequest(policies, l7request);
  if (authz.dryRun.length > 0) deps.log.info({ code: ErrorCode.WAYPOINT_AUTHZ_DRY_RUN, policies: authz.dryRun, request_id: requestId }, 'dry-run policy matched');
  if (!authz.allowed) {
    deps.log.info({ code: ErrorCode.WAYPOINT_AUTHZ_DENIED, policy: authz.policy, reason: authz.reason, request_id: requestId }, 'request denied');
    return local(403, RBAC_DENIED_BODY, 'RBAC', `rbac_access_denied_matched_policy[${authz.policy}]`);
  }

  // Routing.
  let decision: ForwardDecision;
  if (ctx.target.kind === 'workload') {
    decision = { kind: 'forward', route: 'direct', backend: { namespace: '', hostname: '', port: ctx.port, subset: '' }, path: `${l7request.path}${l7request.query ? `?${l7request.query}` : ''}`, authority, requestHeaders: [], responseHeaders: [], timeoutMs: undefined, retries: { attempts: 0, retryOn: [], retriableStatusCodes: [] }, delayMs: 0, mirrors: [] };
  } else {
    const s = ctx.target.service;
    const routed = routeRequest({ request: l7request, service: { namespace: s.namespace, hostname: s.hostname }, config: deps.l7.routeConfiguration(s.namespace, s.hostname), random });
    // CORS: after the route is chosen, before faults; a redirect bypasses it.
    const cors = evaluateCors(routed.kind === 'forward' || routed.kind === 'abort' ? routed.cors : undefined, l7request.method, headers);
    if (cors.kind === 'preflight' && !upgrade) {
      outcome.route = routed.kind === 'forward' || routed.kind === 'abort' ? routed.route : '';
      return local(200, '', undefined, 'cors_response', cors.headers);
    }
    if (cors.kind === 'forward') corsHeaders = cors.responseHeaders;
    switch (routed.kind) {
      case 'no-route':
        return local(404, '', 'NR', 'route_not_found');
      case 'redirect':
        outcome.route = routed.route;
        return local(routed.status, '', undefined, 'direct_response', { location: routed.location });
      case 'abort': {
        outcome.route = routed.route;
        if (routed.delayMs > 0) {
          outcome.flags.push('DI');
          await sleep(routed.delayMs);
        }
        if (routed.abort.kind === 'grpc') {
          return local(200, '', 'FI', 'fault_filter_abort', { 'content-type': 'application/grpc', 'grpc-status': String(routed.abort.status), 'grpc-message': 'fault filter abort' });
        }
        return local(routed.abort.status, 'fault filter abort', 'FI', 'fault_filter_abort');
      }
      case 'forward':
        decision = routed;
    }
  }
  outcome.route = decision.route;
  if (decision.delayMs > 0) {
    outcome.flags.push('DI');
    await sleep(decision.delayMs);
    if (downstreamGone) return;
  }

  // The request body: buffered up to 1 MiB (so it can be retried and mirrored with the same bytes), else
  // streamed: one try only (Envoy abandons retries past its buffer limit), mirrors fed as it streams.
  let body: Buffer | Readable;
  let streamed: Extract<RequestBody, { kind: 'streamed' }> | undefined;
  let replayable = true;
  if (upgrade) {
    body = Buffer.alloc(0); // an upgrade request has no body: what follows its headers is the upgraded stream
  } else if (isGrpc) {
    body = req as Readable;
    replayable = false;
  } else if (!isH2 && req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined) {
    // An HTTP/1.1 request without Content-Length or Transfer-Encoding has no body (RFC 9112 §6.3).
    body = NO_BODY;
    req.resume();
  } else {
    const read = await readRequestBody(req as Readable, MAX_BUFFERED_BODY, (n) => (requestBytes += n));
    if (read.kind === 'buffered') body = read.body;
    else {
      streamed = read;
      replayable = false;
      body = Readable.from([]); // replaced below, once the mirrors are known
    }
  }

  // Upstream request headers: hop-by-hop removed, route and backend mutations applied, tracing.
  const upstreamHeaders = new Map<string, string>();
  for (const [k, v] of headers) if (!HOP_BY_HOP.has(k) && !k.startsWith(':')) upstreamHeaders.set(k, v);
  if (isH2 && headers.get('te') === 'trailers') upstreamHeaders.set('te', 'trailers');
  upstreamHeaders.set('x-forwarded-proto', 'http');
  const traceparent = propagateTraceparent(headers.get('traceparent'));
  upstreamHeaders.set('traceparent', traceparent);
  applyHeaderMutations(upstreamHeaders, decision.requestHeaders);
  if (upgrade?.h2 && upgrade.class.kind === 'websocket') {
    // The HTTP/1.1 handshake needs a key (RFC 6455 §4.1) that an HTTP/2 client does not send (RFC 8441 §5).
    if (!upstreamHeaders.has('sec-websocket-key')) upstreamHeaders.set('sec-websocket-key', randomBytes(16).toString('base64'));
    if (!upstreamHeaders.has('sec-websocket-version')) upstreamHeaders.set('sec-websocket-version', '13');
  }

  const backend = decision.backend;
  const pool = ctx.target.kind === 'service' ? deps.destinations.policy(backend).connectionPool : undefined;
  const overall = new AbortController();
  let timedOut = false;
  const overallTimer = decision.timeoutMs ? setTimeout(() => {
    timedOut = true;
    overall.abort();
  }, decision.timeoutMs) : undefined;
  overallTimer?.unref();

  // Mirrors: fire and forget, with the same body (buffered, or a streamed copy), their answers dropped.
  const mirrors = upgrade || isGrpc ? [] : decision.mirrors.flatMap((m) => {
    const picked = deps.destinations.pick(m, l7request);
    return picked.ok ? [picked] : [];
  });
  if (streamed) {
    const copies = streamCopies(streamed, mirrors.length, {
      maxLagBytes: MAX_BUFFERED_BODY,
      onDrop: (i, reason) => deps.log.info({ code: ErrorCode.WAYPOINT_MIRROR_DROPPED, cluster: mirrors[i]?.cluster, reason, request_id: requestId }, 'mirror dropped'),
    });
    body = copies.main;
    mirrors.forEach((m, i) => mirrorRequest(deps, ctx, m, l7request, decision, upstreamHeaders, copies.branches[i] as Readable));
    if (decision.retries.attempts > 0) {
      deps.metrics.retryOrShadowAbandoned?.(ctx.target.kind === 'service' ? clusterName(backend) : `encap|${ctx.target.ip}:${ctx.port}`);
      deps.log.debug({ code: ErrorCode.WAYPOINT_RETRY_ABANDONED, request_id: requestId, limit: MAX_BUFFERED_BODY }, 'request body exceeds the retry buffer limit: retries abandoned');
    }
  } else if (Buffer.isBuffer(body) && !upgrade) {
    for (const m of mirrors) mirrorRequest(deps, ctx, m, l7request, decision, upstreamHeaders, body);
  }

  const tried = new Set<string>();
  let retriesDone = 0;
  let response: UpstreamResponse | undefined;
  let lastFailure: TryOutcome | undefined;
  let lastMessage = '';
  try {
    if (upgrade) {
      // One attempt, no retries: on 101 the two sides are relayed as bytes; any other answer is passed on below.
      const attempt = await upgradeAttempt(ctx, deps, upgrade, { l7request, decision, headers: upstreamHeaders, traceparent, pool, signal: overall.signal, outcome, requestId });
      if (attempt.kind === 'local') return local(...attempt.reply);
      if (attempt.kind === 'upgraded') {
        clearTimeout(overallTimer); // the route timeout ends with the 101
        if (!upgrade.h2) (res as ServerResponse).detachSocket(upgrade.socket as Socket);
        outcome.status = upgrade.h2 ? 200 : 101;
        const relayed = await relayUpgraded(upgrade, attempt, decision, res);
        outcome.responseBytes = relayed.responseBytes;
        requestBytes += relayed.requestBytes;
        if (relayed.error) deps.log.debug({ code: ErrorCode.WAYPOINT_UPGRADE_FAILED, err: relayed.error, request_id: requestId }, 'upgraded stream ended with an error');
        finish();
        return;
      }
      if (attempt.kind === 'response') response = attempt.response;
      else {
        lastFailure = attempt.failure;
        lastMessage = attempt.message;
      }
    }
    while (!upgrade) {
      const chosen = chooseEndpoint(ctx, deps, backend, l7request, tried);
      if (!chosen.ok) {
        outcome.cluster = chosen.cluster;
        return local(503, 'no healthy upstream', 'UH', 'no_healthy_upstream');
      }
      const { endpoint, cluster } = chosen;
      outcome.cluster = cluster;
      outcome.upstream = endpoint;
      tried.add(endpoint.workload.uid);

      const admission = await deps.destinations.admit(cluster, pool, ctx.upstreamProtocol);
      if (!admission.ok) {
        deps.log.info({ code: ErrorCode.WAYPOINT_POOL_OVERFLOW, cluster, request_id: requestId }, 'connection pool overflow');
        return local(503, 'upstream connect error or disconnect/reset before headers. reset reason: overflow', 'UO', 'upstream_reset_before_response_started{overflow}');
      }
      const tryAbort = new AbortController();
      const onOverall = () => tryAbort.abort();
      overall.signal.addEventListener('abort', onOverall, { once: true });
      const perTry = decision.retries.perTryTimeoutMs ? setTimeout(() => tryAbort.abort(), decision.retries.perTryTimeoutMs) : undefined;
      const done = deps.destinations.begin(cluster, backend, endpoint.workload.uid);
      let tryOutcome: TryOutcome;
      try {
        response = await deps.upstream.send({
          endpoint,
          protocol: ctx.upstreamProtocol,
          method: l7request.method,
          path: decision.path,
          authority: decision.authority,
          headers: upstreamHeaders,
          body: Buffer.isBuffer(body) ? body : body,
          signal: tryAbort.signal,
          traceparent,
          clientAddress: ctx.remoteAddress,
          connectionPool: pool,
        });
        const grpc = response.headers['grpc-status'];
        tryOutcome = { kind: 'response', status: response.status, grpcStatus: grpc === undefined ? undefined : Number(grpc) };
        done({ kind: 'response', status: response.status });
      } catch (err) {
        response = undefined;
        const failure = err instanceof TryFailure ? err : new TryFailure({ kind: 'reset' }, errorMessage(err), 'UNKNOWN');
        tryOutcome = tryAbort.signal.aborted && !overall.signal.aborted ? { kind: 'per-try-timeout' } : failure.outcome;
        lastMessage = failure.message;
        done({ kind: 'local-failure' });
      } finally {
        clearTimeout(perTry);
        overall.signal.removeEventListener('abort', onOverall);
        admission.release();
      }
      if (timedOut || downstreamGone) {
        response?.discard();
        response = undefined;
        break;
      }
      lastFailure = tryOutcome;
      const slot = replayable ? deps.destinations.retrySlot(cluster, pool) : undefined;
      const verdict = replayable
        ? shouldRetry(decision.retries, tryOutcome, { retriesDone, ...(slot ? {} : { activeRetries: 1, maxRetries: 0 }) })
        : { retry: false as const, reason: 'not-retriable' as const };
      if (streamed && shouldRetry(decision.retries, tryOutcome, { retriesDone }).retry) {
        deps.log.info({ code: ErrorCode.WAYPOINT_RETRY_ABANDONED, request_id: requestId, outcome: tryOutcome.kind, cluster, limit: MAX_BUFFERED_BODY }, 'retry skipped: the request body was streamed, not buffered');
      }
      if (!verdict.retry) {
        slot?.();
        if (verdict.reason !== 'not-retriable') outcome.flags.push('URX');
        break;
      }
      response?.discard();
      response = undefined;
      retriesDone++;
      deps.log.debug({ code: ErrorCode.WAYPOINT_RETRY, request_id: requestId, attempt: retriesDone, outcome: tryOutcome.kind, cluster }, 'retrying');
      await sleep(retryBackoffMs(retriesDone - 1, random()));
      slot?.();
      if (timedOut || downstreamGone) break;
    }

    if (timedOut) {
      outcome.status = 504;
      return local(504, 'upstream request timeout', 'UT', 'upstream_response_timeout');
    }
    if (downstreamGone) {
      outcome.status = 0;
      outcome.flags.push('DC');
      finish();
      return;
    }
    if (!response) {
      const kind = lastFailure?.kind;
      if (kind === 'per-try-timeout') return local(504, 'upstream request timeout', 'UT', 'upstream_per_try_timeout');
      if (kind === 'connect-failure') return local(503, 'upstream connect error or disconnect/reset before headers. reset reason: connection failure', 'UF', `upstream_reset_before_response_started{connection_failure}: ${lastMessage}`);
      return local(503, 'upstream connect error or disconnect/reset before headers. reset reason: connection termination', 'UC', 'upstream_reset_before_response_started{connection_termination}');
    }

    // Pass the response on.
    const out: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(response.headers)) if (v !== undefined && !HOP_BY_HOP.has(k) && !k.startsWith(':')) out[k] = v as string | string[];
    const mutable = new Map(Object.entries(out).map(([k, v]) => [k, Array.isArray(v) ? v.join(',') : v] as [string, string]));
    applyHeaderMutations(mutable, decision.responseHeaders);
    for (const [k, v] of corsHeaders) mutable.set(k, v);
    const final: Record<string, string | string[]> = {};
    for (const [k, v] of mutable) final[k] = k === 'set-cookie' && Array.isArray(out[k]) ? (out[k] as string[]) : v;
    outcome.status = response.status;
    if (response.headers['grpc-status'] !== undefined) outcome.grpcStatus = String(response.headers['grpc-status']);
    (res as ServerResponse).writeHead(response.status, final);
    outcome.responseBytes = headerBytes(final);
    const copied = await copyBody(response.body, res as ServerResponse, (n) => (outcome.responseBytes += n), () => timedOut);
    if (!copied.ok) {
      deps.log.info({ code: ErrorCode.WAYPOINT_UPSTREAM_RESET, err: copied.reason, request_id: requestId, cluster: outcome.cluster }, 'upstream response failed after its headers');
      outcome.flags.push(timedOut ? 'UT' : 'UC');
      res.destroy();
      finish();
      return;
    }
    const trailers = response.trailers();
    if (trailers) {
      const t: Record<string, string> = {};
      for (const [k, v] of Object.entries(trailers)) if (v !== undefined && !k.startsWith(':')) t[k] = Array.isArray(v) ? v.join(',') : String(v);
      if (t['grpc-status'] !== undefined) outcome.grpcStatus = t['grpc-status'];
      if (isH2) res.addTrailers(t);
      outcome.responseBytes += headerBytes(t);
    }
    res.end();
    finish();
  } finally {
    clearTimeout(overallTimer);
  }
}

/**
 * Copies the upstream body to the downstream response with backpressure. An upstream HTTP/2 stream
 * that is reset with NO_ERROR once it has sent everything (RFC 9113 §8.1: a server may do so to stop
 * the request body) counts as a clean end, not as a failure.
 */
function copyBody(body: Readable, res: ServerResponse, count: (n: number) => void, timedOut: () => boolean): Promise<{ ok: true } | { ok: false; reason: string }> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (result: { ok: true } | { ok: false; reason: string }) => {
      if (settled) return;
      settled = true;
      body.off('data', onData);
      res.off('drain', onDrain);
      resolve(result);
    };
    const onDrain = () => body.resume();
    const onData = (chunk: Buffer) => {
      count(chunk.length);
      if (timedOut()) return done({ ok: false, reason: 'timeout' });
      if (!res.write(chunk)) body.pause();
    };
    body.on('data', onData);
    res.on('drain', onDrain);
    body.once('end', () => done({ ok: true }));
    body.once('error', (err) => done({ ok: false, reason: errorMessage(err) }));
    body.once('close', () => {
      const rst = (body as Readable & { rstCode?: number }).rstCode;
      if (body.readableEnded || rst === 0) done({ ok: true });
      else done({ ok: false, reason: rst === undefined ? 'upstream closed before the end of the response' : `upstream reset the stream (code ${rst})` });
    });
    res.once('close', () => done({ ok: false, reason: 'downstream closed' }));
  });
}

function mirrorRequest(deps: HttpProxyDeps, ctx: TunnelContext, picked: { endpoint: Endpoint; cluster: string }, request: L7Request, decision: ForwardDecision, headers: ReadonlyMap<string, string>, body: Buffer | Readable): void {
  const shadowHeaders = new Map(headers);
  const [host = decision.authority, port] = decision.authority.split(':');
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 10_000);
  timer.unref();
  deps.upstream
    .send({
      endpoint: picked.endpoint,
      protocol: ctx.upstreamProtocol,
      method: request.method,
      path: decision.path,
      authority: `${host}-shadow${port ? `:${port}` : ''}`,
      headers: shadowHeaders,
      body,
      signal: controller.signal,
      traceparent: headers.get('traceparent') ?? propagateTraceparent(undefined),
      clientAddress: ctx.remoteAddress,
    })
    .then((r) => r.body.resume().once('end', () => clearTimeout(timer)), (err: unknown) => {
      clearTimeout(timer);
      if (!Buffer.isBuffer(body)) body.destroy();
      deps.log.debug({ code: ErrorCode.WAYPOINT_MIRROR_FAILED, err: errorMessage(err), cluster: picked.cluster }, 'mirror request failed');
    });
}

type UpgradeAttempt =
  | { readonly kind: 'local'; readonly reply: [status: number, body: string, flag: string | undefined, details: string] }
  | Extract<UpgradeResult, { kind: 'upgraded' }>
  | Extract<UpgradeResult, { kind: 'response' }>
  | { readonly kind: 'failed'; readonly failure: TryOutcome; readonly message: string };

/**
 * Where one try goes: a tunnel to a pod goes to that pod (cluster `encap|ip:port`); one to a service goes to
 * the endpoint its backend's load balancer picks, skipping those already `tried`.
 */
function chooseEndpoint(
  ctx: TunnelContext,
  deps: HttpProxyDeps,
  backend: ForwardDecision['backend'],
  request: L7Request,
  tried?: ReadonlySet<string>,
): { ok: true; endpoint: Endpoint; cluster: string } | { ok: false; cluster: string } {
  if (ctx.target.kind === 'workload') {
    return { ok: true, endpoint: { workload: ctx.target.workload, ip: ctx.target.ip, port: ctx.port }, cluster: `encap|${ctx.target.ip}:${ctx.port}` };
  }
  const picked = deps.destinations.pick(backend, request, tried);
  return picked.ok ? { ok: true, endpoint: picked.endpoint, cluster: picked.cluster } : { ok: false, cluster: picked.cluster };
}

/** The single try of an upgrade: pick the endpoint, admit it to the pool, ask for the upgrade over HBONE. */
async function upgradeAttempt(
  ctx: TunnelContext,
  deps: HttpProxyDeps,
  upgrade: DownstreamUpgrade,
  a: { l7request: L7Request; decision: ForwardDecision; headers: ReadonlyMap<string, string>; traceparent: string; pool: Parameters<Destinations['admit']>[1]; signal: AbortSignal; outcome: Outcome; requestId: string },
): Promise<UpgradeAttempt> {
  const chosen = chooseEndpoint(ctx, deps, a.decision.backend, a.l7request);
  if (!chosen.ok) {
    a.outcome.cluster = chosen.cluster;
    return { kind: 'local', reply: [503, 'no healthy upstream', 'UH', 'no_healthy_upstream'] };
  }
  const { endpoint, cluster } = chosen;
  a.outcome.cluster = cluster;
  a.outcome.upstream = endpoint;
  if (!deps.upgrades) return { kind: 'local', reply: [503, 'upgrades are not available', undefined, 'upgrade_failed'] };
  const admission = await deps.destinations.admit(cluster, a.pool, 'http1');
  if (!admission.ok) {
    deps.log.info({ code: ErrorCode.WAYPOINT_POOL_OVERFLOW, cluster, request_id: a.requestId }, 'connection pool overflow');
    return { kind: 'local', reply: [503, 'upstream connect error or disconnect/reset before headers. reset reason: overflow', 'UO', 'upstream_reset_before_response_started{overflow}'] };
  }
  const done = deps.destinations.begin(cluster, a.decision.backend, endpoint.workload.uid);
  try {
    const result = await deps.upgrades.connect({
      endpoint,
      method: a.l7request.method,
      path: a.decision.path,
      authority: a.decision.authority,
      headers: a.headers,
      upgrade: upgrade.class.kind === 'websocket' ? 'websocket' : upgrade.class.token,
      signal: a.signal,
      traceparent: a.traceparent,
      clientAddress: ctx.remoteAddress,
    });
    done({ kind: 'response', status: result.kind === 'upgraded' ? 101 : result.response.status });
    return result;
  } catch (err) {
    done({ kind: 'local-failure' });
    const failure = err instanceof TryFailure ? err : new TryFailure({ kind: 'reset' }, errorMessage(err), 'UNKNOWN');
    deps.log.info({ code: ErrorCode.WAYPOINT_UPGRADE_FAILED, err: failure.message, cluster, request_id: a.requestId }, 'upgrade to the upstream failed');
    return { kind: 'failed', failure: failure.outcome, message: failure.message };
  } finally {
    admission.release();
  }
}

/** Writes the 101 to the downstream and relays both sides as bytes until either closes. */
async function relayUpgraded(upgrade: DownstreamUpgrade, up: Extract<UpgradeResult, { kind: 'upgraded' }>, decision: ForwardDecision, res: Res): Promise<{ requestBytes: number; responseBytes: number; error?: string }> {
  const mutable = new Map<string, string>();
  for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) mutable.set(k, Array.isArray(v) ? v.join(',') : v);
  applyHeaderMutations(mutable, decision.responseHeaders);
  let head: string;
  if (upgrade.h2) {
    // RFC 8441 §5: a 200 on the stream; the handshake's Sec-WebSocket-Accept has no meaning in HTTP/2.
    mutable.delete('sec-websocket-accept');
    const out = Object.fromEntries(mutable);
    (res as Http2ServerResponse).writeHead(200, out);
    head = '';
    for (const [k, v] of mutable) head += `${k}: ${v}\r\n`;
  } else {
    head = switchingProtocolsHead(new Map<string, string>([['connection', 'Upgrade'], ['upgrade', String(up.headers.upgrade ?? 'websocket')], ...mutable]));
    upgrade.socket.write(head);
  }
  if (up.head.length > 0) upgrade.socket.write(up.head);
  if (upgrade.head.length > 0) up.socket.write(upgrade.head);
  const result = await relay(upgrade.socket, up.socket);
  return {
    requestBytes: upgrade.head.length + result.bytesDownstreamToUpstream,
    responseBytes: Buffer.byteLength(head) + up.head.length + result.bytesUpstreamToDownstream,
    ...(result.error ? { error: result.error.message } : {}),
  };
}
