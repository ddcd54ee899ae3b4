import type { KubeObject, TargetRef } from '../kube-objects.ts';
import type { BackendRefSpec, HttpRouteFilterSpec, HttpRouteMatchSpec, HttpRouteObject } from './http-route.ts';

/**
 * GRPCRoute (Gateway API v1) as the HTTPRoute it means on the wire, so one translation serves both: a gRPC
 * method match is a match on the request path `/<service>/<method>` of a POST —
 * Exact service and method → Exact path; service only → PathPrefix `/<service>/`; method only or
 * RegularExpression → a regular expression over the path (`[^/]+` for what is not given). Header matches, the
 * header-modifier and mirror filters, backendRefs and parentRefs carry over unchanged; an unknown match type keeps
 * its value so the HTTPRoute translation reports it.
 */

export interface GrpcRouteObject extends KubeObject {
  readonly spec?: {
    readonly parentRefs?: ReadonlyArray<TargetRef & { readonly port?: number; readonly sectionName?: string }>;
    readonly rules?: ReadonlyArray<{
      readonly name?: string;
      readonly matches?: ReadonlyArray<{
        readonly method?: { readonly type?: string; readonly service?: string; readonly method?: string };
        readonly headers?: ReadonlyArray<{ readonly type?: string; readonly name?: string; readonly value?: string }>;
      }>;
      readonly filters?: readonly HttpRouteFilterSpec[];
      readonly backendRefs?: readonly BackendRefSpec[];
    }>;
  };
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

function methodMatch(method: NonNullable<NonNullable<NonNullable<GrpcRouteObject['spec']>['rules']>[number]['matches']>[number]['method']): HttpRouteMatchSpec['path'] {
  if (method === undefined) return undefined;
  const type = method.type ?? 'Exact';
  const { service, method: name } = method;
  if (type === 'Exact') {
    if (service && name) return { type: 'Exact', value: `/${service}/${name}` };
    if (service) return { type: 'PathPrefix', value: `/${service}/` };
    if (name) return { type: 'RegularExpression', value: `/[^/]+/${escape(name)}` };
    return undefined;
  }
  if (type === 'RegularExpression') return { type: 'RegularExpression', value: `/${service || '[^/]+'}/${name || '[^/]+'}` };
  return { type, value: `/${service ?? ''}/${name ?? ''}` };
}

export function grpcRouteAsHttpRoute(route: GrpcRouteObject): HttpRouteObject {
  return {
    ...route,
    kind: 'HTTPRoute',
    spec: {
      ...(route.spec?.parentRefs ? { parentRefs: route.spec.parentRefs } : {}),
      rules: (route.spec?.rules ?? []).map((rule) => ({
        ...(rule.name ? { name: rule.name } : {}),
        matches: (rule.matches?.length ? rule.matches : [{}]).map((m) => {
          const path = methodMatch(m.method);
          return { method: 'POST', ...(path ? { path } : {}), ...(m.headers ? { headers: m.headers } : {}) };
        }),
        ...(rule.filters ? { filters: rule.filters } : {}),
        ...(rule.backendRefs ? { backendRefs: rule.backendRefs } : {}),
      })),
    },
  };
}
