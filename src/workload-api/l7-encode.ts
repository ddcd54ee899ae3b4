import type { AuthorizationPolicy as AuthorizationPolicyWire } from './generated/ambient/l7/AuthorizationPolicy.ts';
import type { DestinationPolicy as DestinationPolicyWire } from './generated/ambient/l7/DestinationPolicy.ts';
import type { HeaderMutation as HeaderMutationWire } from './generated/ambient/l7/HeaderMutation.ts';
import type { HttpRoute as HttpRouteWire } from './generated/ambient/l7/HttpRoute.ts';
import type { RequestAuthentication as RequestAuthenticationWire } from './generated/ambient/l7/RequestAuthentication.ts';
import type { RouteConfiguration as RouteConfigurationWire } from './generated/ambient/l7/RouteConfiguration.ts';
import type { StringMatch as StringMatchWire } from './generated/ambient/l7/StringMatch.ts';
import type { TrafficPolicy as TrafficPolicyWire } from './generated/ambient/l7/TrafficPolicy.ts';
import type { Duration } from './generated/google/protobuf/Duration.ts';
import type {
  DestinationPolicy, HeaderMutation, HttpRoute, L7AuthorizationPolicy, L7StringMatch, RequestAuthentication, RouteConfiguration, TrafficPolicy,
} from './l7-types.ts';
import { encodeMessage } from './proto.ts';

/**
 * Domain → wire encoding of the waypoint's L7 resources (proto/l7.proto), the inverse of `l7-convert.ts`:
 * what the control plane puts into its snapshot. `routeConfigurationFromWire(decode(encode(x)))` gives `x` back.
 */

