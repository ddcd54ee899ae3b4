/**
 * The outcome of a data-driven check: a value, or the reasons it was refused, each prefixed with the
 * path of the offending field (`workloads[2].uid: must not be empty`). Exceptions are for IO and bugs.
 */
export type Result<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly errors: readonly string[] };

export function ok<T>(value: T): Result<T> {
  return { ok: true, value };
}

export function fail<T = never>(...errors: string[]): Result<T> {
  return { ok: false, errors };
}

/** Prefixes every error of a failed result with a field path. */
export function atPath<T>(path: string, result: Result<T>): Result<T> {
  if (result.ok) return result;
  return { ok: false, errors: result.errors.map((e) => `${path}: ${e}`) };
}
