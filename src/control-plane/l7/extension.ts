import { ErrorCode } from '../../core/error-codes.ts';
import type { Logger } from '../../core/logger.ts';
import { encodeDestinationPolicy, encodeL7Authorization, encodeRequestAuthentication, encodeRouteConfiguration } from '../../workload-api/l7-encode.ts';
import { TypeUrl } from '../../workload-api/proto.ts';
import type { ExtensionContext, ObjectChange, TranslatorExtension } from '../translator.ts';
import type { KubeAuthorizationPolicy, KubeService } from '../kube-objects.ts';
import { translateL7Policies } from './authorization.ts';
import { translateDestinationRules, type DestinationRuleObject } from './destination-rule.ts';
import { grpcRouteAsHttpRoute, type GrpcRouteObject } from './grpc-route.ts';
import { translateHttpRoutes, type HttpRouteObject } from './http-route.ts';
import { translateRequestAuthentications, type RequestAuthenticationObject } from './request-authentication.ts';
import { translateVirtualServices, type VirtualServiceObject } from './virtual-service.ts';

/**
 * The waypoint's L7 configuration as a translator extension: every HTTPRoute or GRPCRoute attached to a Service
 * (GAMMA), and
 * every mesh VirtualService `http` route of a bound Service, becomes part of that service's
 * `ambient.l7.RouteConfiguration` (a host with both keeps its HTTPRoutes), and every AuthorizationPolicy with targetRefs an
 * `ambient.l7.AuthorizationPolicy`, and every DestinationRule an `ambient.l7.DestinationPolicy` (its subsets
 * resolved to pod uids, hence the Pod changes), served to waypoints over the same delta ADS stream as the workload API.
 * Recomputed from all of them on any change of a route, a policy, a rule, a Service, a Namespace, a Gateway
 * (binding) or a Pod (subsets);
 * only changed bytes reach the snapshot, so an unrelated change pushes nothing. Problems are logged once each,
 * coded `CP_INVALID_OBJECT`, and kept in `problems()`; the rest still applies.
 */

export interface L7Extension extends TranslatorExtension {
  /** The problems of the last translation, as `namespace/name: message`. */
  problems(): readonly string[];
}

export const L7_KINDS = ['HTTPRoute', 'GRPCRoute', 'VirtualService', 'AuthorizationPolicy', 'RequestAuthentication', 'DestinationRule', 'Service', 'Namespace', 'Gateway', 'Pod'] as const;

/** Where the API server serves the kinds the extension adds to the control plane's own (kubernetes mode). */
export const L7_COLLECTIONS: Readonly<Record<string, string>> = Object.freeze({
  DestinationRule: '/apis/networking.istio.io/v1/destinationrules',
  VirtualService: '/apis/networking.istio.io/v1/virtualservices',
  RequestAuthentication: '/apis/security.istio.io/v1/requestauthentications',
});

export function l7Extension(options: { readonly logger: Logger }): L7Extension {
  const log = options.logger.child({ component: 'l7-translation' });
  const published = new Map<string, Set<string>>();
  let problems: string[] = [];
  /** Writes `resources` of `typeUrl` and deletes what was published before and is gone now. */
  const publish = (context: ExtensionContext, typeUrl: string, resources: ReadonlyMap<string, Buffer>): void => {
    for (const [name, bytes] of resources) context.snapshot.set(typeUrl, name, bytes);
    for (const name of published.get(typeUrl) ?? []) if (!resources.has(name)) context.snapshot.delete(typeUrl, name);
    published.set(typeUrl, new Set(resources.keys()));
  };
  return {
    name: 'waypoint-l7',
    kinds: L7_KINDS,
    // Every L7 type the waypoint subscribes to, so each gets an answer (possibly empty) and the waypoint gets ready.
    typeUrls: [TypeUrl.routeConfiguration, TypeUrl.destinationPolicy, TypeUrl.l7Authorization, TypeUrl.requestAuthentication],
    apply(_changes: readonly ObjectChange[], context: ExtensionContext): void {
      const routes = translateHttpRoutes([
        ...(context.objects('HTTPRoute') as Iterable<HttpRouteObject>),
        ...[...(context.objects('GRPCRoute') as Iterable<GrpcRouteObject>)].map(grpcRouteAsHttpRoute),
      ], context.view);
      const virtual = translateVirtualServices(context.objects('VirtualService') as Iterable<VirtualServiceObject>, context.view);
      // A host with both keeps its HTTPRoutes (Istio's waypoint sees HTTPRoutes as VirtualServices too; mixing both
      // kinds on one host is not something we order).
      const shadowed = [...virtual.configs.keys()].filter((name) => routes.configs.has(name));
      const configs = new Map([...virtual.configs, ...routes.configs]);
      publish(context, TypeUrl.routeConfiguration, new Map([...configs].map(([name, rc]) => [name, encodeRouteConfiguration(rc)])));
      const policies = translateL7Policies(
        context.objects('AuthorizationPolicy') as Iterable<KubeAuthorizationPolicy>, context.objects('Service') as Iterable<KubeService>, context.view,
      );
      publish(context, TypeUrl.l7Authorization, new Map([...policies.policies].map(([name, p]) => [name, encodeL7Authorization(p)])));
      const jwt = translateRequestAuthentications(
        context.objects('RequestAuthentication') as Iterable<RequestAuthenticationObject>, context.objects('Service') as Iterable<KubeService>, context.view,
      );
      publish(context, TypeUrl.requestAuthentication, new Map([...jwt.policies].map(([name, p]) => [name, encodeRequestAuthentication(p)])));
      const destinations = translateDestinationRules(context.objects('DestinationRule') as Iterable<DestinationRuleObject>, context.view);
      publish(context, TypeUrl.destinationPolicy, new Map([...destinations.policies].map(([name, d]) => [name, encodeDestinationPolicy(d)])));
      const found = [
        ...routes.problems.map((p) => ({ kind: 'HTTPRoute', object: p.route, problem: p.message })),
        ...virtual.problems.map((p) => ({ kind: 'VirtualService', object: p.virtualService, problem: p.message })),
        ...shadowed.map((name) => ({ kind: 'VirtualService', object: name, problem: `the host also has HTTPRoutes, which are used instead` })),
        ...policies.problems.map((p) => ({ kind: 'AuthorizationPolicy', object: p.policy, problem: p.message })),
        ...destinations.problems.map((p) => ({ kind: 'DestinationRule', object: p.rule, problem: p.message })),
        ...jwt.problems.map((p) => ({ kind: 'RequestAuthentication', object: p.policy, problem: p.message })),
      ];
      const known = new Set(problems);
      for (const p of found) {
        if (!known.has(`${p.object}: ${p.problem}`)) log.warn({ code: ErrorCode.CP_INVALID_OBJECT, ...p }, `${p.kind} not fully translated for the waypoint`);
      }
      problems = found.map((p) => `${p.object}: ${p.problem}`);
    },
    problems: () => problems,
  };
}
