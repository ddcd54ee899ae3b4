import { HttpMethod, IsomorphicFetchHttpLibrary, KubeConfig, RequestContext, type V1Namespace, type V1Pod } from '@kubernetes/client-node';
import { ErrorCode } from '../core/error-codes.ts';
import { errorCode, errorMessage, MeshError } from '../core/errors.ts';
import { onceClose } from '../core/lifecycle.ts';
import type { Logger } from '../core/logger.ts';
import { TokenBucket } from '../core/token-bucket.ts';
import { closeFd, openNetns } from '../sys/netns.ts';
import { startInformer, type Informer } from '../workload-api/kube/index.ts';
import type { CniAgentConfig } from './agent-config.ts';
import { createCniAgentMetrics, startAgentMonitoring, type AgentMonitoring } from './agent-monitoring.ts';
import {
  addProbeIps, applyInpodRules, describeNetns, installHostProbe, removeHostProbe, removeInpodRules, removeProbeIps, type NetnsSelector,
} from './apply-rules.ts';
import {
  AddOutcome, isAmbientPod, isPodTerminal, namespaceChangeMatters, nextRedirection, Redirection, REDIRECTION_ANNOTATION,
  redirectionPatch, ZTUNNEL_APP_LABEL, ZTUNNEL_APP_VALUE, type NamespaceView, type PodView, type RedirectionValue,
} from './enrollment.ts';
import { installPlugin, pluginEntry, type CniInstallHandle, type EnablementSelectorJson } from './installer.ts';
import { discoverPodNetns } from './netns-discovery.ts';
import type { CmdAddEvent, PodLookup } from './plugin.ts';
import { startPluginServer, type PluginServerHandle } from './plugin-server.ts';
import { startZdsServer, type ZdsServer, type ZdsTimeouts } from './zds-server.ts';

/**
 * The node agent (reference istio-ambient.md §1.6, §1.10): informers for this node's pods and all namespaces, the
 * plugin event socket (CNI ADD → AddPodToMesh), the ZDS server ztunnel connects to, and reconciliation of pod
 * UPDATE/DELETE and namespace label changes.
 *
 * Decisions beyond the reference text (and what is left out):
 * - Startup order: informers and the plugin socket first; plugin ADDs wait for `ready`. After the caches sync,
 *   the snapshot (annotated `enabled`, not terminal, not a ztunnel) is registered with the ZDS server (Add with the
 *   netns found in procfs, else Keep), and only then the ZDS socket is opened, so the first ztunnel gets it all.
 *   Then every cached pod is reconciled once (what Istio's namespace ADD re-queue achieves).
 * - The work queue is one serialized chain per pod uid; retryable failures (no ztunnel ack, a failed patch) are
 *   retried with a 5 ms → 5 s doubling delay per pod, without Istio's overall 10 qps rate limiter.
 * - "Is it enrolled?" uses the value this agent last wrote when it has one, else the annotation, so our own patch
 *   lagging in the informer cache does not trigger a second Add.
 * - The plugin installer runs inside the agent (istio-cni's install-cni does both in one process); `/readyz`
 *   waits for it and for the agent.
 * - The host probe rules and ipsets (§1.9) are deleted and re-created at start (10 tries, 2 s apart, then the
 *   start fails), re-synced from the snapshot, and kept per pod: IPs added after the ZDS ack, re-asserted when
 *   an enrolled pod's IPs change, removed first on RemovePodFromMesh, only where the entry's comment is the
 *   pod uid.
 * - Startup reconcile of in-pod rules (§1.7, `AMBIENT_RECONCILE_POD_RULES_ON_STARTUP`): every snapshotted pod
 *   whose netns was found gets `applyInpodRules`, which already replaces stale rules in one atomic
 *   iptables-restore transaction per table, so istio-cni's temporary DROP guardrails are not needed.
 * - The work queue takes Istio's overall limit (10 qps, burst 100) on top of the per-pod backoff; CNI ADDs
 *   from the plugin are not limited (the runtime is waiting on them).
 * - Shutdown (§1.10): when our DaemonSet still exists and is not being deleted it is an upgrade or a restart,
 *   and the plugin config, binary, host rules and ipsets stay; otherwise (or with
 *   `AMBIENT_DISABLE_SAFE_UPGRADE`) they are removed. Istio's extra node-affinity check is not made. When the
 *   API server cannot be asked, the agent leaves everything in place (the safe side: new pods stall rather
 *   than run uncaptured).
 */

