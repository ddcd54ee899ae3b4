import { readFile } from 'node:fs/promises';
import { errorMessage } from '../core/errors.ts';
import { durationMs, flagHelp, parseArgs, stringFlag, type FlagSpec } from './argv.ts';
import { parseConfigDump, renderZtunnelConfig, ztunnelConfigKind, type OutputFormat } from './ztunnel-config.ts';

/**
 * `ambientctl ztunnel-config <kind>`: fetch a ztunnel's `/config_dump` from its admin address (or read
 * one from `--file`) and print istioctl's table or the entries as JSON/YAML.
 */

export interface CommandIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
}

export const ZTUNNEL_CONFIG_FLAGS: readonly FlagSpec[] = [
  { name: 'admin-address', kind: 'string', help: 'the ztunnel admin listener, host:port', default: 'localhost:15000' },
  { name: 'file', short: 'f', kind: 'string', help: 'read the config dump from this file instead of the admin listener' },
  { name: 'output', short: 'o', kind: 'string', help: 'output format: short, json or yaml', default: 'short' },
  { name: 'namespace', short: 'n', kind: 'string', help: 'filter workloads, services and policies by namespace' },
  { name: 'workload-namespace', kind: 'string', help: 'filter workloads by namespace (istioctl\'s name)' },
  { name: 'service-namespace', kind: 'string', help: 'filter services by namespace (istioctl\'s name)' },
  { name: 'policy-namespace', kind: 'string', help: 'filter policies by namespace (istioctl\'s name)' },
  { name: 'address', kind: 'string', help: 'filter workloads by address' },
  { name: 'workload-node', kind: 'string', help: 'filter workloads by node' },
  { name: 'node', kind: 'string', help: 'filter workloads by node' },
  { name: 'timeout', kind: 'string', help: 'how long to wait for the admin listener', default: '10s' },
];

export const ZTUNNEL_CONFIG_USAGE = `usage: ambientctl ztunnel-config workloads|services|policies|certificates|all [flags]
${flagHelp(ZTUNNEL_CONFIG_FLAGS)}`;

async function fetchDump(address: string, timeoutMs: number): Promise<string> {
  const url = `http://${address}/config_dump`;
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`${url} answered HTTP ${res.status}: ${body.slice(0, 200)}`);
  return body;
}

export async function ztunnelConfigCommand(args: readonly string[], io: CommandIo): Promise<number> {
  const parsed = parseArgs(args, ZTUNNEL_CONFIG_FLAGS);
  if (!parsed.ok) {
    io.stderr(`ambientctl ztunnel-config: ${parsed.errors.join('\n  ')}\n\n${ZTUNNEL_CONFIG_USAGE}`);
    return 2;
  }
  const [kindName, ...extra] = parsed.value.positionals;
  const kind = kindName === undefined ? undefined : ztunnelConfigKind(kindName);
  if (!kind || extra.length > 0) {
    io.stderr(`ambientctl ztunnel-config: ${kindName === undefined ? 'which configuration?' : !kind ? `unknown kind "${kindName}"` : `unexpected argument "${extra[0]}"`}\n\n${ZTUNNEL_CONFIG_USAGE}`);
    return 2;
  }
  const output = stringFlag(parsed.value, 'output') ?? 'short';
  if (output !== 'short' && output !== 'json' && output !== 'yaml') {
    io.stderr(`ambientctl ztunnel-config: output format "${output}" not supported (short, json or yaml)\n`);
    return 2;
  }
  const timeout = stringFlag(parsed.value, 'timeout') ?? '10s';
  const timeoutMs = durationMs(timeout);
  if (timeoutMs === undefined) {
    io.stderr(`ambientctl ztunnel-config: --timeout: "${timeout}" is not a duration\n`);
    return 2;
  }
  const file = stringFlag(parsed.value, 'file');
  const address = stringFlag(parsed.value, 'admin-address') ?? 'localhost:15000';
  let text: string;
  try {
    text = file !== undefined ? await readFile(file, 'utf8') : await fetchDump(address, timeoutMs);
  } catch (err) {
    io.stderr(`ambientctl ztunnel-config: could not read the config dump from ${file ?? `http://${address}/config_dump`}: ${errorMessage(err)}\n`);
    return 1;
  }
  const dump = parseConfigDump(text);
  if (!dump.ok) {
    io.stderr(`ambientctl ztunnel-config: ${dump.errors.join('\n  ')}\n`);
    return 1;
  }
  const namespace = stringFlag(parsed.value, 'namespace');
  const pick = (specific: string): string | undefined => stringFlag(parsed.value, specific) ?? namespace;
  const nsFilter = kind === 'services' ? pick('service-namespace') : kind === 'policies' ? pick('policy-namespace') : pick('workload-namespace');
  const address_ = stringFlag(parsed.value, 'address');
  const node = stringFlag(parsed.value, 'workload-node') ?? stringFlag(parsed.value, 'node');
  const filter = { ...(nsFilter !== undefined ? { namespace: nsFilter } : {}), ...(address_ !== undefined ? { address: address_ } : {}), ...(node !== undefined ? { node } : {}) };
  io.stdout(renderZtunnelConfig(kind, dump.value, { filter, output: output as OutputFormat }));
  return 0;
}
