import type { LogLevel } from '../core/logger.ts';
import { fail, ok, type Result } from '../core/result.ts';
import { parseServiceAccounts, type ServiceAccountRef } from './ca-auth.ts';
import { parseMeshTargets } from './mesh-scrape.ts';

/**
 * The one config object of `ambientd control-plane`. `parseControlPlaneConfig` is pure: flags and the environment
 * come in as maps (a flag wins over the variable it names), every problem comes back at once naming the flag or
 * variable, its value and the reason.
 *
 * Istio's names where istiod has one (`CLUSTER_ID`, `TRUST_DOMAIN`, `POD_NAMESPACE`, `CA_TRUSTED_NODE_ACCOUNTS`,
 * `AMBIENT_ENABLE_DRY_RUN_AUTHORIZATION_POLICY`, `KUBECONFIG`); ours otherwise. `--config-dir` switches to local
 * mode: objects from the folder, CA tokens from `--static-tokens`, no API server at all.
 */

export interface ControlPlaneConfig {
  readonly mode: 'kubernetes' | 'local';
  /** `--config-dir` / `CONFIG_DIR`: local mode's folder of objects. */
  readonly configDir: string | undefined;
  /** `KUBECONFIG`: a kubeconfig file; undefined = the in-cluster service account (kubernetes mode). */
  readonly kubeconfig: string | undefined;
  /** `CLUSTER_ID` (`Kubernetes`). */
  readonly clusterId: string;
  /** `TRUST_DOMAIN` (`cluster.local`). */
  readonly trustDomain: string;
  /** `DOMAIN_SUFFIX` (`cluster.local`). */
  readonly domainSuffix: string;
  /** `POD_NAMESPACE` (`istio-system`): the system namespace (network label, serving name). */
  readonly systemNamespace: string;
  /** `ROOT_NAMESPACE` (`istio-system`): mesh-wide policies. */
  readonly rootNamespace: string;
  /** `AMBIENT_ENABLE_DRY_RUN_AUTHORIZATION_POLICY` (false). */
  readonly enableDryRun: boolean;
  /** `--listen-address` / `LISTEN_ADDRESS` (`0.0.0.0`). */
  readonly listenAddress: string;
  /** `--grpc-port` (15012): xDS and CA over TLS. */
  readonly grpcPort: number;
  /** `--monitoring-port` (15014): `/metrics`. */
  readonly monitoringPort: number;
  /** `--readiness-port` (15021): `/healthz/ready`. */
  readonly readinessPort: number;
  /** `--ca-dir` / `CA_DIR`: a CA in Istio's `cacerts` layout; absent = a self-signed root made at start. */
  readonly caDir: string | undefined;
  /** `--root-cert-out` / `ROOT_CERT_OUT`: write the root certificate here once started (for local clients). */
  readonly rootCertOut: string | undefined;
  /** DNS names of the serving certificate: `istiod.<ns>.svc`, its FQDN, `localhost`, plus `--serving-dns` (comma list). */
  readonly servingDnsNames: readonly string[];
  /** `--static-tokens` / `STATIC_TOKENS_FILE`: local mode's CA tokens (`<token> <ns>/<sa> [node]` per line). */
  readonly staticTokensFile: string | undefined;
  /** `CA_TRUSTED_NODE_ACCOUNTS` (`<POD_NAMESPACE>/ztunnel`): who may impersonate pods of its node. */
  readonly trustedNodeAccounts: readonly ServiceAccountRef[];
  /** `PILOT_AUTO_ALLOW_WAYPOINT_POLICY` (false): allow each waypoint's identity at the workloads bound to it. */
  readonly autoAllowWaypointPolicy: boolean;
  /** `AMBIENT_ENABLE_STATUS` (true): write `istio.io/WaypointBound` / `ZtunnelAccepted` conditions (kubernetes mode). */
  readonly enableStatus: boolean;
  /** `LOG_LEVEL` (`info`). */
  readonly logLevel: LogLevel;
  /** `--waypoint-image` / `WAYPOINT_IMAGE` (`ambient-node:0.1.0`): the image of waypoint Deployments (kubernetes mode). */
  readonly waypointImage: string;
  /** `--mesh-scrape-targets` / `MESH_SCRAPE_TARGETS` (none): comma list of metrics URLs the `/mesh` page scrapes. */
  readonly meshScrapeTargets: readonly string[];
}

