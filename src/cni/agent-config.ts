import { isIPv6 } from 'node:net';
import { fail, ok, type Result } from '../core/result.ts';
import type { LogLevel } from '../core/logger.ts';
import {
  DEFAULT_ENROLLMENT_CONFIG, DEFAULT_EXCLUDE_NAMESPACES, DEFAULT_SYSTEM_NAMESPACE, parseEnablementSelectors,
  type EnrollmentConfig,
} from './enrollment.ts';
import type { NetnsSelector } from './apply-rules.ts';
import {
  DEFAULT_HOST_PROBE_SNAT_CONFIG, DEFAULT_INPOD_RULES_CONFIG, inpodRulesConfig, type HostProbeSnatConfig, type InpodRulesConfig,
} from './inpod-rules.ts';
import { DEFAULT_CNI_AGENT_RUN_DIR } from './installer.ts';

/**
 * The one config object of `ambientd cni-agent` (reference istio-ambient.md §1.13: env = the flag upper-cased with
 * `-` → `_`). `parseCniAgentConfig` is pure: flags and the environment come in as maps, every problem comes back at
 * once naming the flag or variable, its value and the reason.
 *
 * Decisions beyond the reference: `PLUGIN_SOCKET` (flag `plugin-socket`), `PROC_ROOT` (flag `proc-root`) and
 * `LOG_LEVEL` are ours (Istio derives the socket from `CNI_AGENT_RUN_DIR` and reads `/host/proc`); `KUBECONFIG`
 * unset means the in-cluster service account. The installer's variables: `INSTALL_CNI` (ours, default true),
 * `CNI_PLUGIN_BINARY` (ours: the shim in our image), `CNI_BIN_DIR` and `MOUNTED_CNI_NET_DIR` (the host dirs as
 * mounted, istio-cni's defaults), `CNI_CONF_NAME`. The host network namespace for the probe SNAT: `HOST_NETNS`
 * (ours, a netns path), else `ALLOW_SWITCH_TO_HOST_NS=true` means `<PROC_ROOT>/1/ns/net` as in istio-cni, else
 * the agent's own namespace. `READINESS_PORT` (ours) serves istio-cni's `/healthz` and `/readyz` (8000);
 * `DAEMONSET_NAME` (ours, default `istio-cni-node`) is the DaemonSet whose presence at shutdown means "upgrade,
 * leave things in place". `AMBIENT_DNS_CAPTURE` defaults to false (istio-cni: true) until ztunnel has a DNS proxy.
 */

export interface CniAgentConfig {
  /** `NODE_NAME`: required; the pods informer watches `spec.nodeName=<NODE_NAME>`. */
  readonly nodeName: string;
  /** `KUBECONFIG`: a kubeconfig file; undefined = in-cluster config. */
  readonly kubeconfig: string | undefined;
  /** `PLUGIN_SOCKET` (ours; Istio: `$CNI_AGENT_RUN_DIR/pluginevent.sock`). */
  readonly pluginSocket: string;
  /** `ZTUNNEL_UDS_ADDRESS`. */
  readonly ztunnelSocket: string;
  /** `AMBIENT_ENABLEMENT_SELECTOR`, `EXCLUDE_NAMESPACES`, `SYSTEM_NAMESPACE`. */
  readonly enrollment: EnrollmentConfig;
  /** `AMBIENT_DNS_CAPTURE`, `AMBIENT_IPV6`. */
  readonly rules: InpodRulesConfig;
  /** `PROC_ROOT` (ours): the host procfs scanned for pod netns at startup; `/proc`, or `/host/proc` in a pod. */
  readonly procRoot: string;
  /** `LOG_LEVEL` (ours): `info`. */
  readonly logLevel: LogLevel;
  /** `CNI_AGENT_RUN_DIR`: written into the plugin entry; the shim finds `<dir>/pluginevent.sock`. */
  readonly cniAgentRunDir: string;
  /** The plugin installer, or undefined when `INSTALL_CNI=false`. */
  readonly install: CniInstallConfig | undefined;
  /** Where the host-side probe SNAT rules and ipsets go (§1.9). */
  readonly hostNetns: NetnsSelector;
  /** `HOST_PROBE_SNAT_IP`, `HOST_PROBE_SNAT_IPV6`. */
  readonly hostProbe: HostProbeSnatConfig;
  /** `AMBIENT_RECONCILE_POD_RULES_ON_STARTUP`: re-apply the in-pod rules of snapshotted pods at start. */
  readonly reconcileOnStartup: boolean;
  /** `MONITORING_PORT`: Prometheus metrics (15014). */
  readonly monitoringPort: number;
  /** `READINESS_PORT` (ours): `/healthz` and `/readyz` (8000). */
  readonly readinessPort: number;
  /** `POD_NAMESPACE`: where the agent's DaemonSet lives (`istio-system`). */
  readonly podNamespace: string;
  /** `DAEMONSET_NAME` (ours): `istio-cni-node`. */
  readonly daemonSetName: string;
  /** `AMBIENT_DISABLE_SAFE_UPGRADE`: always clean up fully at shutdown. */
  readonly disableSafeUpgrade: boolean;
}

