import { isIP } from 'node:net';
import type { Result } from '../core/result.ts';
import { Problems } from './convert.ts';
import type { AuthorizationPolicy__Output } from './generated/ambient/l7/AuthorizationPolicy.ts';
import type { CorsPolicy__Output } from './generated/ambient/l7/CorsPolicy.ts';
import type { DestinationPolicy__Output } from './generated/ambient/l7/DestinationPolicy.ts';
import type { HeaderMutation__Output } from './generated/ambient/l7/HeaderMutation.ts';
import type { HttpRoute__Output } from './generated/ambient/l7/HttpRoute.ts';
import type { Percent__Output } from './generated/ambient/l7/Percent.ts';
import type { RouteConfiguration__Output } from './generated/ambient/l7/RouteConfiguration.ts';
import type { RequestAuthentication__Output } from './generated/ambient/l7/RequestAuthentication.ts';
import type { StringMatch__Output } from './generated/ambient/l7/StringMatch.ts';
import type { TrafficPolicy__Output } from './generated/ambient/l7/TrafficPolicy.ts';
import type { Duration__Output } from './generated/google/protobuf/Duration.ts';
import {
  OUTLIER_DEFAULTS, RETRY_ON, type CorsPolicy, type DestinationPolicy, type HeaderMutation, type HttpRoute, type L7AuthorizationPolicy, type L7Condition,
  type JwtRule, type L7StringMatch, type LoadBalancerPolicy, type RequestAuthentication, type RetryOn, type RouteConfiguration, type TrafficPolicy,
} from './l7-types.ts';

/**
 * Wire → domain conversion of the L7 resources (proto/l7.proto), collecting every problem with its
 * field path (`route_configuration.routes[0].matches[1].path.regex: invalid regular expression ...`)
 * so one NACK names all that is wrong with a resource.
 */

