import { isIP } from 'node:net';
import { setTimeout as sleepMs } from 'node:timers/promises';
import { ErrorCode } from '../core/error-codes.ts';
import { errorMessage } from '../core/errors.ts';
import {
  DEFAULT_SYSTEM_NAMESPACE, isAmbientPod, parseEnablementSelectors,
  type EnablementSelector, type EnrollmentConfig, type EnrollmentDecision, type NamespaceView, type PodView,
} from './enrollment.ts';

/**
 * The CNI plugin's logic (reference istio-ambient.md §1.3), as a pure function of one invocation and
 * injected capabilities. The `ambient-cni` executable on the host is a static C shim
 * (`src/cni/shim/ambient-cni.c`) that answers VERSION itself and forwards everything else, stdin and
 * the CNI_* variables, to the node agent, which calls `handleCniInvocation` (see plugin-server.ts).
 *
 * Decisions beyond the reference text:
 * - Error codes follow the CNI spec: 1 incompatible version, 4 bad environment (CNI_COMMAND,
 *   CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS), 6 undecodable config, 7 invalid config
 *   (`details` names the field), 11 try again later (the pod lookup in retry mode, enrolment).
 * - DEL, CHECK, GC and STATUS succeed without reading the config, as istio-cni's cmdDel/cmdCheck do:
 *   a DEL that fails on a bad config would block pod teardown.
 * - The version `prevResult` is read in is its own `cniVersion` when it carries one, otherwise the
 *   config's; it is printed in the config's version: `ips[].version` ("4"/"6", from the address)
 *   exists up to 0.4.0 and is dropped from 1.0.0 on. Other fields pass through unchanged.
 * - `enablement_selectors` absent means no selector, so no pod is ambient (Go's nil list).
 * - The pod lookup is tried once, or 30 times one second apart with `enable_ambient_detection_retry`;
 *   "not found" counts as a failed lookup. With retry off a failed lookup passes the pod through.
 */

// ---------------------------------------------------------------------------------------------
// Wire shapes

/** What the shim forwards: the CNI_* variables that were set, and stdin as text. */
export interface CniInvocation {
  readonly env: Readonly<Record<string, string>>;
  readonly stdin: string;
}

/** The CNI spec's error result. */
export interface CniErrorResult {
  readonly cniVersion: string;
  readonly code: number;
  readonly msg: string;
  readonly details?: string;
}

export type CniOutcome =
  | { readonly status: 'ok'; readonly stdout: string }
  /** `reason` is our registry code for logs and metrics; `error` is what the runtime sees. */
  | { readonly status: 'error'; readonly error: CniErrorResult; readonly reason: ErrorCode };

/** The plugin → agent event body (§1.4), Go's default JSON encoding of istio's CNIPluginAddEvent. */
export interface CmdAddEvent {
  readonly Netns: string;
  readonly PodName: string;
  readonly PodNamespace: string;
  readonly IPs: readonly CmdAddIp[];
}

export interface CmdAddIp {
  /** Index into the result's `interfaces`, or null. */
  readonly Interface: number | null;
  /** Go `net.IPNet`: the address text and the mask as base64 of its 4 or 16 bytes. */
  readonly Address: { readonly IP: string; readonly Mask: string };
  /** Go `net.IP` text; "" when the result has no gateway. */
  readonly Gateway: string;
}

/** The CNI spec error codes used here. */
export const CniCode = {
  IncompatibleVersion: 1,
  InvalidEnvironment: 4,
  DecodeFailure: 6,
  InvalidConfig: 7,
  TryAgainLater: 11,
} as const;