export interface CniAgentOptions {
  readonly logger: Logger;
  /** The API client config; default from `config.kubeconfig` (or the in-cluster service account). */
  readonly kubeConfig?: KubeConfig;
  readonly zdsTimeouts?: Partial<ZdsTimeouts>;
  /** Tries and delay for installing the host probe rules at start (default 10 × 2 s). */
  readonly hostRuleAttempts?: { readonly count: number; readonly delayMs: number };
}

export interface CniAgentPodDump {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  /** The netns path the agent uses for this pod, if known. */
  readonly netns: string | undefined;
  /** The redirection value this agent last wrote. */
  readonly redirection: RedirectionValue | undefined;
}

export interface CniAgent {
  /** Resolves once the snapshot is registered and the ZDS socket is open; rejects if startup fails. */
  readonly ready: Promise<void>;
  /** The bound metrics (15014) and readiness (8000) ports. */
  readonly ports: { readonly metrics: number; readonly readiness: number };
  /** The installer, when `INSTALL_CNI` is on. */
  readonly installer: CniInstallHandle | undefined;
  /** The pods the agent tracks as enrolled or pending. */
  pods(): CniAgentPodDump[];
  /** Stops; then, unless this is an upgrade (see shutdownCleanup), uninstalls the plugin and the host rules. */
  close(): Promise<void>;
}

export type ShutdownCleanup = 'leave' | 'uninstall';

/**
 * What to do with the node's plugin config, binary and host rules at shutdown (§1.10): our DaemonSet still
 * there and not being deleted means an upgrade or a restart (leave them, so new pods wait for the next agent
 * instead of starting uncaptured); gone means uninstall. `unknown` (the API server could not say) leaves them.
 */
export function shutdownCleanup(daemonSet: 'present' | 'deleting' | 'absent' | 'unknown', disableSafeUpgrade: boolean): ShutdownCleanup {
  if (disableSafeUpgrade) return 'uninstall';
  return daemonSet === 'absent' || daemonSet === 'deleting' ? 'uninstall' : 'leave';
}

export class CniAgentError extends MeshError {
  /** False when retrying cannot help (no netns, rules failed): the pod is dropped. */
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, retryable: boolean, cause?: unknown) {
    super(code, message, cause === undefined ? undefined : { cause });
    this.retryable = retryable;
  }
}

const LOOKUP_ATTEMPTS = 10;
const LOOKUP_DELAY_MS = 10;
const RETRY_INITIAL_MS = 5;
const RETRY_MAX_MS = 5000;
const QUEUE_QPS = 10;
const QUEUE_BURST = 100;
const HOST_RULE_ATTEMPTS = { count: 10, delayMs: 2000 };
const DAEMONSET_LOOKUP_TIMEOUT_MS = 3000;

interface PodState {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  netns: NetnsSelector | undefined;
  redirection: RedirectionValue | undefined;
}

function podView(pod: V1Pod): PodView {
  return {
    name: pod.metadata?.name ?? '',
    namespace: pod.metadata?.namespace ?? '',
    uid: pod.metadata?.uid ?? '',
    labels: pod.metadata?.labels,
    annotations: pod.metadata?.annotations,
    hostNetwork: pod.spec?.hostNetwork,
    phase: pod.status?.phase,
  };
}

function namespaceView(ns: V1Namespace | undefined, name: string): NamespaceView {
  return { name, labels: ns?.metadata?.labels };
}

function podIps(pod: V1Pod): string[] {
  const ips = (pod.status?.podIPs ?? []).map((p) => p.ip).filter((ip): ip is string => typeof ip === 'string' && ip !== '');
  if (ips.length === 0 && pod.status?.podIP) ips.push(pod.status.podIP);
  return ips;
}

function annotationOf(pod: V1Pod): string | undefined {
  return pod.metadata?.annotations?.[REDIRECTION_ANNOTATION];
}