export const ControlPlaneEnv = {
  configDir: 'CONFIG_DIR',
  kubeconfig: 'KUBECONFIG',
  clusterId: 'CLUSTER_ID',
  trustDomain: 'TRUST_DOMAIN',
  domainSuffix: 'DOMAIN_SUFFIX',
  systemNamespace: 'POD_NAMESPACE',
  rootNamespace: 'ROOT_NAMESPACE',
  enableDryRun: 'AMBIENT_ENABLE_DRY_RUN_AUTHORIZATION_POLICY',
  listenAddress: 'LISTEN_ADDRESS',
  grpcPort: 'GRPC_PORT',
  monitoringPort: 'MONITORING_PORT',
  readinessPort: 'READINESS_PORT',
  caDir: 'CA_DIR',
  rootCertOut: 'ROOT_CERT_OUT',
  servingDns: 'SERVING_DNS',
  staticTokens: 'STATIC_TOKENS_FILE',
  trustedNodeAccounts: 'CA_TRUSTED_NODE_ACCOUNTS',
  enableStatus: 'AMBIENT_ENABLE_STATUS',
  autoAllowWaypointPolicy: 'PILOT_AUTO_ALLOW_WAYPOINT_POLICY',
  logLevel: 'LOG_LEVEL',
  waypointImage: 'WAYPOINT_IMAGE',
  meshScrapeTargets: 'MESH_SCRAPE_TARGETS',
} as const;

/** Flags and the variable each overrides. */
export const CONTROL_PLANE_FLAGS: Readonly<Record<string, string>> = Object.freeze({
  'config-dir': ControlPlaneEnv.configDir,
  kubeconfig: ControlPlaneEnv.kubeconfig,
  'cluster-id': ControlPlaneEnv.clusterId,
  'trust-domain': ControlPlaneEnv.trustDomain,
  'listen-address': ControlPlaneEnv.listenAddress,
  'grpc-port': ControlPlaneEnv.grpcPort,
  'monitoring-port': ControlPlaneEnv.monitoringPort,
  'readiness-port': ControlPlaneEnv.readinessPort,
  'ca-dir': ControlPlaneEnv.caDir,
  'root-cert-out': ControlPlaneEnv.rootCertOut,
  'serving-dns': ControlPlaneEnv.servingDns,
  'static-tokens': ControlPlaneEnv.staticTokens,
  'log-level': ControlPlaneEnv.logLevel,
  'waypoint-image': ControlPlaneEnv.waypointImage,
  'mesh-scrape-targets': ControlPlaneEnv.meshScrapeTargets,
});

