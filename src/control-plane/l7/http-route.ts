import type { CorsPolicy, HeaderMutation, HttpRoute, L7StringMatch, Mirror, RouteConfiguration, RouteMatch, WeightedBackend } from '../../workload-api/l7-types.ts';
import { DEFAULT_RETRY_POLICY } from '../../workload-api/l7-types.ts';
import type { KubeObject, TargetRef } from '../kube-objects.ts';
import { gatewayCors, type GatewayCorsSpec } from './cors.ts';
import type { ClusterView } from '../view.ts';
import { waypointReference } from '../waypoint.ts';

/**
 * HTTPRoute (Gateway API v1) attached to Services, GAMMA style, → the waypoint's RouteConfiguration per service
 * host (reference istio-ambient.md §2.4, §2.6), as a pure function of every HTTPRoute and the cluster view.
 *
 * - Only `parentRefs` of kind Service (group "" or "core") count; the parent Service, or its namespace, must carry
 *   `istio.io/use-waypoint` (else Istio's `MissingUseWaypointLabel`: the route is not respected in ambient).
 *   A `port` on the parentRef limits the configuration to that service port when all routes of the service
 *   agree (one configuration per service host; differing ports are reported and then apply to every port).
 * - Every match of every rule becomes one route, ordered as the Gateway API requires for one parent: an Exact
 *   path first, then the longest path prefix, then regular expressions, then a method, more headers, more query
 *   parameters; ties go to the oldest HTTPRoute, then the first by `namespace/name`, then rule order.
 * - Filters: RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect (302 by default, as the API says),
 *   URLRewrite, RequestMirror (`percent` or `fraction`); `timeouts.request`. Every forwarding route gets Istio's
 *   default retry policy (HTTPRoute v1 has no retry field); CORS (Gateway API v1.2's HTTPCORSFilter, served by the
 *   stand-in CRDs as an unvalidated field; a bad CORS field is reported and left out, the rule stays). Backend filters: the two header
 *   modifiers.
 * - backendRefs name Services in the route's namespace (a cross-namespace reference needs a ReferenceGrant, which
 *   is not read: it is refused with a problem), weight 1 by default.
 * Anything that cannot be translated is a problem naming the route and field; that rule (or ref) is skipped and
 * the rest still applies.
 */

export interface HttpRouteMatchSpec {
  readonly path?: { readonly type?: string; readonly value?: string };
  readonly headers?: ReadonlyArray<{ readonly type?: string; readonly name?: string; readonly value?: string }>;
  readonly queryParams?: ReadonlyArray<{ readonly type?: string; readonly name?: string; readonly value?: string }>;
  readonly method?: string;
}

export interface HttpHeaderFilterSpec {
  readonly set?: ReadonlyArray<{ readonly name?: string; readonly value?: string }>;
  readonly add?: ReadonlyArray<{ readonly name?: string; readonly value?: string }>;
  readonly remove?: readonly string[];
}

export interface HttpPathModifierSpec {
  readonly type?: string;
  readonly replaceFullPath?: string;
  readonly replacePrefixMatch?: string;
}

export interface HttpRouteFilterSpec {
  readonly type?: string;
  readonly requestHeaderModifier?: HttpHeaderFilterSpec;
  readonly responseHeaderModifier?: HttpHeaderFilterSpec;
  readonly requestRedirect?: { readonly scheme?: string; readonly hostname?: string; readonly path?: HttpPathModifierSpec; readonly port?: number; readonly statusCode?: number };
  readonly urlRewrite?: { readonly hostname?: string; readonly path?: HttpPathModifierSpec };
  readonly requestMirror?: {
    readonly backendRef?: BackendRefSpec;
    readonly percent?: number;
    readonly fraction?: { readonly numerator?: number; readonly denominator?: number };
  };
  /** Gateway API v1.2+ (experimental channel) HTTPCORSFilter. */
  readonly cors?: GatewayCorsSpec;
}

export interface BackendRefSpec extends TargetRef {
  readonly port?: number;
  readonly weight?: number;
  readonly filters?: readonly HttpRouteFilterSpec[];
}

