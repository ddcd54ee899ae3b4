import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { InformerEvents } from '../workload-api/kube/informer.ts';
import { parseStaticTokens } from './ca-auth.ts';
import type { ControlPlaneConfig } from './config.ts';
import type { WaypointControllerFactory } from './control-plane.ts';
import type { KubeObject } from './kube-objects.ts';
import type { ObjectChange, Translator, TranslatorExtension } from './translator.ts';
import { startWaypointController, type ObjectFeed } from './waypoint-controller.ts';
import { processWaypointLauncher, type WaypointLauncher } from './waypoint-launcher.ts';
import { decideWaypoint, normalizeGateway, type Gateway, type GatewayStatus, type WaypointRenderOptions } from './waypoint-objects.ts';

/**
 * How `ambientd control-plane` runs the waypoint controller (the `waypointController` hook of
 * `startControlPlane`):
 * - kubernetes mode: cluster mode with its own Gateway and Service informers on the same kubeconfig;
 * - local mode (`--config-dir`): the Gateways come from the translator (through `gatewayFeed`, a
 *   translator extension that sees every Gateway change of the folder), each waypoint becomes a local
 *   process, and what a cluster would add is given back to the translator: the Gateway's status
 *   address (`overlayStatus`, kept across reloads of the folder), and a Pod for the waypoint instance
 *   (so it has a Workload and an identity in the mesh).
 */

/** A translator extension that is also a Gateway feed for the controller: every Gateway the sources deliver. */
export interface GatewayFeedExtension extends TranslatorExtension, ObjectFeed<Gateway> {}

