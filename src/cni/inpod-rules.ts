/**
 * istio-cni's in-pod redirection rules (reference §1.7) and the host-side probe SNAT (§1.9), rendered as
 * `iptables-restore` input text and `ip` argv lists. Pure: no IO, no environment; `apply-rules.ts` runs them.
 *
 * The default rendering is byte-for-byte the reference's listing, so a pod captured by this agent looks the
 * same to `iptables-save` (and to Istio's own reconcile) as one captured by istio-cni.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { ErrorCode, MeshError } from '../core/index.ts';

/** ztunnel marks its own sockets with SO_MARK 1337; the in-pod rules never redirect packets carrying it. */
export const INPOD_MARK = 0x539;
/** The bits of the packet mark the in-pod rules look at. */
export const INPOD_MASK = 0xfff;
/** Connection mark for ztunnel's connections looped back into the pod (its spoofed-source connects to the app). */
export const INPOD_CONNMARK = 0x111;
/** `CONNMARK --restore-mark` copies all bits. */
export const RESTORE_MARK_MASK = 0xffffffff;
/** Policy-routing table that delivers connmarked replies locally (to ztunnel's transparent socket). */
export const INPOD_ROUTE_TABLE = 100;
/** Priority of the `fwmark 0x111/0xfff lookup 100` rule (below the kernel's `main` at 32766). */
export const INPOD_RULE_PRIORITY = 32764;

/** Outbound capture: ztunnel's in-pod listener for the app's outgoing TCP. */
export const OUTBOUND_CAPTURE_PORT = 15001;
/** Inbound plaintext capture. */
export const INBOUND_CAPTURE_PORT = 15006;
/** HBONE: ztunnel binds it in the pod directly, so it is never redirected. */
export const HBONE_PORT = 15008;
/** DNS proxy capture (TCP and UDP). */
export const DNS_CAPTURE_PORT = 15053;
/** The port DNS capture applies to. */
export const DNS_PORT = 53;
/** Conntrack zone for ztunnel's upstream DNS traffic and its replies. */
export const DNS_CT_ZONE = 1;

/** Source address the host SNATs kubelet probes to, so the pod can exempt them from capture. */
export const PROBE_SNAT_IPV4 = '169.254.7.127';
export const PROBE_SNAT_IPV6 = 'fd16:9254:7127:1337:ffff:ffff:ffff:ffff';
/** Host ipsets holding captured pod IPs (probe destinations). */
export const PROBE_IPSET_IPV4 = 'istio-inpod-probes-v4';
export const PROBE_IPSET_IPV6 = 'istio-inpod-probes-v6';

/** The chains the in-pod rules create (in mangle, nat and raw). */
export const CHAIN_PREROUTING = 'ISTIO_PRERT';
export const CHAIN_OUTPUT = 'ISTIO_OUTPUT';
export const INPOD_CHAINS = [CHAIN_PREROUTING, CHAIN_OUTPUT] as const;
/** The chain the host-side probe SNAT creates in the host's nat table. */
export const CHAIN_POSTROUTING = 'ISTIO_POSTRT';

export type IpFamily = 'ipv4' | 'ipv6';
export type InpodTable = 'mangle' | 'nat' | 'raw';
/** Every table the in-pod rules may use, in the reference's order. */
export const INPOD_TABLES: readonly InpodTable[] = ['mangle', 'nat', 'raw'];

export interface InpodRulesConfig {
  readonly mark: number;
  readonly markMask: number;
  readonly connmark: number;
  readonly restoreMarkMask: number;
  readonly outboundPort: number;
  readonly inboundPort: number;
  readonly hbonePort: number;
  readonly dnsCapturePort: number;
  readonly probeSnatIpv4: string;
  readonly probeSnatIpv6: string;
  readonly routeTable: number;
  readonly rulePriority: number;
  /** DNS capture for the pod: the three DNS redirects plus the raw-table conntrack-zone rules. */
  readonly dnsCapture: boolean;
  /** Ingress mode (`bypass-inbound-capture=true`): no probe ACCEPT in PRERT and no 15006 redirect. */
  readonly bypassInboundCapture: boolean;
  /** Virtual interfaces whose inbound TCP is treated as outbound (redirected to the outbound port). */
  readonly virtualInterfaces: readonly string[];
  /** `AMBIENT_IPV6` (default true): the same rules via ip6tables as well. */
  readonly ipv6: boolean;
}

