import type {
  FaultInjection, HeaderMatch, HeaderMutation, HttpRoute, L7StringMatch, Mirror, RetryOn, RetryPolicy, RouteConfiguration, RouteMatch, WeightedBackend,
} from '../../workload-api/l7-types.ts';
import { DEFAULT_RETRY_POLICY, RETRY_ON } from '../../workload-api/l7-types.ts';
import type { KubeObject } from '../kube-objects.ts';
import type { ClusterView } from '../view.ts';
import { waypointReference } from '../waypoint.ts';
import { virtualServiceCors, type VirtualServiceCorsSpec } from './cors.ts';
import { istioDurationMs, resolveHost } from './destination-rule.ts';

/**
 * VirtualService `http` routes → the waypoint's RouteConfiguration (reference istio-ambient.md §2.6), pure over
 * every VirtualService and the cluster view.
 * - A VirtualService applies to the mesh when `gateways` is empty or names `mesh`; each of its `hosts` that is a
 *   Kubernetes Service bound to a waypoint (the service or its namespace has `istio.io/use-waypoint`) gets the
 *   routes. The VirtualService must be in the service's namespace (the waypoint's namespace is the other place
 *   Istio allows; here the service's own is required).
 * - Matches: uri, headers, withoutHeaders, queryParams (exact, prefix, regex), method (exact). `sourceLabels` are
 *   dropped as Istio's waypoint drops them; `ignoreUriCase`, `port` and a non-exact method are reported and the
 *   match is skipped.
 * - Routes: weighted destinations with subsets and ports, per-destination header operations; redirect, rewrite,
 *   timeout, retries (`retryOn` as a comma list; none given means Istio's default policy), fault delay/abort, mirror/mirrors with percentages, header
 *   operations, corsPolicy (a bad CORS field is reported and left out; the route stays).
 * - Routes are kept in order; nothing after the first catch-all route of a VirtualService is reachable, so it is
 *   reported and dropped. Several VirtualServices for one host: the oldest first. A host that also has an
 *   HTTPRoute keeps the HTTPRoute's configuration (the caller decides; this function reports nothing about it).
 */

interface StringMatchSpec {
  readonly exact?: string;
  readonly prefix?: string;
  readonly regex?: string;
}

interface HeaderOperationsSpec {
  readonly set?: Readonly<Record<string, string>>;
  readonly add?: Readonly<Record<string, string>>;
  readonly remove?: readonly string[];
}

interface HeadersSpec {
  readonly request?: HeaderOperationsSpec;
  readonly response?: HeaderOperationsSpec;
}

interface DestinationSpec {
  readonly host?: string;
  readonly subset?: string;
  readonly port?: { readonly number?: number };
}

export interface VirtualServiceHttpRoute {
  readonly name?: string;
  readonly match?: ReadonlyArray<{
    readonly uri?: StringMatchSpec;
    readonly headers?: Readonly<Record<string, StringMatchSpec>>;
    readonly withoutHeaders?: Readonly<Record<string, StringMatchSpec>>;
    readonly queryParams?: Readonly<Record<string, StringMatchSpec>>;
    readonly method?: StringMatchSpec;
    readonly sourceLabels?: Readonly<Record<string, string>>;
    readonly ignoreUriCase?: boolean;
    readonly port?: number;
  }>;
  readonly route?: ReadonlyArray<{ readonly destination?: DestinationSpec; readonly weight?: number; readonly headers?: HeadersSpec }>;
  readonly redirect?: { readonly uri?: string; readonly authority?: string; readonly port?: number; readonly scheme?: string; readonly redirectCode?: number };
  readonly rewrite?: { readonly uri?: string; readonly authority?: string };
  readonly timeout?: string;
  readonly retries?: { readonly attempts?: number; readonly perTryTimeout?: string; readonly retryOn?: string };
  readonly fault?: {
    readonly delay?: { readonly fixedDelay?: string; readonly percentage?: { readonly value?: number } };
    readonly abort?: { readonly httpStatus?: number; readonly grpcStatus?: string; readonly percentage?: { readonly value?: number } };
  };
  readonly mirror?: DestinationSpec;
  readonly mirrorPercentage?: { readonly value?: number };
  readonly mirrors?: ReadonlyArray<{ readonly destination?: DestinationSpec; readonly percentage?: { readonly value?: number } }>;
  readonly headers?: HeadersSpec;
  readonly corsPolicy?: VirtualServiceCorsSpec;
}

