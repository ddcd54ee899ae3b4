import type {
  BackendRef, CorsPolicy, HeaderMutation, HttpRoute, L7StringMatch, Mirror, RetryPolicy, RouteConfiguration, RouteMatch, WeightedBackend,
} from '../workload-api/l7-types.ts';
import { DEFAULT_RETRY_POLICY } from '../workload-api/l7-types.ts';
import { queryParam, type L7Request } from './request.ts';

/**
 * The router: a pure function from a request and the service's route table to what happens to it.
 * Routes are tried in order and the first whose matches hold wins (no match list: every request). The
 * IO code only carries the decision out.
 */

export { DEFAULT_RETRY_POLICY };

export interface ForwardDecision {
  readonly kind: 'forward';
  readonly route: string;
  /** The chosen backend, its port resolved (0 became the request's port). */
  readonly backend: BackendRef;
  /** The path and authority to send upstream (after rewrites). */
  readonly path: string;
  readonly authority: string;
  /** Applied in order: the route's, then the backend's. */
  readonly requestHeaders: readonly HeaderMutation[];
  readonly responseHeaders: readonly HeaderMutation[];
  readonly timeoutMs: number | undefined;
  readonly retries: RetryPolicy;
  /** Fault delay to wait first (0: none). */
  readonly delayMs: number;
  readonly mirrors: readonly BackendRef[];
  /** The route's CORS policy (evaluated by `cors.ts`). */
  readonly cors?: CorsPolicy;
}

export type RouteDecision =
  | ForwardDecision
  | { readonly kind: 'no-route' }
  | { readonly kind: 'redirect'; readonly route: string; readonly status: number; readonly location: string; readonly responseHeaders: readonly HeaderMutation[] }
  | { readonly kind: 'abort'; readonly route: string; readonly delayMs: number; readonly abort: { readonly kind: 'http' | 'grpc'; readonly status: number }; readonly cors?: CorsPolicy };

export interface RouteInput {
  readonly request: L7Request;
  /** The service the CONNECT addressed. */
  readonly service: { readonly namespace: string; readonly hostname: string };
  /** Its routes; undefined means the implicit route to the service itself. */
  readonly config: RouteConfiguration | undefined;
  /** A number in [0, 1) per call (weights, fault and mirror percentages). */
  readonly random: () => number;
}

export function stringMatches(m: L7StringMatch, value: string): boolean {
  switch (m.kind) {
    case 'exact':
      return value === m.value;
    case 'prefix':
      return value.startsWith(m.value);
    case 'regex':
      return m.regex.test(value);
  }
}

export function routeMatches(m: RouteMatch, request: L7Request): boolean {
  if (m.method && m.method !== request.method) return false;
  if (m.path && !stringMatches(m.path, request.path)) return false;
  for (const h of m.headers) {
    const value = request.headers.get(h.name);
    const hit = value !== undefined && (!h.value || stringMatches(h.value, value));
    if (hit === h.invert) return false;
  }
  for (const q of m.queryParams) {
    const value = queryParam(request.query, q.name);
    if (value === undefined || (q.value && !stringMatches(q.value, value))) return false;
  }
  return true;
}

/** The first route that applies, with the match that selected it. */
export function selectRoute(routes: readonly HttpRoute[], request: L7Request): { route: HttpRoute; match: RouteMatch | undefined } | undefined {
  for (const route of routes) {
    if (route.matches.length === 0) return { route, match: undefined };
    const match = route.matches.find((m) => routeMatches(m, request));
    if (match) return { route, match };
  }
  return undefined;
}

/** A weighted choice; `r` in [0, 1). Zero-weight backends are chosen only when all are zero (then the first). */
export function pickWeighted<T extends { readonly weight: number }>(items: readonly T[], r: number): T | undefined {
  if (items.length <= 1) return items[0];
  const total = items.reduce((sum, b) => sum + b.weight, 0);
  if (total <= 0) return items[0];
  let point = r * total;
  for (const item of items) {
    if (point < item.weight) return item;
    point -= item.weight;
  }
  return items[items.length - 1];
}

const hit = (percentage: number, r: number): boolean => percentage >= 100 || r * 100 < percentage;