export const DEFAULT_INPOD_RULES_CONFIG: InpodRulesConfig = Object.freeze({
  mark: INPOD_MARK,
  markMask: INPOD_MASK,
  connmark: INPOD_CONNMARK,
  restoreMarkMask: RESTORE_MARK_MASK,
  outboundPort: OUTBOUND_CAPTURE_PORT,
  inboundPort: INBOUND_CAPTURE_PORT,
  hbonePort: HBONE_PORT,
  dnsCapturePort: DNS_CAPTURE_PORT,
  probeSnatIpv4: PROBE_SNAT_IPV4,
  probeSnatIpv6: PROBE_SNAT_IPV6,
  routeTable: INPOD_ROUTE_TABLE,
  rulePriority: INPOD_RULE_PRIORITY,
  dnsCapture: true,
  bypassInboundCapture: false,
  virtualInterfaces: Object.freeze([]) as readonly string[],
  ipv6: true,
});

const INTERFACE_NAME = /^[A-Za-z0-9_.:@-]{1,15}$/;

function invalid(field: string, value: unknown, why: string): MeshError {
  return new MeshError(ErrorCode.CONFIG_INVALID, `in-pod rules: ${field}=${JSON.stringify(value)}: ${why}`);
}

/**
 * The defaults with `overrides` applied, validated and frozen. Throws a `CONFIG_INVALID` MeshError naming the
 * field; every value that ends up in rule text is checked here, so nothing can inject extra restore lines.
 */
export function inpodRulesConfig(overrides: Partial<InpodRulesConfig> = {}): InpodRulesConfig {
  const config = { ...DEFAULT_INPOD_RULES_CONFIG, ...overrides };
  for (const field of ['outboundPort', 'inboundPort', 'hbonePort', 'dnsCapturePort'] as const) {
    const port = config[field];
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalid(field, port, 'not a port 1..65535');
  }
  for (const field of ['mark', 'markMask', 'connmark', 'restoreMarkMask', 'routeTable', 'rulePriority'] as const) {
    const value = config[field];
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw invalid(field, value, 'not a 32-bit unsigned integer');
  }
  if (!isIPv4(config.probeSnatIpv4)) throw invalid('probeSnatIpv4', config.probeSnatIpv4, 'not an IPv4 address');
  if (!isIPv6(config.probeSnatIpv6)) throw invalid('probeSnatIpv6', config.probeSnatIpv6, 'not an IPv6 address');
  for (const [i, name] of config.virtualInterfaces.entries()) {
    if (!INTERFACE_NAME.test(name)) throw invalid(`virtualInterfaces[${i}]`, name, 'not an interface name');
  }
  return Object.freeze({ ...config, virtualInterfaces: Object.freeze([...config.virtualInterfaces]) });
}

/** `0x539/0xfff` */
function hexMask(value: number, mask: number): string {
  return `0x${value.toString(16)}/0x${mask.toString(16)}`;
}

function loopback(family: IpFamily): string {
  return family === 'ipv4' ? '127.0.0.1/32' : '::1/128';
}

function probeSnat(config: InpodRulesConfig, family: IpFamily): string {
  return family === 'ipv4' ? config.probeSnatIpv4 : config.probeSnatIpv6;
}

/** The restore tool for a family. */
export function restoreCommand(family: IpFamily): 'iptables-restore' | 'ip6tables-restore' {
  return family === 'ipv4' ? 'iptables-restore' : 'ip6tables-restore';
}

/** The save tool for a family. */
export function saveCommand(family: IpFamily): 'iptables-save' | 'ip6tables-save' {
  return family === 'ipv4' ? 'iptables-save' : 'ip6tables-save';
}

/** One table's part of the rule set: chains to create, then rules (`-A ...` lines) in order. */
export interface InpodTableRules {
  readonly table: InpodTable;
  /** User chains to create, in the order the reference lists their `-N` lines. */
  readonly chains: readonly string[];
  /** `-A` lines, in order. */
  readonly rules: readonly string[];
}

