import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { errorMessage } from '../core/errors.ts';
import { KubeApiError, KubePath, kubeRest, type KubeRest } from '../control-plane/kube-rest.ts';
import {
  ISTIOCTL_FIELD_MANAGER,
  Label,
  WAYPOINT_CLASS,
  WAYPOINT_FOR_VALUES,
  waypointGateway,
  type Condition,
  type Gateway,
  type WaypointFor,
} from '../control-plane/waypoint-objects.ts';
import { boolFlag, durationMs, flagHelp, parseArgs, stringFlag, type FlagSpec, type ParsedArgs } from './argv.ts';
import { formatTable } from './tabwriter.ts';
import type { CommandIo } from './ztunnel-config-command.ts';

/**
 * `ambientctl waypoint apply|generate|list|status|delete`: istioctl's `waypoint` commands (reference
 * istio-ambient.md §2.1), with its flags, messages and tables, against the cluster of a kubeconfig.
 */

const COMMON: readonly FlagSpec[] = [
  { name: 'namespace', short: 'n', kind: 'string', help: 'the namespace (default: the kubeconfig context\'s, else "default")' },
  { name: 'name', kind: 'string', help: 'name of the waypoint', default: 'waypoint' },
  { name: 'kubeconfig', kind: 'string', help: 'the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster)' },
  { name: 'context', kind: 'string', help: 'the kubeconfig context to use' },
];

const FOR: FlagSpec = { name: 'for', kind: 'string', help: `the traffic type [${[...WAYPOINT_FOR_VALUES].sort().join(' ')}] for the waypoint` };
const REVISION: FlagSpec = { name: 'revision', short: 'r', kind: 'string', help: 'the revision to label the waypoint with' };
const TIMEOUT: FlagSpec = { name: 'waypoint-timeout', kind: 'string', help: 'how long to wait for the waypoint to be ready', default: '1m30s' };
const ALL_NS: FlagSpec = { name: 'all-namespaces', short: 'A', kind: 'boolean', help: 'all namespaces' };

const SUBCOMMANDS: Readonly<Record<string, readonly FlagSpec[]>> = {
  generate: [...COMMON, FOR, REVISION],
  apply: [
    ...COMMON,
    FOR,
    REVISION,
    { name: 'wait', short: 'w', kind: 'boolean', help: 'wait for the waypoint to be ready (Programmed)' },
    TIMEOUT,
    { name: 'enroll-namespace', kind: 'boolean', help: 'label the namespace with the waypoint name' },
    { name: 'overwrite', kind: 'boolean', help: 'overwrite the waypoint the namespace already uses' },
  ],
  list: [...COMMON, ALL_NS],
  status: [...COMMON, ALL_NS, { name: 'wait', short: 'w', kind: 'boolean', help: 'wait for the waypoint to be ready', default: 'true' }, TIMEOUT],
  delete: [...COMMON, { name: 'all', kind: 'boolean', help: 'delete all waypoints in the namespace' }, { name: 'revision', short: 'r', kind: 'string', help: 'delete the waypoints of this revision in the namespace' }],
};

export const WAYPOINT_USAGE = `usage: ambientctl waypoint <command> [flags]
${Object.entries(SUBCOMMANDS)
  .map(([name, specs]) => `\n  ${name}${name === 'delete' ? ' [names...]' : ''}\n${flagHelp(specs).trimEnd().replace(/^/gm, '  ')}\n`)
  .join('')}`;

/** A failure to report (exit 1), with istioctl's wording. */
class CommandError extends Error {}

// ---------------------------------------------------------------------------------------------
// Pure parts: the Gateway to send, the YAML, the tables.

