import { fail, ok, type Result } from '../core/result.ts';
import { parseDurationMs, parseWorkloadApiEnv, type WorkloadApiEnv } from '../workload-api/env.ts';
import { PATH_NORMALIZATIONS, type PathNormalization } from './path.ts';

/**
 * The one config object of `ambientd waypoint`, from flags then the environment of Istio's waypoint
 * pod (`POD_NAME`, `POD_NAMESPACE`, `SERVICE_ACCOUNT`, `INSTANCE_IP`, `ISTIO_META_CLUSTER_ID`, ...) and
 * ztunnel's workload API names (`XDS_ADDRESS`, `CA_ADDRESS`, `LOCAL_XDS_PATH`, ...). `parse` is pure:
 * it returns every problem at once, each naming its variable or flag.
 */

export type WaypointLogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface WaypointConfig {
  readonly workloadApi: WorkloadApiEnv;
  /** `L7_CONFIG_PATH` (ours): the local routes / destination policies / L7 policies file, watched. */
  readonly l7ConfigPath: string | undefined;
  readonly fakeCa: boolean;
  readonly fakeCaDir: string | undefined;
  readonly fakeCaRootPath: string | undefined;
  readonly trustDomain: string;
  /** The waypoint's own identity: `POD_NAMESPACE` and `SERVICE_ACCOUNT`. */
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly podName: string;
  readonly instanceIp: string | undefined;
  readonly nodeName: string;
  readonly network: string;
  /** `--bind-address` (the wildcard by default). */
  readonly bindAddress: string | undefined;
  readonly hbonePort: number;
  readonly statsPort: number;
  readonly readinessPort: number;
  /** `--upstream-hbone-port`: the destination ztunnel's HBONE port (always 15008 in a cluster; tests move it). */
  readonly upstreamHbonePort: number;
  /** `PATH_NORMALIZATION` (ours; Istio's `meshConfig.pathNormalization`), default `BASE` (Istio's DEFAULT). */
  readonly pathNormalization: PathNormalization;
  /** `MAX_REQUEST_HEADERS_KB` (Envoy's `max_request_headers_kb`, 60). */
  readonly maxHeaderBytes: number;
  readonly terminationDeadlineMs: number;
  readonly istioVersion: string | undefined;
  /** `LOG_LEVEL` (info). */
  readonly logLevel: WaypointLogLevel;
  /** `ACCESS_LOG_FLUSH_INTERVAL` (1s): how long access-log lines may wait in the buffer; 0 writes each at once. */
  readonly accessLogFlushMs: number;
}

/**
 * The node flags a waypoint runs with (bin/ambientd gives the same): a 32 MiB young generation, as an
 * HTTP proxy allocates per request (about a quarter less CPU per request than ztunnel's 8 MiB).
 */
export const WAYPOINT_NODE_FLAGS: readonly string[] = Object.freeze(['--max-semi-space-size=32']);

export const WaypointEnv = {
  l7ConfigPath: 'L7_CONFIG_PATH',
  fakeCa: 'FAKE_CA',
  fakeCaDir: 'FAKE_CA_DIR',
  fakeCaRootPath: 'FAKE_CA_ROOT_PATH',
  trustDomain: 'TRUST_DOMAIN',
  namespace: 'POD_NAMESPACE',
  serviceAccount: 'SERVICE_ACCOUNT',
  podName: 'POD_NAME',
  instanceIp: 'INSTANCE_IP',
  nodeName: 'NODE_NAME',
  network: 'NETWORK',
  pathNormalization: 'PATH_NORMALIZATION',
  maxHeadersKb: 'MAX_REQUEST_HEADERS_KB',
  terminationDeadline: 'CONNECTION_TERMINATION_DEADLINE',
  istioVersion: 'ISTIO_META_ISTIO_VERSION',
  logLevel: 'LOG_LEVEL',
  accessLogFlushInterval: 'ACCESS_LOG_FLUSH_INTERVAL',
} as const;