export const DEFAULT_WAYPOINT_IMAGE = 'ambient-node:0.1.0';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const DNS_LABELS = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function parseControlPlaneConfig(flags: Readonly<Record<string, string>>, env: Readonly<Record<string, string | undefined>>): Result<ControlPlaneConfig> {
  const errors: string[] = [];
  for (const flag of Object.keys(flags)) if (!Object.hasOwn(CONTROL_PLANE_FLAGS, flag)) errors.push(`--${flag}: unknown flag`);
  const flagOf = (name: string) => Object.keys(CONTROL_PLANE_FLAGS).find((f) => CONTROL_PLANE_FLAGS[f] === name);
  const pick = (name: string): [string, string | undefined] => {
    const flag = flagOf(name);
    if (flag !== undefined && flags[flag] !== undefined) return [`--${flag}`, flags[flag]];
    return [name, env[name] || undefined];
  };
  const text = (name: string, fallback: string): string => pick(name)[1] ?? fallback;
  const port = (name: string, fallback: number): number => {
    const [key, value] = pick(name);
    if (value === undefined) return fallback;
    const n = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
    if (!(n >= 0 && n <= 65_535)) {
      errors.push(`${key}: "${value}" must be a port 0-65535`);
      return fallback;
    }
    return n;
  };
  const bool = (name: string, fallback: boolean): boolean => {
    const [key, value] = pick(name);
    if (value === undefined) return fallback;
    if (value === 'true' || value === '1') return true;
    if (value === 'false' || value === '0') return false;
    errors.push(`${key}: "${value}" must be true or false`);
    return fallback;
  };
  const name = (envName: string, fallback: string): string => {
    const [key, value = fallback] = pick(envName);
    if (!DNS_LABELS.test(value)) errors.push(`${key}: "${value}" is not a valid name`);
    return value;
  };

  const [, configDir] = pick(ControlPlaneEnv.configDir);
  const [, kubeconfig] = pick(ControlPlaneEnv.kubeconfig);
  const clusterId = text(ControlPlaneEnv.clusterId, 'Kubernetes');
  if (clusterId.includes('/')) errors.push(`${pick(ControlPlaneEnv.clusterId)[0]}: "${clusterId}" must not contain "/"`);
  const trustDomain = name(ControlPlaneEnv.trustDomain, 'cluster.local');
  const domainSuffix = name(ControlPlaneEnv.domainSuffix, 'cluster.local');
  const systemNamespace = name(ControlPlaneEnv.systemNamespace, 'istio-system');
  const rootNamespace = name(ControlPlaneEnv.rootNamespace, 'istio-system');
  const [dnsKey, dnsText] = pick(ControlPlaneEnv.servingDns);
  const extraDns = (dnsText ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  for (const d of extraDns) if (!DNS_LABELS.test(d)) errors.push(`${dnsKey}: "${d}" is not a DNS name`);
  const [accountsKey, accountsText = `${systemNamespace}/ztunnel`] = pick(ControlPlaneEnv.trustedNodeAccounts);
  const accounts = parseServiceAccounts(accountsText);
  if (!accounts.ok) errors.push(...accounts.errors.map((e) => `${accountsKey}: ${e}`));
  const [staticKey, staticTokensFile] = pick(ControlPlaneEnv.staticTokens);
  if (staticTokensFile !== undefined && configDir === undefined) errors.push(`${staticKey}: only used with --config-dir (a cluster checks tokens with TokenReview)`);
  const [levelKey, levelText = 'info'] = pick(ControlPlaneEnv.logLevel);
  const logLevel = LOG_LEVELS.find((l) => l === levelText);
  if (!logLevel) errors.push(`${levelKey}: "${levelText}" must be one of ${LOG_LEVELS.join(', ')}`);

  const [meshKey, meshText] = pick(ControlPlaneEnv.meshScrapeTargets);
  const meshTargets = parseMeshTargets((meshText ?? '').split(',').map((u) => u.trim()).filter(Boolean));
  if (!meshTargets.ok) errors.push(...meshTargets.errors.map((e) => `${meshKey}: ${e}`));

  const config: ControlPlaneConfig = {
    mode: configDir !== undefined ? 'local' : 'kubernetes',
    configDir,
    kubeconfig,
    clusterId,
    trustDomain,
    domainSuffix,
    systemNamespace,
    rootNamespace,
    enableDryRun: bool(ControlPlaneEnv.enableDryRun, false),
    listenAddress: text(ControlPlaneEnv.listenAddress, '0.0.0.0'),
    grpcPort: port(ControlPlaneEnv.grpcPort, 15012),
    monitoringPort: port(ControlPlaneEnv.monitoringPort, 15014),
    readinessPort: port(ControlPlaneEnv.readinessPort, 15021),
    caDir: pick(ControlPlaneEnv.caDir)[1],
    rootCertOut: pick(ControlPlaneEnv.rootCertOut)[1],
    servingDnsNames: Object.freeze([...new Set([`istiod.${systemNamespace}.svc`, `istiod.${systemNamespace}.svc.${domainSuffix}`, 'localhost', ...extraDns])]),
    staticTokensFile,
    trustedNodeAccounts: Object.freeze(accounts.ok ? accounts.value : []),
    enableStatus: bool(ControlPlaneEnv.enableStatus, true),
    autoAllowWaypointPolicy: bool(ControlPlaneEnv.autoAllowWaypointPolicy, false),
    logLevel: logLevel ?? 'info',
    waypointImage: text(ControlPlaneEnv.waypointImage, DEFAULT_WAYPOINT_IMAGE),
    meshScrapeTargets: meshTargets.ok ? meshTargets.value : [],
  };
  if (errors.length > 0) return fail(...errors);
  return ok(Object.freeze(config));
}
