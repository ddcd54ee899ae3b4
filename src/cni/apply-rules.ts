/**
 * Installs and removes the in-pod redirection rules (rendered by `inpod-rules.ts`) inside a pod's network
 * namespace, by running iptables-save / iptables-restore and ip there. The only file of `cni` that runs
 * these tools.
 *
 * Idempotence: apply first reads `iptables-save` in the namespace and renders ONE `iptables-restore --noflush`
 * transaction that deletes whatever in-pod rules are there and writes the desired set (see
 * `renderInpodRules(config, family, present)`). Because each table commits atomically, applying twice leaves
 * exactly one copy, a changed config replaces the old rules, and there is no moment in which the pod is
 * uncaptured (which a separate remove-then-add would open). Rules of other owners are never named, so they
 * stay as they are. The policy route and rule are added only when `ip rule` / `ip route` do not show them.
 * Two appliers racing on one namespace are not serialized here (the caller owns a pod's lifecycle); the loser's
 * restore fails cleanly (a `-D` of a rule already gone) and nothing is half-applied.
 */
import { execFile } from 'node:child_process';
import { ErrorCode, MeshError } from '../core/index.ts';
import {
  DEFAULT_HOST_PROBE_SNAT_CONFIG,
  DEFAULT_INPOD_RULES_CONFIG,
  ipsetName,
  parseIpsetSave,
  renderHostProbeSnat,
  renderHostProbeSnatRemoval,
  parseInpodPresence,
  renderInpodRemoval,
  renderInpodRules,
  renderPolicyRouting,
  restoreCommand,
  saveCommand,
  type HostProbeSnatConfig,
  type InpodRulesConfig,
  type IpFamily,
  type PolicyRouting,
} from './inpod-rules.ts';

/**
 * Which network namespace to act in: a named one (`ip netns add`; commands run with `ip netns exec <name>`), or
 * a namespace file by absolute path (`/proc/<pid>/ns/net`, `/host/proc/<pid>/ns/net`, a CNI_NETNS path such as
 * `/var/run/netns/cni-...`; commands run with `nsenter --net=<path>`, util-linux, essential on Debian).
 */
export type NetnsSelector =
  | { readonly kind: 'name'; readonly name: string }
  | { readonly kind: 'path'; readonly path: string }
  /** The agent's own namespace: commands run as they are (the host's, when the agent runs with hostNetwork). */
  | { readonly kind: 'self' };

export interface RulesOptions {
  /** Each command is killed after this long (default 30 s). */
  readonly timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const NETNS_NAME = /^[A-Za-z0-9_.-]{1,255}$/;
/** Absolute, no NUL or line breaks (a `..` segment is refused apart, in validSelector). */
const NETNS_PATH = /^\/[^\0\r\n]{0,4095}$/;

function validSelector(netns: NetnsSelector): boolean {
  if (netns.kind === 'name') return NETNS_NAME.test(netns.name);
  if (netns.kind === 'path') return NETNS_PATH.test(netns.path) && !netns.path.split('/').includes('..');
  return netns.kind === 'self';
}

/** How the selector reads in messages: the name or the path. */
export function describeNetns(netns: NetnsSelector): string {
  if (netns.kind === 'self') return '(own)';
  return netns.kind === 'path' ? String(netns.path) : String(netns.name);
}

/** The program and the arguments that run `command args` inside `netns`. */
function enterCommand(netns: NetnsSelector, command: string, args: readonly string[]): [string, string[]] {
  if (netns.kind === 'self') return [command, [...args]];
  return netns.kind === 'path'
    ? ['nsenter', [`--net=${netns.path}`, '--', command, ...args]]
    : ['ip', ['netns', 'exec', netns.name, command, ...args]];
}

type RulesErrorCode = typeof ErrorCode.CNI_RULES_APPLY_FAILED | typeof ErrorCode.CNI_RULES_REMOVE_FAILED | typeof ErrorCode.CNI_HOST_RULES_FAILED;

/** A failure to install or remove the in-pod rules; `command` is what failed, `stderr` what it said. */
export class InpodRulesError extends MeshError {
  readonly netns: string;
  readonly command: string;
  readonly stderr: string;