const PORT_FLAGS = { 'hbone-port': 15008, 'stats-port': 15020, 'readiness-port': 15021, 'upstream-hbone-port': 15008 } as const;
export const WAYPOINT_FLAGS: readonly string[] = Object.freeze(['bind-address', ...Object.keys(PORT_FLAGS)]);
const LEVELS: readonly string[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function parse(flags: Readonly<Record<string, string>>, env: Readonly<Record<string, string | undefined>>): Result<WaypointConfig> {
  const errors: string[] = [];
  const read = (name: string): string | undefined => env[name] || undefined;
  for (const flag of Object.keys(flags)) if (!WAYPOINT_FLAGS.includes(flag)) errors.push(`--${flag}: unknown flag`);
  const bool = (name: string, fallback: boolean): boolean => {
    const text = read(name);
    if (text === undefined) return fallback;
    if (text !== 'true' && text !== 'false') errors.push(`${name}: "${text}" must be true or false`);
    return text === 'true';
  };
  const workloadApi = parseWorkloadApiEnv(env);
  if (!workloadApi.ok) errors.push(...workloadApi.errors);
  const namespace = read(WaypointEnv.namespace);
  const serviceAccount = read(WaypointEnv.serviceAccount);
  if (!namespace) errors.push(`${WaypointEnv.namespace}: required (the waypoint's namespace, part of its identity)`);
  if (!serviceAccount) errors.push(`${WaypointEnv.serviceAccount}: required (the waypoint's service account, part of its identity)`);

  const ports = {} as Record<keyof typeof PORT_FLAGS, number>;
  for (const [flag, fallback] of Object.entries(PORT_FLAGS) as [keyof typeof PORT_FLAGS, number][]) {
    const text = flags[flag];
    const port = text === undefined ? fallback : /^\d+$/.test(text) ? Number(text) : NaN;
    if (!(port >= 0 && port <= 65_535)) errors.push(`--${flag}: "${text}" is not a port (0-65535)`);
    ports[flag] = Number.isNaN(port) ? fallback : port;
  }
  const normText = read(WaypointEnv.pathNormalization) ?? 'BASE';
  const normalization = (normText === 'DEFAULT' ? 'BASE' : normText) as PathNormalization;
  if (!PATH_NORMALIZATIONS.includes(normalization)) errors.push(`${WaypointEnv.pathNormalization}: "${normText}" is not one of DEFAULT, ${PATH_NORMALIZATIONS.join(', ')}`);
  const kbText = read(WaypointEnv.maxHeadersKb) ?? '60';
  const kb = /^\d+$/.test(kbText) ? Number(kbText) : NaN;
  if (!(kb >= 1 && kb <= 8192)) errors.push(`${WaypointEnv.maxHeadersKb}: "${kbText}" must be 1-8192`);
  const deadlineText = read(WaypointEnv.terminationDeadline);
  const deadline = deadlineText === undefined ? 5000 : parseDurationMs(deadlineText);
  if (deadline === undefined) errors.push(`${WaypointEnv.terminationDeadline}: "${deadlineText}" is not a duration (e.g. 5s)`);
  const level = (read(WaypointEnv.logLevel) ?? 'info').toLowerCase();
  if (!LEVELS.includes(level)) errors.push(`${WaypointEnv.logLevel}: "${level}" is not one of ${LEVELS.join(', ')}`);
  const flushText = read(WaypointEnv.accessLogFlushInterval);
  const flushMs = flushText === undefined ? 1000 : parseDurationMs(flushText);
  if (flushMs === undefined) errors.push(`${WaypointEnv.accessLogFlushInterval}: "${flushText}" is not a duration (e.g. 1s, or 0s to write each line at once)`);
  const fakeCa = bool(WaypointEnv.fakeCa, false);
  if (errors.length > 0 || !workloadApi.ok) return fail(...errors);
  return ok(Object.freeze({
    workloadApi: workloadApi.value,
    l7ConfigPath: read(WaypointEnv.l7ConfigPath),
    fakeCa,
    fakeCaDir: read(WaypointEnv.fakeCaDir),
    fakeCaRootPath: read(WaypointEnv.fakeCaRootPath),
    trustDomain: read(WaypointEnv.trustDomain) ?? 'cluster.local',
    namespace: namespace as string,
    serviceAccount: serviceAccount as string,
    podName: read(WaypointEnv.podName) ?? '',
    instanceIp: read(WaypointEnv.instanceIp),
    nodeName: read(WaypointEnv.nodeName) ?? '',
    network: read(WaypointEnv.network) ?? '',
    bindAddress: flags['bind-address'],
    hbonePort: ports['hbone-port'],
    statsPort: ports['stats-port'],
    readinessPort: ports['readiness-port'],
    upstreamHbonePort: ports['upstream-hbone-port'],
    pathNormalization: normalization,
    maxHeaderBytes: kb * 1024,
    terminationDeadlineMs: deadline ?? 5000,
    istioVersion: read(WaypointEnv.istioVersion),
    logLevel: level as WaypointLogLevel,
    accessLogFlushMs: flushMs ?? 1000,
  }));
}