/** `--name` and `--for` checked as istioctl does; the Gateway, or the error to print. */
export function gatewayFromFlags(flags: { readonly name?: string; readonly for?: string; readonly revision?: string }, namespace: string): Gateway | string {
  const name = flags.name === undefined || flags.name === '' ? 'waypoint' : flags.name;
  if (name === 'none') return "invalid name provided for waypoint, 'none' is a reserved value";
  if (flags.for !== undefined && flags.for !== '' && !(WAYPOINT_FOR_VALUES as readonly string[]).includes(flags.for)) {
    return `invalid traffic type: ${flags.for}. Valid options are: [${[...WAYPOINT_FOR_VALUES].sort().join(' ')}]`;
  }
  return waypointGateway({
    name,
    namespace,
    ...(flags.for ? { for: flags.for as WaypointFor } : {}),
    ...(flags.revision ? { revision: flags.revision } : {}),
  });
}

/** The YAML `generate` prints: keys sorted, sequences not indented, no namespace unless one was asked for. */
export function generateYaml(gateway: Gateway): string {
  const metadata = Object.fromEntries(Object.entries(gateway.metadata).filter(([k, v]) => !(k === 'namespace' && v === '')));
  return stringify({ ...gateway, metadata }, { sortMapEntries: true, indentSeq: false });
}

const byNamespaceName = (a: Gateway, b: Gateway): number => {
  const an = a.metadata.namespace ?? '';
  const bn = b.metadata.namespace ?? '';
  return an < bn ? -1 : an > bn ? 1 : a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
};

/** `waypoint list`: NAME REVISION TRAFFIC TYPE PROGRAMMED (NAMESPACE first with -A); istioctl's placeholders. */
export function waypointListText(gateways: readonly Gateway[], allNamespaces: boolean): string {
  if (gateways.length === 0) return 'No waypoints found.\n';
  const rows: string[][] = [allNamespaces ? ['NAMESPACE', 'NAME', 'REVISION', 'TRAFFIC TYPE', 'PROGRAMMED'] : ['NAME', 'REVISION', 'TRAFFIC TYPE', 'PROGRAMMED']];
  for (const gw of [...gateways].filter((g) => g.spec.gatewayClassName === WAYPOINT_CLASS).sort(byNamespaceName)) {
    const rev = gw.metadata.labels?.[Label.rev] || 'default';
    const traffic = gw.metadata.labels?.[Label.waypointFor] || 'none';
    const programmed = gw.status?.conditions?.filter((c) => c.type === 'Programmed').at(-1)?.status ?? 'False';
    rows.push([...(allNamespaces ? [gw.metadata.namespace ?? ''] : []), gw.metadata.name, rev, traffic, programmed]);
  }
  return formatTable(rows, 5);
}

/** The condition `waypoint status` shows: Programmed once True, else the last condition (empty if none). */
export function statusCondition(gateway: Gateway): Condition | undefined {
  const conditions = gateway.status?.conditions ?? [];
  return conditions.find((c) => c.type === 'Programmed' && c.status === 'True') ?? conditions.at(-1);
}

export function isProgrammed(gateway: Gateway | undefined): boolean {
  return gateway?.status?.conditions?.some((c) => c.type === 'Programmed' && c.status === 'True') ?? false;
}

/** `waypoint status`: NAME STATUS TYPE REASON MESSAGE (NAMESPACE first with -A). */
export function waypointStatusText(gateways: readonly Gateway[], allNamespaces: boolean): string {
  const rows: string[][] = [allNamespaces ? ['NAMESPACE', 'NAME', 'STATUS', 'TYPE', 'REASON', 'MESSAGE'] : ['NAME', 'STATUS', 'TYPE', 'REASON', 'MESSAGE']];
  for (const gw of gateways) {
    const c = statusCondition(gw);
    rows.push([...(allNamespaces ? [gw.metadata.namespace ?? ''] : []), gw.metadata.name, c?.status ?? '', c?.type ?? '', c?.reason ?? '', c?.message ?? '']);
  }
  return formatTable(rows, 5);
}

// ---------------------------------------------------------------------------------------------
// The commands

interface Context {
  readonly io: CommandIo;
  readonly parsed: ParsedArgs;
  readonly namespace: string;
  /** Whether -n was given (generate prints a namespace only then). */
  readonly namespaceGiven: boolean;
  readonly rest: () => KubeRest;
  readonly timeoutMs: number;
  /** Poll interval of --wait; istioctl's 1 s. */
  readonly pollMs: number;
}

