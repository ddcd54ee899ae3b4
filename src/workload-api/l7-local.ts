import { EventEmitter } from 'node:events';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type protobuf from 'protobufjs';
import { ErrorCode } from '../core/error-codes.ts';
import { MeshError, errorCode, errorMessage } from '../core/errors.ts';
import { onceClose, type Handle } from '../core/lifecycle.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import { fail, ok, type Result } from '../core/result.ts';
import { parseYaml } from '../core/yaml.ts';
import { parseDurationMs } from './env.ts';
import { destinationPolicyFromWire, l7AuthorizationFromWire, requestAuthenticationFromWire, routeConfigurationFromWire } from './l7-convert.ts';
import type { L7Store } from './l7-store.ts';
import type { DestinationPolicy, L7AuthorizationPolicy, RequestAuthentication, RouteConfiguration } from './l7-types.ts';
import { CONVERSION, messageType } from './proto.ts';

/**
 * The waypoint's local L7 file (ours, the counterpart of ztunnel's LOCAL_XDS_PATH): YAML with
 * `routeConfigurations`, `destinationPolicies` and `authorizationPolicies`, each entry in the proto's
 * JSON shape (camelCase field names, enum names, a duration as `"1.5s"`, a wrapper as its number).
 * Unknown fields are refused and every error names its path; it goes through the same conversion as xDS.
 */

export interface L7Config {
  readonly routes: readonly RouteConfiguration[];
  readonly destinations: readonly DestinationPolicy[];
  readonly policies: readonly L7AuthorizationPolicy[];
  readonly authentications: readonly RequestAuthentication[];
}

const SECTIONS = {
  routeConfigurations: 'ambient.l7.RouteConfiguration',
  destinationPolicies: 'ambient.l7.DestinationPolicy',
  authorizationPolicies: 'ambient.l7.AuthorizationPolicy',
  requestAuthentications: 'ambient.l7.RequestAuthentication',
} as const;

const WRAPPERS = new Set(['google.protobuf.UInt32Value', 'google.protobuf.Int32Value', 'google.protobuf.BoolValue', 'google.protobuf.StringValue', 'google.protobuf.DoubleValue']);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Checks names against the message type and rewrites durations and wrappers into protobufjs' object form. */
function normalize(type: protobuf.Type, value: unknown, path: string, errors: string[]): unknown {
  if (!isObject(value)) {
    errors.push(`${path}: must be a mapping`);
    return {};
  }
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    const field = type.fields[key];
    if (!field) {
      errors.push(`${path}.${key}: unknown field`);
      continue;
    }
    field.resolve();
    const one = (item: unknown, at: string): unknown => {
      const rt = field.resolvedType;
      if (rt && 'fields' in rt) {
        const full = rt.fullName.replace(/^\./, '');
        if (full === 'google.protobuf.Duration') {
          if (typeof item !== 'string') return (errors.push(`${at}: must be a duration such as "1.5s"`), {});
          const ms = parseDurationMs(item);
          if (ms === undefined) return (errors.push(`${at}: ${JSON.stringify(item)} is not a duration`), {});
          return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
        }
        if (WRAPPERS.has(full)) return { value: item };
        return normalize(rt as protobuf.Type, item, at, errors);
      }
      return item;
    };
    if (field.map) {
      if (!isObject(v)) errors.push(`${path}.${key}: must be a mapping`);
      else out[key] = v;
    } else if (field.repeated) {
      if (!Array.isArray(v)) errors.push(`${path}.${key}: must be a list`);
      else out[key] = v.map((item, i) => one(item, `${path}.${key}[${i}]`));
    } else {
      out[key] = one(v, `${path}.${key}`);
    }
  }
  return out;
}

function wire<W>(fullName: string, value: unknown, path: string): Result<W> {
  const type = messageType(fullName);
  const errors: string[] = [];
  const normalized = normalize(type, value, path, errors) as Record<string, unknown>;
  if (errors.length > 0) return fail(...errors);
  let message;
  try {
    message = type.fromObject(normalized);
  } catch (err) {
    return fail(`${path}: ${errorMessage(err)}`);
  }
  const problem = type.verify(message);
  if (problem) return fail(`${path}: ${problem}`);
  return ok(type.toObject(message, CONVERSION) as W);
}

