import { Counter, Gauge, Registry } from 'prom-client';

/**
 * Typed metric families over prom-client. Each family declares its label names once; every update
 * must pass all of them (no partial label objects), and they are emitted in the declared order.
 * A `MetricsRegistry` owns its own prom-client `Registry` (never the global one), so tests and
 * in-pod proxies get isolated sets.
 */

/** A complete label object for the label names `K`. */
export type Labels<K extends string> = { readonly [P in K]: string };

export interface FamilySpec<K extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly K[];
}

export interface CounterFamily<K extends string> {
  readonly name: string;
  readonly labelNames: readonly K[];
  inc(labels: Labels<K>, value?: number): void;
}

export interface GaugeFamily<K extends string> {
  readonly name: string;
  readonly labelNames: readonly K[];
  set(labels: Labels<K>, value: number): void;
  inc(labels: Labels<K>, value?: number): void;
  dec(labels: Labels<K>, value?: number): void;
}

/** Content type of the text exposition (ztunnel's, for `/metrics` and `/stats/prometheus`). */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; charset=utf-8';

/** Rebuilds `labels` in declared order, refusing a missing or extra name (a bug in the caller). */
function ordered<K extends string>(family: string, labelNames: readonly K[], labels: Labels<K>): Record<K, string> {
  const out = {} as Record<K, string>;
  for (const name of labelNames) {
    const value = labels[name];
    if (typeof value !== 'string') throw new TypeError(`metric ${family}: label "${name}" is missing`);
    out[name] = value;
  }
  if (Object.keys(labels).length !== labelNames.length) {
    const extra = Object.keys(labels).filter((k) => !(labelNames as readonly string[]).includes(k));
    throw new TypeError(`metric ${family}: unknown label(s) ${extra.join(', ')}`);
  }
  return out;
}

export class MetricsRegistry {
  readonly #registry = new Registry();
  readonly #counters = new Set<string>();

  /** The underlying prom-client registry, for the exposition and for prom-client's own collectors. */
  get prom(): Registry {
    return this.#registry;
  }

  /** Names of the counter families (the exposition writes their HELP/TYPE under the base name). */
  get counterNames(): ReadonlySet<string> {
    return this.#counters;
  }

  counter<const K extends string>(spec: FamilySpec<K>): CounterFamily<K> {
    const labelNames = [...spec.labelNames];
    const counter = new Counter<K>({ name: spec.name, help: spec.help, labelNames, registers: [this.#registry] });
    this.#counters.add(spec.name);
    return {
      name: spec.name,
      labelNames: spec.labelNames,
      inc: (labels, value = 1) => counter.inc(ordered(spec.name, spec.labelNames, labels), value),
    };
  }

  gauge<const K extends string>(spec: FamilySpec<K>): GaugeFamily<K> {
    const labelNames = [...spec.labelNames];
    const gauge = new Gauge<K>({ name: spec.name, help: spec.help, labelNames, registers: [this.#registry] });
    return {
      name: spec.name,
      labelNames: spec.labelNames,
      set: (labels, value) => gauge.set(ordered(spec.name, spec.labelNames, labels), value),
      inc: (labels, value = 1) => gauge.inc(ordered(spec.name, spec.labelNames, labels), value),
      dec: (labels, value = 1) => gauge.dec(ordered(spec.name, spec.labelNames, labels), value),
    };
  }
}

export function createMetricsRegistry(): MetricsRegistry {
  return new MetricsRegistry();
}

/**
 * Content type of OpenMetrics 1.0 text: served when the scraper's Accept asks for it, as Prometheus does by
 * default, and as ztunnel does (reference ztunnel.md §6).
 */
export const OPENMETRICS_CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8';

/**
 * Families with samples, HELP/TYPE under the base name for counters when `baseNames` (every family typed `counter`
 * whose name ends in `_total`, also one made with prom-client directly), else as prom-client names them.
 */
async function render(registry: MetricsRegistry, baseNames: boolean): Promise<string> {
  const text = await registry.prom.metrics();
  const out: string[] = [];
  let header: string[] = [];
  let samples: string[] = [];
  const flush = (): void => {
    if (samples.length > 0) out.push(...header, ...samples);
    header = [];
    samples = [];
  };
  const baseOf = (name: string): string => name.slice(0, -'_total'.length);
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) (\S+)(.*)$/.exec(line);
    if (meta) {
      const [, kind, name = '', rest = ''] = meta;
      if (kind === 'HELP') flush();
      const counter = name.endsWith('_total') && (registry.counterNames.has(name) || (kind === 'TYPE' && rest.trim() === 'counter'));
      if (baseNames && counter) {
        // prom-client writes HELP before TYPE: rename the family's HELP line too once TYPE says counter.
        header = header.map((h) => (h.startsWith(`# HELP ${name} `) || h === `# HELP ${name}` ? `# HELP ${baseOf(name)}${h.slice(`# HELP ${name}`.length)}` : h));
        header.push(`# ${kind} ${baseOf(name)}${rest}`);
      } else {
        header.push(`# ${kind} ${name}${rest}`);
      }
    }
    else samples.push(line);
  }
  flush();
  return out.length > 0 ? `${out.join('\n')}\n` : '';
}

/**
 * The exposition shaped like ztunnel's (the OpenMetrics body without its `# EOF`): families without samples are
 * omitted, and a counter's HELP/TYPE lines use the base name while its samples keep the `_total` suffix.
 */
export async function renderPrometheus(registry: MetricsRegistry): Promise<string> {
  return render(registry, true);
}

/**
 * A scrape's answer, negotiated on its Accept header: OpenMetrics (`renderPrometheus` and `# EOF`) when asked for,
 * else the classic text format (0.0.4), where HELP/TYPE name a family exactly as its samples are named (a counter's
 * `_total` included): in that format a base-name TYPE line would leave the `_total` samples untyped, and
 * `promtool check metrics` reports them as having no help.
 */
export async function exposition(registry: MetricsRegistry, accept: string | undefined): Promise<{ readonly contentType: string; readonly body: string }> {
  if (accept !== undefined && /application\/openmetrics-text/i.test(accept)) {
    return { contentType: OPENMETRICS_CONTENT_TYPE, body: `${await render(registry, true)}# EOF\n` };
  }
  return { contentType: PROMETHEUS_CONTENT_TYPE, body: await render(registry, false) };
}
