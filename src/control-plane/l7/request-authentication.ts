import type { JwtRule, RequestAuthentication } from '../../workload-api/l7-types.ts';
import type { KubeObject, KubeService, TargetRef } from '../kube-objects.ts';
import type { ClusterView } from '../view.ts';
import { targetsOf, waypointTargets } from './authorization.ts';

/**
 * RequestAuthentication (security.istio.io/v1) → the waypoint's RequestAuthentication: like AuthorizationPolicy,
 * only policies with targetRefs apply at a waypoint (the same targets). `jwtRules` map field for field: issuer,
 * audiences, `jwks` (inline JSON) or `jwksUri`, `fromHeaders`, `fromParams`, `forwardOriginalToken`; a rule with
 * neither key source, or a `jwks` that is not a JWKS document, is reported and skipped. `outputPayloadToHeader`
 * and `outputClaimToHeaders` are not supported and reported (the rule still applies).
 */

export interface RequestAuthenticationObject extends KubeObject {
  readonly spec?: {
    readonly selector?: unknown;
    readonly targetRef?: TargetRef | null;
    readonly targetRefs?: readonly TargetRef[] | null;
    readonly jwtRules?: ReadonlyArray<{
      readonly issuer?: string;
      readonly audiences?: readonly string[];
      readonly jwks?: string;
      readonly jwksUri?: string;
      readonly fromHeaders?: ReadonlyArray<{ readonly name?: string; readonly prefix?: string }>;
      readonly fromParams?: readonly string[];
      readonly forwardOriginalToken?: boolean;
      readonly outputPayloadToHeader?: string;
      readonly outputClaimToHeaders?: readonly unknown[];
    }>;
  };
}

export interface RequestAuthenticationTranslation {
  readonly policies: ReadonlyMap<string, RequestAuthentication>;
  readonly problems: ReadonlyArray<{ readonly policy: string; readonly message: string }>;
}

export function translateRequestAuthentications(objects: Iterable<RequestAuthenticationObject>, services: Iterable<KubeService>, view: ClusterView): RequestAuthenticationTranslation {
  const policies = new Map<string, RequestAuthentication>();
  const problems: Array<{ policy: string; message: string }> = [];
  const serviceList = [...services];
  for (const ra of objects) {
    const targets = targetsOf(ra);
    if (targets.length === 0) continue; // selector policies are for sidecars and gateways, not waypoints
    const namespace = ra.metadata?.namespace ?? '';
    const name = ra.metadata?.name ?? '';
    const key = `${namespace}/${name}`;
    const report = (message: string) => problems.push({ policy: key, message });
    const attached = waypointTargets(targets, namespace, serviceList, view, report);
    if (attached === undefined) continue;
    const rules: JwtRule[] = [];
    (ra.spec?.jwtRules ?? []).forEach((r, i) => {
      const at = `spec.jwtRules[${i}]`;
      if (!r.issuer) return report(`${at}.issuer: required`);
      let jwks: JwtRule['jwks'];
      if (r.jwks) {
        try {
          const doc = JSON.parse(r.jwks) as { keys?: unknown };
          if (!Array.isArray(doc.keys)) return report(`${at}.jwks: not a JWKS document (no "keys" list)`);
          jwks = { kind: 'inline', keys: doc.keys as Record<string, unknown>[] };
        } catch (err) {
          return report(`${at}.jwks: not JSON: ${(err as Error).message}`);
        }
      } else if (r.jwksUri) {
        if (!/^https?:\/\//.test(r.jwksUri)) return report(`${at}.jwksUri: ${JSON.stringify(r.jwksUri)} is not an http(s) URI`);
        jwks = { kind: 'uri', uri: r.jwksUri };
      } else {
        return report(`${at}: one of jwks or jwksUri is needed (OpenID discovery of the issuer is not done)`);
      }
      if (r.outputPayloadToHeader) report(`${at}.outputPayloadToHeader: not supported; ignored`);
      if ((r.outputClaimToHeaders?.length ?? 0) > 0) report(`${at}.outputClaimToHeaders: not supported; ignored`);
      rules.push({
        issuer: r.issuer,
        audiences: [...(r.audiences ?? [])],
        jwks,
        fromHeaders: (r.fromHeaders ?? []).map((h) => ({ name: (h.name ?? '').toLowerCase(), prefix: h.prefix ?? '' })),
        fromParams: [...(r.fromParams ?? [])],
        forwardOriginalToken: r.forwardOriginalToken ?? false,
      });
      return undefined;
    });
    policies.set(key, { name, namespace, targetServices: attached, rules });
  }
  return { policies, problems };
}