/** The desired in-pod rule set for one family, table by table (raw only when DNS capture is on). */
export function inpodTableRules(config: InpodRulesConfig = DEFAULT_INPOD_RULES_CONFIG, family: IpFamily = 'ipv4'): InpodTableRules[] {
  const mark = hexMask(config.mark, config.markMask);
  const connmark = hexMask(config.connmark, config.markMask);
  const restoreMask = `0x${config.restoreMarkMask.toString(16)}`;
  const lo = loopback(family);
  const snat = probeSnat(config, family);
  const P = CHAIN_PREROUTING;
  const O = CHAIN_OUTPUT;

  const mangle: InpodTableRules = {
    table: 'mangle',
    chains: [P, O],
    rules: [
      `-A PREROUTING -j ${P}`,
      `-A OUTPUT -j ${O}`,
      // ztunnel's own traffic looped back into the pod: remember it on the connection…
      `-A ${P} -m mark --mark ${mark} -j CONNMARK --set-xmark ${connmark}`,
      // …so the app's replies get the mark back and policy routing (table 100) delivers them to ztunnel.
      `-A ${O} -m connmark --mark ${connmark} -j CONNMARK --restore-mark --nfmask ${restoreMask} --ctmask ${restoreMask}`,
    ],
  };

  const natRules: string[] = [`-A OUTPUT -j ${O}`, `-A PREROUTING -j ${P}`];
  for (const iface of config.virtualInterfaces) {
    natRules.push(`-A ${P} -i ${iface} -p tcp -j REDIRECT --to-ports ${config.outboundPort}`);
    natRules.push(`-A ${P} -i ${iface} -p tcp -j RETURN`);
  }
  // Kubelet probes (SNATed on the host, §1.9) are accepted; so are the pod's replies to them.
  if (!config.bypassInboundCapture) natRules.push(`-A ${P} -s ${snat} -p tcp -m tcp -j ACCEPT`);
  natRules.push(`-A ${O} -d ${snat} -p tcp -m tcp -j ACCEPT`);
  // Inbound TCP, except to localhost, to HBONE, or ztunnel's own → inbound plaintext capture.
  if (!config.bypassInboundCapture) {
    natRules.push(
      `-A ${P} ! -d ${lo} -p tcp ! --dport ${config.hbonePort} -m mark ! --mark ${mark} -j REDIRECT --to-ports ${config.inboundPort}`,
    );
  }
  if (config.dnsCapture) {
    natRules.push(
      `-A ${O} ! -o lo -p udp -m mark ! --mark ${mark} -m udp --dport ${DNS_PORT} -j REDIRECT --to-port ${config.dnsCapturePort}`,
      `-A ${O} ! -d ${lo} -p tcp --dport ${DNS_PORT} -m mark ! --mark ${mark} -j REDIRECT --to-ports ${config.dnsCapturePort}`,
    );
  }
  natRules.push(
    // Replies on ztunnel's looped-back connections are not captured again.
    `-A ${O} -p tcp -m mark --mark ${connmark} -j ACCEPT`,
    // The app talking to its own pod IP (via lo).
    `-A ${O} ! -d ${lo} -o lo -j ACCEPT`,
    // Everything else outbound → ztunnel's outbound listener.
    `-A ${O} ! -d ${lo} -p tcp -m mark ! --mark ${mark} -j REDIRECT --to-ports ${config.outboundPort}`,
  );
  const nat: InpodTableRules = { table: 'nat', chains: [P, O], rules: natRules };

  const tables = [mangle, nat];
  if (config.dnsCapture) {
    tables.push({
      table: 'raw',
      chains: [O, P],
      rules: [
        `-A PREROUTING -j ${P}`,
        `-A OUTPUT -j ${O}`,
        // ztunnel's upstream DNS queries and their replies live in their own conntrack zone.
        `-A ${O} -p udp -m mark --mark ${mark} -m udp --dport ${DNS_PORT} -j CT --zone ${DNS_CT_ZONE}`,
        `-A ${P} -p udp -m mark ! --mark ${mark} -m udp --sport ${DNS_PORT} -j CT --zone ${DNS_CT_ZONE}`,
      ],
    });
  }
  return tables;
}

/**
 * What of the in-pod rules a namespace already holds, per table, read from `iptables-save` output by
 * `parseInpodPresence`: which ISTIO chains exist and every rule outside them that jumps into them.
 */
export type InpodPresence = Readonly<Partial<Record<InpodTable, InpodTablePresence>>>;

export interface InpodTablePresence {
  readonly chains: readonly string[];
  /** The `-A ...` lines (as `iptables-save` prints them) of rules in other chains that jump to an ISTIO chain. */
  readonly jumps: readonly string[];
}

/** Nothing installed. */
export const NO_INPOD_RULES: InpodPresence = Object.freeze({});

