import { fail, ok, type Result } from '../core/result.ts';

/**
 * Request path normalization, as Istio's `meshConfig.pathNormalization` (Envoy's `normalize_path`,
 * `merge_slashes` and `path_with_escaped_slashes_action`). The normalized path is what authorization,
 * routing *and* the upstream request all use, so a policy never judges a path other than the one sent.
 *
 * - `NONE`: only the checks every mode makes (origin-form, valid percent-encoding, no fragment).
 * - `BASE` (Istio's DEFAULT): RFC 3986 §6.2.2 — percent-encoded unreserved characters decoded, other
 *   escapes upper-cased, `\` turned into `/`, dot segments removed. `%2F` and `%5C` are kept as they are.
 * - `MERGE_SLASHES`: BASE, then runs of `/` merged.
 * - `DECODE_AND_MERGE_SLASHES`: `%2F`/`%5C` decoded to `/` first, then BASE and MERGE_SLASHES.
 */
export type PathNormalization = 'NONE' | 'BASE' | 'MERGE_SLASHES' | 'DECODE_AND_MERGE_SLASHES';
export const PATH_NORMALIZATIONS: readonly PathNormalization[] = ['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'];

export interface NormalizedTarget {
  /** The path, without the query. */
  readonly path: string;
  /** The query without `?` ('' when none). */
  readonly query: string;
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/** Splits and normalizes a request target (`:path` / the HTTP/1 request-target). Absolute-form is reduced to its path. */
export function normalizeRequestTarget(target: string, mode: PathNormalization): Result<NormalizedTarget> {
  let raw = target;
  if (/^https?:\/\//i.test(raw)) {
    const slash = raw.indexOf('/', raw.indexOf('//') + 2);
    raw = slash < 0 ? '/' : raw.slice(slash);
  }
  if (raw.includes('#')) return fail('request target must not contain a fragment');
  const q = raw.indexOf('?');
  let path = q < 0 ? raw : raw.slice(0, q);
  const query = q < 0 ? '' : raw.slice(q + 1);
  if (!path.startsWith('/')) return fail(`request target ${JSON.stringify(target.slice(0, 64))} is not origin-form`);
  if (/[\u0000-\u0020\u007f]/.test(path)) return fail('request path contains a control character or space');
  if (/%(?![0-9A-Fa-f]{2})/.test(path)) return fail('request path has an invalid percent-encoding');
  if (mode === 'NONE') return ok({ path, query });
  if (mode === 'DECODE_AND_MERGE_SLASHES') path = path.replace(/%2f/gi, '/').replace(/%5c/gi, '/');
  path = path.replace(/%([0-9A-Fa-f]{2})/g, (_m, hex: string) => {
    const ch = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(ch) ? ch : `%${hex.toUpperCase()}`;
  });
  path = removeDotSegments(path.replace(/\\/g, '/'));
  if (mode === 'MERGE_SLASHES' || mode === 'DECODE_AND_MERGE_SLASHES') path = path.replace(/\/{2,}/g, '/');
  return ok({ path, query });
}

/** RFC 3986 §5.2.4 for an absolute path. */
export function removeDotSegments(path: string): string {
  const segments = path.split('/').slice(1);
  const out: string[] = [];
  segments.forEach((segment, i) => {
    const last = i === segments.length - 1;
    if (segment === '.') {
      if (last) out.push('');
    } else if (segment === '..') {
      out.pop();
      if (last) out.push('');
    } else {
      out.push(segment);
    }
  });
  return `/${out.join('/')}`;
}
