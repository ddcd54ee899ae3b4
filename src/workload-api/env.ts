import { existsSync, readFileSync } from 'node:fs';
import { fail, ok, type Result } from '../core/result.ts';
import { tokenSourceFrom, withScheme, type TokenSource } from './grpc-auth.ts';

/** Environment variable names, as ztunnel reads them (reference ztunnel.md §2.1, §2.2, §10.1). */
export const Env = {
  xdsAddress: 'XDS_ADDRESS',
  caAddress: 'CA_ADDRESS',
  xdsRootCa: 'XDS_ROOT_CA',
  caRootCa: 'CA_ROOT_CA',
  altXdsHostname: 'ALT_XDS_HOSTNAME',
  altCaHostname: 'ALT_CA_HOSTNAME',
  authToken: 'AUTH_TOKEN',
  clusterId: 'CLUSTER_ID',
  metaClusterId: 'ISTIO_META_CLUSTER_ID',
  xdsHeaderPrefix: 'XDS_HEADER_',
  caHeaderPrefix: 'CA_HEADER_',
  secretTtl: 'SECRET_TTL',
  localXdsPath: 'LOCAL_XDS_PATH',
  localXds: 'LOCAL_XDS',
  xdsOnDemand: 'XDS_ON_DEMAND',
  kubernetesServiceHost: 'KUBERNETES_SERVICE_HOST',
} as const;

export const DEFAULT_ROOT_CA_PATH = './var/run/secrets/istio/root-cert.pem';

/** Where to verify the server: OS roots (`SYSTEM`), or a PEM from a file or given inline. */
export type RootCa = { readonly kind: 'system' } | { readonly kind: 'pem'; readonly pem: string; readonly path?: string } | { readonly kind: 'missing'; readonly path: string };

export interface WorkloadApiEnv {
  /** Undefined when xDS is disabled (`XDS_ADDRESS=""`). */
  readonly xdsAddress: string | undefined;
  readonly caAddress: string;
  readonly xdsRootCa: RootCa;
  readonly caRootCa: RootCa;
  readonly altXdsHostname: string | undefined;
  readonly altCaHostname: string | undefined;
  readonly token: TokenSource;
  readonly clusterId: string;
  readonly xdsHeaders: Readonly<Record<string, string>>;
  readonly caHeaders: Readonly<Record<string, string>>;
  readonly secretTtlSeconds: number;
  readonly onDemand: boolean;
  readonly local: { readonly kind: 'path'; readonly path: string } | { readonly kind: 'inline'; readonly yaml: string } | undefined;
}

export function rootCaFrom(value: string | undefined): RootCa {
  const spec = value ?? DEFAULT_ROOT_CA_PATH;
  if (spec === 'SYSTEM') return { kind: 'system' };
  if (spec.includes('-----BEGIN')) return { kind: 'pem', pem: spec };
  return existsSync(spec) ? { kind: 'pem', pem: readFileSync(spec, 'utf8'), path: spec } : { kind: 'missing', path: spec };
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86_400 };
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

function parseDuration(text: string, units: Record<string, number>): number | undefined {
  const parts = text.match(/\d+(?:\.\d+)?(?:ms|s|m|h|d)/g);
  if (!parts || parts.join('') !== text) return undefined;
  return Math.round(parts.reduce((sum, part) => {
    const [, n, unit] = DURATION.exec(part) as RegExpExecArray;
    return sum + Number(n) * (units[unit as string] as number);
  }, 0));
}

/** Go-style duration strings (`24h`, `90m`, `1h30m`) to whole seconds. */
export function parseDurationSeconds(text: string): number | undefined {
  return parseDuration(text, UNIT_SECONDS);
}

/** Go-style duration strings (`5s`, `500ms`, `1m30s`) to whole milliseconds. */
export function parseDurationMs(text: string): number | undefined {
  return parseDuration(text, UNIT_MS);
}

function prefixed(env: Readonly<Record<string, string | undefined>>, prefix: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) if (key.startsWith(prefix) && value !== undefined) out[key.slice(prefix.length).toLowerCase()] = value;
  return out;
}

/** Reads the workload API settings from an environment (a pure function over the map given). */
export function parseWorkloadApiEnv(env: Readonly<Record<string, string | undefined>>): Result<WorkloadApiEnv> {
  const errors: string[] = [];
  const istiod = env[Env.kubernetesServiceHost] ? 'https://istiod.istio-system.svc:15012' : 'https://localhost:15012';
  const xds = env[Env.xdsAddress];
  const ttlText = env[Env.secretTtl] ?? '24h';
  const secretTtlSeconds = parseDurationSeconds(ttlText);
  if (secretTtlSeconds === undefined || secretTtlSeconds <= 0) errors.push(`${Env.secretTtl}: "${ttlText}" is not a positive duration (e.g. 24h)`);
  const onDemandText = env[Env.xdsOnDemand] ?? 'false';
  if (onDemandText !== 'true' && onDemandText !== 'false') errors.push(`${Env.xdsOnDemand}: "${onDemandText}" must be true or false`);
  const localPath = env[Env.localXdsPath];
  const localInline = env[Env.localXds];
  if (localPath && localInline) errors.push(`${Env.localXdsPath} and ${Env.localXds} are mutually exclusive`);
  if (errors.length > 0) return fail(...errors);
  return ok({
    xdsAddress: xds === '' ? undefined : withScheme(xds ?? istiod),
    caAddress: withScheme(env[Env.caAddress] || istiod),
    xdsRootCa: rootCaFrom(env[Env.xdsRootCa]),
    caRootCa: rootCaFrom(env[Env.caRootCa]),
    altXdsHostname: env[Env.altXdsHostname] || undefined,
    altCaHostname: env[Env.altCaHostname] || undefined,
    token: tokenSourceFrom(env[Env.authToken]),
    clusterId: env[Env.metaClusterId] || env[Env.clusterId] || 'Kubernetes',
    xdsHeaders: prefixed(env, Env.xdsHeaderPrefix),
    caHeaders: prefixed(env, Env.caHeaderPrefix),
    secretTtlSeconds: secretTtlSeconds as number,
    onDemand: onDemandText === 'true',
    local: localPath ? { kind: 'path', path: localPath } : localInline ? { kind: 'inline', yaml: localInline } : undefined,
  });
}
