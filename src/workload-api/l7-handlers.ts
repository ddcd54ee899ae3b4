import { errorMessage } from '../core/errors.ts';
import type { Result } from '../core/result.ts';
import type { AuthorizationPolicy__Output } from './generated/ambient/l7/AuthorizationPolicy.ts';
import type { DestinationPolicy__Output } from './generated/ambient/l7/DestinationPolicy.ts';
import type { RouteConfiguration__Output } from './generated/ambient/l7/RouteConfiguration.ts';
import { destinationPolicyFromWire, l7AuthorizationFromWire, requestAuthenticationFromWire, routeConfigurationFromWire } from './l7-convert.ts';
import type { RequestAuthentication__Output } from './generated/ambient/l7/RequestAuthentication.ts';
import type { L7Store } from './l7-store.ts';
import { decodeMessage, messageNameOf, TypeUrl } from './proto.ts';
import type { Rejection, XdsHandler, XdsResource } from './xds-types.ts';

function convert<W, D>(resource: XdsResource, typeUrl: string, from: (wire: W) => Result<D>): Result<D> {
  if (resource.typeUrl !== typeUrl) return { ok: false, errors: [`resource type ${JSON.stringify(resource.typeUrl)} is not ${typeUrl}`] };
  let wire: W;
  try {
    wire = decodeMessage<W>(messageNameOf(typeUrl), resource.value);
  } catch (err) {
    return { ok: false, errors: [`malformed protobuf: ${errorMessage(err)}`] };
  }
  return from(wire);
}

/**
 * One handler per L7 type, with the workload API's rule: every valid resource applies, every invalid
 * one is NACKed by name with its field-path reason and the last good version stays. A resource's name
 * must be its key (`namespace/hostname`, or `namespace/name` for policies).
 */
function l7Handler<W, D>(
  typeUrl: string,
  from: (wire: W) => Result<D>,
  key: (d: D) => string,
  upsert: (d: D) => void,
  remove: (name: string) => void,
): XdsHandler {
  return {
    typeUrl,
    handle(resources, removed) {
      const rejections: Rejection[] = [];
      for (const resource of resources) {
        const converted = convert(resource, typeUrl, from);
        if (!converted.ok) {
          rejections.push({ name: resource.name, reason: converted.errors.join('; ') });
          continue;
        }
        const want = key(converted.value);
        if (want !== resource.name) {
          rejections.push({ name: resource.name, reason: `resource name must be ${JSON.stringify(want)}` });
          continue;
        }
        upsert(converted.value);
      }
      for (const name of removed) remove(name);
      return rejections;
    },
  };
}

export function routeConfigurationHandler(store: L7Store): XdsHandler {
  return l7Handler<RouteConfiguration__Output, ReturnType<typeof routeConfigurationFromWire> extends Result<infer D> ? D : never>(
    TypeUrl.routeConfiguration,
    (w) => routeConfigurationFromWire(w),
    (r) => `${r.namespace}/${r.hostname}`,
    (r) => store.upsertRouteConfiguration(r),
    (n) => store.removeRouteConfiguration(n),
  );
}

export function destinationPolicyHandler(store: L7Store): XdsHandler {
  return l7Handler<DestinationPolicy__Output, ReturnType<typeof destinationPolicyFromWire> extends Result<infer D> ? D : never>(
    TypeUrl.destinationPolicy,
    (w) => destinationPolicyFromWire(w),
    (d) => `${d.namespace}/${d.hostname}`,
    (d) => store.upsertDestinationPolicy(d),
    (n) => store.removeDestinationPolicy(n),
  );
}

export function l7AuthorizationHandler(store: L7Store): XdsHandler {
  return l7Handler<AuthorizationPolicy__Output, ReturnType<typeof l7AuthorizationFromWire> extends Result<infer D> ? D : never>(
    TypeUrl.l7Authorization,
    (w) => l7AuthorizationFromWire(w),
    (p) => `${p.namespace}/${p.name}`,
    (p) => store.upsertAuthorizationPolicy(p),
    (n) => store.removeAuthorizationPolicy(n),
  );
}

export function requestAuthenticationHandler(store: L7Store): XdsHandler {
  return l7Handler<RequestAuthentication__Output, ReturnType<typeof requestAuthenticationFromWire> extends Result<infer D> ? D : never>(
    TypeUrl.requestAuthentication,
    (w) => requestAuthenticationFromWire(w),
    (a) => `${a.namespace}/${a.name}`,
    (a) => store.upsertRequestAuthentication(a),
    (n) => store.removeRequestAuthentication(n),
  );
}

/** The L7 handlers, for a waypoint's xDS client. */
export function l7Handlers(store: L7Store): XdsHandler[] {
  return [routeConfigurationHandler(store), destinationPolicyHandler(store), l7AuthorizationHandler(store), requestAuthenticationHandler(store)];
}