const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

export async function startCniAgent(config: CniAgentConfig, options: CniAgentOptions): Promise<CniAgent> {
  const log = options.logger.child({ component: 'cni-agent' });
  const kc = options.kubeConfig ?? loadKubeConfig(config);
  const states = new Map<string, PodState>();
  const queues = new Map<string, Promise<void>>();
  const retries = new Map<string, { attempt: number; timer: NodeJS.Timeout | undefined }>();
  let closed = false;
  let started = false;
  let zds: ZdsServer | undefined;
  const metrics = createCniAgentMetrics();
  const bucket = new TokenBucket(QUEUE_QPS, QUEUE_BURST);
  const hostRules = { attempts: options.hostRuleAttempts ?? HOST_RULE_ATTEMPTS };

  const pods: Informer<V1Pod> = startInformer<V1Pod>({
    kubeConfig: kc, path: '/api/v1/pods', fieldSelector: `spec.nodeName=${config.nodeName}`, logger: log.child({ informer: 'pods' }),
  });
  const namespaces: Informer<V1Namespace> = startInformer<V1Namespace>({
    kubeConfig: kc, path: '/api/v1/namespaces', logger: log.child({ informer: 'namespaces' }),
  });
  // Unhandled if closed before sync; `ready` reports the failure.
  pods.synced.catch(() => {});
  namespaces.synced.catch(() => {});

  // ---- the annotation ----

  /** One API request with the kubeconfig's server and credentials; resolves with the status and body text. */
  const kubeRequest = async (method: HttpMethod, path: string, body?: { readonly contentType: string; readonly json: unknown }): Promise<{ status: number; text: string }> => {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    const ctx = new RequestContext(`${cluster.server.replace(/\/+$/, '')}${path}`, method);
    await kc.applySecurityAuthentication(ctx);
    ctx.setHeaderParam('Accept', 'application/json');
    if (body !== undefined) {
      ctx.setHeaderParam('Content-Type', body.contentType);
      ctx.setBody(JSON.stringify(body.json));
    }
    const response = await new IsomorphicFetchHttpLibrary().send(ctx).toPromise();
    return { status: response.httpStatusCode, text: await response.body.text() };
  };

  const patchRedirection = async (pod: V1Pod, value: RedirectionValue | null): Promise<void> => {
    const ns = pod.metadata?.namespace ?? '';
    const name = pod.metadata?.name ?? '';
    let status: number;
    let text: string;
    try {
      ({ status, text } = await kubeRequest(HttpMethod.PATCH, `/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(name)}/status`, {
        contentType: 'application/merge-patch+json', json: redirectionPatch(value),
      }));
    } catch (err) {
      throw new CniAgentError(ErrorCode.CNI_POD_ANNOTATE_FAILED, `patching ${ns}/${name} status failed: ${errorMessage(err)}`, true, err);
    }
    if (status < 200 || status >= 300) {
      throw new CniAgentError(ErrorCode.CNI_POD_ANNOTATE_FAILED, `patching ${ns}/${name} status failed with HTTP ${status}: ${text.slice(0, 200)}`, status !== 404);
    }
  };

  // ---- AddPodToMesh / RemovePodFromMesh (§1.6) ----

  /** Opens the pod's netns: the given path (CNI event), the cached one, or found in procfs by the pod's IPs. */
  const openPodNetns = async (uid: string, ips: readonly string[], path: string | undefined): Promise<{ fd: number; selector: NetnsSelector }> => {
    const known = path !== undefined ? { kind: 'path', path } as const : states.get(uid)?.netns;
    if (known !== undefined) {
      try {
        return { fd: openNetns(describeNetns(known)), selector: known };
      } catch (err) {
        if (path !== undefined) throw err;
        log.debug({ uid, netns: describeNetns(known), err: errorMessage(err) }, 'cached netns is gone; scanning procfs');
      }
    }
    const found = await discoverPodNetns({ procRoot: config.procRoot, wantedPods: new Map([[uid, ips]]), logger: log });
    const hit = found.get(uid);
    if (hit === undefined) throw new Error(`no process of pod ${uid} with one of ${ips.join(', ') || 'no IPs'} found under ${config.procRoot}`);
    return { fd: hit.fd, selector: { kind: 'path', path: `${config.procRoot.replace(/\/+$/, '')}/${hit.pid}/ns/net` } };
  };

  const addPodToMesh = async (pod: V1Pod, ips: readonly string[], netnsPath: string | undefined): Promise<void> => {
    const view = podView(pod);
    const key = `${view.namespace}/${view.name}`;
    if (zds === undefined) throw new CniAgentError(ErrorCode.CNI_POD_NOT_ACKED, `${key}: the agent is not ready`, true);
    const state: PodState = states.get(view.uid) ?? { uid: view.uid, namespace: view.namespace, name: view.name, netns: undefined, redirection: undefined };
    const current = state.redirection ?? annotationOf(pod);
    states.set(view.uid, state); // §1.6 step 1

    let outcome: AddOutcome = AddOutcome.Acked;
    let failure: CniAgentError | undefined;
    let opened: { fd: number; selector: NetnsSelector } | undefined;
    try {
      opened = await openPodNetns(view.uid, ips, netnsPath);
      state.netns = opened.selector;
      await applyInpodRules(opened.selector, config.rules);
    } catch (err) {
      if (opened !== undefined) closeFd(opened.fd);
      outcome = AddOutcome.SetupFailed;
      failure = new CniAgentError(
        errorCode(err) === ErrorCode.CNI_RULES_APPLY_FAILED ? ErrorCode.CNI_RULES_APPLY_FAILED : ErrorCode.CNI_POD_NETNS_FAILED,
        `${key}: ${errorMessage(err)}`, false, err,
      );
    }
    if (opened !== undefined && outcome !== AddOutcome.SetupFailed) {
      try {
        await zds.addPod({
          uid: view.uid, name: view.name, namespace: view.namespace, serviceAccount: pod.spec?.serviceAccountName || 'default', netnsFd: opened.fd,
        });
      } catch (err) {
        outcome = AddOutcome.NoAck;
        failure = new CniAgentError(ErrorCode.CNI_POD_NOT_ACKED, `${key}: ztunnel did not take the pod: ${errorMessage(err)}`, true, err);
      }
    }
    if (outcome === AddOutcome.SetupFailed) {
      // Non-retryable: the pod leaves the cache, no annotation is written (§1.6 step 3).
      states.delete(view.uid);
      if (zds.pods().includes(view.uid)) await zds.removePod(view.uid).catch(() => {});
      throw failure;
    }
    if (outcome === AddOutcome.Acked) {
      // §1.6 step 5: the kubelet's probes to this pod get the probe source from now on.
      await addProbeIps(config.hostNetns, view.uid, ips, config.hostProbe).catch((err: unknown) => {
        log.warn({ pod: key, code: errorCode(err), err: errorMessage(err) }, 'adding the pod to the host probe set failed; its kubelet probes will be captured');
      });
    }
    const next = nextRedirection(current, { enroll: true }, outcome) as RedirectionValue | undefined;
    if (next !== undefined && next !== current) await patchRedirection(pod, next);
    state.redirection = next;
    if (failure !== undefined) throw failure;
    log.info({ pod: key, uid: view.uid, netns: describeNetns(state.netns!) }, 'pod added to the mesh');
  };

  const removePodFromMesh = async (pod: V1Pod, isDelete: boolean): Promise<void> => {
    const view = podView(pod);
    const key = `${view.namespace}/${view.name}`;
    const state = states.get(view.uid);
    states.delete(view.uid);
    await removeProbeIps(config.hostNetns, view.uid, config.hostProbe).catch((err: unknown) => {
      log.warn({ pod: key, code: errorCode(err), err: errorMessage(err) }, 'removing the pod from the host probe set failed');
    });
    if (!isDelete) {
      let selector = state?.netns;
      let fd: number | undefined;
      if (selector === undefined && podIps(pod).length > 0) {
        try {
          ({ fd, selector } = await openPodNetns(view.uid, podIps(pod), undefined));
        } catch (err) {
          log.debug({ pod: key, err: errorMessage(err) }, 'no netns found to remove the in-pod rules from');
        }
      }
      try {
        if (selector !== undefined) await removeInpodRules(selector, config.rules);
      } catch (err) {
        log.warn({ pod: key, code: errorCode(err), err: errorMessage(err) }, 'removing the in-pod rules failed');
      } finally {
        if (fd !== undefined) closeFd(fd);
      }
    }
    try {
      await zds?.removePod(view.uid);
    } catch (err) {
      log.warn({ pod: key, code: errorCode(err), err: errorMessage(err) }, 'DelWorkload failed');
    }
    if (!isDelete && (annotationOf(pod) !== undefined || state?.redirection !== undefined)) await patchRedirection(pod, null);
    log.info({ pod: key, uid: view.uid, isDelete }, 'pod removed from the mesh');
  };

  // ---- the work queue ----

  const enqueue = (uid: string, job: () => Promise<void>): Promise<void> => {
    const run = (queues.get(uid) ?? Promise.resolve()).then(job);
    const tail = run.catch(() => {}).finally(() => {
      if (queues.get(uid) === tail) queues.delete(uid);
    });
    queues.set(uid, tail);
    return run;
  };

  const scheduleRetry = (uid: string, namespace: string, name: string): void => {
    if (closed) return;
    const r = retries.get(uid) ?? { attempt: 0, timer: undefined };
    if (r.timer !== undefined) return;
    const delay = Math.min(RETRY_MAX_MS, RETRY_INITIAL_MS * 2 ** r.attempt++);
    r.timer = setTimeout(() => {
      r.timer = undefined;
      requeue(namespace, name, undefined, 'retry');
    }, delay).unref();
    retries.set(uid, r);
  };

  /** Pod UPDATE reconcile (§1.10), always on the current cached pod. */
  const reconcile = async (namespace: string, name: string, old: V1Pod | undefined): Promise<void> => {
    const pod = pods.get(namespace, name);
    if (pod === undefined || closed) return;
    const view = podView(pod);
    const state = states.get(view.uid);
    const current = state !== undefined ? state.redirection : annotationOf(pod);
    const captured = current === Redirection.Enabled || current === Redirection.Pending;
    if (captured && isPodTerminal(view)) return removePodFromMesh(old ?? pod, true);
    const should = isAmbientPod(view, namespaceView(namespaces.get(undefined, namespace), namespace), config.enrollment).enroll && !isPodTerminal(view);
    const changeNeeded = (current === Redirection.Enabled) !== should || current === Redirection.Pending;
    if (!changeNeeded) {
      // §1.9: an enrolled pod whose IPs changed gets its probe-set entries re-asserted.
      if (should && old !== undefined && podIps(old).join(',') !== podIps(pod).join(',') && podIps(pod).length > 0) {
        await removeProbeIps(config.hostNetns, view.uid, config.hostProbe);
        await addProbeIps(config.hostNetns, view.uid, podIps(pod), config.hostProbe);
      }
      return;
    }
    if (!should) return removePodFromMesh(pod, false);
    const ips = podIps(pod);
    if (ips.length === 0) return;
    return addPodToMesh(pod, ips, undefined);
  };

  const requeue = (namespace: string, name: string, old: V1Pod | undefined, type: 'update' | 'retry' = 'update'): void => {
    if (!started || closed) return;
    const pod = pods.get(namespace, name);
    const uid = pod?.metadata?.uid ?? old?.metadata?.uid;
    if (uid === undefined) return;
    const wait = bucket.take();
    enqueue(uid, async () => {
      if (wait > 0) await sleep(wait);
      metrics.reconcileEvents.inc({ type });
      return reconcile(namespace, name, old);
    }).then(
      () => retries.delete(uid),
      (err: unknown) => {
        const retryable = !(err instanceof CniAgentError) || err.retryable;
        log.warn({ pod: `${namespace}/${name}`, code: errorCode(err), err: errorMessage(err), retryable }, 'pod reconcile failed');
        if (retryable) scheduleRetry(uid, namespace, name);
        else retries.delete(uid);
      },
    );
  };

  const requeueNamespace = (namespace: string): void => {
    for (const pod of pods.list()) if (pod.metadata?.namespace === namespace) requeue(namespace, pod.metadata.name ?? '', undefined);
  };

  pods.on('update', (pod, previous) => requeue(pod.metadata?.namespace ?? '', pod.metadata?.name ?? '', previous));
  pods.on('delete', (pod) => {
    if (!started || closed) return;
    const view = podView(pod);
    const ann = annotationOf(pod);
    const matters = states.has(view.uid) || ann === Redirection.Enabled || ann === Redirection.Pending
      || isAmbientPod(view, namespaceView(namespaces.get(undefined, view.namespace), view.namespace), config.enrollment).enroll;
    if (!matters) return;
    const r = retries.get(view.uid);
    if (r?.timer !== undefined) clearTimeout(r.timer);
    retries.delete(view.uid);
    metrics.reconcileEvents.inc({ type: 'delete' });
    enqueue(view.uid, () => removePodFromMesh(pod, true)).catch((err: unknown) => {
      log.warn({ pod: `${view.namespace}/${view.name}`, code: errorCode(err), err: errorMessage(err) }, 'removing a deleted pod failed');
    });
  });
  namespaces.on('add', (ns) => requeueNamespace(ns.metadata?.name ?? ''));
  namespaces.on('update', (ns, previous) => {
    const name = ns.metadata?.name ?? '';
    if (namespaceChangeMatters(namespaceView(previous, name), namespaceView(ns, name), config.enrollment)) requeueNamespace(name);
  });

  // ---- the plugin path ----

  let readyResolved = false;
  let readyFailed: unknown;
  let resolveReady!: () => void;
  const readyForPlugin = new Promise<void>((resolve) => (resolveReady = resolve));

  const lookupPod = async (namespace: string, name: string): Promise<PodLookup | undefined> => {
    for (let i = 0; i < LOOKUP_ATTEMPTS; i++) {
      if (i > 0) await sleep(LOOKUP_DELAY_MS);
      const pod = pods.get(namespace, name);
      const ns = namespaces.get(undefined, namespace);
      if (pod !== undefined && ns !== undefined) return { pod: podView(pod), namespace: namespaceView(ns, namespace) };
    }
    return undefined;
  };

  const pluginAdd = async (event: CmdAddEvent): Promise<void> => {
    if (!readyResolved) await readyForPlugin;
    if (readyFailed !== undefined || closed) throw new CniAgentError(ErrorCode.CNI_POD_NOT_ACKED, 'the agent is not running', true);
    const pod = pods.get(event.PodNamespace, event.PodName);
    const uid = pod?.metadata?.uid;
    if (pod === undefined || uid === undefined) {
      throw new CniAgentError(ErrorCode.CNI_POD_NOT_FOUND, `pod ${event.PodNamespace}/${event.PodName} is not in the informer cache`, true);
    }
    const ips = event.IPs.map((ip) => ip.Address.IP);
    await enqueue(uid, () => addPodToMesh(pod, ips, event.Netns));
  };
  const countedPluginAdd = async (event: CmdAddEvent): Promise<void> => {
    try {
      await pluginAdd(event);
      metrics.pluginRequests.inc({ response_code: '200' });
    } catch (err) {
      metrics.pluginRequests.inc({ response_code: '500' });
      throw err;
    }
  };

  let plugin: PluginServerHandle | undefined;
  let monitoring: AgentMonitoring | undefined;
  let hostRulesInstalled = false;
  const installer: CniInstallHandle | undefined = config.install === undefined ? undefined : installPlugin({
    binSource: config.install.binSource,
    cniBinDir: config.install.binDir,
    cniConfDir: config.install.confDir,
    ...(config.install.confName !== undefined && { confName: config.install.confName }),
    entry: pluginEntry({
      cniAgentRunDir: config.cniAgentRunDir,
      enablementSelectors: config.enrollment.enablementSelectors as readonly EnablementSelectorJson[],
      excludeNamespaces: config.enrollment.excludeNamespaces,
      podNamespace: config.enrollment.systemNamespace,
    }),
    logger: log,
  });
  installer?.installed.catch(() => {});

  /** Whether our DaemonSet is still there (§1.10 upgrade detection). */
  const daemonSetState = async (): Promise<'present' | 'deleting' | 'absent' | 'unknown'> => {
    const path = `/apis/apps/v1/namespaces/${encodeURIComponent(config.podNamespace)}/daemonsets/${encodeURIComponent(config.daemonSetName)}`;
    try {
      const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timed out')), DAEMONSET_LOOKUP_TIMEOUT_MS).unref());
      const { status, text } = await Promise.race([kubeRequest(HttpMethod.GET, path), timeout]);
      if (status === 404) return 'absent';
      if (status !== 200) return 'unknown';
      const ds = JSON.parse(text) as { metadata?: { deletionTimestamp?: string } };
      return ds.metadata?.deletionTimestamp ? 'deleting' : 'present';
    } catch (err) {
      log.warn({ code: ErrorCode.CNI_CLEANUP_FAILED, err: errorMessage(err) }, 'cannot tell an upgrade from an uninstall; leaving the node as it is');
      return 'unknown';
    }
  };

  const close = onceClose(async () => {
    closed = true;
    for (const r of retries.values()) if (r.timer !== undefined) clearTimeout(r.timer);
    retries.clear();
    if (!readyResolved) resolveReady();
    await plugin?.close();
    const cleanup = shutdownCleanup(await daemonSetState(), config.disableSafeUpgrade);
    await Promise.allSettled([pods.close(), namespaces.close()]);
    await Promise.allSettled([...queues.values()]);
    await zds?.close();
    if (cleanup === 'uninstall') {
      await installer?.uninstall().catch((err: unknown) => log.warn({ code: errorCode(err), err: errorMessage(err) }, 'removing the CNI plugin failed'));
      if (hostRulesInstalled) {
        await removeHostProbe(config.hostNetns, config.hostProbe).catch((err: unknown) => {
          log.warn({ code: errorCode(err), err: errorMessage(err) }, 'removing the host probe rules failed');
        });
      }
    } else {
      await installer?.close();
    }
    await monitoring?.close();
    log.info({ cleanup }, 'cni agent stopped');
  });

  const pending = (): string[] => [
    ...(installer !== undefined && !installer.isInstalled() ? ['cni plugin installed'] : []),
    ...(started ? [] : ['node agent']),
  ];
  try {
    monitoring = await startAgentMonitoring({
      metrics, pending, monitoringPort: config.monitoringPort, readinessPort: config.readinessPort, logger: log,
    });
    plugin = await startPluginServer({ socketPath: config.pluginSocket, deps: { lookupPod, addPodToMesh: countedPluginAdd }, logger: log });
  } catch (err) {
    await close();
    throw err;
  }

  /** §1.9: the host probe rules and sets, deleted then created, with retries (the host may be busy at boot). */
  const setUpHostRules = async (): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        await installHostProbe(config.hostNetns, config.rules.ipv6, config.hostProbe);
        hostRulesInstalled = true;
        return;
      } catch (err) {
        log.warn({ code: errorCode(err), err: errorMessage(err), attempt }, 'installing the host probe rules failed');
        if (attempt >= hostRules.attempts.count || closed) throw err;
        await sleep(hostRules.attempts.delayMs);
      }
    }
  };

  const startup = async (): Promise<void> => {
    await Promise.all([pods.synced, namespaces.synced]);
    if (closed) throw new CniAgentError(ErrorCode.CNI_AGENT_START_FAILED, 'closed during startup', false);
    // §1.10 step 2: the snapshot.
    const snapshot = pods.list().filter((p) => {
      const view = podView(p);
      return annotationOf(p) === Redirection.Enabled && !isPodTerminal(view) && view.uid !== ''
        && !(view.namespace === config.enrollment.systemNamespace && view.labels?.[ZTUNNEL_APP_LABEL] === ZTUNNEL_APP_VALUE);
    });
    await setUpHostRules();
    for (const p of snapshot) {
      const ips = podIps(p);
      if (ips.length > 0) {
        await addProbeIps(config.hostNetns, p.metadata?.uid ?? '', ips, config.hostProbe).catch((err: unknown) => {
          log.warn({ pod: `${p.metadata?.namespace}/${p.metadata?.name}`, code: errorCode(err), err: errorMessage(err) }, 'restoring a pod in the host probe set failed');
        });
      }
    }
    const wanted = new Map(snapshot.map((p) => [p.metadata?.uid ?? '', podIps(p)] as const));
    const found = wanted.size === 0 ? new Map() : await discoverPodNetns({ procRoot: config.procRoot, wantedPods: wanted, logger: log }).catch((err: unknown) => {
      log.warn({ err: errorMessage(err) }, 'scanning procfs for pod netns failed; the snapshot sends Keep only');
      return new Map();
    });
    if (config.reconcileOnStartup) {
      // §1.7 reconcile, before the ZDS socket opens: whatever an older agent left, the current rules replace it
      // atomically. (Nothing may be awaited between opening the socket and registering the snapshot below, or a
      // ztunnel connecting meanwhile would get an empty snapshot and drop the pods.)
      for (const p of snapshot) {
        const hit = found.get(p.metadata?.uid ?? '');
        if (hit === undefined) continue;
        await applyInpodRules({ kind: 'path', path: `${config.procRoot.replace(/\/+$/, '')}/${hit.pid}/ns/net` }, config.rules).catch((err: unknown) => {
          log.warn({ pod: `${p.metadata?.namespace}/${p.metadata?.name}`, code: errorCode(err), err: errorMessage(err) }, 'reconciling the in-pod rules failed');
        });
      }
    }
    const server = await startZdsServer({ path: config.ztunnelSocket, logger: log.child({ zds: true }), ...(options.zdsTimeouts && { timeouts: options.zdsTimeouts }) });
    if (closed) {
      await server.close();
      throw new CniAgentError(ErrorCode.CNI_AGENT_START_FAILED, 'closed during startup', false);
    }
    zds = server;
    server.events.on('connected', (count) => metrics.ztunnelConnected.set({}, count));
    server.events.on('disconnected', (count) => metrics.ztunnelConnected.set({}, count));
    for (const p of snapshot) {
      const view = podView(p);
      const hit = found.get(view.uid);
      states.set(view.uid, {
        uid: view.uid, namespace: view.namespace, name: view.name, redirection: Redirection.Enabled,
        netns: hit === undefined ? undefined : { kind: 'path', path: `${config.procRoot.replace(/\/+$/, '')}/${hit.pid}/ns/net` },
      });
      if (hit === undefined) server.keepPod(view.uid);
      // No ztunnel can be connected yet: this caches the pod for the first one's snapshot.
      else server.addPod({ uid: view.uid, name: view.name, namespace: view.namespace, serviceAccount: p.spec?.serviceAccountName || 'default', netnsFd: hit.fd }).catch(() => {});
    }
    started = true;
    readyResolved = true;
    resolveReady();
    log.info({ snapshot: snapshot.length, withNetns: found.size }, 'cni agent ready');
    // Converge labels vs. annotations once (as Istio's namespace ADD re-queue does).
    for (const ns of namespaces.list()) requeueNamespace(ns.metadata?.name ?? '');
  };
  const ready = startup().catch((err: unknown) => {
    readyFailed = err;
    readyResolved = true;
    resolveReady();
    throw err instanceof MeshError ? err : new CniAgentError(ErrorCode.CNI_AGENT_START_FAILED, `cni agent failed to start: ${errorMessage(err)}`, false, err);
  });
  ready.catch(() => {});

  return {
    ready,
    ports: monitoring!.ports,
    installer,
    pods: () => [...states.values()].map((s) => ({
      uid: s.uid, namespace: s.namespace, name: s.name, netns: s.netns === undefined ? undefined : describeNetns(s.netns), redirection: s.redirection,
    })),
    close,
  };
}

function loadKubeConfig(config: CniAgentConfig): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (config.kubeconfig !== undefined) kc.loadFromFile(config.kubeconfig);
    else kc.loadFromCluster();
  } catch (err) {
    throw new CniAgentError(ErrorCode.CNI_AGENT_START_FAILED, `cannot load the kubeconfig ${config.kubeconfig ?? '(in-cluster)'}: ${errorMessage(err)}`, false, err);
  }
  return kc;
}
