import { fail, ok, type Result } from '../core/result.ts';
import type { LogLevel } from '../core/logger.ts';
import {
  DEFAULT_ENROLLMENT_CONFIG, DEFAULT_EXCLUDE_NAMESPACES, DEFAULT_SYSTEM_NAMESPACE, parseEnablementSelectors,
  type EnrollmentConfig,
} from './enrollment.ts';
import { DEFAULT_INPOD_RULES_CONFIG, inpodRulesConfig, type InpodRulesConfig } from './inpod-rules.ts';
import { DEFAULT_PLUGIN_SOCKET } from './plugin-server.ts';

/**
 * The one config object of `ambientd cni-agent` (reference istio-ambient.md §1.13: env = the flag upper-cased with
 * `-` → `_`). `parseCniAgentConfig` is pure: flags and the environment come in as maps, every problem comes back at
 * once naming the flag or variable, its value and the reason.
 *
 * Decisions beyond the reference: `PLUGIN_SOCKET` (flag `plugin-socket`), `PROC_ROOT` (flag `proc-root`) and
 * `LOG_LEVEL` are ours (Istio derives the socket from `CNI_AGENT_RUN_DIR` and reads `/host/proc`); `KUBECONFIG`
 * unset means the in-cluster service account.
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
});

export const DEFAULT_ZTUNNEL_SOCKET = '/var/run/ztunnel/ztunnel.sock';
export const DEFAULT_PROC_ROOT = '/proc';
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

  const [, kubeconfig] = pick(CniAgentEnv.kubeconfig);
  const pluginSocket = path(CniAgentEnv.pluginSocket, DEFAULT_PLUGIN_SOCKET);
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
    dnsCapture: bool(CniAgentEnv.dnsCapture, DEFAULT_INPOD_RULES_CONFIG.dnsCapture),
    ipv6: bool(CniAgentEnv.ipv6, DEFAULT_INPOD_RULES_CONFIG.ipv6),
  });

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
  }));
}