export interface VirtualServiceObject extends KubeObject {
  readonly spec?: {
    readonly hosts?: readonly string[];
    readonly gateways?: readonly string[];
    readonly http?: readonly VirtualServiceHttpRoute[];
  };
}

export interface VirtualServiceTranslation {
  readonly configs: ReadonlyMap<string, RouteConfiguration>;
  readonly problems: ReadonlyArray<{ readonly virtualService: string; readonly message: string }>;
}

const GRPC_CODES: Readonly<Record<string, number>> = {
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, ALREADY_EXISTS: 6, PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9, ABORTED: 10, OUT_OF_RANGE: 11, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14, DATA_LOSS: 15, UNAUTHENTICATED: 16,
};

function stringMatch(spec: StringMatchSpec | undefined, where: string, problems: string[]): L7StringMatch | undefined {
  if (spec === undefined) return undefined;
  if (spec.exact !== undefined) return { kind: 'exact', value: spec.exact };
  if (spec.prefix !== undefined) return { kind: 'prefix', value: spec.prefix };
  if (spec.regex !== undefined) {
    try {
      return { kind: 'regex', value: spec.regex, regex: new RegExp(`^(?:${spec.regex})$`, 'u') };
    } catch (err) {
      problems.push(`${where}.regex: invalid regular expression: ${(err as Error).message}`);
      return undefined;
    }
  }
  problems.push(`${where}: one of exact, prefix or regex is needed`);
  return undefined;
}

function headerOperations(spec: HeaderOperationsSpec | undefined): HeaderMutation | undefined {
  if (spec === undefined) return undefined;
  const pairs = (m: Readonly<Record<string, string>> | undefined) => Object.entries(m ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const);
  return { set: pairs(spec.set), add: pairs(spec.add), remove: (spec.remove ?? []).map((h) => h.toLowerCase()) };
}

function percent(value: number | undefined, where: string, problems: string[]): number {
  if (value === undefined) return 100;
  if (!(value >= 0 && value <= 100)) problems.push(`${where}: ${value} is not a percentage`);
  return value;
}

function isCatchAll(route: VirtualServiceHttpRoute): boolean {
  const matches = route.match ?? [];
  return matches.length === 0 || matches.some((m) => Object.keys(m).length === 0 || (m.uri?.prefix === '/' && Object.keys(m).length === 1));
}

