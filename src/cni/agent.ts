import { HttpMethod, IsomorphicFetchHttpLibrary, KubeConfig, RequestContext, type V1Namespace, type V1Pod } from '@kubernetes/client-node';
import { ErrorCode } from '../core/error-codes.ts';
import { errorCode, errorMessage, MeshError } from '../core/errors.ts';
import { onceClose } from '../core/lifecycle.ts';
import type { Logger } from '../core/logger.ts';
import { closeFd, openNetns } from '../sys/netns.ts';
import { startInformer, type Informer } from '../workload-api/kube/index.ts';
import type { CniAgentConfig } from './agent-config.ts';
import { applyInpodRules, removeInpodRules, type NetnsSelector } from './apply-rules.ts';
import {
  AddOutcome, isAmbientPod, isPodTerminal, namespaceChangeMatters, nextRedirection, Redirection, REDIRECTION_ANNOTATION,
  redirectionPatch, ZTUNNEL_APP_LABEL, ZTUNNEL_APP_VALUE, type NamespaceView, type PodView, type RedirectionValue,
} from './enrollment.ts';
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
 * - Not done here: the host probe ipset (§1.9), the reconcile of in-pod rules on startup (§1.7), the
 *   upgrade/uninstall cleanup at shutdown, metrics.
 */

export interface CniAgentOptions {
  readonly logger: Logger;
  /** The API client config; default from `config.kubeconfig` (or the in-cluster service account). */
  readonly kubeConfig?: KubeConfig;
  readonly zdsTimeouts?: Partial<ZdsTimeouts>;
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
  /** The pods the agent tracks as enrolled or pending. */
  pods(): CniAgentPodDump[];
  close(): Promise<void>;
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

function describeSelector(netns: NetnsSelector): string {
  return netns.kind === 'path' ? netns.path : netns.name;
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

  const patchRedirection = async (pod: V1Pod, value: RedirectionValue | null): Promise<void> => {
    const ns = pod.metadata?.namespace ?? '';
    const name = pod.metadata?.name ?? '';
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new CniAgentError(ErrorCode.CNI_POD_ANNOTATE_FAILED, 'the kubeconfig has no current cluster', false);
    const url = `${cluster.server.replace(/\/+$/, '')}/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(name)}/status`;
    const ctx = new RequestContext(url, HttpMethod.PATCH);
    await kc.applySecurityAuthentication(ctx);
    ctx.setHeaderParam('Content-Type', 'application/merge-patch+json');
    ctx.setHeaderParam('Accept', 'application/json');
    ctx.setBody(JSON.stringify(redirectionPatch(value)));
    let status: number;
    let text: string;
    try {
      const response = await new IsomorphicFetchHttpLibrary().send(ctx).toPromise();
      status = response.httpStatusCode;
      text = await response.body.text();
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
        return { fd: openNetns(describeSelector(known)), selector: known };
      } catch (err) {
        if (path !== undefined) throw err;
        log.debug({ uid, netns: describeSelector(known), err: errorMessage(err) }, 'cached netns is gone; scanning procfs');
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
    const next = nextRedirection(current, { enroll: true }, outcome) as RedirectionValue | undefined;
    if (next !== undefined && next !== current) await patchRedirection(pod, next);
    state.redirection = next;
    if (failure !== undefined) throw failure;
    log.info({ pod: key, uid: view.uid, netns: describeSelector(state.netns!) }, 'pod added to the mesh');
  };

  const removePodFromMesh = async (pod: V1Pod, isDelete: boolean): Promise<void> => {
    const view = podView(pod);
    const key = `${view.namespace}/${view.name}`;
    const state = states.get(view.uid);
    states.delete(view.uid);
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
      requeue(namespace, name, undefined);
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
    if (!changeNeeded) return;
    if (!should) return removePodFromMesh(pod, false);
    const ips = podIps(pod);
    if (ips.length === 0) return;
    return addPodToMesh(pod, ips, undefined);
  };

  const requeue = (namespace: string, name: string, old: V1Pod | undefined): void => {
    if (!started || closed) return;
    const pod = pods.get(namespace, name);
    const uid = pod?.metadata?.uid ?? old?.metadata?.uid;
    if (uid === undefined) return;
    enqueue(uid, () => reconcile(namespace, name, old)).then(
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

  let plugin: PluginServerHandle | undefined;

  const close = onceClose(async () => {
    closed = true;
    for (const r of retries.values()) if (r.timer !== undefined) clearTimeout(r.timer);
    retries.clear();
    if (!readyResolved) resolveReady();
    await plugin?.close();
    await Promise.allSettled([pods.close(), namespaces.close()]);
    await Promise.allSettled([...queues.values()]);
    await zds?.close();
    log.info('cni agent stopped');
  });

  try {
    plugin = await startPluginServer({ socketPath: config.pluginSocket, deps: { lookupPod, addPodToMesh: pluginAdd }, logger: log });
  } catch (err) {
    await close();
    throw err;
  }

  const startup = async (): Promise<void> => {
    await Promise.all([pods.synced, namespaces.synced]);
    if (closed) throw new CniAgentError(ErrorCode.CNI_AGENT_START_FAILED, 'closed during startup', false);
    // §1.10 step 2: the snapshot.
    const snapshot = pods.list().filter((p) => {
      const view = podView(p);
      return annotationOf(p) === Redirection.Enabled && !isPodTerminal(view) && view.uid !== ''
        && !(view.namespace === config.enrollment.systemNamespace && view.labels?.[ZTUNNEL_APP_LABEL] === ZTUNNEL_APP_VALUE);
    });
    const wanted = new Map(snapshot.map((p) => [p.metadata?.uid ?? '', podIps(p)] as const));
    const found = wanted.size === 0 ? new Map() : await discoverPodNetns({ procRoot: config.procRoot, wantedPods: wanted, logger: log }).catch((err: unknown) => {
      log.warn({ err: errorMessage(err) }, 'scanning procfs for pod netns failed; the snapshot sends Keep only');
      return new Map();
    });
    const server = await startZdsServer({ path: config.ztunnelSocket, logger: log.child({ zds: true }), ...(options.zdsTimeouts && { timeouts: options.zdsTimeouts }) });
    if (closed) {
      await server.close();
      throw new CniAgentError(ErrorCode.CNI_AGENT_START_FAILED, 'closed during startup', false);
    }
    zds = server;
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
    pods: () => [...states.values()].map((s) => ({
      uid: s.uid, namespace: s.namespace, name: s.name, netns: s.netns === undefined ? undefined : describeSelector(s.netns), redirection: s.redirection,
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