const HEADER_NAME = /^:?[!#$%&'*+.^_`|~0-9a-z-]+$/;

function durationMs(problems: Problems, path: string, d: Duration__Output | null | undefined): number | undefined {
  if (!d) return undefined;
  if (d.seconds < 0 || d.nanos < 0 || d.nanos > 999_999_999) {
    problems.add(path, `must be a non-negative duration, got ${d.seconds}s ${d.nanos}ns`);
    return undefined;
  }
  return d.seconds * 1000 + Math.floor(d.nanos / 1e6);
}

function percent(problems: Problems, path: string, p: Percent__Output | null | undefined): number {
  if (!p) return 100;
  if (!(p.value >= 0 && p.value <= 100)) problems.add(path, `must be between 0 and 100, got ${p.value}`);
  return p.value;
}

function stringMatch(problems: Problems, path: string, m: StringMatch__Output | null | undefined): L7StringMatch | undefined {
  if (!m) return undefined;
  switch (m.kind) {
    case 'exact':
      return { kind: 'exact', value: m.exact ?? '' };
    case 'prefix':
      return { kind: 'prefix', value: m.prefix ?? '' };
    case 'regex': {
      const value = m.regex ?? '';
      try {
        return { kind: 'regex', value, regex: new RegExp(`^(?:${value})$`, 'u') };
      } catch (err) {
        problems.add(`${path}.regex`, `invalid regular expression: ${(err as Error).message}`);
        return undefined;
      }
    }
    default:
      problems.add(path, 'one of exact, prefix or regex is required');
      return undefined;
  }
}

function headerName(problems: Problems, path: string, name: string): string {
  if (!HEADER_NAME.test(name)) problems.add(path, `${JSON.stringify(name)} is not a lower-case header name`);
  return name;
}

function mutation(problems: Problems, path: string, m: HeaderMutation__Output | null | undefined): HeaderMutation | undefined {
  if (!m) return undefined;
  const pairs = (list: readonly { name: string; value: string }[], field: string) =>
    list.map((h, i) => [headerName(problems, `${path}.${field}[${i}].name`, h.name), h.value] as const);
  return {
    set: pairs(m.set, 'set'),
    add: pairs(m.add, 'add'),
    remove: m.remove.map((name, i) => headerName(problems, `${path}.remove[${i}]`, name)),
  };
}

function backendRef(problems: Problems, path: string, b: { namespace: string; hostname: string; port: number; subset: string }) {
  if (!b.namespace) problems.add(`${path}.namespace`, 'must not be empty');
  if (!b.hostname) problems.add(`${path}.hostname`, 'must not be empty');
  if (b.port > 65_535) problems.add(`${path}.port`, `must be 0-65535, got ${b.port}`);
  return { namespace: b.namespace, hostname: b.hostname, port: b.port, subset: b.subset };
}

const REDIRECT_CODES = [301, 302, 303, 307, 308] as const;

const METHOD_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function cors(problems: Problems, path: string, c: CorsPolicy__Output | null | undefined): CorsPolicy | undefined {
  if (!c) return undefined;
  const allowOrigins = c.allowOrigins.flatMap((m, i) => {
    const match = stringMatch(problems, `${path}.allow_origins[${i}]`, m);
    return match ? [match] : [];
  });
  c.allowMethods.forEach((m, i) => {
    if (!METHOD_TOKEN.test(m)) problems.add(`${path}.allow_methods[${i}]`, `${JSON.stringify(m)} is not a method`);
  });
  const names = (list: readonly string[], at: string) => list.map((h, i) => (h === '*' ? h : headerName(problems, `${path}.${at}[${i}]`, h.toLowerCase())));
  const allowHeaders = names(c.allowHeaders, 'allow_headers');
  const exposeHeaders = names(c.exposeHeaders, 'expose_headers');
  const maxAgeMs = durationMs(problems, `${path}.max_age`, c.maxAge);
  return {
    allowOrigins,
    allowMethods: c.allowMethods,
    allowHeaders,
    exposeHeaders,
    ...(maxAgeMs !== undefined ? { maxAgeSeconds: Math.floor(maxAgeMs / 1000) } : {}),
    allowCredentials: c.allowCredentials?.value ?? false,
    forwardNotMatchingPreflights: c.forwardNotMatchingPreflights?.value ?? true,
  };
}

function route(problems: Problems, path: string, r: HttpRoute__Output): HttpRoute {
  const matches = r.matches.map((m, i) => {
    const at = `${path}.matches[${i}]`;
    const pathMatch = stringMatch(problems, `${at}.path`, m.path);
    if (pathMatch && pathMatch.kind !== 'regex' && !pathMatch.value.startsWith('/')) problems.add(`${at}.path`, `must start with /, got ${JSON.stringify(pathMatch.value)}`);
    if (m.method && !/^[A-Z]+$/.test(m.method)) problems.add(`${at}.method`, `${JSON.stringify(m.method)} is not an upper-case method`);
    return {
      ...(pathMatch ? { path: pathMatch } : {}),
      headers: m.headers.map((h, j) => {
        const value = stringMatch(problems, `${at}.headers[${j}].value`, h.value);
        return { name: headerName(problems, `${at}.headers[${j}].name`, h.name), invert: h.invert, ...(value ? { value } : {}) };
      }),
      queryParams: m.queryParams.map((q, j) => {
        if (!q.name) problems.add(`${at}.query_params[${j}].name`, 'must not be empty');
        const value = stringMatch(problems, `${at}.query_params[${j}].value`, q.value);
        return { name: q.name, ...(value ? { value } : {}) };
      }),
      ...(m.method ? { method: m.method } : {}),
    };
  });
  const backends = r.backends.map((b, i) => {
    const at = `${path}.backends[${i}]`;
    const requestHeaders = mutation(problems, `${at}.request_headers`, b.requestHeaders);
    const responseHeaders = mutation(problems, `${at}.response_headers`, b.responseHeaders);
    return { ...backendRef(problems, at, b), weight: b.weight, ...(requestHeaders ? { requestHeaders } : {}), ...(responseHeaders ? { responseHeaders } : {}) };
  });
  if (backends.length > 1 && backends.every((b) => b.weight === 0)) problems.add(`${path}.backends`, 'weights must not all be 0');

  let redirect: HttpRoute['redirect'];
  if (r.redirect) {
    const d = r.redirect;
    const statusCode = d.statusCode === 0 ? 301 : d.statusCode;
    if (!(REDIRECT_CODES as readonly number[]).includes(statusCode)) problems.add(`${path}.redirect.status_code`, `must be one of ${REDIRECT_CODES.join(', ')}, got ${d.statusCode}`);
    if (d.scheme && d.scheme !== 'http' && d.scheme !== 'https') problems.add(`${path}.redirect.scheme`, `must be http or https, got ${JSON.stringify(d.scheme)}`);
    if (d.port > 65_535) problems.add(`${path}.redirect.port`, `must be 0-65535, got ${d.port}`);
    const pathValue = d.path === 'fullPath' ? { kind: 'full' as const, value: d.fullPath ?? '' } : d.path === 'prefixMatch' ? { kind: 'prefix' as const, value: d.prefixMatch ?? '' } : undefined;
    redirect = {
      statusCode: statusCode as 301,
      ...(d.scheme ? { scheme: d.scheme } : {}),
      ...(d.host ? { host: d.host } : {}),
      ...(d.port ? { port: d.port } : {}),
      ...(pathValue ? { path: pathValue } : {}),
    };
  }
  let rewrite: HttpRoute['rewrite'];
  if (r.rewrite) {
    const w = r.rewrite;
    const pathValue = w.path === 'fullPath' ? { kind: 'full' as const, value: w.fullPath ?? '' } : w.path === 'prefixMatch' ? { kind: 'prefix' as const, value: w.prefixMatch ?? '' } : undefined;
    if (pathValue?.kind === 'prefix' && !matches.every((m) => m.path?.kind === 'prefix')) {
      problems.add(`${path}.rewrite.prefix_match`, 'needs every match of the route to be a path prefix match');
    }
    rewrite = { ...(pathValue ? { path: pathValue } : {}), ...(w.host ? { host: w.host } : {}) };
  }
  let retries: HttpRoute['retries'];
  if (r.retries) {
    const retryOn: RetryOn[] = [];
    r.retries.retryOn.forEach((c, i) => {
      if ((RETRY_ON as readonly string[]).includes(c)) retryOn.push(c as RetryOn);
      else problems.add(`${path}.retries.retry_on[${i}]`, `unknown condition ${JSON.stringify(c)} (one of ${RETRY_ON.join(', ')})`);
    });
    r.retries.retriableStatusCodes.forEach((c, i) => {
      if (c < 100 || c > 599) problems.add(`${path}.retries.retriable_status_codes[${i}]`, `must be an HTTP status, got ${c}`);
    });
    const perTry = durationMs(problems, `${path}.retries.per_try_timeout`, r.retries.perTryTimeout);
    retries = { attempts: r.retries.attempts, retryOn, retriableStatusCodes: r.retries.retriableStatusCodes, ...(perTry ? { perTryTimeoutMs: perTry } : {}) };
  }
  let fault: HttpRoute['fault'];
  if (r.fault) {
    const f = r.fault;
    let delay;
    if (f.delay) delay = { fixedDelayMs: durationMs(problems, `${path}.fault.delay.fixed_delay`, f.delay.fixedDelay) ?? 0, percentage: percent(problems, `${path}.fault.delay.percentage`, f.delay.percentage) };
    let abort;
    if (f.abort) {
      const at = `${path}.fault.abort`;
      const pct = percent(problems, `${at}.percentage`, f.abort.percentage);
      if (f.abort.error === 'httpStatus') {
        const status = f.abort.httpStatus ?? 0;
        if (status < 200 || status > 599) problems.add(`${at}.http_status`, `must be 200-599, got ${status}`);
        abort = { kind: 'http' as const, status, percentage: pct };
      } else if (f.abort.error === 'grpcStatus') {
        const status = f.abort.grpcStatus ?? 0;
        if (status > 16) problems.add(`${at}.grpc_status`, `must be a gRPC status 0-16, got ${status}`);
        abort = { kind: 'grpc' as const, status, percentage: pct };
      } else {
        problems.add(at, 'one of http_status or grpc_status is required');
      }
    }
    fault = { ...(delay ? { delay } : {}), ...(abort ? { abort } : {}) };
  }
  const timeoutMs = durationMs(problems, `${path}.timeout`, r.timeout);
  const requestHeaders = mutation(problems, `${path}.request_headers`, r.requestHeaders);
  const responseHeaders = mutation(problems, `${path}.response_headers`, r.responseHeaders);
  const corsPolicy = cors(problems, `${path}.cors`, r.cors);
  return {
    name: r.name,
    matches,
    backends,
    mirrors: r.mirrors.map((m, i) => ({ ...backendRef(problems, `${path}.mirrors[${i}]`, m), percentage: percent(problems, `${path}.mirrors[${i}].percentage`, m.percentage) })),
    ...(requestHeaders ? { requestHeaders } : {}),
    ...(responseHeaders ? { responseHeaders } : {}),
    ...(redirect ? { redirect } : {}),
    ...(rewrite ? { rewrite } : {}),
    ...(timeoutMs ? { timeoutMs } : {}),
    ...(retries ? { retries } : {}),
    ...(fault ? { fault } : {}),
    ...(corsPolicy ? { cors: corsPolicy } : {}),
  };
}

export function routeConfigurationFromWire(r: RouteConfiguration__Output, path = 'route_configuration'): Result<RouteConfiguration> {
  const problems = new Problems();
  if (!r.namespace) problems.add(`${path}.namespace`, 'must not be empty');
  if (!r.hostname) problems.add(`${path}.hostname`, 'must not be empty');
  r.ports.forEach((p, i) => {
    if (p < 1 || p > 65_535) problems.add(`${path}.ports[${i}]`, `must be 1-65535, got ${p}`);
  });
  const routes = r.routes.map((x, i) => route(problems, `${path}.routes[${i}]`, x));
  return problems.result(() => ({ namespace: r.namespace, hostname: r.hostname, ports: r.ports, routes }));
}

function trafficPolicy(problems: Problems, path: string, t: TrafficPolicy__Output | null | undefined): TrafficPolicy | undefined {
  if (!t) return undefined;
  let loadBalancer: LoadBalancerPolicy | undefined;
  const lb = t.loadBalancer;
  if (lb?.consistentHash) {
    const h = lb.consistentHash;
    const at = `${path}.load_balancer.consistent_hash`;
    switch (h.key) {
      case 'httpHeaderName':
        loadBalancer = { kind: 'hash', key: { kind: 'header', name: headerName(problems, `${at}.http_header_name`, h.httpHeaderName ?? '') } };
        break;
      case 'httpCookieName':
        if (!h.httpCookieName) problems.add(`${at}.http_cookie_name`, 'must not be empty');
        loadBalancer = { kind: 'hash', key: { kind: 'cookie', name: h.httpCookieName ?? '' } };
        break;
      case 'httpQueryParameterName':
        if (!h.httpQueryParameterName) problems.add(`${at}.http_query_parameter_name`, 'must not be empty');
        loadBalancer = { kind: 'hash', key: { kind: 'query', name: h.httpQueryParameterName ?? '' } };
        break;
      case 'useSourceIp':
        loadBalancer = { kind: 'hash', key: { kind: 'source-ip' } };
        break;
      default:
        problems.add(at, 'one key is required');
    }
  } else if (lb) {
    const simple = lb.simple as string;
    const kinds: Record<string, LoadBalancerPolicy['kind'] | undefined> = { UNSPECIFIED: undefined, ROUND_ROBIN: 'round-robin', LEAST_REQUEST: 'least-request', RANDOM: 'random' };
    if (!(simple in kinds)) problems.add(`${path}.load_balancer.simple`, `unknown enum value ${JSON.stringify(lb.simple)}`);
    const kind = kinds[simple];
    if (kind && kind !== 'hash') loadBalancer = { kind };
  }
  const cp = t.connectionPool;
  const connectTimeoutMs = cp ? durationMs(problems, `${path}.connection_pool.connect_timeout`, cp.connectTimeout) : undefined;
  const connectionPool = cp
    ? {
        ...(cp.maxConnections ? { maxConnections: cp.maxConnections.value } : {}),
        ...(cp.http1MaxPendingRequests ? { http1MaxPendingRequests: cp.http1MaxPendingRequests.value } : {}),
        ...(cp.http2MaxRequests ? { http2MaxRequests: cp.http2MaxRequests.value } : {}),
        ...(cp.maxRequestsPerConnection ? { maxRequestsPerConnection: cp.maxRequestsPerConnection.value } : {}),
        ...(cp.maxRetries ? { maxRetries: cp.maxRetries.value } : {}),
        ...(connectTimeoutMs ? { connectTimeoutMs } : {}),
      }
    : undefined;
  const od = t.outlierDetection;
  let outlierDetection;
  if (od) {
    const at = `${path}.outlier_detection`;
    const maxEjectionPercent = od.maxEjectionPercent?.value ?? OUTLIER_DEFAULTS.maxEjectionPercent;
    if (maxEjectionPercent > 100) problems.add(`${at}.max_ejection_percent`, `must be 0-100, got ${maxEjectionPercent}`);
    const minHealthPercent = od.minHealthPercent?.value ?? OUTLIER_DEFAULTS.minHealthPercent;
    if (minHealthPercent < 0 || minHealthPercent > 100) problems.add(`${at}.min_health_percent`, `must be 0-100, got ${minHealthPercent}`);
    outlierDetection = {
      consecutive5xxErrors: od.consecutive_5xxErrors?.value ?? OUTLIER_DEFAULTS.consecutive5xxErrors,
      consecutiveGatewayErrors: od.consecutiveGatewayErrors?.value ?? OUTLIER_DEFAULTS.consecutiveGatewayErrors,
      intervalMs: durationMs(problems, `${at}.interval`, od.interval) || OUTLIER_DEFAULTS.intervalMs,
      baseEjectionTimeMs: durationMs(problems, `${at}.base_ejection_time`, od.baseEjectionTime) || OUTLIER_DEFAULTS.baseEjectionTimeMs,
      maxEjectionPercent,
      minHealthPercent,
    };
  }
  return { ...(loadBalancer ? { loadBalancer } : {}), ...(connectionPool ? { connectionPool } : {}), ...(outlierDetection ? { outlierDetection } : {}) };
}

export function destinationPolicyFromWire(d: DestinationPolicy__Output, path = 'destination_policy'): Result<DestinationPolicy> {
  const problems = new Problems();
  if (!d.namespace) problems.add(`${path}.namespace`, 'must not be empty');
  if (!d.hostname) problems.add(`${path}.hostname`, 'must not be empty');
  const tp = trafficPolicy(problems, `${path}.traffic_policy`, d.trafficPolicy);
  const names = new Set<string>();
  const subsets = d.subsets.map((s, i) => {
    const at = `${path}.subsets[${i}]`;
    if (!s.name) problems.add(`${at}.name`, 'must not be empty');
    else if (names.has(s.name)) problems.add(`${at}.name`, `duplicate subset ${JSON.stringify(s.name)}`);
    names.add(s.name);
    const stp = trafficPolicy(problems, `${at}.traffic_policy`, s.trafficPolicy);
    return { name: s.name, labels: new Map(Object.entries(s.labels)), workloadUids: s.workloadUids, ...(stp ? { trafficPolicy: stp } : {}) };
  });
  return problems.result(() => ({ namespace: d.namespace, hostname: d.hostname, subsets, ...(tp ? { trafficPolicy: tp } : {}) }));
}

/** `when` keys the waypoint evaluates (Istio's AuthorizationPolicy condition keys for HTTP). */
const CONDITION_KEY = /^(request\.headers\[[^\]]+\]|request\.auth\.claims\[[^\]]+\](\[[^\]]+\])*|source\.ip|remote\.ip|source\.namespace|source\.principal|request\.auth\.principal|request\.auth\.audiences|request\.auth\.presenter|destination\.ip|destination\.port|connection\.sni)$/;