export interface HttpRouteRuleSpec {
  readonly name?: string;
  readonly matches?: readonly HttpRouteMatchSpec[];
  readonly filters?: readonly HttpRouteFilterSpec[];
  readonly backendRefs?: readonly BackendRefSpec[];
  readonly timeouts?: { readonly request?: string; readonly backendRequest?: string };
}

export interface HttpRouteObject extends KubeObject {
  readonly spec?: {
    readonly parentRefs?: ReadonlyArray<TargetRef & { readonly port?: number; readonly sectionName?: string }>;
    readonly rules?: readonly HttpRouteRuleSpec[];
  };
}

export interface RouteProblem {
  /** `namespace/name` of the HTTPRoute. */
  readonly route: string;
  readonly message: string;
}

export interface HttpRouteTranslation {
  /** By `namespace/hostname` of the parent service (the xDS resource name). */
  readonly configs: ReadonlyMap<string, RouteConfiguration>;
  readonly problems: readonly RouteProblem[];
}

/** A Gateway API duration (`1h`, `10s`, `500ms`, `1h30m`) in milliseconds; undefined when malformed. */
export function gatewayDurationMs(text: string): number | undefined {
  const m = /^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$/.exec(text);
  if (m === null || text === '') return undefined;
  const [, h = '0', min = '0', s = '0', ms = '0'] = m;
  return ((Number(h) * 60 + Number(min)) * 60 + Number(s)) * 1000 + Number(ms);
}

interface Candidate {
  readonly route: HttpRouteObject;
  readonly key: string;
  readonly ruleIndex: number;
  readonly match: RouteMatch;
  readonly built: Omit<HttpRoute, 'matches' | 'name'>;
  readonly ports: readonly number[];
}

const isServiceRef = (ref: TargetRef): boolean => (ref.group ?? '') in { '': 1, core: 1 } && ref.kind === 'Service';