  constructor(code: RulesErrorCode, netns: string, command: string, stderr: string, options?: { cause?: unknown }) {
    const what = code === ErrorCode.CNI_RULES_APPLY_FAILED ? 'apply in-pod redirection rules'
      : code === ErrorCode.CNI_RULES_REMOVE_FAILED ? 'remove in-pod redirection rules' : 'program the host probe rules';
    super(code, `cannot ${what} in netns "${netns}": ${command} failed${stderr ? `: ${stderr}` : ''}`, options);
    this.netns = netns;
    this.command = command;
    this.stderr = stderr;
  }
}

interface Runner {
  run(command: string, args: readonly string[], input?: string): Promise<string>;
}

/** Runs commands inside the selected namespace; failures become `InpodRulesError` with `code`. */
function runnerIn(netns: NetnsSelector, code: RulesErrorCode, options: RulesOptions): Runner {
  const where = describeNetns(netns);
  if (!validSelector(netns)) {
    const what = netns.kind === 'path' ? 'not an absolute netns path' : 'not a valid netns name';
    throw new InpodRulesError(code, where, 'select netns', what);
  }
  const timeout = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return {
    run(command, args, input) {
      const line = [command, ...args].join(' ');
      const [program, argv] = enterCommand(netns, command, args);
      return new Promise((resolve, reject) => {
        const child = execFile(
          program,
          argv,
          { encoding: 'utf8', timeout, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 },
          (err, stdout, stderr) => {
            if (!err) {
              resolve(stdout);
              return;
            }
            const why = err.killed ? `killed after ${timeout} ms` : `exit ${err.code ?? err.signal}`;
            reject(new InpodRulesError(code, where, line, `${why}: ${stderr.trim()}`, { cause: err }));
          },
        );
        child.stdin?.on('error', () => {});
        child.stdin?.end(input ?? '');
      });
    },
  };
}

function families(config: InpodRulesConfig): IpFamily[] {
  return config.ipv6 ? ['ipv4', 'ipv6'] : ['ipv4'];
}

/** Whether lo has IPv6 (`::1`, i.e. IPv6 enabled and lo up) in the namespace; the v6 policy route needs it. */
async function loopbackHasIpv6(runner: Runner): Promise<boolean> {
  try {
    return /\binet6 ::1\/128\b/.test(await runner.run('ip', ['-6', 'addr', 'show', 'dev', 'lo']));
  } catch {
    return false;
  }
}

/** `ip rule add fwmark 0x111/0xfff pref 32764 lookup 100` → the fields after `from all` in `ip rule show`. */
function ruleShown(routing: PolicyRouting, shown: string): boolean {
  const i = routing.rule.indexOf('fwmark');
  const mark = routing.rule[i + 1] ?? '';
  const table = routing.rule[routing.rule.indexOf('lookup') + 1] ?? '';
  return shown.split('\n').some((line) => line.includes(`fwmark ${mark} lookup ${table}`));
}

function routeShown(shown: string): boolean {
  return /^local (default|0\.0\.0\.0\/0|::\/0) dev lo\b/m.test(shown);
}

function familyFlag(family: IpFamily): string[] {
  return family === 'ipv4' ? [] : ['-6'];
}

async function policyRoutingState(runner: Runner, config: InpodRulesConfig, family: IpFamily, routing: PolicyRouting) {
  const f = familyFlag(family);
  const rules = await runner.run('ip', [...f, 'rule', 'show', 'pref', String(config.rulePriority)]);
  const routes = await runner.run('ip', [...f, 'route', 'show', 'table', String(config.routeTable)]).catch((err: unknown) => {
    // The kernel has no such table until a route is added to it.
    if (err instanceof InpodRulesError && /table does not exist/i.test(err.stderr)) return '';
    throw err;
  });
  return { rule: ruleShown(routing, rules), route: routeShown(routes) };
}

/**
 * Installs the in-pod rules (and policy routing) in `netns`, replacing any earlier copy. Rejects with an
 * `InpodRulesError` coded `CNI_RULES_APPLY_FAILED`.
 */
export async function applyInpodRules(
  netns: NetnsSelector,
  config: InpodRulesConfig = DEFAULT_INPOD_RULES_CONFIG,
  options: RulesOptions = {},
): Promise<void> {
  const runner = runnerIn(netns, ErrorCode.CNI_RULES_APPLY_FAILED, options);
  for (const family of families(config)) {
    const present = parseInpodPresence(await runner.run(saveCommand(family), []));
    await runner.run(restoreCommand(family), ['--noflush', '--wait'], renderInpodRules(config, family, present));
    if (family === 'ipv6' && !(await loopbackHasIpv6(runner))) continue;
    const routing = renderPolicyRouting(config, family);
    const state = await policyRoutingState(runner, config, family, routing);
    if (!state.rule) await runner.run('ip', routing.rule);
    if (!state.route) await runner.run('ip', routing.route);
  }
}

/**
 * Removes the in-pod rules (only the ISTIO chains and the jumps into them) and the policy routing from
 * `netns`; a no-op for whatever is already gone. Rejects with an `InpodRulesError` coded
 * `CNI_RULES_REMOVE_FAILED`. IPv6 is cleaned whenever ip6tables works there, whatever `config.ipv6` says now.
 */
export async function removeInpodRules(
  netns: NetnsSelector,
  config: InpodRulesConfig = DEFAULT_INPOD_RULES_CONFIG,
  options: RulesOptions = {},
): Promise<void> {
  const runner = runnerIn(netns, ErrorCode.CNI_RULES_REMOVE_FAILED, options);
  for (const family of ['ipv4', 'ipv6'] as const) {
    let save: string;
    try {
      save = await runner.run(saveCommand(family), []);
    } catch (err) {
      if (family === 'ipv6' && !config.ipv6) continue; // no ip6tables here, and none wanted
      throw err;
    }
    const text = renderInpodRemoval(parseInpodPresence(save));
    if (text !== '') await runner.run(restoreCommand(family), ['--noflush', '--wait'], text);

    const routing = renderPolicyRouting(config, family);
    let state: { rule: boolean; route: boolean };
    try {
      state = await policyRoutingState(runner, config, family, routing);
    } catch (err) {
      if (family === 'ipv6') continue; // IPv6 routing unavailable: nothing of ours can be there
      throw err;
    }
    const [delRoute, delRule] = routing.remove;
    if (state.route && delRoute) await runner.run('ip', delRoute);
    if (state.rule && delRule) await runner.run('ip', delRule);
  }
}

// ---- the host side (§1.9): probe SNAT rules and the ipsets of captured pod IPs ----

/** Which address families the host probe rules and sets cover. */
function hostFamilies(ipv6: boolean): IpFamily[] {
  return ipv6 ? ['ipv4', 'ipv6'] : ['ipv4'];
}

function familyOf(ip: string): IpFamily {
  return ip.includes(':') ? 'ipv6' : 'ipv4';
}

/**
 * The host probe rules of §1.9 in `netns`, deleted then created (as istio-cni does at startup): the ipsets
 * are created (or kept) and flushed, then the ISTIO_POSTRT chain and its jump are replaced. Rejects with
 * `CNI_HOST_RULES_FAILED`.
 */
export async function installHostProbe(
  netns: NetnsSelector, ipv6: boolean, config: HostProbeSnatConfig = DEFAULT_HOST_PROBE_SNAT_CONFIG, options: RulesOptions = {},
): Promise<void> {
  const runner = runnerIn(netns, ErrorCode.CNI_HOST_RULES_FAILED, options);
  for (const family of hostFamilies(ipv6)) {
    const set = ipsetName(config, family);
    await runner.run('ipset', ['create', set, 'hash:ip', 'family', family === 'ipv4' ? 'inet' : 'inet6', 'comment', '-exist']);
    await runner.run('ipset', ['flush', set]);
    const save = await runner.run(saveCommand(family), ['-t', 'nat']);
    if (/^:ISTIO_POSTRT /m.test(save)) await runner.run(restoreCommand(family), ['--noflush', '--wait'], renderHostProbeSnatRemoval());
    await runner.run(restoreCommand(family), ['--noflush', '--wait'], renderHostProbeSnat(config, family));
  }
}

/** Removes the host probe rules and destroys the ipsets (uninstall); whatever is already gone is skipped. */
export async function removeHostProbe(
  netns: NetnsSelector, config: HostProbeSnatConfig = DEFAULT_HOST_PROBE_SNAT_CONFIG, options: RulesOptions = {},
): Promise<void> {
  const runner = runnerIn(netns, ErrorCode.CNI_HOST_RULES_FAILED, options);
  for (const family of ['ipv4', 'ipv6'] as const) {
    const save = await runner.run(saveCommand(family), ['-t', 'nat']).catch(() => '');
    if (/^:ISTIO_POSTRT /m.test(save)) await runner.run(restoreCommand(family), ['--noflush', '--wait'], renderHostProbeSnatRemoval());
    const set = ipsetName(config, family);
    const present = await runner.run('ipset', ['list', '-n']).catch(() => '');
    if (present.split('\n').includes(set)) await runner.run('ipset', ['destroy', set]);
  }
}

/** Adds (upserts) a captured pod's IPs to the probe sets, each commented with the pod uid. */
export async function addProbeIps(
  netns: NetnsSelector, uid: string, ips: readonly string[], config: HostProbeSnatConfig = DEFAULT_HOST_PROBE_SNAT_CONFIG, options: RulesOptions = {},
): Promise<void> {
  const runner = runnerIn(netns, ErrorCode.CNI_HOST_RULES_FAILED, options);
  for (const ip of ips) await runner.run('ipset', ['add', ipsetName(config, familyOf(ip)), ip, 'comment', uid, '-exist']);
}

/**
 * Removes the entries of `uid` from the probe sets: only entries whose comment is this uid, so an IP already
 * reused by another pod keeps that pod's entry.
 */
export async function removeProbeIps(
  netns: NetnsSelector, uid: string, config: HostProbeSnatConfig = DEFAULT_HOST_PROBE_SNAT_CONFIG, options: RulesOptions = {},
): Promise<void> {
  const runner = runnerIn(netns, ErrorCode.CNI_HOST_RULES_FAILED, options);
  for (const family of ['ipv4', 'ipv6'] as const) {
    const set = ipsetName(config, family);
    let save: string;
    try {
      save = await runner.run('ipset', ['save', set]);
    } catch {
      continue; // no such set (IPv6 off)
    }
    for (const entry of parseIpsetSave(save, set)) {
      if (entry.comment === uid) await runner.run('ipset', ['del', set, entry.ip, '-exist']);
    }
  }
}

/** The entries of the probe sets, for checks and dumps. */
export async function listProbeIps(
  netns: NetnsSelector, config: HostProbeSnatConfig = DEFAULT_HOST_PROBE_SNAT_CONFIG, options: RulesOptions = {},
): Promise<Array<{ ip: string; comment: string | undefined }>> {
  const runner = runnerIn(netns, ErrorCode.CNI_HOST_RULES_FAILED, options);
  const out: Array<{ ip: string; comment: string | undefined }> = [];
  for (const family of ['ipv4', 'ipv6'] as const) {
    const set = ipsetName(config, family);
    const save = await runner.run('ipset', ['save', set]).catch(() => '');
    out.push(...parseIpsetSave(save, set));
  }
  return out;
}
