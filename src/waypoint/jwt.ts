import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { errorMessage } from '../core/errors.ts';
import type { JwtRule, RequestAuthentication } from '../workload-api/l7-types.ts';
import { queryParam } from './request.ts';

/**
 * RequestAuthentication at the waypoint, with Istio's semantics: a request without a token passes
 * unauthenticated (an AuthorizationPolicy decides); a token must verify against the rule of its issuer
 * (signature by the JWKS, `exp`/`nbf`, audience) or the request is refused with 401; a verified token
 * gives `request.auth.principal` = `<iss>/<sub>` and its claims. Verification is jose's (asymmetric
 * algorithms only, so `alg: none` and HMAC tokens never verify). The token is removed from the
 * forwarded request unless the rule keeps it.
 */

export type JwtOutcome =
  | { readonly kind: 'none' }
  | { readonly kind: 'verified'; readonly principal: string; readonly claims: Readonly<Record<string, unknown>>; readonly audiences: readonly string[]; readonly presenter: string; readonly strip: readonly string[] }
  | { readonly kind: 'invalid'; readonly reason: string };

const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];

/** One key resolver per JWKS (inline or remote); jose caches remote sets and refetches on unknown kids. */
export class JwksCache {
  readonly #sets = new Map<string, JWTVerifyGetKey>();

  get(rule: JwtRule): JWTVerifyGetKey {
    const key = rule.jwks.kind === 'uri' ? `uri:${rule.jwks.uri}` : `inline:${JSON.stringify(rule.jwks.keys)}`;
    let set = this.#sets.get(key);
    if (!set) {
      set = rule.jwks.kind === 'uri' ? createRemoteJWKSet(new URL(rule.jwks.uri)) : createLocalJWKSet({ keys: rule.jwks.keys } as unknown as JSONWebKeySet);
      this.#sets.set(key, set);
    }
    return set;
  }
}

/** Where a rule reads its token from: the token and the header (or parameter) to strip. */
function extract(rule: JwtRule, headers: ReadonlyMap<string, string>, query: string): { token: string; header?: string } | undefined {
  const from = rule.fromHeaders.length > 0 ? rule.fromHeaders : rule.fromParams.length > 0 ? [] : [{ name: 'authorization', prefix: 'Bearer ' }];
  for (const h of from) {
    const value = headers.get(h.name);
    if (value === undefined) continue;
    if (h.prefix && !value.toLowerCase().startsWith(h.prefix.toLowerCase())) continue;
    return { token: value.slice(h.prefix.length).trim(), header: h.name };
  }
  for (const p of rule.fromParams) {
    const value = queryParam(query, p);
    if (value) return { token: value };
  }
  return undefined;
}

export async function authenticate(policies: readonly RequestAuthentication[], headers: ReadonlyMap<string, string>, query: string, jwks: JwksCache): Promise<JwtOutcome> {
  const rules = policies.flatMap((p) => p.rules);
  if (rules.length === 0) return { kind: 'none' };
  let lastReason = '';
  let sawToken = false;
  for (const rule of rules) {
    const found = extract(rule, headers, query);
    if (!found) continue;
    sawToken = true;
    let issuer: string | undefined;
    try {
      issuer = decodeJwt(found.token).iss;
    } catch (err) {
      lastReason = `malformed token: ${errorMessage(err)}`;
      continue;
    }
    if (issuer !== rule.issuer) {
      lastReason = `issuer ${JSON.stringify(issuer)} is not configured`;
      continue;
    }
    try {
      const { payload } = await jwtVerify(found.token, jwks.get(rule), {
        issuer: rule.issuer,
        algorithms: ALGORITHMS,
        ...(rule.audiences.length > 0 ? { audience: [...rule.audiences] } : {}),
      });
      const aud = payload.aud === undefined ? [] : Array.isArray(payload.aud) ? payload.aud : [payload.aud];
      return {
        kind: 'verified',
        principal: `${payload.iss}/${payload.sub ?? ''}`,
        claims: payload as Record<string, unknown>,
        audiences: aud,
        presenter: typeof payload['azp'] === 'string' ? payload['azp'] : '',
        strip: rule.forwardOriginalToken || !found.header ? [] : [found.header],
      };
    } catch (err) {
      lastReason = errorMessage(err);
    }
  }
  return sawToken ? { kind: 'invalid', reason: lastReason } : { kind: 'none' };
}