export const SUPPORTED_CNI_VERSIONS: readonly string[] = Object.freeze(['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
/** The cniVersion of errors raised before the config's own version is known. */
export const FALLBACK_CNI_VERSION = '1.0.0';
/** The agent's own DaemonSet pods; their ADD must never wait for the agent (§1.3 step 2). */
export const AGENT_POD_PREFIX = 'istio-cni-node-';
export const LOOKUP_RETRY_ATTEMPTS = 30;
export const LOOKUP_RETRY_DELAY_MS = 1000;
/** istio-cni's text for a failed enrolment (§1.4). */
export const ENROLL_FAILED_MSG = 'istio-cni cmdAdd failed to contact node Istio CNI agent';

// ---------------------------------------------------------------------------------------------
// Capabilities

export interface PodLookup {
  readonly pod: PodView;
  readonly namespace: NamespaceView;
}

export interface PluginDeps {
  /** GET the Pod and its Namespace; undefined when either does not exist. Throws on API errors. */
  lookupPod(namespace: string, name: string): Promise<PodLookup | undefined>;
  /** Defaults to `isAmbientPod`; the config comes from the plugin config of this invocation. */
  isAmbient?(pod: PodView, namespace: NamespaceView, config: EnrollmentConfig): EnrollmentDecision;
  /** Enrol the pod (in the agent: AddPodToMesh); rejects when that failed. */
  addPodToMesh(event: CmdAddEvent): Promise<void>;
  /** Pause between lookup retries; defaults to a real timer. */
  sleep?(ms: number): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// The plugin config (§1.2)

export interface PluginConfig {
  readonly cniVersion: string;
  readonly name: string | undefined;
  readonly type: string | undefined;
  readonly ambientEnabled: boolean;
  readonly enablementSelectors: readonly EnablementSelector[];
  readonly excludeNamespaces: readonly string[];
  readonly podNamespace: string;
  readonly enableAmbientDetectionRetry: boolean;
  readonly prevResult: Readonly<Record<string, unknown>> | undefined;
}

type Failure = { readonly ok: false; readonly code: number; readonly msg: string; readonly details: string; readonly cniVersion?: string };
type Parsed<T> = { readonly ok: true; readonly value: T } | Failure;

function invalid(details: string, cniVersion?: string): Failure {
  return { ok: false, code: CniCode.InvalidConfig, msg: 'invalid network config', details, ...(cniVersion !== undefined && { cniVersion }) };
}

function incompatible(field: string, version: string, cniVersion?: string): Failure {
  return {
    ok: false,
    code: CniCode.IncompatibleVersion,
    msg: 'incompatible CNI versions',
    details: `${field}: ${JSON.stringify(version)} is not supported; plugin supports ${JSON.stringify(SUPPORTED_CNI_VERSIONS)}`,
    ...(cniVersion !== undefined && { cniVersion }),
  };
}

/** Parses and validates stdin. Unknown keys are allowed (runtimes add `args`, `runtimeConfig` …). */
export function parsePluginConfig(stdin: string): Parsed<PluginConfig> {
  let root: unknown;
  try {
    root = JSON.parse(stdin);
  } catch (err) {
    return { ok: false, code: CniCode.DecodeFailure, msg: 'failed to decode network config', details: errorMessage(err) };
  }
  if (!isObject(root)) return invalid(`<root>: must be a JSON object; got ${kind(root)}`);
  const v = root.cniVersion;
  if (typeof v !== 'string' || v === '') return invalid(`cniVersion: must be a non-empty string; got ${kind(v)}`);
  if (!SUPPORTED_CNI_VERSIONS.includes(v)) return incompatible('cniVersion', v);

  const str = (key: string, dflt: string | undefined): Parsed<string | undefined> => {
    const x = root[key];
    if (x === undefined || x === null) return { ok: true, value: dflt };
    return typeof x === 'string' ? { ok: true, value: x } : invalid(`${key}: must be a string; got ${kind(x)}`, v);
  };
  const bool = (key: string, dflt: boolean): Parsed<boolean> => {
    const x = root[key];
    if (x === undefined || x === null) return { ok: true, value: dflt };
    return typeof x === 'boolean' ? { ok: true, value: x } : invalid(`${key}: must be a boolean; got ${kind(x)}`, v);
  };

  const name = str('name', undefined);
  if (!name.ok) return name;
  const type = str('type', undefined);
  if (!type.ok) return type;
  for (const key of ['plugin_log_level', 'cni_agent_run_dir']) {
    const s = str(key, undefined);
    if (!s.ok) return s;
  }
  const podNamespace = str('pod_namespace', DEFAULT_SYSTEM_NAMESPACE);
  if (!podNamespace.ok) return podNamespace;
  const ambientEnabled = bool('ambient_enabled', false);
  if (!ambientEnabled.ok) return ambientEnabled;
  const retry = bool('enable_ambient_detection_retry', false);
  if (!retry.ok) return retry;
  const nft = bool('native_nftables', false);
  if (!nft.ok) return nft;

  const excl = root.exclude_namespaces;
  let excludeNamespaces: readonly string[] = [];
  if (excl !== undefined && excl !== null) {
    if (!Array.isArray(excl)) return invalid(`exclude_namespaces: must be a list of strings; got ${kind(excl)}`, v);
    const bad = excl.findIndex((x: unknown) => typeof x !== 'string');
    if (bad >= 0) return invalid(`exclude_namespaces[${bad}]: must be a string; got ${kind(excl[bad])}`, v);
    excludeNamespaces = excl as string[];
  }

  let enablementSelectors: readonly EnablementSelector[] = [];
  const sel = root.enablement_selectors;
  if (sel !== undefined && sel !== null) {
    // The YAML parser of enrollment.ts reads JSON too, and gives the same field paths.
    const parsed = parseEnablementSelectors(JSON.stringify(sel));
    if (!parsed.ok) {
      return invalid(parsed.errors.map((e) => `enablement_selectors${e.startsWith('<root>') ? e.slice('<root>'.length) : e}`).join('; '), v);
    }
    enablementSelectors = parsed.value;
  }

  const prev = root.prevResult;
  if (prev !== undefined && prev !== null && !isObject(prev)) return invalid(`prevResult: must be a JSON object; got ${kind(prev)}`, v);

  return {
    ok: true,
    value: {
      cniVersion: v,
      name: name.value,
      type: type.value,
      ambientEnabled: ambientEnabled.value,
      enablementSelectors,
      excludeNamespaces,
      podNamespace: podNamespace.value ?? DEFAULT_SYSTEM_NAMESPACE,
      enableAmbientDetectionRetry: retry.value,
      prevResult: isObject(prev) ? prev : undefined,
    },
  };
}

export function enrollmentConfigOf(config: PluginConfig): EnrollmentConfig {
  return { enablementSelectors: config.enablementSelectors, excludeNamespaces: config.excludeNamespaces, systemNamespace: config.podNamespace };
}

// ---------------------------------------------------------------------------------------------
// CNI_ARGS

export interface K8sArgs {
  readonly podName: string | undefined;
  readonly podNamespace: string | undefined;
  readonly podUid: string | undefined;
  readonly infraContainerId: string | undefined;
}

/** `K=V;K=V`; empty segments are skipped, unknown keys ignored (kubelet sends IgnoreUnknown=1). */
export function parseCniArgs(text: string | undefined): Parsed<K8sArgs> {
  const values = new Map<string, string>();
  for (const pair of (text ?? '').split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) {
      return { ok: false, code: CniCode.InvalidEnvironment, msg: 'invalid CNI_ARGS', details: `CNI_ARGS: invalid pair ${JSON.stringify(pair)} (want KEY=VALUE)` };
    }
    values.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  const get = (k: string): string | undefined => {
    const x = values.get(k);
    return x === undefined || x === '' ? undefined : x;
  };
  return {
    ok: true,
    value: {
      podName: get('K8S_POD_NAME'),
      podNamespace: get('K8S_POD_NAMESPACE'),
      podUid: get('K8S_POD_UID'),
      infraContainerId: get('K8S_POD_INFRA_CONTAINER_ID'),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// prevResult conversion

/** True for the versions whose result carries `ips[].version` (0.3.0 – 0.4.0). */
function hasIpVersion(version: string): boolean {
  return version.startsWith('0.');
}

interface ParsedIp {
  readonly ip: string;
  readonly family: 4 | 6;
  readonly prefix: number;
}

function parseCidr(text: unknown): ParsedIp | undefined {
  if (typeof text !== 'string') return undefined;
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const ip = text.slice(0, slash);
  const prefixText = text.slice(slash + 1);
  const family = isIP(ip);
  if (family === 0 || !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  if (prefix > (family === 4 ? 32 : 128)) return undefined;
  return { ip, family: family as 4 | 6, prefix };
}

/** The mask bytes (4 for IPv4, 16 for IPv6) of a prefix length, base64 as Go encodes `[]byte`. */
export function maskBase64(family: 4 | 6, prefix: number): string {
  const bytes = Buffer.alloc(family === 4 ? 4 : 16);
  for (let i = 0; i < bytes.length; i++) {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    bytes[i] = (0xff << (8 - bits)) & 0xff;
  }
  return bytes.toString('base64');
}

/** `prevResult` re-printed in `toVersion` plus the enrolment IPs it holds. */
export function convertPrevResult(prev: Readonly<Record<string, unknown>>, toVersion: string): Parsed<{ result: Record<string, unknown>; ips: CmdAddIp[] }> {
  const from = prev.cniVersion;
  if (from !== undefined && (typeof from !== 'string' || !SUPPORTED_CNI_VERSIONS.includes(from))) {
    return typeof from === 'string' ? incompatible('prevResult.cniVersion', from, toVersion) : invalid(`prevResult.cniVersion: must be a string; got ${kind(from)}`, toVersion);
  }
  const { cniVersion: _dropped, ...rest } = prev;
  const result: Record<string, unknown> = { cniVersion: toVersion, ...rest };
  const ips: CmdAddIp[] = [];
  if (prev.ips !== undefined && prev.ips !== null) {
    if (!Array.isArray(prev.ips)) return invalid(`prevResult.ips: must be a list; got ${kind(prev.ips)}`, toVersion);
    const out: Record<string, unknown>[] = [];
    for (const [i, entry] of (prev.ips as unknown[]).entries()) {
      const at = `prevResult.ips[${i}]`;
      if (!isObject(entry)) return invalid(`${at}: must be a JSON object; got ${kind(entry)}`, toVersion);
      const cidr = parseCidr(entry.address);
      if (cidr === undefined) return invalid(`${at}.address: must be an IP address with a prefix length (CIDR); got ${kind(entry.address)}`, toVersion);
      const iface = entry.interface;
      if (iface !== undefined && iface !== null && !(typeof iface === 'number' && Number.isInteger(iface) && iface >= 0)) {
        return invalid(`${at}.interface: must be a non-negative integer; got ${kind(iface)}`, toVersion);
      }
      const gw = entry.gateway;
      if (gw !== undefined && gw !== null && (typeof gw !== 'string' || isIP(gw) === 0)) {
        return invalid(`${at}.gateway: must be an IP address; got ${kind(gw)}`, toVersion);
      }
      const { version: _v, ...fields } = entry;
      // Up to 0.4.0 `version` comes first in Go's struct order; 1.x has no such field.
      out.push(hasIpVersion(toVersion) ? { version: String(cidr.family), ...fields } : fields);
      ips.push({
        Interface: typeof iface === 'number' ? iface : null,
        Address: { IP: cidr.ip, Mask: maskBase64(cidr.family, cidr.prefix) },
        Gateway: typeof gw === 'string' ? gw : '',
      });
    }
    result.ips = out;
  }
  return { ok: true, value: { result, ips } };
}

// ---------------------------------------------------------------------------------------------
// The invocation

/** Handles one forwarded invocation; never throws for data or dependency failures. */
export async function handleCniInvocation(invocation: CniInvocation, deps: PluginDeps): Promise<CniOutcome> {
  const env = invocation.env;
  const command = env.CNI_COMMAND;
  switch (command) {
    case 'ADD':
      break;
    case 'DEL':
    case 'CHECK':
    case 'GC':
    case 'STATUS':
      return { status: 'ok', stdout: '' };
    case 'VERSION':
      // Normally answered by the shim itself; kept here so the agent answers the same way.
      return { status: 'ok', stdout: `${JSON.stringify({ cniVersion: '1.1.0', supportedVersions: SUPPORTED_CNI_VERSIONS })}\n` };
    case undefined:
    case '':
      return envError('CNI_COMMAND', 'required env variables [CNI_COMMAND] missing');
    default:
      return envError('CNI_COMMAND', `unknown CNI_COMMAND ${JSON.stringify(command)}`);
  }

  const parsed = parsePluginConfig(invocation.stdin);
  if (!parsed.ok) return failure(parsed, ErrorCode.CNI_PLUGIN_INVALID_CONFIG);
  const config = parsed.value;
  const version = config.cniVersion;

  for (const name of ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'] as const) {
    if (env[name] === undefined || env[name] === '') return envError(name, `required env variables [${name}] missing`, version);
  }
  const args = parseCniArgs(env.CNI_ARGS);
  if (!args.ok) return failure({ ...args, cniVersion: version }, ErrorCode.CNI_PLUGIN_INVALID_CONFIG);

  let output: Record<string, unknown> = { cniVersion: version };
  let ips: CmdAddIp[] = [];
  if (config.prevResult !== undefined) {
    const converted = convertPrevResult(config.prevResult, version);
    if (!converted.ok) return failure(converted, ErrorCode.CNI_PLUGIN_INVALID_CONFIG);
    output = converted.value.result;
    ips = converted.value.ips;
  }
  const passThrough: CniOutcome = { status: 'ok', stdout: `${JSON.stringify(output)}\n` };

  const { podName, podNamespace } = args.value;
  // §1.3 step 2: the agent's own pod, which would otherwise wait on itself.
  if (podName?.startsWith(AGENT_POD_PREFIX) === true && podNamespace === config.podNamespace) return passThrough;
  // Step 4: not a Kubernetes pod, or an excluded namespace.
  if (podName === undefined || podNamespace === undefined) return passThrough;
  if (config.excludeNamespaces.includes(podNamespace)) return passThrough;
  // Step 6 (sidecar mode) is out of scope: without ambient there is nothing to do.
  if (!config.ambientEnabled) return passThrough;

  const attempts = config.enableAmbientDetectionRetry ? LOOKUP_RETRY_ATTEMPTS : 1;
  const sleep = deps.sleep ?? ((ms: number) => sleepMs(ms, undefined, { ref: false }));
  let found: PodLookup | undefined;
  let lookupError = 'not found';
  for (let i = 0; i < attempts && found === undefined; i++) {
    if (i > 0) await sleep(LOOKUP_RETRY_DELAY_MS);
    try {
      found = await deps.lookupPod(podNamespace, podName);
      if (found === undefined) lookupError = `pod ${podNamespace}/${podName} or its namespace not found`;
    } catch (err) {
      lookupError = errorMessage(err);
    }
  }
  if (found === undefined) {
    if (!config.enableAmbientDetectionRetry) return passThrough;
    return failure(
      { code: CniCode.TryAgainLater, msg: 'istio-cni cmdAdd failed to look up the pod', details: `${podNamespace}/${podName}: ${lookupError}`, cniVersion: version },
      ErrorCode.CNI_ENROLL_FAILED,
    );
  }

  const decide = deps.isAmbient ?? isAmbientPod;
  if (!decide(found.pod, found.namespace, enrollmentConfigOf(config)).enroll) return passThrough;

  const event: CmdAddEvent = { Netns: env.CNI_NETNS ?? '', PodName: podName, PodNamespace: podNamespace, IPs: ips };
  try {
    await deps.addPodToMesh(event);
  } catch (err) {
    return failure({ code: CniCode.TryAgainLater, msg: ENROLL_FAILED_MSG, details: errorMessage(err), cniVersion: version }, ErrorCode.CNI_ENROLL_FAILED);
  }
  return passThrough;
}

function envError(variable: string, msg: string, cniVersion?: string): CniOutcome {
  return failure(
    { code: CniCode.InvalidEnvironment, msg, details: variable, ...(cniVersion !== undefined && { cniVersion }) },
    ErrorCode.CNI_PLUGIN_INVALID_CONFIG,
  );
}

function failure(f: { code: number; msg: string; details: string; cniVersion?: string }, reason: ErrorCode): CniOutcome {
  return { status: 'error', error: { cniVersion: f.cniVersion ?? FALLBACK_CNI_VERSION, code: f.code, msg: f.msg, details: f.details }, reason };
}

// ---------------------------------------------------------------------------------------------
// Helpers

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function kind(x: unknown): string {
  if (x === undefined) return 'nothing';
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'a list';
  if (typeof x === 'object') return 'an object';
  if (typeof x === 'string') return JSON.stringify(x);
  return `${typeof x} ${String(x)}`;
}