function translateRoute(view: ClusterView, vs: VirtualServiceObject, route: VirtualServiceHttpRoute, where: string, problems: string[]): HttpRoute | undefined {
  const before = problems.length;
  const ns = vs.metadata?.namespace ?? '';
  const destination = (d: DestinationSpec | undefined, at: string) => {
    if (!d?.host) {
      problems.push(`${at}.host: required`);
      return undefined;
    }
    const target = resolveHost(d.host, ns, view.settings.domainSuffix);
    return { namespace: target.namespace, hostname: target.hostname, port: d.port?.number ?? 0, subset: d.subset ?? '' };
  };
  const matches: RouteMatch[] = [];
  (route.match ?? []).forEach((m, i) => {
    const at = `${where}.match[${i}]`;
    const mp: string[] = [];
    if (m.ignoreUriCase) mp.push(`${at}.ignoreUriCase: not supported`);
    if (m.port !== undefined) mp.push(`${at}.port: per-port matches are not supported`);
    if (m.method !== undefined && m.method.exact === undefined) mp.push(`${at}.method: only an exact method is supported`);
    const path = stringMatch(m.uri, `${at}.uri`, mp);
    const headers: HeaderMatch[] = [
      ...Object.entries(m.headers ?? {}).map(([name, spec]) => ({ name: name.toLowerCase(), invert: false, ...(Object.keys(spec).length ? { value: stringMatch(spec, `${at}.headers.${name}`, mp)! } : {}) })),
      ...Object.entries(m.withoutHeaders ?? {}).map(([name, spec]) => ({ name: name.toLowerCase(), invert: true, ...(Object.keys(spec).length ? { value: stringMatch(spec, `${at}.withoutHeaders.${name}`, mp)! } : {}) })),
    ];
    const queryParams = Object.entries(m.queryParams ?? {}).map(([name, spec]) => ({ name, ...(Object.keys(spec).length ? { value: stringMatch(spec, `${at}.queryParams.${name}`, mp)! } : {}) }));
    problems.push(...mp);
    if (mp.length > 0) return;
    matches.push({ ...(path ? { path } : {}), headers, queryParams, ...(m.method?.exact ? { method: m.method.exact.toUpperCase() } : {}) });
  });
  if ((route.match?.length ?? 0) > 0 && matches.length === 0) return undefined; // every match was unusable: the route must not become a catch-all

  const backends: WeightedBackend[] = (route.route ?? []).flatMap((r, i) => {
    const target = destination(r.destination, `${where}.route[${i}].destination`);
    if (target === undefined) return [];
    const request = headerOperations(r.headers?.request);
    const response = headerOperations(r.headers?.response);
    return [{ ...target, weight: r.weight ?? ((route.route?.length ?? 1) === 1 ? 100 : 0), ...(request ? { requestHeaders: request } : {}), ...(response ? { responseHeaders: response } : {}) }];
  });
  let redirect: HttpRoute['redirect'];
  if (route.redirect) {
    const r = route.redirect;
    const code = r.redirectCode ?? 301;
    if (![301, 302, 303, 307, 308].includes(code)) problems.push(`${where}.redirect.redirectCode: ${code} is not a redirect code`);
    redirect = {
      statusCode: code as 301, ...(r.scheme ? { scheme: r.scheme } : {}), ...(r.authority ? { host: r.authority } : {}),
      ...(r.port ? { port: r.port } : {}), ...(r.uri ? { path: { kind: 'full', value: r.uri } } : {}),
    };
  }
  let rewrite: HttpRoute['rewrite'];
  if (route.rewrite) {
    // Istio replaces the matched prefix when the match is a prefix, the whole path otherwise.
    const prefix = matches.length > 0 && matches.every((m) => m.path?.kind === 'prefix');
    rewrite = {
      ...(route.rewrite.uri !== undefined ? { path: { kind: prefix ? 'prefix' : 'full', value: route.rewrite.uri } } : {}),
      ...(route.rewrite.authority ? { host: route.rewrite.authority } : {}),
    };
  }
  let timeoutMs: number | undefined;
  if (route.timeout !== undefined) {
    timeoutMs = istioDurationMs(route.timeout);
    if (timeoutMs === undefined) problems.push(`${where}.timeout: ${JSON.stringify(route.timeout)} is not a duration`);
  }
  // No `retries`: Istio's default policy; `attempts: 0` turns retries off.
  let retries: RetryPolicy | undefined = route.redirect ? undefined : DEFAULT_RETRY_POLICY;
  if (route.retries) {
    const on = (route.retries.retryOn ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
    const retryOn: RetryOn[] = [];
    const codes: number[] = [];
    for (const c of on) {
      if (/^\d{3}$/.test(c)) codes.push(Number(c));
      else if ((RETRY_ON as readonly string[]).includes(c)) retryOn.push(c as RetryOn);
      else problems.push(`${where}.retries.retryOn: unknown condition ${JSON.stringify(c)}`);
    }
    if (codes.length > 0 && !retryOn.includes('retriable-status-codes')) retryOn.push('retriable-status-codes');
    const perTry = route.retries.perTryTimeout === undefined ? undefined : istioDurationMs(route.retries.perTryTimeout);
    if (route.retries.perTryTimeout !== undefined && perTry === undefined) problems.push(`${where}.retries.perTryTimeout: ${JSON.stringify(route.retries.perTryTimeout)} is not a duration`);
    retries = { attempts: route.retries.attempts ?? 0, retryOn, retriableStatusCodes: codes, ...(perTry ? { perTryTimeoutMs: perTry } : {}) };
  }
  let fault: FaultInjection | undefined;
  if (route.fault) {
    const f = route.fault;
    let delay: FaultInjection['delay'];
    if (f.delay) {
      const ms = f.delay.fixedDelay === undefined ? undefined : istioDurationMs(f.delay.fixedDelay);
      if (ms === undefined) problems.push(`${where}.fault.delay.fixedDelay: ${JSON.stringify(f.delay.fixedDelay)} is not a duration`);
      else delay = { fixedDelayMs: ms, percentage: percent(f.delay.percentage?.value, `${where}.fault.delay.percentage`, problems) };
    }
    let abort: FaultInjection['abort'];
    if (f.abort) {
      const pct = percent(f.abort.percentage?.value, `${where}.fault.abort.percentage`, problems);
      if (f.abort.httpStatus !== undefined) abort = { kind: 'http', status: f.abort.httpStatus, percentage: pct };
      else if (f.abort.grpcStatus !== undefined && GRPC_CODES[f.abort.grpcStatus] !== undefined) abort = { kind: 'grpc', status: GRPC_CODES[f.abort.grpcStatus]!, percentage: pct };
      else problems.push(`${where}.fault.abort: httpStatus or a gRPC status name is needed`);
    }
    fault = { ...(delay ? { delay } : {}), ...(abort ? { abort } : {}) };
  }
  const mirrors: Mirror[] = [];
  if (route.mirror) {
    const target = destination(route.mirror, `${where}.mirror`);
    if (target) mirrors.push({ ...target, percentage: percent(route.mirrorPercentage?.value, `${where}.mirrorPercentage`, problems) });
  }
  (route.mirrors ?? []).forEach((m, i) => {
    const target = destination(m.destination, `${where}.mirrors[${i}].destination`);
    if (target) mirrors.push({ ...target, percentage: percent(m.percentage?.value, `${where}.mirrors[${i}].percentage`, problems) });
  });
  if (problems.length > before) return undefined;
  // CORS: a bad field drops only that field (or origin), never the route.
  const cors = route.corsPolicy && !route.redirect ? virtualServiceCors(route.corsPolicy, `${where}.corsPolicy`, problems) : undefined;
  const requestHeaders = headerOperations(route.headers?.request);
  const responseHeaders = headerOperations(route.headers?.response);
  return {
    name: route.name ?? '',
    matches, backends, mirrors,
    ...(requestHeaders ? { requestHeaders } : {}), ...(responseHeaders ? { responseHeaders } : {}),
    ...(redirect ? { redirect } : {}), ...(rewrite ? { rewrite } : {}), ...(timeoutMs ? { timeoutMs } : {}),
    ...(retries ? { retries } : {}), ...(fault ? { fault } : {}), ...(cors ? { cors } : {}),
  };
}

export function translateVirtualServices(virtualServices: Iterable<VirtualServiceObject>, view: ClusterView): VirtualServiceTranslation {
  const problems: Array<{ virtualService: string; message: string }> = [];
  const byHost = new Map<string, { namespace: string; hostname: string; routes: HttpRoute[] }>();
  const ordered = [...virtualServices].sort((a, b) => {
    const ta = a.metadata?.creationTimestamp ?? '';
    const tb = b.metadata?.creationTimestamp ?? '';
    if (ta !== tb) return ta < tb ? -1 : 1;
    return `${a.metadata?.namespace}/${a.metadata?.name}` < `${b.metadata?.namespace}/${b.metadata?.name}` ? -1 : 1;
  });
  for (const vs of ordered) {
    const ns = vs.metadata?.namespace ?? '';
    const key = `${ns}/${vs.metadata?.name ?? ''}`;
    const gateways = vs.spec?.gateways ?? [];
    if (gateways.length > 0 && !gateways.includes('mesh')) continue; // an ingress VirtualService
    const vp: string[] = [];
    const routes: HttpRoute[] = [];
    let caughtAll = false;
    (vs.spec?.http ?? []).forEach((route, i) => {
      const where = `spec.http[${i}]`;
      if (caughtAll) {
        vp.push(`${where}: unreachable after the catch-all route before it; dropped`);
        return;
      }
      const r = translateRoute(view, vs, route, where, vp);
      if (r === undefined) return;
      routes.push({ ...r, name: r.name || `${key}.${i}` });
      if (isCatchAll(route)) caughtAll = true;
    });
    (vs.spec?.hosts ?? []).forEach((host, i) => {
      const target = resolveHost(host, ns, view.settings.domainSuffix);
      const svcName = target.hostname.split('.')[0] ?? '';
      const svc = view.service(target.namespace, svcName);
      if (svc === undefined || target.hostname !== `${svcName}.${target.namespace}.svc.${view.settings.domainSuffix}`) {
        vp.push(`spec.hosts[${i}]: ${host} is not a Kubernetes Service; only Services reach a waypoint here`);
        return;
      }
      if (target.namespace !== ns) {
        vp.push(`spec.hosts[${i}]: ${host} is in namespace ${target.namespace}; the VirtualService must be in the service's namespace`);
        return;
      }
      const ref = waypointReference(view, svc);
      if (ref === undefined || ref === 'none') {
        vp.push(`spec.hosts[${i}]: Service ${target.namespace}/${svcName} is not bound to a waypoint (istio.io/use-waypoint)`);
        return;
      }
      const name = `${target.namespace}/${target.hostname}`;
      const entry = byHost.get(name) ?? { namespace: target.namespace, hostname: target.hostname, routes: [] };
      entry.routes.push(...routes);
      byHost.set(name, entry);
    });
    for (const message of vp) problems.push({ virtualService: key, message });
  }
  const configs = new Map<string, RouteConfiguration>();
  for (const [name, e] of byHost) configs.set(name, { namespace: e.namespace, hostname: e.hostname, ports: [], routes: e.routes });
  return { configs, problems };
}
