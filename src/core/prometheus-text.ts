/**
 * A small reader of the Prometheus text exposition (format 0.0.4, and the OpenMetrics text our proxies serve):
 * the samples, each with its metric name, labels and value. Pure. A line it cannot read is skipped and named in
 * `problems` (`line 12: ...`), so one bad line never hides the rest. Comments (`# HELP`, `# TYPE`, `# EOF`),
 * blank lines and timestamps are ignored; exemplars (`# {...}` after the value) are dropped.
 */

export interface PromSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface PromText {
  readonly samples: readonly PromSample[];
  /** One line per line skipped: `line N: reason`. */
  readonly problems: readonly string[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;
/** At most this many problems are listed; the rest are counted. */
const MAX_PROBLEMS = 20;

/** Parses a float as Prometheus writes them (`+Inf`, `-Inf`, `NaN` included). */
function parseValue(text: string): number | undefined {
  if (text === '+Inf' || text === 'Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return undefined;
  return Number(text);
}

/** The labels between `{` and `}` starting at `text[0] === '{'`; returns them and the rest after `}`. */
function parseLabels(text: string): { labels: Record<string, string>; rest: string } | string {
  const labels: Record<string, string> = {};
  let i = 1;
  const skipSpaces = (): void => {
    while (text[i] === ' ' || text[i] === '\t') i++;
  };
  for (;;) {
    skipSpaces();
    if (text[i] === '}') return { labels, rest: text.slice(i + 1) };
    const name = LABEL_NAME.exec(text.slice(i))?.[0];
    if (!name) return `bad label name at column ${i + 1}`;
    i += name.length;
    skipSpaces();
    if (text[i] !== '=') return `expected = after label ${name}`;
    i++;
    skipSpaces();
    if (text[i] !== '"') return `expected a quoted value for label ${name}`;
    i++;
    let value = '';
    for (;;) {
      const c = text[i];
      if (c === undefined) return `unterminated value of label ${name}`;
      if (c === '"') break;
      if (c === '\\') {
        const next = text[i + 1];
        if (next === 'n') value += '\n';
        else if (next === '\\' || next === '"') value += next;
        else return `bad escape \\${next ?? ''} in label ${name}`;
        i += 2;
        continue;
      }
      value += c;
      i++;
    }
    i++;
    if (Object.hasOwn(labels, name)) return `label ${name} repeated`;
    labels[name] = value;
    skipSpaces();
    if (text[i] === ',') i++;
    else if (text[i] !== '}') return `expected , or } after label ${name}`;
  }
}

export function parsePrometheusText(text: string): PromText {
  const samples: PromSample[] = [];
  const problems: string[] = [];
  let skipped = 0;
  const problem = (line: number, reason: string): void => {
    skipped++;
    if (problems.length < MAX_PROBLEMS) problems.push(`line ${line}: ${reason}`);
  };
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const line = (lines[n] ?? '').replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) continue;
    const name = NAME.exec(line)?.[0];
    if (!name) {
      problem(n + 1, 'does not start with a metric name');
      continue;
    }
    let rest = line.slice(name.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith('{')) {
      const parsed = parseLabels(rest);
      if (typeof parsed === 'string') {
        problem(n + 1, parsed);
        continue;
      }
      labels = parsed.labels;
      rest = parsed.rest;
    }
    // Drop an exemplar, then: value [timestamp].
    const hash = rest.indexOf(' # ');
    if (hash >= 0) rest = rest.slice(0, hash);
    const fields = rest.trim().split(/\s+/);
    const value = parseValue(fields[0] ?? '');
    if (value === undefined || fields.length > 2 || fields[0] === '') {
      problem(n + 1, `bad value ${JSON.stringify(rest.trim())} for ${name}`);
      continue;
    }
    samples.push({ name, labels, value });
  }
  if (skipped > problems.length) problems.push(`... and ${skipped - problems.length} more lines skipped`);
  return { samples, problems };
}

/** The sum of the samples named `name` whose labels include every pair of `match`. */
export function sumSamples(samples: readonly PromSample[], name: string, match: Readonly<Record<string, string>> = {}): number {
  let sum = 0;
  for (const s of samples) if (s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  return sum;
}
