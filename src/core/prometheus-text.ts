/**
 * Reading Prometheus text exposition (what `/metrics` and `/stats/prometheus` serve): each sample line as a
 * name, its labels and its value. Comments and lines that do not parse are skipped, so a scrape of a
 * half-written or foreign page yields what it can.
 */

export interface MetricSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;

export function parsePrometheusText(text: string): MetricSample[] {
  const samples: MetricSample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const sample = parseLine(line);
    if (sample) samples.push(sample);
  }
  return samples;
}

function parseLine(line: string): MetricSample | undefined {
  const name = NAME.exec(line)?.[0];
  if (!name) return undefined;
  let i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] === '{') {
    i++;
    for (;;) {
      while (line[i] === ' ' || line[i] === ',') i++;
      if (line[i] === '}') {
        i++;
        break;
      }
      const key = NAME.exec(line.slice(i))?.[0];
      if (!key || line[i + key.length] !== '=' || line[i + key.length + 1] !== '"') return undefined;
      i += key.length + 2;
      let value = '';
      for (; i < line.length && line[i] !== '"'; i++) {
        if (line[i] === '\\') {
          const next = line[++i];
          value += next === 'n' ? '\n' : (next ?? '');
        } else value += line[i];
      }
      if (line[i] !== '"') return undefined;
      i++;
      labels[key] = value;
    }
  }
  const rest = line.slice(i).trim().split(/\s+/)[0] ?? '';
  const value = rest === '+Inf' ? Infinity : rest === '-Inf' ? -Infinity : Number(rest);
  if (rest === '' || (Number.isNaN(value) && rest !== 'NaN')) return undefined;
  return { name, labels, value };
}

/** The sum of the samples named `name` whose labels include every pair of `match`. */
export function sumSamples(samples: readonly MetricSample[], name: string, match: Readonly<Record<string, string>> = {}): number {
  let sum = 0;
  for (const s of samples) if (s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  return sum;
}