function duration(ms: number | undefined): Duration | undefined {
  if (ms === undefined) return undefined;
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

function stringMatch(m: L7StringMatch | undefined): StringMatchWire | undefined {
  return m === undefined ? undefined : { [m.kind]: m.value };
}

function mutation(m: HeaderMutation | undefined): HeaderMutationWire | undefined {
  if (m === undefined) return undefined;
  const pairs = (list: HeaderMutation['set']) => list.map(([name, value]) => ({ name, value }));
  return { set: pairs(m.set), add: pairs(m.add), remove: [...m.remove] };
}

function route(r: HttpRoute): HttpRouteWire {
  return {
    name: r.name,
    matches: r.matches.map((m) => ({
      path: stringMatch(m.path) ?? null,
      headers: m.headers.map((h) => ({ name: h.name, value: stringMatch(h.value) ?? null, invert: h.invert })),
      queryParams: m.queryParams.map((q) => ({ name: q.name, value: stringMatch(q.value) ?? null })),
      method: m.method ?? '',
    })),
    backends: r.backends.map((b) => ({
      namespace: b.namespace, hostname: b.hostname, port: b.port, subset: b.subset, weight: b.weight,
      requestHeaders: mutation(b.requestHeaders) ?? null, responseHeaders: mutation(b.responseHeaders) ?? null,
    })),
    requestHeaders: mutation(r.requestHeaders) ?? null,
    responseHeaders: mutation(r.responseHeaders) ?? null,
    redirect: r.redirect === undefined ? null : {
      scheme: r.redirect.scheme ?? '',
      host: r.redirect.host ?? '',
      port: r.redirect.port ?? 0,
      ...(r.redirect.path?.kind === 'full' ? { fullPath: r.redirect.path.value } : r.redirect.path?.kind === 'prefix' ? { prefixMatch: r.redirect.path.value } : {}),
      statusCode: r.redirect.statusCode,
    },
    rewrite: r.rewrite === undefined ? null : {
      ...(r.rewrite.path?.kind === 'full' ? { fullPath: r.rewrite.path.value } : r.rewrite.path?.kind === 'prefix' ? { prefixMatch: r.rewrite.path.value } : {}),
      host: r.rewrite.host ?? '',
    },
    timeout: duration(r.timeoutMs) ?? null,
    retries: r.retries === undefined ? null : {
      attempts: r.retries.attempts,
      perTryTimeout: duration(r.retries.perTryTimeoutMs) ?? null,
      retryOn: [...r.retries.retryOn],
      retriableStatusCodes: [...r.retries.retriableStatusCodes],
    },
    fault: r.fault === undefined ? null : {
      delay: r.fault.delay === undefined ? null : { fixedDelay: duration(r.fault.delay.fixedDelayMs) ?? null, percentage: { value: r.fault.delay.percentage } },
      abort: r.fault.abort === undefined ? null : {
        ...(r.fault.abort.kind === 'http' ? { httpStatus: r.fault.abort.status } : { grpcStatus: r.fault.abort.status }),
        percentage: { value: r.fault.abort.percentage },
      },
    },
    mirrors: r.mirrors.map((m) => ({ namespace: m.namespace, hostname: m.hostname, port: m.port, subset: m.subset, percentage: { value: m.percentage } })),
    cors: r.cors === undefined ? null : {
      allowOrigins: r.cors.allowOrigins.map((m) => stringMatch(m) as StringMatchWire),
      allowMethods: [...r.cors.allowMethods],
      allowHeaders: [...r.cors.allowHeaders],
      exposeHeaders: [...r.cors.exposeHeaders],
      maxAge: r.cors.maxAgeSeconds === undefined ? null : { seconds: r.cors.maxAgeSeconds, nanos: 0 },
      allowCredentials: { value: r.cors.allowCredentials },
      forwardNotMatchingPreflights: { value: r.cors.forwardNotMatchingPreflights },
    },
  };
}

/** The `ambient.l7.RouteConfiguration` bytes. */
export function encodeRouteConfiguration(rc: RouteConfiguration): Buffer {
  const wire: RouteConfigurationWire = { namespace: rc.namespace, hostname: rc.hostname, ports: [...rc.ports], routes: rc.routes.map(route) };
  return encodeMessage('ambient.l7.RouteConfiguration', wire);
}

function trafficPolicy(tp: TrafficPolicy | undefined): TrafficPolicyWire | null {
  if (tp === undefined) return null;
  const lb = tp.loadBalancer;
  const cp = tp.connectionPool;
  const od = tp.outlierDetection;
  const u32 = (v: number | undefined) => (v === undefined ? null : { value: v });
  return {
    loadBalancer: lb === undefined ? null : lb.kind === 'hash'
      ? {
        consistentHash: lb.key.kind === 'source-ip' ? { useSourceIp: true }
          : lb.key.kind === 'header' ? { httpHeaderName: lb.key.name }
          : lb.key.kind === 'cookie' ? { httpCookieName: lb.key.name } : { httpQueryParameterName: lb.key.name },
      }
      : { simple: lb.kind === 'round-robin' ? 'ROUND_ROBIN' : lb.kind === 'least-request' ? 'LEAST_REQUEST' : 'RANDOM' },
    connectionPool: cp === undefined ? null : {
      maxConnections: u32(cp.maxConnections),
      http1MaxPendingRequests: u32(cp.http1MaxPendingRequests),
      http2MaxRequests: u32(cp.http2MaxRequests),
      maxRequestsPerConnection: u32(cp.maxRequestsPerConnection),
      maxRetries: u32(cp.maxRetries),
      connectTimeout: duration(cp.connectTimeoutMs) ?? null,
    },
    outlierDetection: od === undefined ? null : {
      consecutive_5xxErrors: { value: od.consecutive5xxErrors },
      consecutiveGatewayErrors: { value: od.consecutiveGatewayErrors },
      interval: duration(od.intervalMs) ?? null,
      baseEjectionTime: duration(od.baseEjectionTimeMs) ?? null,
      maxEjectionPercent: { value: od.maxEjectionPercent },
      minHealthPercent: { value: od.minHealthPercent },
    },
  };
}

/** The `ambient.l7.DestinationPolicy` bytes. */
export function encodeDestinationPolicy(dp: DestinationPolicy): Buffer {
  const wire: DestinationPolicyWire = {
    namespace: dp.namespace,
    hostname: dp.hostname,
    trafficPolicy: trafficPolicy(dp.trafficPolicy),
    subsets: dp.subsets.map((s) => ({ name: s.name, labels: Object.fromEntries(s.labels), workloadUids: [...s.workloadUids], trafficPolicy: trafficPolicy(s.trafficPolicy) })),
  };
  return encodeMessage('ambient.l7.DestinationPolicy', wire);
}

/** The `ambient.l7.AuthorizationPolicy` bytes. */
export function encodeL7Authorization(p: L7AuthorizationPolicy): Buffer {
  const wire: AuthorizationPolicyWire = {
    name: p.name,
    namespace: p.namespace,
    action: p.action,
    targetServices: [...p.targetServices],
    rules: p.rules.map((r) => ({
      from: r.from.map((f) => ({
        principals: [...f.principals], notPrincipals: [...f.notPrincipals],
        requestPrincipals: [...f.requestPrincipals], notRequestPrincipals: [...f.notRequestPrincipals],
        namespaces: [...f.namespaces], notNamespaces: [...f.notNamespaces], ipBlocks: [...f.ipBlocks], notIpBlocks: [...f.notIpBlocks],
      })),
      to: r.to.map((t) => ({
        hosts: [...t.hosts], notHosts: [...t.notHosts], ports: t.ports.map(String), notPorts: t.notPorts.map(String),
        methods: [...t.methods], notMethods: [...t.notMethods], paths: [...t.paths], notPaths: [...t.notPaths],
      })),
      when: r.when.map((c) => ({ key: c.key, values: [...c.values], notValues: [...c.notValues] })),
    })),
    dryRun: p.dryRun,
  };
  return encodeMessage('ambient.l7.AuthorizationPolicy', wire);
}

/** The `ambient.l7.RequestAuthentication` bytes. */
export function encodeRequestAuthentication(ra: RequestAuthentication): Buffer {
  const wire: RequestAuthenticationWire = {
    name: ra.name,
    namespace: ra.namespace,
    targetServices: [...ra.targetServices],
    rules: ra.rules.map((r) => ({
      issuer: r.issuer,
      audiences: [...r.audiences],
      ...(r.jwks.kind === 'inline' ? { jwks: JSON.stringify({ keys: r.jwks.keys }) } : { jwksUri: r.jwks.uri }),
      fromHeaders: r.fromHeaders.map((h) => ({ name: h.name, prefix: h.prefix })),
      fromParams: [...r.fromParams],
      forwardOriginalToken: r.forwardOriginalToken,
    })),
  };
  return encodeMessage('ambient.l7.RequestAuthentication', wire);
}
