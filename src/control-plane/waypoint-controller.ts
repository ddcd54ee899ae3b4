import type { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';
import { Backoff, type BackoffOptions } from '../core/backoff.ts';
import { ErrorCode } from '../core/error-codes.ts';
import { errorCode, errorMessage, MeshError } from '../core/errors.ts';
import type { Handle } from '../core/lifecycle.ts';
import type { Logger } from '../core/logger.ts';
import { startInformer, type InformerEvents } from '../workload-api/kube/informer.ts';
import { KubeApiError, KubePath, kubeRest, type KubeRest } from './kube-rest.ts';
import { localWaypointEnv, loopbackAllocator, type LaunchedWaypoint, type WaypointLauncher } from './waypoint-launcher.ts';
import {
  Annotation,
  CONTROLLER_FIELD_MANAGER,
  CONTROLLER_VERSION,
  decideWaypoint,
  gatewayClassStatus,
  Label,
  normalizeGateway,
  sameStatus,
  serviceIps,
  waypointStatus,
  type Gateway,
  type GatewayStatus,
  type ServiceView,
  type WaypointDecision,
  type GatewayClass,
  type WaypointRenderOptions,
  waypointGatewayClass,
  WAYPOINT_CLASS,
} from './waypoint-objects.ts';

/**
 * The waypoint controller: for each Gateway of class `istio-waypoint` (of our revision) it makes
 * the waypoint exist and reports it in the Gateway's status.
 * - cluster mode: server-side applies the ServiceAccount, Deployment and Service (force, field
 *   manager `istio.io/gateway-controller`), and writes the Gateway status (Accepted, Programmed, and
 *   the addresses once the Service has a ClusterIP). Deleting the Gateway deletes the objects
 *   through their ownerReferences (the API server's garbage collector).
 * - local mode (`--config-dir`, no cluster): the same decision starts a local waypoint process
 *   through a `WaypointLauncher`, restarts it when it exits or its configuration changes, stops it
 *   when the Gateway goes, and hands the status to `onStatus` (there is no API server to write to).
 * Decisions are the pure functions of waypoint-objects.ts; this file only schedules and writes.
 * Work is one queue of Gateway keys: events coalesce, a failed key is retried with backoff.
 */

/** What the controller reads Gateways (and Services) from: the kube informer, or the config-dir source. */
export interface ObjectFeed<T> extends EventEmitter<InformerEvents<T>> {
  readonly synced: Promise<void>;
  list(): T[];
  get(namespace: string | undefined, name: string): T | undefined;
}

export interface ClusterModeOptions {
  readonly kind: 'cluster';
  readonly kubeConfig: KubeConfig;
  /** Shared informers, when the control plane already runs them; started (and closed) here otherwise. */
  readonly gateways?: ObjectFeed<Gateway>;
  /** Services labeled `gateway.networking.k8s.io/gateway-name` (at least). */
  readonly services?: ObjectFeed<ServiceView>;
  /** Re-apply everything this often, to repair objects changed behind our back; 5 min by default, 0 = never. */
  readonly resyncMs?: number;
}

export interface LocalModeOptions {
  readonly kind: 'local';
  readonly gateways: ObjectFeed<Gateway>;
  readonly launcher: WaypointLauncher;
  /**
   * Each Gateway's status when it changes (`undefined` once the Gateway is gone). Its only address is
   * the waypoint's IP: no Service carries the hostname here. The receiver keeps it over what the
   * source says (the translator's `overlayStatus`).
   */
  readonly onStatus?: (key: string, status: GatewayStatus | undefined, gateway: Gateway | undefined) => void;
  /** The address each waypoint gets (its INSTANCE_IP and the Gateway address); 127.0.10.N by default. */
  readonly addressFor?: (key: string) => string;
  /** Delays between restarts of a waypoint that keeps exiting; 1 s doubling to 60 s by default. */
  readonly restartBackoff?: BackoffOptions;
  /** A waypoint that ran this long before it exited is restarted without delay and its backoff reset; 10 s by default. */
  readonly healthyRunMs?: number;
  /** NODE_NAME of local waypoints; the host name by default. */
  readonly nodeName?: string;
}

export interface WaypointControllerOptions {
  readonly render: WaypointRenderOptions;
  readonly mode: ClusterModeOptions | LocalModeOptions;
  readonly logger: Logger;
  /** The clock of status transition times. */
  readonly now?: () => Date;
  /** Retry delays of a failed Gateway; 200 ms doubling to 30 s by default. */
  readonly retry?: BackoffOptions;
}

export interface WaypointControllerHandle extends Handle {
  /** Resolves once the Gateways present at start have been reconciled once. */
  readonly synced: Promise<void>;
  /** The status last computed for a Gateway (written to the API in cluster mode). */
  status(namespace: string, name: string): GatewayStatus | undefined;
  /** Local mode: the running waypoint processes by key. */
  running(): ReadonlyMap<string, { readonly pid: number | undefined; readonly address: string }>;
}

const keyOf = (namespace: string | undefined, name: string): string => `${namespace ?? 'default'}/${name}`;
const splitKey = (key: string): [string, string] => {
  const i = key.indexOf('/');
  return [key.slice(0, i), key.slice(i + 1)];
};

interface LocalEntry {
  readonly hash: string;
  readonly address: string;
  readonly launched: LaunchedWaypoint;
}

export function startWaypointController(options: WaypointControllerOptions): WaypointControllerHandle {
  const log = options.logger.child({ component: 'waypoint-controller' });
  const now = options.now ?? (() => new Date());
  const retryOptions = options.retry ?? { initialMs: 200, maxMs: 30_000, jitter: 0.2 };
  const mode = options.mode;
  const owned: Array<{ close(): Promise<void> }> = [];
  const statuses = new Map<string, GatewayStatus>();
  const retries = new Map<string, { backoff: Backoff; timer?: NodeJS.Timeout }>();
  const dirty = new Set<string>();
  /** Cluster mode, per key: the JSON of the objects last applied; an unchanged Gateway is not re-applied. */
  const applied = new Map<string, string>();
  /** Cluster mode, per key: the status last written. */
  const written = new Map<string, GatewayStatus>();
  let pumping: Promise<void> | undefined;
  let closed = false;

  // --- sources
  let gateways: ObjectFeed<Gateway>;
  let services: ObjectFeed<ServiceView> | undefined;
  let rest: KubeRest | undefined;
  if (mode.kind === 'cluster') {
    rest = kubeRest(mode.kubeConfig);
    if (mode.gateways) gateways = mode.gateways;
    else {
      const informer = startInformer<Gateway>({ kubeConfig: mode.kubeConfig, path: KubePath.gateways(), logger: options.logger });
      owned.push(informer);
      gateways = informer;
    }
    if (mode.services) services = mode.services;
    else {
      const informer = startInformer<ServiceView>({ kubeConfig: mode.kubeConfig, path: KubePath.services(), labelSelector: Label.gatewayName, logger: options.logger });
      owned.push(informer);
      services = informer;
    }
  } else {
    gateways = mode.gateways;
  }

  const onGateway = (gw: Gateway): void => {
    if (typeof gw?.metadata?.name === 'string') enqueue(keyOf(gw.metadata.namespace, gw.metadata.name));
  };
  gateways.on('add', onGateway);
  gateways.on('update', onGateway);
  gateways.on('delete', onGateway);
  const gatewayOf = (svc: ServiceView): string | undefined => {
    const gw = svc.metadata.labels?.[Label.gatewayName];
    return gw ? keyOf(svc.metadata.namespace, gw) : undefined;
  };
  // Only what can change the outcome wakes a Gateway: a new Service, a new address, a Service gone
  // (then re-applied). A write that changed nothing else must not start another pass.
  const onServiceAdd = (svc: ServiceView): void => {
    const key = gatewayOf(svc);
    if (key) enqueue(key);
  };
  const onServiceUpdate = (svc: ServiceView, previous: ServiceView): void => {
    const key = gatewayOf(svc);
    if (key && serviceIps(svc).join() !== serviceIps(previous).join()) enqueue(key);
  };
  const onServiceDelete = (svc: ServiceView): void => {
    const key = gatewayOf(svc);
    if (!key) return;
    applied.delete(key);
    enqueue(key);
  };
  services?.on('add', onServiceAdd);
  services?.on('update', onServiceUpdate);
  services?.on('delete', onServiceDelete);

  function enqueue(key: string): void {
    if (closed) return;
    dirty.add(key);
    pumping ??= pump().finally(() => (pumping = undefined));
  }

  async function pump(): Promise<void> {
    // Let a burst of events coalesce before the first pass.
    await new Promise((resolve) => setImmediate(resolve));
    while (dirty.size > 0 && !closed) {
      const key = dirty.values().next().value as string;
      dirty.delete(key);
      try {
        await reconcile(key);
        const r = retries.get(key);
        if (r) {
          clearTimeout(r.timer);
          retries.delete(key);
        }
      } catch (err) {
        if (closed) return;
        scheduleRetry(key, err);
      }
    }
  }

  function scheduleRetry(key: string, err: unknown): void {
    let r = retries.get(key);
    if (!r) {
      r = { backoff: new Backoff(retryOptions) };
      retries.set(key, r);
    }
    const delay = r.backoff.next();
    log.warn({ code: errorCode(err), err: errorMessage(err), gateway: key, retryInMs: Math.round(delay) }, 'reconciling a waypoint failed; retrying');
    clearTimeout(r.timer);
    r.timer = setTimeout(() => enqueue(key), delay);
    r.timer.unref();
  }

  // --- cluster mode

  async function reconcileCluster(key: string, gw: Gateway | undefined, decision: WaypointDecision | undefined): Promise<void> {
    const api = rest as KubeRest;
    if (!gw || !decision) {
      // Gone: the objects follow through their ownerReferences.
      applied.delete(key);
      written.delete(key);
      statuses.delete(key);
      return;
    }
    const [namespace, name] = splitKey(key);
    if (decision.kind === 'ignore') return;
    let service: ServiceView | undefined;
    if (decision.kind === 'deploy') {
      const { serviceAccount, deployment, service: svc } = decision.objects;
      const json = JSON.stringify(decision.objects);
      const cached = services?.get(namespace, decision.name);
      if (applied.get(key) !== json || !cached) {
        try {
          if (gw.metadata.annotations?.[Annotation.controllerVersion] !== CONTROLLER_VERSION) {
            // Bookkeeping only: without it (no patch right on gateways) the waypoint is still deployed.
            await api
              .mergePatch(KubePath.gateway(namespace, name), { metadata: { annotations: { [Annotation.controllerVersion]: CONTROLLER_VERSION } } }, CONTROLLER_FIELD_MANAGER)
              .catch((err: unknown) => log.warn({ code: ErrorCode.WAYPOINT_CONTROLLER_APPLY_FAILED, gateway: key, err: errorMessage(err) }, `could not annotate the Gateway with ${Annotation.controllerVersion}; going on without it`));
          }
          await api.apply(KubePath.serviceAccount(namespace, serviceAccount.metadata.name), serviceAccount, CONTROLLER_FIELD_MANAGER, true);
          await api.apply(KubePath.deployment(namespace, deployment.metadata.name), deployment, CONTROLLER_FIELD_MANAGER, true);
          service = await api.apply<ServiceView>(KubePath.service(namespace, svc.metadata.name), svc, CONTROLLER_FIELD_MANAGER, true);
        } catch (err) {
          applied.delete(key);
          throw new MeshError(ErrorCode.WAYPOINT_CONTROLLER_APPLY_FAILED, `applying the waypoint objects of ${key} failed: ${errorMessage(err)}`, { cause: err });
        }
        applied.set(key, json);
        log.info({ gateway: key, deployment: deployment.metadata.name, serviceAccount: serviceAccount.metadata.name }, 'waypoint objects applied');
      } else {
        service = cached;
      }
    } else {
      log.warn({ code: ErrorCode.WAYPOINT_CONTROLLER_REFUSED, gateway: key, reason: decision.reason }, decision.message);
    }
    // Our last write is fresher than a cache that may lag behind it: transition times carry over from it.
    const ours = written.get(key);
    const status = waypointStatus(ours ? { ...gw, status: ours } : gw, decision, service, now());
    statuses.set(key, status);
    // The cache may lag behind our own last write: what we wrote last is not written again (the resync
    // forgets it, so a status someone else changed is repaired then).
    const last = written.get(key);
    if (!sameStatus(gw.status, status) && !(last && sameStatus(last, status))) {
      try {
        // A merge patch replaces lists whole; addresses that no longer hold are removed with null.
        await api.mergePatch(KubePath.gatewayStatus(namespace, name), { status: { ...status, addresses: status.addresses ?? null } }, CONTROLLER_FIELD_MANAGER);
        written.set(key, status);
      } catch (err) {
        throw new MeshError(ErrorCode.WAYPOINT_CONTROLLER_STATUS_FAILED, `writing the status of ${key} failed: ${errorMessage(err)}`, { cause: err });
      }
      log.info({ gateway: key, programmed: status.addresses !== undefined }, 'gateway status written');
    }
  }

  // --- local mode
  const local = new Map<string, LocalEntry>();
  const crashes = new Map<string, Backoff>();
  const restartTimers = new Set<NodeJS.Timeout>();
  const addressFor = mode.kind === 'local' ? (mode.addressFor ?? loopbackAllocator()) : loopbackAllocator();
  const nodeName = mode.kind === 'local' ? (mode.nodeName ?? hostname()) : hostname();

  async function stopLocal(key: string): Promise<void> {
    const entry = local.get(key);
    if (!entry) return;
    local.delete(key);
    await entry.launched.close();
  }

  async function reconcileLocal(key: string, gw: Gateway | undefined, decision: WaypointDecision | undefined): Promise<void> {
    const m = mode as LocalModeOptions;
    if (!gw || !decision || decision.kind === 'ignore') {
      await stopLocal(key);
      crashes.delete(key);
      if (statuses.delete(key)) m.onStatus?.(key, undefined, gw);
      return;
    }
    if (decision.kind === 'refuse') {
      await stopLocal(key);
      log.warn({ code: ErrorCode.WAYPOINT_CONTROLLER_REFUSED, gateway: key, reason: decision.reason }, decision.message);
      const status = waypointStatus(gw, decision, undefined, now());
      statuses.set(key, status);
      m.onStatus?.(key, status, gw);
      return;
    }
    const address = addressFor(key);
    const env = localWaypointEnv(decision, { address, nodeName });
    const hash = JSON.stringify(env);
    let entry = local.get(key);
    if (entry && entry.hash !== hash) {
      log.info({ gateway: key }, 'waypoint configuration changed; restarting the local waypoint');
      await stopLocal(key);
      entry = undefined;
    }
    if (!entry) {
      let launched: LaunchedWaypoint;
      try {
        launched = await m.launcher.start({ key, name: decision.name, namespace: splitKey(key)[0], serviceAccount: decision.serviceAccountName, address, env });
      } catch (err) {
        throw err instanceof MeshError ? err : new MeshError(ErrorCode.WAYPOINT_LAUNCHER_START_FAILED, `starting the local waypoint ${key} failed: ${errorMessage(err)}`, { cause: err });
      }
      const started: LocalEntry = { hash, address, launched };
      const startedAt = performance.now();
      entry = started;
      local.set(key, started);
      void launched.exited.then(({ code, signal }) => {
        if (closed || local.get(key) !== started) return;
        local.delete(key);
        // A crash loop backs off as a kubelet's does; a process that ran a while starts over from the first delay.
        let crash = crashes.get(key);
        if (!crash) crashes.set(key, (crash = new Backoff(m.restartBackoff ?? { initialMs: 1000, maxMs: 60_000, jitter: 0.2 })));
        if (performance.now() - startedAt >= (m.healthyRunMs ?? 10_000)) crash.reset();
        const delay = crash.next();
        log.warn({ code: ErrorCode.WAYPOINT_LAUNCHER_EXITED, gateway: key, exitCode: code, signal, restartInMs: Math.round(delay) }, 'the local waypoint exited; restarting it');
        const timer = setTimeout(() => {
          restartTimers.delete(timer);
          enqueue(key);
        }, delay);
        timer.unref();
        restartTimers.add(timer);
      });
    }
    const before = statuses.get(key) ?? gw.status;
    const status = waypointStatus({ ...gw, ...(before ? { status: before } : {}) }, decision, { metadata: { name: decision.name }, spec: { clusterIP: entry.address } }, now(), { hostname: false });
    if (!statuses.has(key) || !sameStatus(statuses.get(key), status)) {
      statuses.set(key, status);
      m.onStatus?.(key, status, gw);
    }
  }

  async function reconcile(key: string): Promise<void> {
    const [namespace, name] = splitKey(key);
    const raw = gateways.get(namespace, name);
    const gw = raw === undefined ? undefined : normalizeGateway(raw);
    if (raw !== undefined && gw === undefined) log.warn({ code: ErrorCode.WAYPOINT_CONTROLLER_REFUSED, gateway: key }, 'a Gateway without a usable metadata.name is skipped');
    const decision = gw ? decideWaypoint(gw, options.render) : undefined;
    if (decision?.kind === 'ignore') log.debug({ gateway: key, why: decision.why }, 'not ours');
    if (mode.kind === 'cluster') await reconcileCluster(key, gw, decision);
    else await reconcileLocal(key, gw, decision);
  }

  // --- the GatewayClass (cluster mode): created when missing, then marked Accepted; retried until it is
  let classTimer: NodeJS.Timeout | undefined;
  const classBackoff = new Backoff(retryOptions);
  async function ensureGatewayClass(): Promise<void> {
    const api = rest as KubeRest;
    try {
      let gc = await api.get<GatewayClass>(KubePath.gatewayClass(WAYPOINT_CLASS));
      if (!gc) {
        gc = await api.apply<GatewayClass>(KubePath.gatewayClass(WAYPOINT_CLASS), waypointGatewayClass(), CONTROLLER_FIELD_MANAGER, false);
        log.info({ gatewayClass: WAYPOINT_CLASS }, 'gateway class created');
      }
      const status = gatewayClassStatus(gc, now());
      if (status) await api.mergePatch(KubePath.gatewayClassStatus(WAYPOINT_CLASS), { status }, CONTROLLER_FIELD_MANAGER);
    } catch (err) {
      if (closed) return;
      if (err instanceof KubeApiError && err.status === 403) {
        log.warn({ code: ErrorCode.WAYPOINT_CONTROLLER_APPLY_FAILED, err: errorMessage(err) }, `not permitted to create or accept the ${WAYPOINT_CLASS} GatewayClass; create it by hand (controllerName istio.io/mesh-controller)`);
        return;
      }
      if (err instanceof KubeApiError && err.status === 404) {
        log.warn({ code: ErrorCode.WAYPOINT_CONTROLLER_APPLY_FAILED, err: errorMessage(err) }, `the Gateway API is not served (its CRDs are not installed): no ${WAYPOINT_CLASS} GatewayClass and no waypoints until they are`);
        return;
      }
      const delay = classBackoff.next();
      log.warn({ code: ErrorCode.WAYPOINT_CONTROLLER_APPLY_FAILED, err: errorMessage(err), retryInMs: Math.round(delay) }, `ensuring the ${WAYPOINT_CLASS} GatewayClass failed; retrying`);
      classTimer = setTimeout(() => void ensureGatewayClass(), delay);
      classTimer.unref();
    }
  }
  const classDone = mode.kind === 'cluster' ? ensureGatewayClass() : Promise.resolve();

  // --- start
  let resync: NodeJS.Timeout | undefined;
  const synced = (async () => {
    await Promise.all([gateways.synced, services?.synced]);
    for (const gw of gateways.list()) onGateway(gw);
    while (pumping && !closed) await pumping;
  })();
  synced.catch(() => {});
  if (mode.kind === 'cluster' && (mode.resyncMs ?? 300_000) > 0) {
    resync = setInterval(() => {
      applied.clear();
      written.clear();
      for (const gw of gateways.list()) onGateway(gw);
    }, mode.resyncMs ?? 300_000);
    resync.unref();
  }

  let closing: Promise<void> | undefined;
  return {
    synced,
    status: (namespace, name) => statuses.get(keyOf(namespace, name)),
    running: () => new Map([...local].map(([k, e]) => [k, { pid: e.launched.pid, address: e.address }])),
    close() {
      closing ??= (async () => {
        closed = true;
        clearInterval(resync);
        clearTimeout(classTimer);
        for (const timer of restartTimers) clearTimeout(timer);
        await classDone;
        for (const r of retries.values()) clearTimeout(r.timer);
        gateways.off('add', onGateway);
        gateways.off('update', onGateway);
        gateways.off('delete', onGateway);
        services?.off('add', onServiceAdd);
        services?.off('update', onServiceUpdate);
        services?.off('delete', onServiceDelete);
        await pumping?.catch(() => {});
        await Promise.all([...local.keys()].map((k) => stopLocal(k)));
        for (const h of owned.reverse()) await h.close();
        log.info('waypoint controller stopped');
      })();
      return closing;
    },
  };
}
