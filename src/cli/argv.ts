import { fail, ok, type Result } from '../core/result.ts';
import { parseDurationMs } from '../workload-api/env.ts';

/**
 * Command-line flags as istioctl (cobra/pflag) reads them: `--name value`, `--name=value`, `-n value`,
 * `-nvalue`, `-n=value`; booleans as `--wait`, `--wait=false`, `-w`, and grouped short booleans
 * (`-wA`); `--` ends the flags. Pure: argv in, flags and positional arguments out.
 */

export interface FlagSpec {
  readonly name: string;
  readonly short?: string;
  readonly kind: 'string' | 'boolean';
  /** For --help. */
  readonly help: string;
  /** Shown in --help. */
  readonly default?: string;
}

export interface ParsedArgs {
  readonly flags: Readonly<Record<string, string | boolean>>;
  readonly positionals: readonly string[];
}

function parseBool(name: string, value: string): Result<boolean> {
  if (/^(true|1|t)$/i.test(value)) return ok(true);
  if (/^(false|0|f)$/i.test(value)) return ok(false);
  return fail(`--${name}: "${value}" is not a boolean`);
}

export function parseArgs(args: readonly string[], specs: readonly FlagSpec[]): Result<ParsedArgs> {
  const flags: Record<string, string | boolean> = {};
  const positionals: string[] = [];
  const errors: string[] = [];
  const byName = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short as string, s]));
  const set = (spec: FlagSpec, value: string | undefined, next: () => string | undefined): void => {
    if (spec.kind === 'boolean') {
      if (value === undefined) flags[spec.name] = true;
      else {
        const b = parseBool(spec.name, value);
        if (b.ok) flags[spec.name] = b.value;
        else errors.push(...b.errors);
      }
      return;
    }
    const v = value ?? next();
    if (v === undefined) errors.push(`--${spec.name}: needs a value`);
    else flags[spec.name] = v;
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const next = (): string | undefined => (i + 1 < args.length ? (args[++i] as string) : undefined);
    if (arg === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
      const spec = byName.get(name);
      if (!spec) errors.push(`--${name}: unknown flag`);
      else set(spec, eq > 0 ? arg.slice(eq + 1) : undefined, next);
    } else if (arg.startsWith('-') && arg.length > 1) {
      // -abc: booleans may be grouped; a string flag takes the rest of the word (or `=value`) or the next argument.
      for (let j = 1; j < arg.length; j++) {
        const spec = byShort.get(arg.charAt(j));
        if (!spec) {
          errors.push(`-${arg.charAt(j)}: unknown shorthand flag`);
          break;
        }
        const rest = arg.slice(j + 1);
        if (spec.kind === 'string') {
          set(spec, rest === '' ? undefined : rest.replace(/^=/, ''), next);
          break;
        }
        if (rest.startsWith('=')) {
          set(spec, rest.slice(1), next);
          break;
        }
        set(spec, undefined, next);
      }
    } else {
      positionals.push(arg);
    }
  }
  return errors.length > 0 ? fail(...errors) : ok({ flags, positionals });
}

/** `  -n, --namespace string   help (default "x")` lines, like cobra's usage. */
export function flagHelp(specs: readonly FlagSpec[]): string {
  const left = specs.map((s) => `${s.short ? `-${s.short}, ` : '    '}--${s.name}${s.kind === 'string' ? ' string' : ''}`);
  const width = Math.max(...left.map((l) => l.length)) + 3;
  return specs.map((s, i) => `  ${(left[i] as string).padEnd(width)}${s.help}${s.default !== undefined ? ` (default ${JSON.stringify(s.default)})` : ''}\n`).join('');
}

export function stringFlag(parsed: ParsedArgs, name: string): string | undefined {
  const v = parsed.flags[name];
  return typeof v === 'string' ? v : undefined;
}

export function boolFlag(parsed: ParsedArgs, name: string, fallback = false): boolean {
  const v = parsed.flags[name];
  return typeof v === 'boolean' ? v : fallback;
}

/** A Go-style duration (`90s`, `1m30s`, `500ms`) in milliseconds; a bare number is seconds. */
export function durationMs(text: string): number | undefined {
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  return parseDurationMs(text);
}
