import { fail, ok, type Result } from '../core/result.ts';
import { parseDurationMs, parseWorkloadApiEnv, type WorkloadApiEnv } from '../workload-api/env.ts';
import type { ProxyPorts } from './workload-proxy.ts';

/**
 * The one config object of `ambientd ztunnel`, read from flags then ztunnel's environment variable
 * names (reference ztunnel.md §10.1). `parseZtunnelConfig` is pure: it is given the flags and the
 * environment as maps, and returns every problem at once with the variable or flag it concerns.
 */

export interface WorkloadInfo {
  readonly namespace: string;
  readonly name: string;
  readonly serviceAccount: string;
}

export type LogLevel = 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'off';

export interface ZtunnelConfig {
  /** `PROXY_MODE`: `shared` (in-pod, the capture issue) or `dedicated` (one workload, listeners here). */
  readonly proxyMode: 'shared' | 'dedicated';
  /** `PROXY_WORKLOAD_INFO` (`namespace/name/serviceaccount`): required in dedicated mode. */
  readonly workloadInfo: WorkloadInfo | undefined;
  /** xDS, CA, token, cluster id, local config (`XDS_ADDRESS`, `CA_ADDRESS`, `LOCAL_XDS_PATH`, ...). */
  readonly workloadApi: WorkloadApiEnv;
  /** `FAKE_CA=true`: an in-process CA instead of `CA_ADDRESS`. */
  readonly fakeCa: boolean;
  /** `FAKE_CA_ROOT_PATH` (ours): where the fake CA writes its root certificate, for tests to read. */
  readonly fakeCaRootPath: string | undefined;
  /**
   * `FAKE_CA_DIR` (ours): the fake CA's key and certificate in Istio's `cacerts` layout. Loaded when
   * present, else generated and saved there, so several local ztunnels share one trust root.
   */
  readonly fakeCaDir: string | undefined;
  /** `TRUST_DOMAIN` (`cluster.local`). */
  readonly trustDomain: string;
  /** `NODE_NAME` (`""`). */
  readonly nodeName: string;
  /** `NETWORK` (`""`). */
  readonly network: string;
  /** `CLUSTER_DOMAIN` (`cluster.local`). */
  readonly clusterDomain: string;
  /** `PACKET_MARK`: SO_MARK on upstream sockets; 1337 in shared mode, none (undefined) in dedicated mode unless set. */
  readonly packetMark: number | undefined;
  /** `INPOD_PORT_REUSE` (true): SO_REUSEPORT on listeners. */
  readonly portReuse: boolean;
  /** `INPOD_UDS` (`/var/run/ztunnel/ztunnel.sock`): the node agent's ZDS socket (shared mode). */
  readonly inpodUds: string;
  /** Drain deadline in ms (§7): `CONNECTION_TERMINATION_DEADLINE`, else from `TERMINATION_GRACE_PERIOD_SECONDS`, else 5 s. */
  readonly terminationDeadlineMs: number;
  /** `ISTIO_META_ISTIO_VERSION`: the `istio_build` tag (undefined → `unknown`). */
  readonly istioVersion: string | undefined;
  /** `RUST_LOG` level part (`info`); `LOG_FORMAT` is always JSON here. */
  readonly logLevel: LogLevel;
  /** Admin (15000, loopback), stats (15020) and readiness (15021) ports; flags `--admin-port` etc. */
  readonly adminPort: number;
  readonly statsPort: number;
  readonly readinessPort: number;
  /** Data-plane ports; ztunnel does not make them configurable, the flags exist for tests only. */
  readonly proxyPorts: ProxyPorts;
}