export interface CniInstallConfig {
  /** `CNI_PLUGIN_BINARY` (ours): the shim to copy, `/opt/cni/bin/ambient-cni` in our image. */
  readonly binSource: string;
  /** `CNI_BIN_DIR`: the node's CNI bin dir as mounted, `/host/opt/cni/bin`. */
  readonly binDir: string;
  /** `MOUNTED_CNI_NET_DIR`: the node's CNI conf dir as mounted, `/host/etc/cni/net.d`. */
  readonly confDir: string;
  /** `CNI_CONF_NAME`: chain into this file only. */
  readonly confName: string | undefined;
}

export const CniAgentEnv = {
  nodeName: 'NODE_NAME',
  kubeconfig: 'KUBECONFIG',
  pluginSocket: 'PLUGIN_SOCKET',
  ztunnelSocket: 'ZTUNNEL_UDS_ADDRESS',
  enablementSelector: 'AMBIENT_ENABLEMENT_SELECTOR',
  excludeNamespaces: 'EXCLUDE_NAMESPACES',
  systemNamespace: 'SYSTEM_NAMESPACE',
  dnsCapture: 'AMBIENT_DNS_CAPTURE',
  ipv6: 'AMBIENT_IPV6',
  procRoot: 'PROC_ROOT',
  logLevel: 'LOG_LEVEL',
  cniAgentRunDir: 'CNI_AGENT_RUN_DIR',
  installCni: 'INSTALL_CNI',
  pluginBinary: 'CNI_PLUGIN_BINARY',
  cniBinDir: 'CNI_BIN_DIR',
  cniNetDir: 'MOUNTED_CNI_NET_DIR',
  cniConfName: 'CNI_CONF_NAME',
  hostNetns: 'HOST_NETNS',
  allowSwitchToHostNs: 'ALLOW_SWITCH_TO_HOST_NS',
  probeSnatIp: 'HOST_PROBE_SNAT_IP',
  probeSnatIpv6: 'HOST_PROBE_SNAT_IPV6',
  reconcileOnStartup: 'AMBIENT_RECONCILE_POD_RULES_ON_STARTUP',
  monitoringPort: 'MONITORING_PORT',
  readinessPort: 'READINESS_PORT',
  podNamespace: 'POD_NAMESPACE',
  daemonSetName: 'DAEMONSET_NAME',
  disableSafeUpgrade: 'AMBIENT_DISABLE_SAFE_UPGRADE',
} as const;

/** Flags and the variable each overrides. */
export const CNI_AGENT_FLAGS: Readonly<Record<string, string>> = Object.freeze({
  'node-name': CniAgentEnv.nodeName,
  kubeconfig: CniAgentEnv.kubeconfig,
  'plugin-socket': CniAgentEnv.pluginSocket,
  'ztunnel-uds-address': CniAgentEnv.ztunnelSocket,
  'ambient-enablement-selector': CniAgentEnv.enablementSelector,
  'exclude-namespaces': CniAgentEnv.excludeNamespaces,
  'system-namespace': CniAgentEnv.systemNamespace,
  'ambient-dns-capture': CniAgentEnv.dnsCapture,
  'ambient-ipv6': CniAgentEnv.ipv6,
  'proc-root': CniAgentEnv.procRoot,
  'log-level': CniAgentEnv.logLevel,
  'cni-agent-run-dir': CniAgentEnv.cniAgentRunDir,
  'install-cni': CniAgentEnv.installCni,
  'cni-plugin-binary': CniAgentEnv.pluginBinary,
  'cni-bin-dir': CniAgentEnv.cniBinDir,
  'mounted-cni-net-dir': CniAgentEnv.cniNetDir,
  'cni-conf-name': CniAgentEnv.cniConfName,
  'host-netns': CniAgentEnv.hostNetns,
  'monitoring-port': CniAgentEnv.monitoringPort,
  'readiness-port': CniAgentEnv.readinessPort,
});