function loadKubeConfig(parsed: ParsedArgs, env: CommandIo['env']): KubeConfig {
  const kc = new KubeConfig();
  const explicit = stringFlag(parsed, 'kubeconfig');
  const candidates = explicit !== undefined ? [explicit] : [...(env['KUBECONFIG'] ?? '').split(':').filter((p) => p !== ''), ...(env['HOME'] ? [join(env['HOME'], '.kube', 'config')] : [])];
  const file = candidates.find((p) => existsSync(p));
  if (explicit !== undefined && file === undefined) throw new CommandError(`kubeconfig ${explicit} not found`);
  if (file !== undefined) kc.loadFromFile(file);
  else if (env['KUBERNETES_SERVICE_HOST']) kc.loadFromCluster();
  else throw new CommandError('no kubeconfig (--kubeconfig, $KUBECONFIG or ~/.kube/config) and not running in a cluster');
  const context = stringFlag(parsed, 'context');
  if (context !== undefined) kc.setCurrentContext(context);
  return kc;
}

function contextNamespace(kc: KubeConfig | undefined): string | undefined {
  if (!kc) return undefined;
  return kc.getContextObject(kc.getCurrentContext())?.namespace;
}

async function getNamespace(ctx: Context, ns: string): Promise<{ metadata?: { labels?: Record<string, string> } }> {
  let obj;
  try {
    obj = await ctx.rest().get<{ metadata?: { labels?: Record<string, string> } }>(KubePath.namespace(ns));
  } catch (err) {
    throw new CommandError(`failed to get namespace ${ns}: ${errorMessage(err)}`);
  }
  if (!obj) throw new CommandError(`namespace: ${ns} not found`);
  return obj;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function fetchGateway(ctx: Context, namespace: string, name: string): Promise<{ gateway?: Gateway; error?: unknown }> {
  try {
    const gateway = await ctx.rest().get<Gateway>(KubePath.gateway(namespace, name));
    return gateway ? { gateway } : { error: new Error(`gateways.gateway.networking.k8s.io "${name}" not found`) };
  } catch (error) {
    return { error };
  }
}

async function generate(ctx: Context): Promise<number> {
  const gw = gatewayFromFlags(flagsOf(ctx.parsed), ctx.namespaceGiven ? ctx.namespace : '');
  if (typeof gw === 'string') throw new CommandError(`failed to create gateway: ${gw}`);
  ctx.io.stdout(generateYaml(gw));
  return 0;
}

async function apply(ctx: Context): Promise<number> {
  const { io, parsed, namespace: ns } = ctx;
  const enroll = boolFlag(parsed, 'enroll-namespace');
  const nsObj = await getNamespace(ctx, ns);
  const labels = nsObj.metadata?.labels ?? {};
  if (enroll) {
    if (!boolFlag(parsed, 'overwrite') && (labels[Label.useWaypoint] ?? '') !== '') {
      io.stdout(`⚠️ Warning: namespace (${ns}) already has an enrolled Waypoint. Consider adding the \`--overwrite\` flag to your apply command.\n`);
      return 0;
    }
    if (labels[Label.dataplaneMode] !== 'ambient') {
      io.stdout(`⚠️ Warning: namespace is not enrolled in ambient. Consider running\t\`kubectl label namespace ${ns} istio.io/dataplane-mode=ambient\`\n`);
    }
  }
  const gw = gatewayFromFlags(flagsOf(parsed), ns);
  if (typeof gw === 'string') throw new CommandError(`failed to create gateway: ${gw}`);
  const name = gw.metadata.name;
  try {
    await ctx.rest().apply(KubePath.gateway(ns, name), gw, ISTIOCTL_FIELD_MANAGER, false);
  } catch (err) {
    if (err instanceof KubeApiError && err.status === 404) throw new CommandError(`missing Kubernetes Gateway CRDs need to be installed before applying a waypoint: ${err.message}`);
    throw new CommandError(errorMessage(err));
  }
  io.stdout(`✅ waypoint ${ns}/${name} applied\n`);
  if (boolFlag(parsed, 'wait')) {
    const started = Date.now();
    for (;;) {
      await sleep(ctx.pollMs);
      const { gateway, error } = await fetchGateway(ctx, ns, name);
      if (isProgrammed(gateway)) break;
      if (Date.now() - started > ctx.timeoutMs) throw new CommandError(`timed out while waiting for waypoint\t${ns}/${name}${error ? `: ${errorMessage(error)}` : ''}`);
    }
    io.stdout(`✅ waypoint ${ns}/${name} is ready!\n`);
  }
  if (enroll) {
    try {
      await ctx.rest().mergePatch(KubePath.namespace(ns), { metadata: { labels: { [Label.useWaypoint]: name } } });
    } catch (err) {
      throw new CommandError(`failed to label namespace with waypoint: failed to update namespace ${ns}: ${errorMessage(err)}`);
    }
    io.stdout(`✅ namespace ${ns} labeled with "${Label.useWaypoint}: ${name}"\n`);
  }
  return 0;
}

function flagsOf(parsed: ParsedArgs): { name?: string; for?: string; revision?: string } {
  const name = stringFlag(parsed, 'name');
  const forFlag = stringFlag(parsed, 'for');
  const revision = stringFlag(parsed, 'revision');
  return { ...(name !== undefined ? { name } : {}), ...(forFlag !== undefined ? { for: forFlag } : {}), ...(revision !== undefined ? { revision } : {}) };
}

async function listGateways(ctx: Context, namespace: string | undefined, labelSelector?: string): Promise<Gateway[]> {
  try {
    return (await ctx.rest().list<Gateway>(KubePath.gateways(namespace), labelSelector ? { labelSelector } : {})).items;
  } catch (err) {
    throw new CommandError(errorMessage(err));
  }
}

async function list(ctx: Context): Promise<number> {
  const all = boolFlag(ctx.parsed, 'all-namespaces');
  ctx.io.stdout(waypointListText(await listGateways(ctx, all ? undefined : ctx.namespace), all));
  return 0;
}

async function status(ctx: Context): Promise<number> {
  const all = boolFlag(ctx.parsed, 'all-namespaces');
  const wait = boolFlag(ctx.parsed, 'wait', true);
  const items = await listGateways(ctx, all ? undefined : ctx.namespace);
  if (items.length === 0) {
    ctx.io.stdout('No waypoints found.\n');
    return 0;
  }
  const waypoints = items.filter((g) => g.spec.gatewayClassName === WAYPOINT_CLASS).sort(byNamespaceName);
  const started = Date.now();
  const seen: Gateway[] = [];
  for (const gw of waypoints) {
    const ns = gw.metadata.namespace ?? ctx.namespace;
    let current: Gateway = gw;
    for (;;) {
      const { gateway, error } = await fetchGateway(ctx, ns, gw.metadata.name);
      if (gateway) current = gateway;
      if (!wait || isProgrammed(gateway)) break;
      if (Date.now() - started > ctx.timeoutMs) {
        ctx.io.stdout(waypointStatusText([...seen, current], all));
        throw new CommandError(`timed out while retrieving status for waypoint\t${ns}/${gw.metadata.name}${error ? `: ${errorMessage(error)}` : ''}`);
      }
      await sleep(ctx.pollMs);
    }
    seen.push(current);
  }
  ctx.io.stdout(waypointStatusText(seen, all));
  return 0;
}

async function remove(ctx: Context): Promise<number> {
  const { io, parsed, namespace: ns } = ctx;
  const names = parsed.positionals;
  const all = boolFlag(parsed, 'all');
  const revision = stringFlag(parsed, 'revision') ?? '';
  if ((all || revision !== '') && names.length > 0) throw new UsageError('cannot specify waypoint names when deleting all waypoints');
  if (!(all || revision !== '') && names.length === 0) throw new UsageError('must specify a waypoint name or delete all using --all or delete specific revision using --revision');
  let targets: string[];
  if (names.length === 0) {
    targets = (await listGateways(ctx, ns, revision !== '' ? `${Label.rev}=${revision}` : undefined)).filter((g) => g.spec.gatewayClassName === WAYPOINT_CLASS).map((g) => g.metadata.name);
  } else {
    const waypoints = new Set((await listGateways(ctx, ns)).filter((g) => g.spec.gatewayClassName === WAYPOINT_CLASS).map((g) => g.metadata.name));
    targets = [];
    for (const name of names) {
      if (waypoints.has(name)) targets.push(name);
      else io.stdout(`waypoint ${ns}/${name} not found\n`);
    }
  }
  // In parallel, as istioctl; reported in order.
  const results = await Promise.allSettled(targets.map((name) => ctx.rest().delete(KubePath.gateway(ns, name))));
  const failures: string[] = [];
  results.forEach((r, i) => {
    const name = targets[i] as string;
    if (r.status === 'fulfilled') io.stdout(r.value ? `waypoint ${ns}/${name} deleted\n` : `waypoint ${ns}/${name} not found\n`);
    else failures.push(errorMessage(r.reason));
  });
  if (failures.length > 0) throw new CommandError(failures.join('\n'));
  return 0;
}

class UsageError extends Error {}

const RUN: Readonly<Record<string, (ctx: Context) => Promise<number>>> = { generate, apply, list, status, delete: remove };

export async function waypointCommand(args: readonly string[], io: CommandIo, options: { readonly pollMs?: number } = {}): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === 'help' || sub === '--help' || sub === '-h') {
    io.stdout(WAYPOINT_USAGE);
    return sub === undefined ? 2 : 0;
  }
  const specs = SUBCOMMANDS[sub];
  const run = RUN[sub];
  if (!specs || !run) {
    io.stderr(`ambientctl waypoint: unknown subcommand "${sub}"\n\n${WAYPOINT_USAGE}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout(`usage: ambientctl waypoint ${sub}${sub === 'delete' ? ' [names...]' : ''} [flags]\n${flagHelp(specs)}`);
    return 0;
  }
  const parsed = parseArgs(rest, specs);
  if (!parsed.ok) {
    io.stderr(`ambientctl waypoint ${sub}: ${parsed.errors.join('\n  ')}\n`);
    return 2;
  }
  if (sub !== 'delete' && parsed.value.positionals.length > 0) {
    io.stderr(`ambientctl waypoint ${sub}: unexpected argument "${parsed.value.positionals[0]}"\n`);
    return 2;
  }
  const timeoutText = stringFlag(parsed.value, 'waypoint-timeout') ?? '1m30s';
  const timeoutMs = durationMs(timeoutText);
  if (timeoutMs === undefined) {
    io.stderr(`ambientctl waypoint ${sub}: --waypoint-timeout: "${timeoutText}" is not a duration\n`);
    return 2;
  }
  let kubeConfig: KubeConfig | undefined;
  let rest_: KubeRest | undefined;
  const needsCluster = sub !== 'generate';
  try {
    // generate needs no cluster, but reads the context's namespace when there is a kubeconfig.
    try {
      kubeConfig = loadKubeConfig(parsed.value, io.env);
    } catch (err) {
      if (needsCluster) throw err;
    }
    const explicitNs = stringFlag(parsed.value, 'namespace');
    const namespace = explicitNs || contextNamespace(kubeConfig) || 'default';
    const ctx: Context = {
      io,
      parsed: parsed.value,
      namespace,
      namespaceGiven: explicitNs !== undefined && explicitNs !== '',
      rest: () => (rest_ ??= kubeRest(kubeConfig as KubeConfig)),
      timeoutMs,
      pollMs: options.pollMs ?? 1000,
    };
    return await run(ctx);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`Error: ${err.message}\n`);
      return 2;
    }
    io.stderr(`Error: ${errorMessage(err)}\n`);
    return 1;
  }
}