function ports(problems: Problems, path: string, list: readonly string[]): number[] {
  return list.map((p, i) => {
    const n = /^\d+$/.test(p) ? Number(p) : NaN;
    if (!(n >= 1 && n <= 65_535)) problems.add(`${path}[${i}]`, `${JSON.stringify(p)} is not a port`);
    return n;
  });
}

function ipBlocks(problems: Problems, path: string, list: readonly string[]): string[] {
  list.forEach((b, i) => {
    const [ip = '', len, ...rest] = b.split('/');
    const family = isIP(ip);
    const bits = family === 4 ? 32 : 128;
    if (family === 0 || rest.length > 0 || (len !== undefined && !(/^\d+$/.test(len) && Number(len) <= bits))) problems.add(`${path}[${i}]`, `${JSON.stringify(b)} is not an IP or CIDR`);
  });
  return [...list];
}

export function l7AuthorizationFromWire(a: AuthorizationPolicy__Output, path = 'authorization_policy'): Result<L7AuthorizationPolicy> {
  const problems = new Problems();
  if (!a.name) problems.add(`${path}.name`, 'must not be empty');
  if (!a.namespace) problems.add(`${path}.namespace`, 'must not be empty');
  const action = a.action as string;
  if (action !== 'ALLOW' && action !== 'DENY') problems.add(`${path}.action`, `unknown enum value ${JSON.stringify(a.action)}`);
  a.targetServices.forEach((t, i) => {
    if (!/^[^/]+\/[^/]+$/.test(t)) problems.add(`${path}.target_services[${i}]`, `${JSON.stringify(t)} is not namespace/hostname`);
  });
  const rules = a.rules.map((r, i) => {
    const at = `${path}.rules[${i}]`;
    return {
      from: r.from.map((f, j) => ({
        principals: f.principals,
        notPrincipals: f.notPrincipals,
        requestPrincipals: f.requestPrincipals,
        notRequestPrincipals: f.notRequestPrincipals,
        namespaces: f.namespaces,
        notNamespaces: f.notNamespaces,
        ipBlocks: ipBlocks(problems, `${at}.from[${j}].ip_blocks`, f.ipBlocks),
        notIpBlocks: ipBlocks(problems, `${at}.from[${j}].not_ip_blocks`, f.notIpBlocks),
      })),
      to: r.to.map((t, j) => {
        const to = `${at}.to[${j}]`;
        [...t.paths, ...t.notPaths].forEach((p) => {
          if (!p.startsWith('/') && !p.startsWith('*') && !p.endsWith('*')) problems.add(`${to}.paths`, `${JSON.stringify(p)} must start with / (or use a * prefix or suffix)`);
        });
        return {
          hosts: t.hosts,
          notHosts: t.notHosts,
          ports: ports(problems, `${to}.ports`, t.ports),
          notPorts: ports(problems, `${to}.not_ports`, t.notPorts),
          methods: t.methods,
          notMethods: t.notMethods,
          paths: t.paths,
          notPaths: t.notPaths,
        };
      }),
      when: r.when.map((c, j): L7Condition => {
        if (!CONDITION_KEY.test(c.key)) problems.add(`${at}.when[${j}].key`, `unsupported condition key ${JSON.stringify(c.key)}`);
        if (c.values.length === 0 && c.notValues.length === 0) problems.add(`${at}.when[${j}]`, 'needs values or not_values');
        return { key: c.key, values: c.values, notValues: c.notValues };
      }),
    };
  });
  return problems.result(() => ({
    name: a.name,
    namespace: a.namespace,
    action: action as 'ALLOW' | 'DENY',
    targetServices: a.targetServices,
    rules,
    dryRun: a.dryRun,
  }));
}