/** Everything the reference's delete step assumes: both chains and the two jumps in mangle, nat and raw. */
export const ALL_INPOD_RULES: InpodPresence = Object.freeze(
  Object.fromEntries(
    INPOD_TABLES.map((table) => [
      table,
      { chains: [CHAIN_PREROUTING, CHAIN_OUTPUT], jumps: [`-A PREROUTING -j ${CHAIN_PREROUTING}`, `-A OUTPUT -j ${CHAIN_OUTPUT}`] },
    ]),
  ),
);

const OUR_CHAINS: ReadonlySet<string> = new Set(INPOD_CHAINS);

function isInpodTable(name: string): name is InpodTable {
  return (INPOD_TABLES as readonly string[]).includes(name);
}

/** Parses `iptables-save` / `ip6tables-save` output into what of the in-pod rules is present. */
export function parseInpodPresence(save: string): InpodPresence {
  const presence: Partial<Record<InpodTable, { chains: string[]; jumps: string[] }>> = {};
  let current: { chains: string[]; jumps: string[] } | undefined;
  for (const raw of save.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) {
      const table = line.slice(1).trim();
      current = isInpodTable(table) ? (presence[table] = { chains: [], jumps: [] }) : undefined;
      continue;
    }
    if (current === undefined) continue;
    if (line.startsWith(':')) {
      const chain = line.slice(1).split(/\s+/)[0] ?? '';
      if (OUR_CHAINS.has(chain)) current.chains.push(chain);
      continue;
    }
    if (line.startsWith('-A ')) {
      const words = line.split(/\s+/);
      const chain = words[1] ?? '';
      if (OUR_CHAINS.has(chain)) continue;
      const target = words.findIndex((word, i) => (word === '-j' || word === '-g') && OUR_CHAINS.has(words[i + 1] ?? ''));
      if (target !== -1) current.jumps.push(line);
    }
  }
  for (const table of INPOD_TABLES) {
    const entry = presence[table];
    if (entry && entry.chains.length === 0 && entry.jumps.length === 0) delete presence[table];
  }
  return presence;
}

/** Joins table sections into restore text; tables with no lines are left out. */
function restoreText(sections: readonly { table: string; lines: readonly string[] }[]): string {
  return sections
    .filter((s) => s.lines.length > 0)
    .map((s) => `* ${s.table}\n${s.lines.map((l) => `${l}\n`).join('')}COMMIT\n`)
    .join('');
}

/**
 * The `iptables-restore --noflush` input that leaves exactly the desired rule set, given what is present:
 * per table, delete the jumps into ISTIO chains, flush the chains that stay, flush and delete those no longer
 * wanted, create the missing ones, then append the rules. Each table commits atomically, so a pod is never
 * seen half-captured or with two copies. With nothing present (the default) it is the reference's listing.
 */
export function renderInpodRules(
  config: InpodRulesConfig = DEFAULT_INPOD_RULES_CONFIG,
  family: IpFamily = 'ipv4',
  present: InpodPresence = NO_INPOD_RULES,
): string {
  const desired = new Map(inpodTableRules(config, family).map((t) => [t.table, t]));
  return restoreText(
    INPOD_TABLES.map((table) => {
      const want = desired.get(table);
      const have = present[table];
      const lines: string[] = [];
      for (const jump of have?.jumps ?? []) lines.push(jump.replace(/^-A /, '-D '));
      for (const chain of have?.chains ?? []) {
        lines.push(`-F ${chain}`);
        if (!want?.chains.includes(chain)) lines.push(`-X ${chain}`);
      }
      for (const chain of want?.chains ?? []) if (!have?.chains.includes(chain)) lines.push(`-N ${chain}`);
      lines.push(...(want?.rules ?? []));
      return { table, lines };
    }),
  );
}

/**
 * The `iptables-restore --noflush` input that removes the in-pod rules and nothing else: `-D` the jumps into
 * ISTIO chains, then `-F` and `-X` each ISTIO chain. By default it assumes everything the reference deletes
 * (six jumps, both chains in mangle/nat/raw); pass `parseInpodPresence(save)` to delete only what is there.
 * Returns '' when nothing is present.
 */
export function renderInpodRemoval(present: InpodPresence = ALL_INPOD_RULES): string {
  return restoreText(
    INPOD_TABLES.map((table) => {
      const have = present[table];
      const lines: string[] = [];
      for (const jump of have?.jumps ?? []) lines.push(jump.replace(/^-A /, '-D '));
      for (const chain of have?.chains ?? []) lines.push(`-F ${chain}`);
      for (const chain of have?.chains ?? []) lines.push(`-X ${chain}`);
      return { table, lines };
    }),
  );
}