/** Environment variable names read here (the workload API ones are in `workload-api/env.ts`). */
export const ZtunnelEnv = {
  proxyMode: 'PROXY_MODE',
  workloadInfo: 'PROXY_WORKLOAD_INFO',
  fakeCa: 'FAKE_CA',
  fakeCaRootPath: 'FAKE_CA_ROOT_PATH',
  fakeCaDir: 'FAKE_CA_DIR',
  trustDomain: 'TRUST_DOMAIN',
  nodeName: 'NODE_NAME',
  network: 'NETWORK',
  clusterDomain: 'CLUSTER_DOMAIN',
  packetMark: 'PACKET_MARK',
  portReuse: 'INPOD_PORT_REUSE',
  inpodUds: 'INPOD_UDS',
  terminationDeadline: 'CONNECTION_TERMINATION_DEADLINE',
  gracePeriodSeconds: 'TERMINATION_GRACE_PERIOD_SECONDS',
  istioVersion: 'ISTIO_META_ISTIO_VERSION',
  rustLog: 'RUST_LOG',
} as const;

const PORT_FLAGS = {
  'admin-port': 15000,
  'stats-port': 15020,
  'readiness-port': 15021,
  'outbound-port': 15001,
  'inbound-port': 15008,
  'inbound-plaintext-port': 15006,
} as const;

/** The flags `parseZtunnelConfig` accepts: the keys of its `flags` map, written here without the leading `--`. */
export const ZTUNNEL_FLAGS: readonly string[] = Object.freeze(['proxy-mode', 'workload-info', ...Object.keys(PORT_FLAGS)]);

const LOG_LEVELS: readonly string[] = ['error', 'warn', 'info', 'debug', 'trace', 'off'];
const DEFAULT_DEADLINE_MS = 5000;
const DEFAULT_PACKET_MARK = 1337;
const DEFAULT_INPOD_UDS = '/var/run/ztunnel/ztunnel.sock';

function integer(text: string): number | undefined {
  return /^(\d+|0x[0-9a-f]+)$/i.test(text) ? Number(text) : undefined;
}

/**
 * Parses flags (`--name value` already split into a map by the CLI, keyed by name without `--`) and
 * environment into the config. A flag wins over its variable; an empty variable counts as unset.
 */