/** Parses the local L7 file (pure). */
export function parseL7Config(text: string): Result<L7Config> {
  const parsed = parseYaml(text);
  if (!parsed.ok) return parsed;
  const doc = parsed.value ?? {};
  if (!isObject(doc)) return fail('<root>: must be a mapping');
  const errors: string[] = [];
  for (const key of Object.keys(doc)) if (!(key in SECTIONS)) errors.push(`${key}: unknown field (one of ${Object.keys(SECTIONS).join(', ')})`);
  const list = (key: keyof typeof SECTIONS): unknown[] => {
    const v = doc[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) return (errors.push(`${key}: must be a list`), []);
    return v;
  };
  const each = <W, D>(key: keyof typeof SECTIONS, from: (w: W, path: string) => Result<D>): D[] => {
    const out: D[] = [];
    list(key).forEach((item, i) => {
      const path = `${key}[${i}]`;
      const w = wire<W>(SECTIONS[key], item, path);
      const d = w.ok ? from(w.value, path) : w;
      if (d.ok) out.push(d.value);
      else errors.push(...d.errors);
    });
    return out;
  };
  const routes = each('routeConfigurations', routeConfigurationFromWire);
  const destinations = each('destinationPolicies', destinationPolicyFromWire);
  const policies = each('authorizationPolicies', l7AuthorizationFromWire);
  const authentications = each('requestAuthentications', requestAuthenticationFromWire);
  const dup = (keys: string[], what: string) => keys.forEach((k, i) => keys.indexOf(k) !== i && errors.push(`${what}: duplicate ${k}`));
  dup(routes.map((r) => `${r.namespace}/${r.hostname}`), 'routeConfigurations');
  dup(destinations.map((d) => `${d.namespace}/${d.hostname}`), 'destinationPolicies');
  dup(policies.map((p) => `${p.namespace}/${p.name}`), 'authorizationPolicies');
  return errors.length > 0 ? fail(...errors) : ok({ routes, destinations, policies, authentications });
}

export interface L7LocalSourceEvents {
  reload: [config: L7Config];
  rejected: [errors: readonly string[]];
}

export interface L7LocalSource extends Handle, EventEmitter<L7LocalSourceEvents> {
  readonly config: L7Config;
}

/**
 * Loads the file into the store (an invalid first file throws CONFIG_INVALID with every problem) and,
 * with `watch`, reloads on change: a valid file replaces the whole L7 state, an invalid one is logged
 * and the last good state stays.
 */
export async function startL7LocalSource(options: { store: L7Store; path: string; watch?: boolean; logger?: Logger; debounceMs?: number }): Promise<L7LocalSource> {
  const log = (options.logger ?? silentLogger()).child({ component: 'l7-local-config' });
  const load = async (): Promise<Result<L7Config>> => {
    let text: string;
    try {
      text = await readFile(options.path, 'utf8');
    } catch (err) {
      return fail(`${options.path}: ${errorMessage(err)}`);
    }
    return parseL7Config(text);
  };
  const first = await load();
  if (!first.ok) throw new MeshError(ErrorCode.CONFIG_INVALID, `L7 config ${options.path} is invalid:\n  ${first.errors.join('\n  ')}`);
  options.store.replaceAll(first.value);
  const emitter = new EventEmitter<L7LocalSourceEvents>();
  let config = first.value;
  let watcher: FSWatcher | undefined;
  let timer: NodeJS.Timeout | undefined;
  if (options.watch) {
    const name = basename(options.path);
    watcher = watch(dirname(options.path), (_event, file) => {
      if (file !== null && file !== name && !String(file).startsWith('..')) return;
      clearTimeout(timer);
      timer = setTimeout(() => {
        void load().then((next) => {
          if (!watcher) return;
          if (next.ok) {
            config = next.value;
            options.store.replaceAll(next.value);
            log.info({ routes: next.value.routes.length, destinations: next.value.destinations.length, policies: next.value.policies.length }, 'L7 config reloaded');
            emitter.emit('reload', next.value);
          } else {
            log.warn({ code: ErrorCode.CONFIG_INVALID, errors: next.errors }, 'L7 config change refused; keeping the last good one');
            emitter.emit('rejected', next.errors);
          }
        });
      }, options.debounceMs ?? 50);
    });
    watcher.on('error', (err) => log.warn({ code: errorCode(err), err: errorMessage(err) }, 'L7 config watch failed'));
  }
  return Object.assign(emitter, {
    get config() {
      return config;
    },
    close: onceClose(async () => {
      clearTimeout(timer);
      watcher?.close();
      watcher = undefined;
    }),
  });
}
