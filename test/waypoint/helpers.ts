import type { L7Request } from '../../src/waypoint/request.ts';

/** A request for the pure decisions, with overridable parts. */
export function req(overrides: Partial<Omit<L7Request, 'headers' | 'source'>> & { headers?: Record<string, string>; source?: Partial<L7Request['source']> } = {}): L7Request {
  const { headers, source, ...rest } = overrides;
  return {
    method: 'GET',
    path: '/',
    query: '',
    authority: 'reviews.prod.svc.cluster.local:9080',
    scheme: 'http',
    port: 9080,
    ...rest,
    headers: new Map(Object.entries(headers ?? {})),
    source: { principal: 'cluster.local/ns/prod/sa/web', namespace: 'prod', ip: '10.0.0.5', ...source },
  };
}

/** A deterministic random source cycling through `values`. */
export function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length] as number;
}