export function parseZtunnelConfig(flags: Readonly<Record<string, string>>, env: Readonly<Record<string, string | undefined>>): Result<ZtunnelConfig> {
  const errors: string[] = [];
  const read = (name: string): string | undefined => env[name] || undefined;
  const pick = (flag: string, name: string): [string, string | undefined] => (flags[flag] !== undefined ? [`--${flag}`, flags[flag]] : [name, read(name)]);
  const bool = (name: string, fallback: boolean): boolean => {
    const text = read(name);
    if (text === undefined) return fallback;
    if (text !== 'true' && text !== 'false') errors.push(`${name}: "${text}" must be true or false`);
    return text === 'true';
  };

  for (const flag of Object.keys(flags)) if (!ZTUNNEL_FLAGS.includes(flag)) errors.push(`--${flag}: unknown flag`);

  const [modeKey, modeText = 'shared'] = pick('proxy-mode', ZtunnelEnv.proxyMode);
  if (modeText !== 'shared' && modeText !== 'dedicated') errors.push(`${modeKey}: "${modeText}" must be shared or dedicated`);
  const proxyMode = modeText === 'dedicated' ? 'dedicated' : 'shared';

  const [infoKey, infoText] = pick('workload-info', ZtunnelEnv.workloadInfo);
  let workloadInfo: WorkloadInfo | undefined;
  if (infoText !== undefined) {
    const [namespace, name, serviceAccount, ...rest] = infoText.split('/');
    if (namespace && name && serviceAccount && rest.length === 0) workloadInfo = Object.freeze({ namespace, name, serviceAccount });
    else errors.push(`${infoKey}: "${infoText}" is not namespace/name/serviceaccount`);
  } else if (proxyMode === 'dedicated') {
    errors.push(`${ZtunnelEnv.workloadInfo}: required in dedicated mode (or --workload-info)`);
  }

  const workloadApi = parseWorkloadApiEnv(env);
  if (!workloadApi.ok) errors.push(...workloadApi.errors);

  let packetMark: number | undefined = proxyMode === 'shared' ? DEFAULT_PACKET_MARK : undefined;
  const markText = read(ZtunnelEnv.packetMark);
  if (markText !== undefined) {
    packetMark = integer(markText);
    if (packetMark === undefined) errors.push(`${ZtunnelEnv.packetMark}: "${markText}" is not an integer`);
    else if (packetMark === 0 || packetMark > 0xffff_ffff) errors.push(`${ZtunnelEnv.packetMark}: "${markText}" must be between 1 and 0xffffffff`);
  }

  const ports = {} as Record<keyof typeof PORT_FLAGS, number>;
  for (const [flag, fallback] of Object.entries(PORT_FLAGS) as [keyof typeof PORT_FLAGS, number][]) {
    const text = flags[flag];
    const port = text === undefined ? fallback : integer(text);
    if (port === undefined || port > 65_535) errors.push(`--${flag}: "${text}" is not a port (0-65535)`);
    ports[flag] = port ?? fallback;
  }

  const graceText = read(ZtunnelEnv.gracePeriodSeconds);
  const grace = graceText === undefined ? undefined : /^\d+$/.test(graceText) ? Number(graceText) : undefined;
  if (graceText !== undefined && grace === undefined) errors.push(`${ZtunnelEnv.gracePeriodSeconds}: "${graceText}" is not a whole number of seconds`);
  const deadlineText = read(ZtunnelEnv.terminationDeadline);
  const deadline = deadlineText === undefined ? undefined : parseDurationMs(deadlineText);
  if (deadlineText !== undefined && deadline === undefined) errors.push(`${ZtunnelEnv.terminationDeadline}: "${deadlineText}" is not a duration (e.g. 5s, 500ms)`);
  const terminationDeadlineMs = deadline ?? (grace === undefined ? DEFAULT_DEADLINE_MS : (grace > 10 ? grace - 5 : Math.max(grace - 1, 1)) * 1000);

  const logText = read(ZtunnelEnv.rustLog) ?? 'info';
  const logLevel = (logText.split(',').map((d) => d.trim()).find((d) => d !== '' && !d.includes('=')) ?? 'info').toLowerCase();
  if (!LOG_LEVELS.includes(logLevel)) errors.push(`${ZtunnelEnv.rustLog}: "${logLevel}" is not a level (${LOG_LEVELS.join(', ')})`);

  const fakeCa = bool(ZtunnelEnv.fakeCa, false);
  const portReuse = bool(ZtunnelEnv.portReuse, true);
  if (errors.length > 0 || !workloadApi.ok) return fail(...errors);

  return ok(Object.freeze({
    proxyMode,
    workloadInfo,
    workloadApi: workloadApi.value,
    fakeCa,
    fakeCaRootPath: read(ZtunnelEnv.fakeCaRootPath),
    fakeCaDir: read(ZtunnelEnv.fakeCaDir),
    trustDomain: read(ZtunnelEnv.trustDomain) ?? 'cluster.local',
    nodeName: read(ZtunnelEnv.nodeName) ?? '',
    network: read(ZtunnelEnv.network) ?? '',
    clusterDomain: read(ZtunnelEnv.clusterDomain) ?? 'cluster.local',
    packetMark,
    portReuse,
    inpodUds: read(ZtunnelEnv.inpodUds) ?? DEFAULT_INPOD_UDS,
    terminationDeadlineMs,
    istioVersion: read(ZtunnelEnv.istioVersion),
    logLevel: logLevel as LogLevel,
    adminPort: ports['admin-port'],
    statsPort: ports['stats-port'],
    readinessPort: ports['readiness-port'],
    proxyPorts: Object.freeze({ outbound: ports['outbound-port'], inbound: ports['inbound-port'], inboundPlaintext: ports['inbound-plaintext-port'] }),
  }));
}