/** argv for `ip` (without the leading `ip`). */
export type IpArgv = readonly string[];

export interface PolicyRouting {
  /** `ip rule add fwmark 0x111/0xfff pref 32764 lookup 100` (with `-6` for IPv6). */
  readonly rule: IpArgv;
  /** `ip route add local 0.0.0.0/0 dev lo table 100` (`::/0` for IPv6). */
  readonly route: IpArgv;
  /** The same two with `del`, route first. */
  readonly remove: readonly IpArgv[];
}

/**
 * The policy routing that sends connmarked replies (fwmark 0x111) to the local table 100, so they reach
 * ztunnel's transparent socket instead of leaving the pod. For IPv6 the caller adds it only if lo has IPv6.
 */
export function renderPolicyRouting(config: InpodRulesConfig = DEFAULT_INPOD_RULES_CONFIG, family: IpFamily = 'ipv4'): PolicyRouting {
  const v = family === 'ipv4' ? [] : ['-6'];
  const ruleSpec = ['fwmark', hexMask(config.connmark, config.markMask), 'pref', String(config.rulePriority), 'lookup', String(config.routeTable)];
  const routeSpec = ['local', family === 'ipv4' ? '0.0.0.0/0' : '::/0', 'dev', 'lo', 'table', String(config.routeTable)];
  return {
    rule: [...v, 'rule', 'add', ...ruleSpec],
    route: [...v, 'route', 'add', ...routeSpec],
    remove: [
      [...v, 'route', 'del', ...routeSpec],
      [...v, 'rule', 'del', ...ruleSpec],
    ],
  };
}

export interface HostProbeSnatConfig {
  readonly snatIpv4: string;
  readonly snatIpv6: string;
  readonly ipsetIpv4: string;
  readonly ipsetIpv6: string;
}

export const DEFAULT_HOST_PROBE_SNAT_CONFIG: HostProbeSnatConfig = Object.freeze({
  snatIpv4: PROBE_SNAT_IPV4,
  snatIpv6: PROBE_SNAT_IPV6,
  ipsetIpv4: PROBE_IPSET_IPV4,
  ipsetIpv6: PROBE_IPSET_IPV6,
});

/**
 * The host-netns rules (§1.9) that SNAT kubelet's probes (locally originated, `--socket-exists`) to captured
 * pods (the ipset) to the probe address, which the in-pod rules then let through.
 */
export function renderHostProbeSnat(config: HostProbeSnatConfig = DEFAULT_HOST_PROBE_SNAT_CONFIG, family: IpFamily = 'ipv4'): string {
  const snat = family === 'ipv4' ? config.snatIpv4 : config.snatIpv6;
  const ipset = family === 'ipv4' ? config.ipsetIpv4 : config.ipsetIpv6;
  return restoreText([
    {
      table: 'nat',
      lines: [
        `-N ${CHAIN_POSTROUTING}`,
        `-I POSTROUTING 1 -j ${CHAIN_POSTROUTING}`,
        `-A ${CHAIN_POSTROUTING} -m owner --socket-exists -p tcp -m set --match-set ${ipset} dst -j SNAT --to-source ${snat}`,
      ],
    },
  ]);
}

/** Removal of the host probe SNAT (assumes it is installed once). */
export function renderHostProbeSnatRemoval(): string {
  return restoreText([
    {
      table: 'nat',
      lines: [`-D POSTROUTING -j ${CHAIN_POSTROUTING}`, `-F ${CHAIN_POSTROUTING}`, `-X ${CHAIN_POSTROUTING}`],
    },
  ]);
}

/** The probe ipset of a family. */
export function ipsetName(config: HostProbeSnatConfig, family: IpFamily): string {
  return family === 'ipv4' ? config.ipsetIpv4 : config.ipsetIpv6;
}

/**
 * The entries of `set` in `ipset save` output: `add <set> <ip> [comment "<text>"]` lines; other lines (the
 * `create` line, other sets) are skipped.
 */
export function parseIpsetSave(save: string, set: string): Array<{ ip: string; comment: string | undefined }> {
  const out: Array<{ ip: string; comment: string | undefined }> = [];
  for (const line of save.split('\n')) {
    const m = /^add (\S+) (\S+)(?: .*?comment "((?:[^"\\]|\\.)*)")?/.exec(line.trim());
    if (m === null || m[1] !== set || m[2] === undefined) continue;
    out.push({ ip: m[2], comment: m[3] });
  }
  return out;
}
