import { fail, ok, type Result } from '../core/result.ts';

/** A workload identity: `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`. */
export interface SpiffeId {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

const PREFIX = 'spiffe://';
// Trust domains and path segments: the SPIFFE character sets (lower-case trust domain, no empty segment).
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;

/** Parses exactly the Istio form; anything else (other paths, extra segments, query, port) is refused. */
export function parseSpiffeId(uri: string): Result<SpiffeId> {
  if (!uri.startsWith(PREFIX)) return fail(`"${uri}" does not start with ${PREFIX}`);
  const parts = uri.slice(PREFIX.length).split('/');
  if (parts.length !== 5) return fail(`"${uri}" must have the form spiffe://<td>/ns/<ns>/sa/<sa>`);
  const [trustDomain, nsKey, namespace, saKey, serviceAccount] = parts as [string, string, string, string, string];
  if (!TRUST_DOMAIN.test(trustDomain)) return fail(`"${uri}" has an invalid trust domain "${trustDomain}"`);
  if (nsKey !== 'ns' || saKey !== 'sa') return fail(`"${uri}" must have the form spiffe://<td>/ns/<ns>/sa/<sa>`);
  if (!SEGMENT.test(namespace)) return fail(`"${uri}" has an invalid namespace "${namespace}"`);
  if (!SEGMENT.test(serviceAccount)) return fail(`"${uri}" has an invalid service account "${serviceAccount}"`);
  return ok({ trustDomain, namespace, serviceAccount });
}

export function formatSpiffeId(id: SpiffeId): string {
  return `${PREFIX}${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

export function spiffeIdEquals(a: SpiffeId, b: SpiffeId): boolean {
  return a.trustDomain === b.trustDomain && a.namespace === b.namespace && a.serviceAccount === b.serviceAccount;
}

/** Builds an id from parts, validating them; throws on bad input (for config and tests). */
export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): SpiffeId {
  const parsed = parseSpiffeId(formatSpiffeId({ trustDomain, namespace, serviceAccount }));
  if (!parsed.ok) throw new TypeError(parsed.errors.join('; '));
  return parsed.value;
}
