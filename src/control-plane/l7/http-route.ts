import { fail, ok, type Result } from '../../core/result.ts';
import { parseDurationMs } from '../../workload-api/env.ts';
import type { HttpRoute as WireHttpRoute } from '../../workload-api/generated/ambient/l7/HttpRoute.ts';
import type { RouteConfiguration as WireRouteConfiguration } from '../../workload-api/generated/ambient/l7/RouteConfiguration.ts';

/**
 * Gateway API HTTPRoute (GAMMA: parentRefs to a Service) → the waypoint's `RouteConfiguration` per
 * parent service, as a pure function. Each (rule, match) becomes one ordered route, sorted by the
 * Gateway API precedence (exact path, then the longest prefix, then a method, then more header
 * matches, then more query matches; ties keep the rules' order). Unsupported fields are errors with
 * their path, never silently dropped.
 */

interface StringKV { readonly name: string; readonly value: string }
interface HeaderFilter { readonly set?: readonly StringKV[]; readonly add?: readonly StringKV[]; readonly remove?: readonly string[] }
interface BackendRef { readonly group?: string; readonly kind?: string; readonly name: string; readonly namespace?: string; readonly port?: number; readonly weight?: number }
interface Filter {
  readonly type: string;
  readonly requestHeaderModifier?: HeaderFilter;
  readonly responseHeaderModifier?: HeaderFilter;
  readonly requestRedirect?: { readonly scheme?: string; readonly hostname?: string; readonly port?: number; readonly statusCode?: number; readonly path?: PathModifier };
  readonly urlRewrite?: { readonly hostname?: string; readonly path?: PathModifier };
  readonly requestMirror?: { readonly backendRef: BackendRef; readonly percent?: number };
}
interface PathModifier { readonly type: 'ReplaceFullPath' | 'ReplacePrefixMatch'; readonly replaceFullPath?: string; readonly replacePrefixMatch?: string }
interface Match {
  readonly path?: { readonly type?: 'Exact' | 'PathPrefix' | 'RegularExpression'; readonly value?: string };
  readonly headers?: ReadonlyArray<{ readonly type?: 'Exact' | 'RegularExpression'; readonly name: string; readonly value: string }>;
  readonly queryParams?: ReadonlyArray<{ readonly type?: 'Exact' | 'RegularExpression'; readonly name: string; readonly value: string }>;
  readonly method?: string;
}
interface Rule {
  readonly matches?: readonly Match[];
  readonly filters?: readonly Filter[];
  readonly backendRefs?: ReadonlyArray<BackendRef & { readonly filters?: readonly Filter[] }>;
  readonly timeouts?: { readonly request?: string; readonly backendRequest?: string };
}
export interface HttpRouteObject {
  readonly metadata: { readonly name: string; readonly namespace: string };
  readonly spec: {
    readonly parentRefs?: ReadonlyArray<{ readonly group?: string; readonly kind?: string; readonly name: string; readonly namespace?: string; readonly port?: number }>;
    readonly rules?: readonly Rule[];
  };
}

export interface TranslateOptions {
  /** `cluster.local`: service hostnames are `<name>.<namespace>.svc.<domain>`. */
  readonly clusterDomain: string;
}

const hostname = (name: string, namespace: string, domain: string): string => `${name}.${namespace}.svc.${domain}`;
const isService = (ref: { group?: string; kind?: string }): boolean => (ref.group ?? '') === '' && (ref.kind ?? 'Service') === 'Service';

function stringMatch(type: string | undefined, value: string, exactName = 'Exact'): object {
  if (type === 'RegularExpression') return { regex: value };
  if (type === 'PathPrefix') return { prefix: value };
  if (type === undefined || type === exactName) return { exact: value };
  return { exact: value };
}

function headers(f: HeaderFilter | undefined): object | undefined {
  if (!f) return undefined;
  const lower = (kv: readonly StringKV[] = []) => kv.map((h) => ({ name: h.name.toLowerCase(), value: h.value }));
  return { set: lower(f.set), add: lower(f.add), remove: (f.remove ?? []).map((n) => n.toLowerCase()) };
}

/** Gateway API precedence of one match (smaller sorts first). */
function precedence(m: Match): readonly number[] {
  const type = m.path?.type ?? 'PathPrefix';
  const value = m.path?.value ?? '/';
  return [type === 'Exact' ? 0 : type === 'PathPrefix' ? 1 : 2, -(type === 'PathPrefix' ? value.length : 0), m.method ? 0 : 1, -(m.headers?.length ?? 0), -(m.queryParams?.length ?? 0)];
}

function compare(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) if ((a[i] as number) !== (b[i] as number)) return (a[i] as number) - (b[i] as number);
  return 0;
}