export function requestAuthenticationFromWire(a: RequestAuthentication__Output, path = 'request_authentication'): Result<RequestAuthentication> {
  const problems = new Problems();
  if (!a.name) problems.add(`${path}.name`, 'must not be empty');
  if (!a.namespace) problems.add(`${path}.namespace`, 'must not be empty');
  a.targetServices.forEach((t, i) => {
    if (!/^[^/]+\/[^/]+$/.test(t)) problems.add(`${path}.target_services[${i}]`, `${JSON.stringify(t)} is not namespace/hostname`);
  });
  const rules = a.rules.map((r, i): JwtRule => {
    const at = `${path}.rules[${i}]`;
    if (!r.issuer) problems.add(`${at}.issuer`, 'must not be empty');
    let jwks: JwtRule['jwks'] = { kind: 'inline', keys: [] };
    if (r.jwks) {
      try {
        const doc = JSON.parse(r.jwks) as { keys?: unknown };
        if (!Array.isArray(doc.keys) || !doc.keys.every((k) => typeof k === 'object' && k !== null)) problems.add(`${at}.jwks`, 'must be a JWKS document with a "keys" list');
        else jwks = { kind: 'inline', keys: doc.keys as Record<string, unknown>[] };
      } catch (err) {
        problems.add(`${at}.jwks`, `is not JSON: ${(err as Error).message}`);
      }
    } else if (r.jwksUri) {
      if (!/^https?:\/\//.test(r.jwksUri)) problems.add(`${at}.jwks_uri`, `${JSON.stringify(r.jwksUri)} is not an http(s) URI`);
      jwks = { kind: 'uri', uri: r.jwksUri };
    } else {
      problems.add(at, 'one of jwks or jwks_uri is required');
    }
    return {
      issuer: r.issuer,
      audiences: r.audiences,
      jwks,
      fromHeaders: r.fromHeaders.map((h, j) => ({ name: headerName(problems, `${at}.from_headers[${j}].name`, h.name.toLowerCase()), prefix: h.prefix })),
      fromParams: r.fromParams,
      forwardOriginalToken: r.forwardOriginalToken,
    };
  });
  return problems.result(() => ({ name: a.name, namespace: a.namespace, targetServices: a.targetServices, rules }));
}