export function routeRequest(input: RouteInput): RouteDecision {
  const { request, service, random } = input;
  const implicit: HttpRoute = { name: 'default', matches: [], backends: [], mirrors: [], retries: DEFAULT_RETRY_POLICY };
  const selected = input.config ? selectRoute(input.config.routes, request) : { route: implicit, match: undefined };
  if (!selected) return { kind: 'no-route' };
  const { route, match } = selected;
  const responseHeaders = route.responseHeaders ? [route.responseHeaders] : [];

  if (route.redirect) {
    const r = route.redirect;
    const [host = request.authority, port] = splitAuthority(request.authority);
    const path = r.path ? (r.path.kind === 'full' ? r.path.value : replacePrefix(request.path, match, r.path.value)) : request.path;
    const scheme = r.scheme ?? request.scheme;
    const targetHost = r.host ?? host;
    const targetPort = r.port ?? (r.scheme || r.host ? undefined : port);
    const defaultPort = scheme === 'https' ? 443 : 80;
    const authority = targetPort && targetPort !== defaultPort ? `${targetHost}:${targetPort}` : targetHost;
    const location = `${scheme}://${authority}${path}${request.query ? `?${request.query}` : ''}`;
    return { kind: 'redirect', route: route.name, status: r.statusCode, location, responseHeaders };
  }

  const fault = route.fault;
  const delayMs = fault?.delay && hit(fault.delay.percentage, random()) ? fault.delay.fixedDelayMs : 0;
  if (fault?.abort && hit(fault.abort.percentage, random())) {
    return { kind: 'abort', route: route.name, delayMs, abort: { kind: fault.abort.kind, status: fault.abort.status }, ...(route.cors ? { cors: route.cors } : {}) };
  }

  const chosen: WeightedBackend | undefined = pickWeighted(route.backends, random());
  const backend: BackendRef = chosen
    ? { namespace: chosen.namespace, hostname: chosen.hostname, port: chosen.port || request.port, subset: chosen.subset }
    : { namespace: service.namespace, hostname: service.hostname, port: request.port, subset: '' };
  let path = request.path;
  let authority = request.authority;
  if (route.rewrite?.path) path = route.rewrite.path.kind === 'full' ? route.rewrite.path.value : replacePrefix(request.path, match, route.rewrite.path.value);
  if (route.rewrite?.host) authority = route.rewrite.host;
  const mirrors = route.mirrors
    .filter((m: Mirror) => hit(m.percentage, random()))
    .map((m) => ({ namespace: m.namespace, hostname: m.hostname, port: m.port || request.port, subset: m.subset }));
  return {
    kind: 'forward',
    route: route.name,
    backend,
    path: `${path}${request.query ? `?${request.query}` : ''}`,
    authority,
    requestHeaders: [...(route.requestHeaders ? [route.requestHeaders] : []), ...(chosen?.requestHeaders ? [chosen.requestHeaders] : [])],
    responseHeaders: [...responseHeaders, ...(chosen?.responseHeaders ? [chosen.responseHeaders] : [])],
    timeoutMs: route.timeoutMs,
    retries: route.retries ?? { attempts: 0, retryOn: [], retriableStatusCodes: [] },
    delayMs,
    mirrors,
    ...(route.cors ? { cors: route.cors } : {}),
  };
}

/** Replaces the matched path prefix (Gateway API ReplacePrefixMatch / VirtualService `uri` rewrite). */
function replacePrefix(path: string, match: RouteMatch | undefined, replacement: string): string {
  const prefix = match?.path?.kind === 'prefix' ? match.path.value : '';
  if (!prefix) return replacement + path.replace(/^\//, replacement.endsWith('/') ? '' : '/');
  const rest = path.slice(prefix.length);
  if (replacement.endsWith('/') && rest.startsWith('/')) return replacement + rest.slice(1);
  const joined = replacement + rest;
  return joined === '' ? '/' : joined.startsWith('/') ? joined : `/${joined}`;
}

function splitAuthority(authority: string): [string, number | undefined] {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(authority);
  if (!m) return [authority, undefined];
  return [m[1] as string, m[2] ? Number(m[2]) : undefined];
}

/**
 * Applies header mutations to a header map, in order: set replaces, add appends (`,` joined), remove
 * drops. Pseudo-headers and hop-by-hop names are never touched.
 */
export function applyHeaderMutations(headers: Map<string, string>, mutations: readonly HeaderMutation[]): Map<string, string> {
  for (const m of mutations) {
    for (const name of m.remove) if (!name.startsWith(':')) headers.delete(name);
    for (const [name, value] of m.set) if (!name.startsWith(':')) headers.set(name, value);
    for (const [name, value] of m.add) {
      if (name.startsWith(':')) continue;
      const current = headers.get(name);
      headers.set(name, current === undefined ? value : `${current},${value}`);
    }
  }
  return headers;
}