/** The routes of one HTTPRoute, grouped by parent service key (`namespace/hostname`). */
export function translateHttpRoute(route: HttpRouteObject, options: TranslateOptions): Result<ReadonlyMap<string, WireRouteConfiguration>> {
  const errors: string[] = [];
  const ns = route.metadata.namespace;
  const base = `httproute ${ns}/${route.metadata.name}`;
  const parents = (route.spec.parentRefs ?? []).filter((p, i) => {
    if (isService(p)) return true;
    errors.push(`${base}: spec.parentRefs[${i}]: only Service parents (GAMMA) bind to a waypoint, got ${p.kind ?? ''}`);
    return false;
  });
  const entries: Array<{ order: readonly number[]; index: number; route: WireHttpRoute }> = [];
  (route.spec.rules ?? []).forEach((rule, r) => {
    const at = `${base}: spec.rules[${r}]`;
    let requestHeaders: object | undefined;
    let responseHeaders: object | undefined;
    let redirect: object | undefined;
    let rewrite: object | undefined;
    const mirrors: object[] = [];
    (rule.filters ?? []).forEach((f, i) => {
      const fat = `${at}.filters[${i}]`;
      switch (f.type) {
        case 'RequestHeaderModifier':
          requestHeaders = headers(f.requestHeaderModifier);
          break;
        case 'ResponseHeaderModifier':
          responseHeaders = headers(f.responseHeaderModifier);
          break;
        case 'RequestRedirect': {
          const d = f.requestRedirect ?? {};
          const path = d.path?.type === 'ReplaceFullPath' ? { fullPath: d.path.replaceFullPath ?? '/' } : d.path?.type === 'ReplacePrefixMatch' ? { prefixMatch: d.path.replacePrefixMatch ?? '/' } : {};
          redirect = { scheme: d.scheme ?? '', host: d.hostname ?? '', port: d.port ?? 0, statusCode: d.statusCode ?? 302, ...path };
          break;
        }
        case 'URLRewrite': {
          const w = f.urlRewrite ?? {};
          const path = w.path?.type === 'ReplaceFullPath' ? { fullPath: w.path.replaceFullPath ?? '/' } : w.path?.type === 'ReplacePrefixMatch' ? { prefixMatch: w.path.replacePrefixMatch ?? '/' } : {};
          rewrite = { host: w.hostname ?? '', ...path };
          break;
        }
        case 'RequestMirror': {
          const b = f.requestMirror?.backendRef;
          if (!b || !isService(b)) {
            errors.push(`${fat}.requestMirror.backendRef: a Service is required`);
            break;
          }
          const mns = b.namespace ?? ns;
          mirrors.push({ namespace: mns, hostname: hostname(b.name, mns, options.clusterDomain), port: b.port ?? 0, percentage: { value: f.requestMirror?.percent ?? 100 } });
          break;
        }
        default:
          errors.push(`${fat}.type: ${JSON.stringify(f.type)} is not supported`);
      }
    });
    const backends = (rule.backendRefs ?? []).flatMap((b, i) => {
      if (!isService(b)) {
        errors.push(`${at}.backendRefs[${i}]: only Service backends are supported, got ${b.kind ?? ''}`);
        return [];
      }
      if (b.filters && b.filters.length > 0) errors.push(`${at}.backendRefs[${i}].filters: not supported`);
      const bns = b.namespace ?? ns;
      return [{ namespace: bns, hostname: hostname(b.name, bns, options.clusterDomain), port: b.port ?? 0, weight: b.weight ?? 1, subset: '' }];
    });
    let timeout: object | undefined;
    if (rule.timeouts?.request) {
      const ms = parseDurationMs(rule.timeouts.request);
      if (ms === undefined) errors.push(`${at}.timeouts.request: ${JSON.stringify(rule.timeouts.request)} is not a duration`);
      else if (ms > 0) timeout = { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
    }
    const matches = rule.matches && rule.matches.length > 0 ? rule.matches : [{ path: { type: 'PathPrefix' as const, value: '/' } }];
    matches.forEach((m, j) => {
      const wire: WireHttpRoute = {
        name: `${ns}.${route.metadata.name}.${r}.${j}`,
        matches: [{
          ...(m.path ? { path: stringMatch(m.path.type ?? 'PathPrefix', m.path.value ?? '/') } : {}),
          headers: (m.headers ?? []).map((h) => ({ name: h.name.toLowerCase(), value: stringMatch(h.type, h.value), invert: false })),
          queryParams: (m.queryParams ?? []).map((q) => ({ name: q.name, value: stringMatch(q.type, q.value) })),
          method: m.method ?? '',
        }],
        backends,
        mirrors: mirrors as WireHttpRoute['mirrors'],
        ...(requestHeaders ? { requestHeaders } : {}),
        ...(responseHeaders ? { responseHeaders } : {}),
        ...(redirect ? { redirect } : {}),
        ...(rewrite ? { rewrite } : {}),
        ...(timeout ? { timeout } : {}),
        // Istio's default retry policy (the route sets none): 2 retries on connection trouble and 503.
        retries: { attempts: 2, retryOn: ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'], retriableStatusCodes: [503] },
      } as WireHttpRoute;
      entries.push({ order: precedence(m), index: entries.length, route: wire });
    });
  });
  if (errors.length > 0) return fail(...errors);
  entries.sort((a, b) => compare(a.order, b.order) || a.index - b.index);
  const out = new Map<string, WireRouteConfiguration>();
  for (const p of parents) {
    const pns = p.namespace ?? ns;
    const host = hostname(p.name, pns, options.clusterDomain);
    const key = `${pns}/${host}`;
    // A rule without backendRefs (a redirect, say) leaves `backends` empty: the addressed service.
    out.set(key, { namespace: pns, hostname: host, ports: p.port ? [p.port] : [], routes: entries.map((e) => e.route) });
  }
  return ok(out);
}