function keyOf(obj: KubeObject): string {
  return `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
}

function stringMatch(type: string | undefined, value: string, allowed: readonly string[], where: string, problems: string[]): L7StringMatch | undefined {
  const t = type ?? allowed[0];
  if (t === 'Exact') return { kind: 'exact', value };
  if (t === 'PathPrefix') return { kind: 'prefix', value };
  if (t === 'RegularExpression') {
    try {
      return { kind: 'regex', value, regex: new RegExp(`^(?:${value})$`, 'u') };
    } catch (err) {
      problems.push(`${where}: invalid regular expression ${JSON.stringify(value)}: ${(err as Error).message}`);
      return undefined;
    }
  }
  problems.push(`${where}.type: ${JSON.stringify(t)} is not one of ${allowed.join(', ')}`);
  return undefined;
}

function translateMatch(spec: HttpRouteMatchSpec, where: string, problems: string[]): RouteMatch | undefined {
  const before = problems.length;
  const path = stringMatch(spec.path?.type, spec.path?.value ?? '/', ['PathPrefix', 'Exact', 'RegularExpression'], `${where}.path`, problems);
  if (path && path.kind !== 'regex' && !path.value.startsWith('/')) problems.push(`${where}.path.value: must start with /`);
  const headers = (spec.headers ?? []).map((h, i) => {
    const name = (h.name ?? '').toLowerCase();
    if (name === '') problems.push(`${where}.headers[${i}].name: required`);
    const value = stringMatch(h.type, h.value ?? '', ['Exact', 'RegularExpression'], `${where}.headers[${i}]`, problems);
    return { name, invert: false, ...(value ? { value } : {}) };
  });
  const queryParams = (spec.queryParams ?? []).map((q, i) => {
    if (!q.name) problems.push(`${where}.queryParams[${i}].name: required`);
    const value = stringMatch(q.type, q.value ?? '', ['Exact', 'RegularExpression'], `${where}.queryParams[${i}]`, problems);
    return { name: q.name ?? '', ...(value ? { value } : {}) };
  });
  const method = spec.method?.toUpperCase();
  if (method !== undefined && !/^[A-Z]+$/.test(method)) problems.push(`${where}.method: ${JSON.stringify(spec.method)} is not an HTTP method`);
  if (problems.length > before) return undefined;
  return { ...(path ? { path } : {}), headers, queryParams, ...(method ? { method } : {}) };
}

function headerFilter(spec: HttpHeaderFilterSpec | undefined, where: string, problems: string[]): HeaderMutation | undefined {
  if (spec === undefined) {
    problems.push(`${where}: missing`);
    return undefined;
  }
  const pairs = (list: HttpHeaderFilterSpec['set'], field: string) =>
    (list ?? []).map((h, i) => {
      if (!h.name) problems.push(`${where}.${field}[${i}].name: required`);
      return [(h.name ?? '').toLowerCase(), h.value ?? ''] as const;
    });
  return { set: pairs(spec.set, 'set'), add: pairs(spec.add, 'add'), remove: (spec.remove ?? []).map((n) => n.toLowerCase()) };
}

function pathModifier(spec: HttpPathModifierSpec | undefined, where: string, problems: string[]): { kind: 'full' | 'prefix'; value: string } | undefined {
  if (spec === undefined) return undefined;
  if (spec.type === 'ReplaceFullPath') return { kind: 'full', value: spec.replaceFullPath ?? '/' };
  if (spec.type === 'ReplacePrefixMatch') return { kind: 'prefix', value: spec.replacePrefixMatch ?? '/' };
  problems.push(`${where}.type: ${JSON.stringify(spec.type)} is not ReplaceFullPath or ReplacePrefixMatch`);
  return undefined;
}

function serviceBackend(view: ClusterView, routeNs: string, ref: BackendRefSpec, where: string, problems: string[]): { namespace: string; hostname: string; port: number } | undefined {
  if (!isServiceRef({ ...ref, kind: ref.kind ?? 'Service' })) {
    problems.push(`${where}: only Service backends are supported, got ${ref.group ?? ''}/${ref.kind ?? ''}`);
    return undefined;
  }
  const namespace = ref.namespace ?? routeNs;
  if (namespace !== routeNs) {
    problems.push(`${where}: a backend in namespace ${namespace} needs a ReferenceGrant, which is not supported`);
    return undefined;
  }
  if (!ref.name) {
    problems.push(`${where}.name: required`);
    return undefined;
  }
  if (ref.port !== undefined && !(Number.isInteger(ref.port) && ref.port >= 1 && ref.port <= 65_535)) {
    problems.push(`${where}.port: ${ref.port} is not a port`);
    return undefined;
  }
  return { namespace, hostname: `${ref.name}.${namespace}.svc.${view.settings.domainSuffix}`, port: ref.port ?? 0 };
}

function translateRule(view: ClusterView, route: HttpRouteObject, rule: HttpRouteRuleSpec, where: string, problems: string[]): Omit<HttpRoute, 'matches' | 'name'> | undefined {
  const before = problems.length;
  const ns = route.metadata?.namespace ?? '';
  let requestHeaders: HeaderMutation | undefined;
  let responseHeaders: HeaderMutation | undefined;
  let redirect: HttpRoute['redirect'];
  let rewrite: HttpRoute['rewrite'];
  const mirrors: Mirror[] = [];
  let cors: CorsPolicy | undefined;
  const corsProblems: string[] = [];
  (rule.filters ?? []).forEach((f, i) => {
    const at = `${where}.filters[${i}]`;
    switch (f.type) {
      case 'RequestHeaderModifier':
        requestHeaders = headerFilter(f.requestHeaderModifier, `${at}.requestHeaderModifier`, problems);
        break;
      case 'ResponseHeaderModifier':
        responseHeaders = headerFilter(f.responseHeaderModifier, `${at}.responseHeaderModifier`, problems);
        break;
      case 'RequestRedirect': {
        const r = f.requestRedirect ?? {};
        const statusCode = r.statusCode ?? 302;
        if (statusCode !== 301 && statusCode !== 302) problems.push(`${at}.requestRedirect.statusCode: must be 301 or 302, got ${statusCode}`);
        const path = pathModifier(r.path, `${at}.requestRedirect.path`, problems);
        redirect = {
          statusCode: statusCode === 301 ? 301 : 302,
          ...(r.scheme ? { scheme: r.scheme } : {}),
          ...(r.hostname ? { host: r.hostname } : {}),
          ...(r.port ? { port: r.port } : {}),
          ...(path ? { path } : {}),
        };
        break;
      }
      case 'URLRewrite': {
        const path = pathModifier(f.urlRewrite?.path, `${at}.urlRewrite.path`, problems);
        rewrite = { ...(path ? { path } : {}), ...(f.urlRewrite?.hostname ? { host: f.urlRewrite.hostname } : {}) };
        break;
      }
      case 'RequestMirror': {
        const m = f.requestMirror ?? {};
        const target = m.backendRef === undefined ? undefined : serviceBackend(view, ns, m.backendRef, `${at}.requestMirror.backendRef`, problems);
        if (m.backendRef === undefined) problems.push(`${at}.requestMirror.backendRef: required`);
        const fraction = m.fraction;
        const percentage = m.percent ?? (fraction ? (100 * (fraction.numerator ?? 0)) / (fraction.denominator || 100) : 100);
        if (!(percentage >= 0 && percentage <= 100)) problems.push(`${at}.requestMirror: the percentage must be 0-100, got ${percentage}`);
        if (target) mirrors.push({ ...target, subset: '', percentage });
        break;
      }
      case 'CORS':
        // A bad CORS field drops only that field (or origin), never the rule.
        cors = gatewayCors(f.cors ?? {}, `${at}.cors`, corsProblems);
        break;
      default:
        problems.push(`${at}.type: ${JSON.stringify(f.type)} is not supported (RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite, RequestMirror, CORS)`);
    }
  });
  const backends: WeightedBackend[] = [];
  (rule.backendRefs ?? []).forEach((ref, i) => {
    const at = `${where}.backendRefs[${i}]`;
    const target = serviceBackend(view, ns, ref, at, problems);
    const weight = ref.weight ?? 1;
    if (!(Number.isInteger(weight) && weight >= 0 && weight <= 1_000_000)) problems.push(`${at}.weight: ${weight} is not 0-1000000`);
    let backendRequest: HeaderMutation | undefined;
    let backendResponse: HeaderMutation | undefined;
    (ref.filters ?? []).forEach((f, j) => {
      if (f.type === 'RequestHeaderModifier') backendRequest = headerFilter(f.requestHeaderModifier, `${at}.filters[${j}].requestHeaderModifier`, problems);
      else if (f.type === 'ResponseHeaderModifier') backendResponse = headerFilter(f.responseHeaderModifier, `${at}.filters[${j}].responseHeaderModifier`, problems);
      else problems.push(`${at}.filters[${j}].type: ${JSON.stringify(f.type)} is not supported on a backend`);
    });
    if (target) {
      backends.push({
        ...target, subset: '', weight,
        ...(backendRequest ? { requestHeaders: backendRequest } : {}), ...(backendResponse ? { responseHeaders: backendResponse } : {}),
      });
    }
  });
  if (backends.length > 0 && backends.every((b) => b.weight === 0)) problems.push(`${where}.backendRefs: every weight is 0 (the rule would answer 500)`);
  let timeoutMs: number | undefined;
  if (rule.timeouts?.request !== undefined) {
    timeoutMs = gatewayDurationMs(rule.timeouts.request);
    if (timeoutMs === undefined) problems.push(`${where}.timeouts.request: ${JSON.stringify(rule.timeouts.request)} is not a duration`);
  }
  problems.push(...corsProblems);
  if (problems.length > before + corsProblems.length) return undefined;
  return {
    backends, mirrors,
    ...(cors && !redirect ? { cors } : {}),
    // HTTPRoute has no retry field in v1; Istio gives every route its default retry policy.
    ...(redirect ? {} : { retries: DEFAULT_RETRY_POLICY }),
    ...(requestHeaders ? { requestHeaders } : {}), ...(responseHeaders ? { responseHeaders } : {}),
    ...(redirect ? { redirect } : {}), ...(rewrite ? { rewrite } : {}),
    ...(timeoutMs ? { timeoutMs } : {}),
  };
}

/** The Gateway API's precedence between matches of one parent: negative when `a` goes first. */
function precedence(a: Candidate, b: Candidate): number {
  const rank = (m: RouteMatch): number => (m.path?.kind === 'exact' ? 0 : m.path?.kind === 'prefix' ? 1 : 2);
  const byKind = rank(a.match) - rank(b.match);
  if (byKind !== 0) return byKind;
  const len = (m: RouteMatch): number => (m.path?.kind === 'regex' ? 0 : m.path?.value.length ?? 0);
  const byLength = len(b.match) - len(a.match);
  if (byLength !== 0) return byLength;
  const byMethod = Number(b.match.method !== undefined) - Number(a.match.method !== undefined);
  if (byMethod !== 0) return byMethod;
  const byHeaders = b.match.headers.length - a.match.headers.length;
  if (byHeaders !== 0) return byHeaders;
  const byQuery = b.match.queryParams.length - a.match.queryParams.length;
  if (byQuery !== 0) return byQuery;
  const age = (c: Candidate): string => c.route.metadata?.creationTimestamp ?? '';
  if (age(a) !== age(b)) return age(a) < age(b) ? -1 : 1;
  if (a.key !== b.key) return a.key < b.key ? -1 : 1;
  return a.ruleIndex - b.ruleIndex;
}

export function translateHttpRoutes(routes: Iterable<HttpRouteObject>, view: ClusterView): HttpRouteTranslation {
  const problems: RouteProblem[] = [];
  /** parent `ns/hostname` → its candidates. */
  const byParent = new Map<string, { namespace: string; hostname: string; candidates: Candidate[] }>();
  for (const route of routes) {
    const key = keyOf(route);
    const ns = route.metadata?.namespace ?? '';
    const routeProblems: string[] = [];
    const parents = (route.spec?.parentRefs ?? []).filter(isServiceRef);
    if (parents.length === 0) continue; // a route of a Gateway (ingress), not of the mesh
    const rules = route.spec?.rules ?? [];
    const translated = rules.map((rule, i) => {
      const where = `spec.rules[${i}]`;
      const built = translateRule(view, route, rule, where, routeProblems);
      const matches = (rule.matches?.length ? rule.matches : [{}]).map((m, j) => translateMatch(m, `${where}.matches[${j}]`, routeProblems));
      return built === undefined ? [] : matches.flatMap((match) => (match === undefined ? [] : [{ built, match, ruleIndex: i }]));
    });
    route.spec?.parentRefs?.forEach((parent, i) => {
      if (!isServiceRef(parent)) return;
      const at = `spec.parentRefs[${i}]`;
      const parentNs = parent.namespace ?? ns;
      const svc = parent.name ? view.service(parentNs, parent.name) : undefined;
      if (svc === undefined) {
        routeProblems.push(`${at}: Service ${parentNs}/${parent.name ?? ''} does not exist`);
        return;
      }
      const ref = waypointReference(view, svc);
      if (ref === undefined || ref === 'none') {
        routeProblems.push(`${at}: MissingUseWaypointLabel: Service ${parentNs}/${parent.name} (nor its namespace) is not bound to a waypoint with istio.io/use-waypoint`);
        return;
      }
      const hostname = `${parent.name}.${parentNs}.svc.${view.settings.domainSuffix}`;
      const entry = byParent.get(`${parentNs}/${hostname}`) ?? { namespace: parentNs, hostname, candidates: [] };
      const ports = parent.port === undefined ? [] : [parent.port];
      for (const c of translated.flat()) entry.candidates.push({ route, key, ruleIndex: c.ruleIndex, match: c.match, built: c.built, ports });
      byParent.set(`${parentNs}/${hostname}`, entry);
    });
    for (const message of routeProblems) problems.push({ route: key, message });
  }
  const configs = new Map<string, RouteConfiguration>();
  for (const [name, entry] of [...byParent].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const ordered = entry.candidates.sort(precedence);
    // One configuration per service: a parentRef port limits it only when every route of the service agrees.
    const portSets = new Set(ordered.map((c) => c.ports.join(',')));
    const ports = portSets.size === 1 ? [...(ordered[0]?.ports ?? [])] : [];
    if (portSets.size > 1) {
      for (const route of new Set(ordered.filter((c) => c.ports.length > 0).map((c) => c.key))) {
        problems.push({ route, message: `spec.parentRefs: routes of ${name} name different ports; per-port routing is not supported, so the routes apply to every port` });
      }
    }
    configs.set(name, {
      namespace: entry.namespace,
      hostname: entry.hostname,
      ports,
      routes: ordered.map((c) => ({ name: `${c.key}.${c.ruleIndex}`, matches: [c.match], ...c.built })),
    });
  }
  return { configs, problems };
}
