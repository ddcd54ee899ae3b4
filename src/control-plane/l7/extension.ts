import { ErrorCode } from '../../core/error-codes.ts';
import type { Logger } from '../../core/logger.ts';
import { encodeRouteConfiguration } from '../../workload-api/l7-encode.ts';
import { TypeUrl } from '../../workload-api/proto.ts';
import type { ExtensionContext, ObjectChange, TranslatorExtension } from '../translator.ts';
import { translateHttpRoutes, type HttpRouteObject } from './http-route.ts';

/**
 * The waypoint's L7 configuration as a translator extension: every HTTPRoute attached to a Service (GAMMA) becomes
 * part of that service's `ambient.l7.RouteConfiguration`, served to waypoints over the same delta ADS stream as
 * the workload API. Recomputed from all HTTPRoutes on any change of a route, a Service or a Namespace (binding
 * labels); only changed bytes reach the snapshot, so an unrelated change pushes nothing. Problems are logged once
 * each, coded `CP_INVALID_OBJECT`, and counted in `problems()`; the rest of the routes still apply.
 */

export interface L7Extension extends TranslatorExtension {
  /** The problems of the last translation, as `namespace/name: message`. */
  problems(): readonly string[];
}

export const L7_KINDS = ['HTTPRoute', 'Service', 'Namespace'] as const;

export function l7Extension(options: { readonly logger: Logger }): L7Extension {
  const log = options.logger.child({ component: 'l7-translation' });
  let published = new Set<string>();
  let problems: string[] = [];
  return {
    name: 'waypoint-l7',
    kinds: L7_KINDS,
    typeUrls: [TypeUrl.routeConfiguration, TypeUrl.destinationPolicy, TypeUrl.l7Authorization],
    apply(_changes: readonly ObjectChange[], context: ExtensionContext): void {
      const routes = context.objects('HTTPRoute') as Iterable<HttpRouteObject>;
      const result = translateHttpRoutes(routes, context.view);
      for (const [name, rc] of result.configs) context.snapshot.set(TypeUrl.routeConfiguration, name, encodeRouteConfiguration(rc));
      for (const name of published) if (!result.configs.has(name)) context.snapshot.delete(TypeUrl.routeConfiguration, name);
      published = new Set(result.configs.keys());
      const now = result.problems.map((p) => `${p.route}: ${p.message}`);
      const known = new Set(problems);
      for (const p of result.problems) {
        if (!known.has(`${p.route}: ${p.message}`)) log.warn({ code: ErrorCode.CP_INVALID_OBJECT, kind: 'HTTPRoute', object: p.route, problem: p.message }, 'HTTPRoute not fully translated');
      }
      problems = now;
    },
    problems: () => problems,
  };
}
