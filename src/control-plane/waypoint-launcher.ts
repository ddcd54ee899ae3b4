import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { ErrorCode } from '../core/error-codes.ts';
import { MeshError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { WaypointDecision } from './waypoint-objects.ts';

/**
 * Local mode (no cluster): where a cluster would run the waypoint Deployment, a `WaypointLauncher`
 * starts a local process with the environment the Deployment's container would get, the downward
 * API fields filled in locally (pod name, namespace, service account, node, and an address of its
 * own on the loopback network, so several local waypoints do not collide on 15008/15020/15021).
 */

export interface LocalWaypointSpec {
  /** `namespace/gateway`. */
  readonly key: string;
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The address the waypoint owns (its INSTANCE_IP): the Gateway's address in local mode. */
  readonly address: string;
  readonly env: Readonly<Record<string, string>>;
}

export interface LaunchedWaypoint {
  readonly pid: number | undefined;
  /** Resolves when the process has exited, however it ended. */
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after the stop timeout; resolves once it has exited. */
  close(): Promise<void>;
}

export interface WaypointLauncher {
  start(spec: LocalWaypointSpec): Promise<LaunchedWaypoint>;
}

export class WaypointLaunchError extends MeshError {}

interface EnvVar {
  readonly name: string;
  readonly value?: string;
  readonly valueFrom?: { readonly fieldRef?: { readonly fieldPath?: string } };
}

/** Env that names files the pod mounts (its token, the root certificate): meaningless for a local process. */
const POD_MOUNT_ENV = new Set(['AUTH_TOKEN', 'XDS_ROOT_CA', 'CA_ROOT_CA']);

/**
 * The container env of a deploy decision with the downward-API fields resolved for a local process;
 * the variables that point into the pod's volumes are left out (the caller knows the local files).
 */
export function localWaypointEnv(decision: Extract<WaypointDecision, { kind: 'deploy' }>, local: { readonly address: string; readonly nodeName: string }): Record<string, string> {
  const meta = decision.objects.deployment.metadata;
  const namespace = meta.namespace ?? 'default';
  const fields: Record<string, string> = {
    'metadata.name': `${decision.name}-local`,
    'metadata.namespace': namespace,
    'status.podIP': local.address,
    'status.hostIP': local.address,
    'spec.serviceAccountName': decision.serviceAccountName,
    'spec.nodeName': local.nodeName,
  };
  const spec = decision.objects.deployment['spec'] as { template: { spec: { containers: Array<{ env: EnvVar[] }> } } };
  const env: Record<string, string> = {};
  for (const e of spec.template.spec.containers[0]?.env ?? []) {
    const path = e.valueFrom?.fieldRef?.fieldPath;
    const value = e.value ?? (path !== undefined ? fields[path] : undefined);
    if (value !== undefined && !POD_MOUNT_ENV.has(e.name)) env[e.name] = value;
  }
  return env;
}

/** Hands out 127.0.10.1, 127.0.10.2, ... one per key, and the same again for the same key. */
export function loopbackAllocator(prefix = '127.0.10.'): (key: string) => string {
  const given = new Map<string, string>();
  return (key) => {
    let address = given.get(key);
    if (!address) {
      address = `${prefix}${given.size + 1}`;
      given.set(key, address);
    }
    return address;
  };
}

export interface ProcessLauncherOptions {
  /** The program and its arguments, e.g. `[process.execPath, '<dist>/src/cli/ambientd.js', 'waypoint']`. */
  readonly command: readonly string[];
  /** The environment every waypoint starts from (PATH, ...); the spec's env and `env` go on top. */
  readonly baseEnv?: Readonly<Record<string, string | undefined>>;
  /** Set over each spec's env, e.g. local-mode `XDS_ROOT_CA`, `AUTH_TOKEN`, `FAKE_CA` or ports. */
  readonly env?: Readonly<Record<string, string>>;
  readonly logger: Logger;
  /** 10 s by default. */
  readonly stopTimeoutMs?: number;
  /** Arguments added per waypoint after `command`, e.g. `--bind-address <its address>`. */
  readonly args?: (spec: LocalWaypointSpec) => readonly string[];
  /** Each line the process writes; without it, its output goes to this process's stdout and stderr. */
  readonly output?: (key: string, stream: 'stdout' | 'stderr', line: string) => void;
}

/** The production launcher: one child process per waypoint, `ambientd waypoint` in practice. */
export function processWaypointLauncher(options: ProcessLauncherOptions): WaypointLauncher {
  const [program, ...args] = options.command;
  if (program === undefined) throw new WaypointLaunchError(ErrorCode.CONFIG_INVALID, 'the waypoint launcher needs a command');
  const log = options.logger.child({ component: 'waypoint-launcher' });
  return {
    async start(spec) {
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(options.baseEnv ?? {})) if (v !== undefined) env[k] = v;
      Object.assign(env, spec.env, options.env ?? {});
      const child = spawn(program, [...args, ...(options.args?.(spec) ?? [])], { env, stdio: ['ignore', options.output ? 'pipe' : 'inherit', options.output ? 'pipe' : 'inherit'] });
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
        child.once('exit', (code, signal) => resolve({ code, signal }));
        child.once('error', () => resolve({ code: null, signal: null }));
      });
      if (options.output) {
        const output = options.output;
        for (const stream of ['stdout', 'stderr'] as const) {
          const readable = child[stream];
          if (readable) createInterface({ input: readable }).on('line', (line) => output(spec.key, stream, line));
        }
      }
      try {
        await Promise.race([once(child, 'spawn'), once(child, 'error').then(([err]) => Promise.reject(err as Error))]);
      } catch (err) {
        throw new WaypointLaunchError(ErrorCode.WAYPOINT_LAUNCHER_START_FAILED, `starting the waypoint ${spec.key} (${program}) failed: ${(err as Error).message}`, { cause: err });
      }
      log.info({ waypoint: spec.key, pid: child.pid, address: spec.address }, 'local waypoint started');
      let closing: Promise<void> | undefined;
      return {
        pid: child.pid,
        exited,
        close() {
          closing ??= (async () => {
            if (child.exitCode !== null || child.signalCode !== null) return;
            child.kill('SIGTERM');
            const timer = setTimeout(() => child.kill('SIGKILL'), options.stopTimeoutMs ?? 10_000);
            timer.unref();
            await exited;
            clearTimeout(timer);
            log.info({ waypoint: spec.key, pid: child.pid }, 'local waypoint stopped');
          })();
          return closing;
        },
      };
    },
  };
}