export const DEFAULT_ZTUNNEL_SOCKET = '/var/run/ztunnel/ztunnel.sock';
export const DEFAULT_PROC_ROOT = '/proc';
export const DEFAULT_PLUGIN_BINARY = '/opt/cni/bin/ambient-cni';
export const DEFAULT_CNI_BIN_DIR = '/host/opt/cni/bin';
export const DEFAULT_CNI_NET_DIR = '/host/etc/cni/net.d';
export const DEFAULT_MONITORING_PORT = 15014;
export const DEFAULT_READINESS_PORT = 8000;
/** Istio's name for the node agent's DaemonSet (`deploy/daemonset.yaml` uses it too). */
export const DEFAULT_DAEMONSET_NAME = 'istio-cni-node';
const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function parseCniAgentConfig(flags: Readonly<Record<string, string>>, env: Readonly<Record<string, string | undefined>>): Result<CniAgentConfig> {
  const errors: string[] = [];
  for (const flag of Object.keys(flags)) if (!Object.hasOwn(CNI_AGENT_FLAGS, flag)) errors.push(`--${flag}: unknown flag`);
  const flagOf = (name: string): string | undefined => Object.keys(CNI_AGENT_FLAGS).find((f) => CNI_AGENT_FLAGS[f] === name);
  /** [where it came from, the text]: the flag wins over the variable; empty counts as unset. */
  const pick = (name: string): [string, string | undefined] => {
    const flag = flagOf(name);
    if (flag !== undefined && flags[flag] !== undefined) return [`--${flag}`, flags[flag]];
    return [name, env[name] || undefined];
  };
  const path = (name: string, fallback: string): string => {
    const [key, text = fallback] = pick(name);
    if (!text.startsWith('/')) errors.push(`${key}: "${text}" must be an absolute path`);
    return text;
  };
  const bool = (name: string, fallback: boolean): boolean => {
    const [key, text] = pick(name);
    if (text === undefined) return fallback;
    if (text === 'true') return true;
    if (text === 'false') return false;
    errors.push(`${key}: "${text}" must be true or false`);
    return fallback;
  };

  const [nodeKey, nodeName = ''] = pick(CniAgentEnv.nodeName);
  if (nodeName === '') errors.push(`${nodeKey}: required (the node this agent runs on)`);
  else if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(nodeName)) errors.push(`${nodeKey}: "${nodeName}" is not a valid node name`);

  const port = (name: string, fallback: number): number => {
    const [key, text] = pick(name);
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!/^\d+$/.test(text) || n > 65535) errors.push(`${key}: "${text}" must be a port number (0-65535)`);
    return Number.isInteger(n) ? n : fallback;
  };

  const [, kubeconfig] = pick(CniAgentEnv.kubeconfig);
  const cniAgentRunDir = path(CniAgentEnv.cniAgentRunDir, DEFAULT_CNI_AGENT_RUN_DIR).replace(/(.)\/+$/, '$1');
  const pluginSocket = path(CniAgentEnv.pluginSocket, `${cniAgentRunDir}/pluginevent.sock`);
  const ztunnelSocket = path(CniAgentEnv.ztunnelSocket, DEFAULT_ZTUNNEL_SOCKET);
  const procRoot = path(CniAgentEnv.procRoot, DEFAULT_PROC_ROOT);

  let enablementSelectors = DEFAULT_ENROLLMENT_CONFIG.enablementSelectors;
  const [selKey, selText] = pick(CniAgentEnv.enablementSelector);
  if (selText !== undefined) {
    const parsed = parseEnablementSelectors(selText);
    if (parsed.ok) enablementSelectors = parsed.value;
    else errors.push(...parsed.errors.map((e) => `${selKey}${e.startsWith('[') ? '' : ': '}${e}`));
  }
  const [, excludeText] = pick(CniAgentEnv.excludeNamespaces);
  const excludeNamespaces = excludeText === undefined
    ? DEFAULT_EXCLUDE_NAMESPACES
    : excludeText.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const [, systemNamespace = DEFAULT_SYSTEM_NAMESPACE] = pick(CniAgentEnv.systemNamespace);

  const rules = inpodRulesConfig({
    // Off by default, unlike istio-cni: our ztunnel has no DNS proxy on 15053 yet, so capturing port 53 would cut
    // enrolled pods off from name resolution.
    dnsCapture: bool(CniAgentEnv.dnsCapture, false),
    ipv6: bool(CniAgentEnv.ipv6, DEFAULT_INPOD_RULES_CONFIG.ipv6),
  });

  const install: CniInstallConfig | undefined = bool(CniAgentEnv.installCni, true)
    ? Object.freeze({
      binSource: path(CniAgentEnv.pluginBinary, DEFAULT_PLUGIN_BINARY),
      binDir: path(CniAgentEnv.cniBinDir, DEFAULT_CNI_BIN_DIR),
      confDir: path(CniAgentEnv.cniNetDir, DEFAULT_CNI_NET_DIR),
      confName: pick(CniAgentEnv.cniConfName)[1],
    })
    : undefined;

  const [, hostNetnsText] = pick(CniAgentEnv.hostNetns);
  const hostNetns: NetnsSelector = hostNetnsText !== undefined
    ? { kind: 'path', path: path(CniAgentEnv.hostNetns, '') }
    : bool(CniAgentEnv.allowSwitchToHostNs, false)
      ? { kind: 'path', path: `${procRoot.replace(/\/+$/, '')}/1/ns/net` }
      : { kind: 'self' };
  const [snatKey, snatIpv4 = DEFAULT_HOST_PROBE_SNAT_CONFIG.snatIpv4] = pick(CniAgentEnv.probeSnatIp);
  if (!IPV4.test(snatIpv4)) errors.push(`${snatKey}: "${snatIpv4}" is not an IPv4 address`);
  const [snat6Key, snatIpv6 = DEFAULT_HOST_PROBE_SNAT_CONFIG.snatIpv6] = pick(CniAgentEnv.probeSnatIpv6);
  if (!isIPv6(snatIpv6)) errors.push(`${snat6Key}: "${snatIpv6}" is not an IPv6 address`);
  const reconcileOnStartup = bool(CniAgentEnv.reconcileOnStartup, true);
  const monitoringPort = port(CniAgentEnv.monitoringPort, DEFAULT_MONITORING_PORT);
  const readinessPort = port(CniAgentEnv.readinessPort, DEFAULT_READINESS_PORT);
  const [, podNamespace = systemNamespace] = pick(CniAgentEnv.podNamespace);
  const [, daemonSetName = DEFAULT_DAEMONSET_NAME] = pick(CniAgentEnv.daemonSetName);
  const disableSafeUpgrade = bool(CniAgentEnv.disableSafeUpgrade, false);

  const [levelKey, levelText = 'info'] = pick(CniAgentEnv.logLevel);
  const logLevel = LOG_LEVELS.find((l) => l === levelText);
  if (logLevel === undefined) errors.push(`${levelKey}: "${levelText}" must be one of ${LOG_LEVELS.join(', ')}`);

  if (errors.length > 0) return fail(...errors);
  return ok(Object.freeze({
    nodeName,
    kubeconfig,
    pluginSocket,
    ztunnelSocket,
    enrollment: Object.freeze({ enablementSelectors, excludeNamespaces: Object.freeze([...excludeNamespaces]), systemNamespace }),
    rules,
    procRoot,
    logLevel: logLevel ?? 'info',
    cniAgentRunDir,
    install,
    hostNetns: Object.freeze(hostNetns),
    hostProbe: Object.freeze({ ...DEFAULT_HOST_PROBE_SNAT_CONFIG, snatIpv4, snatIpv6 }),
    reconcileOnStartup,
    monitoringPort,
    readinessPort,
    podNamespace,
    daemonSetName,
    disableSafeUpgrade,
  }));
}