export function gatewayFeed(): GatewayFeedExtension {
  const items = new Map<string, Gateway>();
  const emitter = new EventEmitter<InformerEvents<Gateway>>();
  const keyOf = (obj: KubeObject) => `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
  return Object.assign(emitter, {
    name: 'waypoint-controller-gateways',
    kinds: ['Gateway'] as const,
    // The controller starts after the sources' first full translation, which delivered every Gateway here.
    synced: Promise.resolve(),
    apply(changes: readonly ObjectChange[]): void {
      for (const change of changes) {
        const key = keyOf(change.object);
        const previous = items.get(key);
        if (change.type === 'delete') {
          items.delete(key);
          if (previous) emitter.emit('delete', previous);
          continue;
        }
        const gw = change.object as unknown as Gateway;
        items.set(key, gw);
        if (previous) emitter.emit('update', gw, previous);
        else emitter.emit('add', gw);
      }
    },
    list: () => [...items.values()],
    get: (namespace: string | undefined, name: string) => items.get(`${namespace ?? ''}/${name}`),
  });
}

export interface WaypointHookOptions {
  /** The image of the waypoint Deployments (kubernetes mode); `WAYPOINT_IMAGE` in the CLI. */
  readonly image: string;
  /** Local mode: how to start `ambientd waypoint`, e.g. `[process.execPath, <ambientd.js>, 'waypoint']`. */
  readonly localCommand: readonly string[];
  /** Local mode: the environment local waypoints start from (PATH, ...). */
  readonly localBaseEnv?: Readonly<Record<string, string | undefined>>;
  /** Local mode: the Gateway feed passed to `startControlPlane` as an extension. */
  readonly feed: GatewayFeedExtension;
  /** Local mode: the control plane's xDS/CA address for local waypoints; `localhost:<grpc port>` by default (read when each starts). */
  readonly localXdsAddress?: () => string;
  /** Local mode: each line a waypoint writes (tests); by default they go to this process's stdout and stderr. */
  readonly localOutput?: (key: string, stream: 'stdout' | 'stderr', line: string) => void;
  /** Local mode: more arguments for each `ambientd waypoint` (tests: `--hbone-port 0` ...). */
  readonly localArgs?: readonly string[];
  /** Another launcher (tests). */
  readonly launcher?: WaypointLauncher;
  readonly revision?: string;
}

/** The render options that follow from the control plane's configuration. */
export function renderOptionsFor(config: ControlPlaneConfig, image: string, revision?: string): WaypointRenderOptions {
  const istiod = `istiod${revision ? `-${revision}` : ''}.${config.systemNamespace}.svc:15012`;
  return {
    clusterDomain: config.domainSuffix,
    trustDomain: config.trustDomain,
    clusterId: config.clusterId,
    xdsAddress: istiod,
    caAddress: istiod,
    image,
    ...(revision ? { revision } : {}),
  };
}

/** The Pod a cluster would run for a local waypoint: its Workload and identity in the mesh. */
export function localWaypointPod(gateway: Gateway, render: WaypointRenderOptions, address: string, nodeName: string): KubeObject | undefined {
  const decision = decideWaypoint(gateway, render);
  if (decision.kind !== 'deploy') return undefined;
  const template = (decision.objects.deployment['spec'] as { template: { metadata: { labels: Record<string, string>; annotations: Record<string, string> } } }).template;
  const namespace = gateway.metadata.namespace ?? 'default';
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `${decision.name}-local`, namespace, uid: `local-${namespace}-${decision.name}`, labels: template.metadata.labels, annotations: template.metadata.annotations },
    spec: { nodeName, serviceAccountName: decision.serviceAccountName, containers: [{ name: 'istio-proxy', ports: [{ name: 'metrics', containerPort: 15020 }, { name: 'status-port', containerPort: 15021 }] }] },
    status: { phase: 'Running', podIP: address, podIPs: [{ ip: address }], conditions: [{ type: 'Ready', status: 'True' }] },
  } as KubeObject;
}

export function waypointControllerHook(options: WaypointHookOptions): WaypointControllerFactory {
  return ({ config, kubeConfig, translator, logger }) => {
    const render = renderOptionsFor(config, options.image, options.revision);
    if (config.mode === 'kubernetes' && kubeConfig) {
      return startWaypointController({ render, logger, mode: { kind: 'cluster', kubeConfig } });
    }
    const nodeName = 'local';
    const rootCa = config.rootCertOut ? { XDS_ROOT_CA: config.rootCertOut, CA_ROOT_CA: config.rootCertOut } : {};
    const tokens = tokensByAccount(config.staticTokensFile, logger);
    // The control plane serves on localhost in local mode (its serving certificate names localhost).
    const xds = options.localXdsAddress ?? (() => `localhost:${config.grpcPort}`);
    const processes = processWaypointLauncher({
      command: options.localCommand,
      ...(options.localBaseEnv ? { baseEnv: options.localBaseEnv } : {}),
      // Each on its own address, so several local waypoints do not collide on 15008/15020/15021.
      args: (spec) => ['--bind-address', spec.address, ...(options.localArgs ?? [])],
      ...(options.localOutput ? { output: options.localOutput } : {}),
      logger,
    });
    const base = options.launcher ?? processes;
    const launcher: WaypointLauncher = {
      start: (spec) => {
        // Its CA token: the static token listed for its service account, if there is one.
        const token = tokens.get(`${spec.namespace}/${spec.serviceAccount}`);
        return base.start({ ...spec, env: { ...spec.env, XDS_ADDRESS: xds(), CA_ADDRESS: xds(), ...rootCa, ...(token ? { AUTH_TOKEN: token } : {}) } });
      },
    };
    return startWaypointController({
      render,
      logger,
      mode: {
        kind: 'local',
        gateways: options.feed,
        launcher,
        nodeName,
        onStatus: translatorWriter(translator, logger, render, nodeName),
      },
    });
  };
}

/**
 * What the cluster would have written, given to the translator: the Gateway with its status, and
 * the waypoint's Pod while a process runs (removed with it).
 */
function translatorWriter(translator: Translator, logger: Logger, render: WaypointRenderOptions, nodeName: string) {
  const pods = new Map<string, KubeObject>();
  return (key: string, status: GatewayStatus | undefined, gateway: Gateway | undefined): void => {
    const gw = gateway ? normalizeGateway(gateway) : undefined;
    const address = status?.addresses?.find((a) => a.type === 'IPAddress')?.value;
    const pod = gw && address ? localWaypointPod(gw, render, address, nodeName) : undefined;
    translator.hold();
    try {
      // Kept over what the config folder says, across its reloads.
      const [namespace, name] = [key.slice(0, key.indexOf('/')), key.slice(key.indexOf('/') + 1)];
      translator.overlayStatus('Gateway', namespace, name, status ? { ...status } : undefined);
      const before = pods.get(key);
      if (before && before.metadata?.name !== pod?.metadata?.name) translator.change({ kind: 'Pod', type: 'delete', object: before });
      if (pod) {
        translator.change({ kind: 'Pod', type: 'upsert', object: pod });
        pods.set(key, pod);
      } else pods.delete(key);
    } finally {
      translator.release();
    }
    logger.debug({ component: 'waypoint-controller', gateway: key, address }, 'local waypoint state given to the translator');
  };
}

/** `<ns>/<sa>` → its first token in the static token file (local mode's CA credentials). */
function tokensByAccount(file: string | undefined, logger: Logger): Map<string, string> {
  const out = new Map<string, string>();
  if (!file) return out;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    logger.warn({ component: 'waypoint-controller', file, err: errorMessage(err) }, 'cannot read the static tokens for local waypoints');
    return out;
  }
  const parsed = parseStaticTokens(text);
  if (!parsed.ok) return out;
  for (const t of parsed.value) {
    const key = `${t.account.namespace}/${t.account.serviceAccount}`;
    if (!out.has(key)) out.set(key, t.token);
  }
  return out;
}
