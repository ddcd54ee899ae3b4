import { EventEmitter } from 'node:events';
import { errorMessage } from '../core/errors.ts';
import { encodeAddress, encodeAuthorization } from '../workload-api/encode.ts';
import { TypeUrl } from '../workload-api/proto.ts';
import type { ResourceSnapshot } from '../workload-api/snapshot.ts';
import { policyKey, serviceKey, type AuthorizationPolicy, type Service, type Workload } from '../workload-api/types.ts';
import { convertAuthorizationPolicy, policySelector } from './authorization.ts';
import {
  labelsOf, objectKey, selectorMatches, type EndpointSlice, type Gateway, type GatewayClass, type KubeAuthorizationPolicy, type KubeObject,
  type KubeService, type Namespace, type Node, type PeerAuthentication, type Pod, type ServiceEntry, type WorkloadEntry,
} from './kube-objects.ts';
import { conformObject } from './conform.ts';
import { endpointSliceWorkloads } from './endpoint-slice.ts';
import { convertPeerAuthentication, staticStrictPolicy, STATIC_STRICT_NAME } from './peer-authentication.ts';
import { Report, type ObjectReport } from './report.ts';
import { kubeServiceToService } from './service.ts';
import { serviceEntryServices, serviceEntryWorkloads, workloadEntryToWorkload } from './service-entry.ts';
import { DEFAULT_SETTINGS, type ClusterView, type TranslatorSettings } from './view.ts';
import { GATEWAY_NAME_LABEL, waypointAllowPolicy } from './waypoint.ts';
import { podToWorkload } from './workload.ts';

/**
 * The incremental translator: the one owner of the cluster state the control plane has seen (objects by kind, with
 * the indexes the translations need), and of what it published from each object. Sources call `change()`; changes
 * mark the outputs they can affect dirty, and one flush per event-loop turn recomputes only those, encodes them and
 * writes them to the xDS snapshot in one batch (which itself pushes only names whose bytes changed).
 *
 * What a change recomputes (everything else is left alone):
 * - Pod: that pod's workload. WorkloadEntry: its workload.
 * - Service: that service, plus the workloads of the namespace's pods and WorkloadEntries its old or new selector
 *   matches (their `services` maps), its EndpointSlices, plus the namespace's ServiceEntries (host collisions).
 * - EndpointSlice: its non-pod endpoint workloads, and the workloads of the pods its old and new endpoints point at.
 * - Node: the workloads of the pods on that node (locality).
 * - Namespace: everything in that namespace (waypoint labels, traffic distribution); the system namespace (network)
 *   or a namespace some Gateway selects attachments by: everything.
 * - Gateway: the objects that looked that waypoint up (found or not). GatewayClass: those of its Gateways.
 * - AuthorizationPolicy: that policy, and the workloads its old or new selector matches (in its namespace, or all
 *   namespaces from the root namespace).
 * - PeerAuthentication: every converted PeerAuthentication and the static strict policy (cheap), and the workloads
 *   of its namespace (all of them from the root namespace).
 * - ServiceEntry: its services and endpoint workloads, and the namespace's WorkloadEntries.
 * - Other kinds (HTTPRoute, GRPCRoute, whatever an extension asks for): stored, and handed to the extensions.
 *
 * Extensions are the plug-in point for other resource types (the waypoint's L7 configuration from HTTPRoute,
 * GRPCRoute, VirtualService, DestinationRule): each names the kinds it wants and, at every flush where some changed,
 * gets those changes with read access to the whole state and the snapshot to write its own type URLs into.
 */

export interface ObjectChange {
  readonly kind: string;
  readonly type: 'upsert' | 'delete';
  readonly object: KubeObject;
}

export interface ExtensionContext {
  readonly view: ClusterView;
  readonly snapshot: ResourceSnapshot;
  /** Every stored object of a kind (any kind the sources deliver). */
  objects(kind: string): Iterable<KubeObject>;
  object(kind: string, namespace: string | undefined, name: string): KubeObject | undefined;
}

export interface TranslatorExtension {
  readonly name: string;
  /** The kinds it translates; their changes come to `apply`, and sources are asked to watch them. */
  readonly kinds: readonly string[];
  /** The xDS type URLs it writes into the snapshot; the control plane's ADS server serves them too. */
  readonly typeUrls?: readonly string[];
  /** Called inside the flush's snapshot batch with the changes of its kinds since the last call (all of them at the first). */
  apply(changes: readonly ObjectChange[], context: ExtensionContext): void;
}

export interface TranslatorOptions {
  readonly snapshot: ResourceSnapshot;
  readonly settings?: Partial<TranslatorSettings>;
  readonly extensions?: readonly TranslatorExtension[];
  /** Flush by itself one event-loop turn after a change (default); false: only `flush()` does. */
  readonly autoFlush?: boolean;
}

/** One object's translation outcome, announced when its problems or conditions change. */
export interface ReportEvent {
  readonly kind: string;
  readonly key: string;
  readonly report: ObjectReport;
}

export interface FlushEvent {
  /** Sources recomputed. */
  readonly recomputed: number;
  /** xDS names written or deleted (changed bytes only). */
  readonly changedNames: number;
  readonly durationMs: number;
}

export interface TranslatorEvents {
  report: [ReportEvent];
  flush: [FlushEvent];
}

export interface TranslatorStats {
  readonly objects: Readonly<Record<string, number>>;
  readonly workloads: number;
  readonly services: number;
  readonly policies: number;
  readonly flushes: number;
  readonly objectsWithProblems: number;
}

type Ref = string;
const refOf = (kind: string, key: string): Ref => `${kind}\u0000${key}`;
const splitRef = (ref: Ref): [string, string] => {
  const i = ref.indexOf('\u0000');
  return [ref.slice(0, i), ref.slice(i + 1)];
};
const STATIC_REF = refOf('StaticPolicy', STATIC_STRICT_NAME);
/** Kinds translated into resources of their own (their reports come from the flush). */
const COMPUTED_KINDS: ReadonlySet<string> = new Set(['Pod', 'Service', 'ServiceEntry', 'WorkloadEntry', 'AuthorizationPolicy', 'PeerAuthentication', 'EndpointSlice']);

interface Published {
  readonly addresses: readonly string[];
  readonly policies: readonly string[];
  readonly workloads: number;
}

const EMPTY_PUBLISHED: Published = { addresses: [], policies: [], workloads: 0 };

interface Outputs {
  readonly addresses: Map<string, Buffer>;
  readonly policies: Map<string, Buffer>;
  workloads: number;
}
const nsOf = (obj: KubeObject): string => obj.metadata?.namespace ?? '';

function addTo<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(value);
}

function removeFrom<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(value);
  if (set.size === 0) map.delete(key);
}

const EMPTY_ITER: readonly never[] = [];

export class Translator extends EventEmitter<TranslatorEvents> {
  readonly settings: TranslatorSettings;
  readonly view: ClusterView;
  readonly #snapshot: ResourceSnapshot;
  readonly #extensions: readonly TranslatorExtension[];
  readonly #autoFlush: boolean;
  /** kind → key → object. */
  readonly #objects = new Map<string, Map<string, KubeObject>>();
  /** kind → namespace → key → object (namespaced kinds). */
  readonly #byNamespace = new Map<string, Map<string, Map<string, KubeObject>>>();
  readonly #podsByNode = new Map<string, Set<string>>();
  /** waypoint key → pod key → service account, of the waypoints' instance pods. */
  readonly #waypointPods = new Map<string, Map<string, string>>();
  /** pod key → EndpointSlice keys that point at it. */
  readonly #slicesByPod = new Map<string, Set<string>>();
  /** namespace → policy key → selector, for the sent WORKLOAD_SELECTOR policies. */
  readonly #selectorPolicies = new Map<string, Map<string, Readonly<Record<string, string>>>>();
  readonly #published = new Map<Ref, Published>();
  /** typeUrl\0name → the source that last wrote it. */
  readonly #owners = new Map<string, Ref>();
  readonly #reports = new Map<Ref, ObjectReport>();
  /** waypoint key → refs that looked it up; and back. */
  readonly #waypointUsers = new Map<string, Set<Ref>>();
  readonly #usedWaypoints = new Map<Ref, Set<string>>();
  readonly #dirty = new Set<Ref>();
  /** Auto-allocated ServiceEntry VIPs: `ns/host` → IP, the IPs in use, and which entry holds which keys. */
  readonly #vips = new Map<string, string>();
  readonly #vipsInUse = new Set<string>();
  readonly #vipHolders = new Map<Ref, Set<string>>();
  #allocating: Ref | undefined;
  /** Status set over the sources' (local mode), and the objects as the sources gave them. */
  readonly #statusOverlay = new Map<Ref, Readonly<Record<string, unknown>>>();
  readonly #sourceObjects = new Map<Ref, KubeObject>();
  /** Fields dropped at the door (wrong types), per object. */
  readonly #inputProblems = new Map<Ref, readonly string[]>();
  readonly #pendingExtension = new Map<TranslatorExtension, ObjectChange[]>();
  #held = 0;
  #scheduled = false;
  #flushes = 0;
  #network = '';

  constructor(options: TranslatorOptions) {
    super();
    this.settings = Object.freeze({ ...DEFAULT_SETTINGS, ...options.settings });
    this.#snapshot = options.snapshot;
    this.#extensions = options.extensions ?? [];
    this.#autoFlush = options.autoFlush ?? true;
    for (const ext of this.#extensions) this.#pendingExtension.set(ext, []);
    this.view = this.#makeView();
  }

  /** Kinds the extensions want, beyond the core ones. */
  extensionKinds(): string[] {
    return [...new Set(this.#extensions.flatMap((e) => e.kinds))];
  }

  /** The type URLs the extensions write. */
  extensionTypeUrls(): string[] {
    return [...new Set(this.#extensions.flatMap((e) => e.typeUrls ?? []))];
  }

  /** Stops flushing until `release()` (sources loading their first lists); holds nest. */
  hold(): void {
    this.#held++;
  }

  release(): void {
    if (this.#held > 0 && --this.#held === 0) this.#schedule();
  }

  /** Applies one object change from a source. */
  change(change: ObjectChange): void {
    const { kind, type } = change;
    const conformed = conformObject(kind, this.#withOverlay(kind, change.object));
    const object = conformed.object;
    const key = objectKey(object);
    if (!object.metadata?.name) {
      const name = key || '<unnamed>';
      this.#setReport(refOf(kind, name), kind, name, { problems: [...conformed.problems, 'metadata.name: required; object ignored'], conditions: [] });
      return;
    }
    const ref = refOf(kind, key);
    if (type === 'upsert') this.#sourceObjects.set(ref, change.object);
    else this.#sourceObjects.delete(ref);
    if (type === 'upsert' && conformed.problems.length > 0) this.#inputProblems.set(ref, conformed.problems);
    else this.#inputProblems.delete(ref);
    // Kinds without outputs of their own report their input problems now.
    if (!COMPUTED_KINDS.has(kind)) this.#setReport(ref, kind, key, { problems: [...(this.#inputProblems.get(ref) ?? [])], conditions: [] });
    const previous = this.#objects.get(kind)?.get(key);
    if (type === 'upsert') this.#store(kind, key, object, previous);
    else if (previous) this.#unstore(kind, key, previous);
    else return;
    const current = type === 'upsert' ? object : undefined;
    this.#markDependents(kind, key, current, previous);
    for (const ext of this.#extensions) if (ext.kinds.includes(kind)) this.#pendingExtension.get(ext)!.push(change);
    this.#schedule();
  }

  /**
   * Sets (or with undefined, clears) the `status` of an object over what its source says, and keeps it there
   * across later changes from the source. For local mode, where no API server holds status: the waypoint
   * controller publishes a Gateway's address with `overlayStatus('Gateway', ns, name, { addresses: [...] })`.
   */
  overlayStatus(kind: string, namespace: string | undefined, name: string, status: Readonly<Record<string, unknown>> | undefined): void {
    const key = namespace ? `${namespace}/${name}` : name;
    const ref = refOf(kind, key);
    if (status === undefined) this.#statusOverlay.delete(ref);
    else this.#statusOverlay.set(ref, status);
    const source = this.#sourceObjects.get(ref);
    if (source) this.change({ kind, type: 'upsert', object: source });
  }

  #withOverlay(kind: string, obj: KubeObject): KubeObject {
    const status = this.#statusOverlay.get(refOf(kind, objectKey(obj)));
    return status === undefined ? obj : ({ ...obj, status } as KubeObject);
  }

  /** Recomputes everything (what the first full push does). */
  markAll(): void {
    for (const key of this.#keys('Pod')) this.#dirty.add(refOf('Pod', key));
    for (const key of this.#keys('Service')) this.#dirty.add(refOf('Service', key));
    for (const key of this.#keys('ServiceEntry')) this.#dirty.add(refOf('ServiceEntry', key));
    for (const key of this.#keys('WorkloadEntry')) this.#dirty.add(refOf('WorkloadEntry', key));
    for (const key of this.#keys('EndpointSlice')) this.#dirty.add(refOf('EndpointSlice', key));
    for (const key of this.#keys('Gateway')) this.#dirty.add(refOf('WaypointPolicy', key));
    for (const key of this.#keys('AuthorizationPolicy')) this.#dirty.add(refOf('AuthorizationPolicy', key));
    for (const key of this.#keys('PeerAuthentication')) this.#dirty.add(refOf('PeerAuthentication', key));
    this.#dirty.add(STATIC_REF);
    this.#schedule();
  }

  /** The pods scheduled on a node (CA node authorization). */
  *podsOnNode(node: string): Generator<Pod> {
    for (const key of this.#podsByNode.get(node) ?? []) {
      const pod = this.#get<Pod>('Pod', key);
      if (pod) yield pod;
    }
  }

  /** Every stored object of a kind. */
  objectsOf(kind: string): KubeObject[] {
    return [...(this.#objects.get(kind)?.values() ?? [])];
  }

  /** One stored object. */
  object(kind: string, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.#get(kind, namespace ? `${namespace}/${name}` : name);
  }

  /** The translation outcome of one object (problems, conditions), if it had any. */
  reportOf(kind: string, namespace: string | undefined, name: string): ObjectReport | undefined {
    return this.#reports.get(refOf(kind, namespace ? `${namespace}/${name}` : name));
  }

  /** Every object with problems. */
  problems(): ReportEvent[] {
    return [...this.#reports]
      .filter(([, r]) => r.problems.length > 0)
      .map(([ref, report]) => {
        const [kind, key] = splitRef(ref);
        return { kind, key, report };
      });
  }

  stats(): TranslatorStats {
    const objects: Record<string, number> = {};
    for (const [kind, map] of this.#objects) objects[kind] = map.size;
    return {
      objects,
      workloads: this.#snapshotCount('workload'),
      services: this.#snapshotCount('service'),
      policies: this.#snapshot.get(TypeUrl.authorization).size,
      flushes: this.#flushes,
      objectsWithProblems: [...this.#reports.values()].filter((r) => r.problems.length > 0).length,
    };
  }

  /** Recomputes what is dirty now and writes it to the snapshot (what the scheduled flush calls). */
  flush(): FlushEvent {
    const started = performance.now();
    const dirty = [...this.#dirty];
    this.#dirty.clear();
    let changedNames = 0;
    const count = (changed: boolean) => {
      if (changed) changedNames++;
    };
    this.#snapshot.update(() => {
      // Policies first: workloads read the selector-policy cache they fill.
      const order = (ref: Ref) => (ref.startsWith('AuthorizationPolicy\u0000') ? 0 : 1);
      dirty.sort((a, b) => order(a) - order(b));
      for (const ref of dirty) {
        const [kind, key] = splitRef(ref);
        const report = new Report();
        report.problems.push(...(this.#inputProblems.get(ref) ?? []));
        let outputs: Outputs;
        try {
          outputs = this.#compute(kind, key, report);
          this.#allocating = undefined;
        } catch (err) {
          this.#allocating = undefined;
          report.problem('<translation>', `failed: ${errorMessage(err)}`);
          outputs = { addresses: new Map(), policies: new Map(), workloads: 0 };
        }
        const before = this.#published.get(ref) ?? EMPTY_PUBLISHED;
        // A name another source has taken over since (a host moving between ServiceEntries) is not ours to delete.
        const drop = (typeUrl: string, name: string) => {
          const owner = `${typeUrl}\u0000${name}`;
          if (this.#owners.get(owner) !== ref) return;
          this.#owners.delete(owner);
          count(this.#snapshot.delete(typeUrl, name));
        };
        const put = (typeUrl: string, name: string, bytes: Buffer) => {
          this.#owners.set(`${typeUrl}\u0000${name}`, ref);
          count(this.#snapshot.set(typeUrl, name, bytes));
        };
        for (const name of before.addresses) if (!outputs.addresses.has(name)) drop(TypeUrl.address, name);
        for (const name of before.policies) if (!outputs.policies.has(name)) drop(TypeUrl.authorization, name);
        for (const [name, bytes] of outputs.addresses) put(TypeUrl.address, name, bytes);
        for (const [name, bytes] of outputs.policies) put(TypeUrl.authorization, name, bytes);
        if (outputs.addresses.size === 0 && outputs.policies.size === 0) this.#published.delete(ref);
        else this.#published.set(ref, { addresses: [...outputs.addresses.keys()], policies: [...outputs.policies.keys()], workloads: outputs.workloads });
        this.#trackWaypoints(ref, report.waypoints);
        this.#setReport(ref, kind, key, report.snapshot());
      }
      for (const ext of this.#extensions) {
        const changes = this.#pendingExtension.get(ext)!;
        if (changes.length === 0 && this.#flushes > 0) continue;
        this.#pendingExtension.set(ext, []);
        try {
          ext.apply(changes, this.#extensionContext());
        } catch (err) {
          this.#setReport(refOf('Extension', ext.name), 'Extension', ext.name, { problems: [`apply failed: ${errorMessage(err)}`], conditions: [] });
        }
      }
    });
    this.#flushes++;
    const event = { recomputed: dirty.length, changedNames, durationMs: performance.now() - started };
    this.emit('flush', event);
    return event;
  }

  // ---- state ----

  #keys(kind: string): Iterable<string> {
    return this.#objects.get(kind)?.keys() ?? EMPTY_ITER;
  }

  #inNamespace<T extends KubeObject>(kind: string, namespace: string): Iterable<T> {
    return (this.#byNamespace.get(kind)?.get(namespace)?.values() ?? EMPTY_ITER) as Iterable<T>;
  }

  #get<T extends KubeObject>(kind: string, key: string): T | undefined {
    return this.#objects.get(kind)?.get(key) as T | undefined;
  }

  #store(kind: string, key: string, obj: KubeObject, previous: KubeObject | undefined): void {
    if (previous) this.#unindex(kind, key, previous);
    let map = this.#objects.get(kind);
    if (!map) this.#objects.set(kind, (map = new Map()));
    map.set(key, obj);
    const ns = nsOf(obj);
    if (ns) {
      let byNs = this.#byNamespace.get(kind);
      if (!byNs) this.#byNamespace.set(kind, (byNs = new Map()));
      let inNs = byNs.get(ns);
      if (!inNs) byNs.set(ns, (inNs = new Map()));
      inNs.set(key, obj);
    }
    if (kind === 'Pod') {
      const node = (obj as Pod).spec?.nodeName;
      if (node) addTo(this.#podsByNode, node, key);
      const gw = labelsOf(obj)[GATEWAY_NAME_LABEL];
      if (gw) {
        const wk = `${ns}/${gw}`;
        let pods = this.#waypointPods.get(wk);
        if (!pods) this.#waypointPods.set(wk, (pods = new Map()));
        pods.set(key, (obj as Pod).spec?.serviceAccountName || 'default');
      }
    } else if (kind === 'EndpointSlice') {
      for (const podKey of this.#slicePods(obj as EndpointSlice)) addTo(this.#slicesByPod, podKey, key);
    } else if (kind === 'Namespace' && obj.metadata?.name === this.settings.systemNamespace) {
      this.#network = labelsOf(obj)['topology.istio.io/network'] ?? '';
    }
  }

  #unstore(kind: string, key: string, previous: KubeObject): void {
    this.#unindex(kind, key, previous);
    this.#objects.get(kind)?.delete(key);
    if (kind === 'Namespace' && previous.metadata?.name === this.settings.systemNamespace) this.#network = '';
  }

  #unindex(kind: string, key: string, obj: KubeObject): void {
    const ns = nsOf(obj);
    if (ns) {
      const inNs = this.#byNamespace.get(kind)?.get(ns);
      inNs?.delete(key);
      if (inNs?.size === 0) this.#byNamespace.get(kind)?.delete(ns);
    }
    if (kind === 'Pod') {
      const node = (obj as Pod).spec?.nodeName;
      if (node) removeFrom(this.#podsByNode, node, key);
      const gw = labelsOf(obj)[GATEWAY_NAME_LABEL];
      const pods = gw ? this.#waypointPods.get(`${ns}/${gw}`) : undefined;
      pods?.delete(key);
      if (pods?.size === 0) this.#waypointPods.delete(`${ns}/${gw}`);
    } else if (kind === 'EndpointSlice') {
      for (const podKey of this.#slicePods(obj as EndpointSlice)) removeFrom(this.#slicesByPod, podKey, key);
    }
  }

  #slicePods(slice: EndpointSlice): string[] {
    const ns = nsOf(slice);
    return (slice.endpoints ?? []).flatMap((e) => (e.targetRef?.kind === 'Pod' && e.targetRef.name ? [`${e.targetRef.namespace || ns}/${e.targetRef.name}`] : []));
  }

  // ---- what a change touches ----

  #markNamespace(kind: string, namespace: string, filter?: (obj: KubeObject) => boolean): void {
    for (const obj of this.#inNamespace(kind, namespace)) if (!filter || filter(obj)) this.#dirty.add(refOf(kind, objectKey(obj)));
  }

  #markWorkloadsMatching(namespace: string | undefined, selectors: ReadonlyArray<Readonly<Record<string, string>> | undefined>): void {
    const wanted = selectors.filter((s): s is Readonly<Record<string, string>> => s !== undefined && Object.keys(s).length > 0);
    if (wanted.length === 0) return;
    const matches = (obj: KubeObject) => {
      const labels = { ...labelsOf(obj), ...((obj as WorkloadEntry).spec?.labels ?? {}) };
      return wanted.some((s) => selectorMatches(s, labels));
    };
    for (const kind of ['Pod', 'WorkloadEntry']) {
      if (namespace === undefined) {
        for (const ns of this.#byNamespace.get(kind)?.keys() ?? []) this.#markNamespace(kind, ns, matches);
      } else this.#markNamespace(kind, namespace, matches);
    }
  }

  #markEverything(): void {
    this.markAll();
  }

  #markDependents(kind: string, key: string, current: KubeObject | undefined, previous: KubeObject | undefined): void {
    const obj = (current ?? previous)!;
    const ns = nsOf(obj);
    switch (kind) {
      case 'Pod':
      case 'WorkloadEntry':
      case 'AuthorizationPolicy':
        this.#dirty.add(refOf(kind, key));
        if (kind === 'Pod') {
          // A waypoint's instance pods: its allow policy, and what is bound to it.
          for (const p of [current, previous]) {
            const gw = p ? labelsOf(p)[GATEWAY_NAME_LABEL] : undefined;
            if (!gw) continue;
            this.#dirty.add(refOf('WaypointPolicy', `${ns}/${gw}`));
            for (const ref of this.#waypointUsers.get(`${ns}/${gw}`) ?? []) this.#dirty.add(ref);
          }
        }
        if (kind === 'AuthorizationPolicy') {
          const selectors = [current, previous].map((p) => (p ? policySelector(p as KubeAuthorizationPolicy) : undefined));
          this.#markWorkloadsMatching(ns === this.settings.rootNamespace ? undefined : ns, selectors);
        }
        break;
      case 'Service': {
        this.#dirty.add(refOf(kind, key));
        const selectors = [current, previous].map((s) => (s as KubeService | undefined)?.spec?.selector ?? undefined);
        this.#markWorkloadsMatching(ns, selectors);
        // Selector-less services: the pods their slices point at.
        for (const slice of this.#inNamespace<EndpointSlice>('EndpointSlice', ns)) {
          if (labelsOf(slice)['kubernetes.io/service-name'] !== obj.metadata?.name) continue;
          this.#dirty.add(refOf('EndpointSlice', objectKey(slice)));
          for (const podKey of this.#slicePods(slice)) this.#dirty.add(refOf('Pod', podKey));
        }
        this.#markNamespace('ServiceEntry', ns);
        break;
      }
      case 'EndpointSlice':
        this.#dirty.add(refOf(kind, key));
        for (const s of [current, previous]) if (s) for (const podKey of this.#slicePods(s as EndpointSlice)) this.#dirty.add(refOf('Pod', podKey));
        break;
      case 'Node':
        for (const podKey of this.#podsByNode.get(obj.metadata?.name ?? '') ?? []) this.#dirty.add(refOf('Pod', podKey));
        break;
      case 'Namespace': {
        const name = obj.metadata?.name ?? '';
        if (name === this.settings.systemNamespace || this.#selectorAttachmentExists()) {
          this.#markEverything();
          break;
        }
        for (const k of ['Pod', 'Service', 'ServiceEntry', 'WorkloadEntry']) this.#markNamespace(k, name);
        break;
      }
      case 'Gateway':
        this.#dirty.add(refOf('WaypointPolicy', key));
        for (const ref of this.#waypointUsers.get(key) ?? []) this.#dirty.add(ref);
        break;
      case 'GatewayClass':
        for (const gw of this.#objects.get('Gateway')?.values() ?? []) {
          if ((gw as Gateway).spec?.gatewayClassName !== obj.metadata?.name) continue;
          for (const ref of this.#waypointUsers.get(objectKey(gw)) ?? []) this.#dirty.add(ref);
        }
        break;
      case 'PeerAuthentication':
        this.#dirty.add(STATIC_REF);
        for (const k of this.#keys('PeerAuthentication')) this.#dirty.add(refOf('PeerAuthentication', k));
        this.#dirty.add(refOf('PeerAuthentication', key));
        for (const k of ['Pod', 'WorkloadEntry']) {
          if (ns === this.settings.rootNamespace) for (const n of this.#byNamespace.get(k)?.keys() ?? []) this.#markNamespace(k, n);
          else this.#markNamespace(k, ns);
        }
        break;
      case 'ServiceEntry': {
        this.#dirty.add(refOf(kind, key));
        // Host collisions: the namespace's other entries may win or lose a host now.
        this.#markNamespace('ServiceEntry', ns);
        this.#markNamespace('WorkloadEntry', ns);
        break;
      }
      default:
        break;
    }
  }

  #selectorAttachmentExists(): boolean {
    for (const gw of this.#objects.get('Gateway')?.values() ?? []) {
      if ((gw as Gateway).spec?.listeners?.some((l) => l.allowedRoutes?.namespaces?.from === 'Selector')) return true;
    }
    return false;
  }

  #trackWaypoints(ref: Ref, keys: ReadonlySet<string>): void {
    for (const old of this.#usedWaypoints.get(ref) ?? []) if (!keys.has(old)) removeFrom(this.#waypointUsers, old, ref);
    if (keys.size === 0) this.#usedWaypoints.delete(ref);
    else this.#usedWaypoints.set(ref, new Set(keys));
    for (const k of keys) addTo(this.#waypointUsers, k, ref);
  }

  #setReport(ref: Ref, kind: string, key: string, report: ObjectReport): void {
    const before = this.#reports.get(ref);
    const empty = report.problems.length === 0 && report.conditions.length === 0;
    if (empty) this.#reports.delete(ref);
    else this.#reports.set(ref, report);
    if (JSON.stringify(before ?? null) !== JSON.stringify(empty ? null : report)) this.emit('report', { kind, key, report });
  }

  // ---- translation of one source ----

  #compute(kind: string, key: string, report: Report): Outputs {
    const addresses = new Map<string, Buffer>();
    const policies = new Map<string, Buffer>();
    const out: Outputs = { addresses, policies, workloads: 0 };
    const workload = (w: Workload | undefined) => {
      if (!w) return;
      addresses.set(w.uid, encodeAddress({ kind: 'workload', workload: w }));
      out.workloads++;
    };
    const service = (s: Service) => addresses.set(serviceKey(s.namespace, s.hostname), encodeAddress({ kind: 'service', service: s }));
    const policy = (p: AuthorizationPolicy | undefined) => {
      if (p) policies.set(policyKey(p.namespace, p.name), encodeAuthorization(p));
    };
    switch (kind) {
      case 'Pod': {
        const pod = this.#get<Pod>('Pod', key);
        if (pod) workload(podToWorkload(this.view, pod, report));
        break;
      }
      case 'WorkloadEntry': {
        const we = this.#get<WorkloadEntry>('WorkloadEntry', key);
        if (we) workload(workloadEntryToWorkload(this.view, we, report));
        break;
      }
      case 'EndpointSlice': {
        const slice = this.#get<EndpointSlice>('EndpointSlice', key);
        if (slice) for (const w of endpointSliceWorkloads(this.view, slice, report)) workload(w);
        break;
      }
      case 'Service': {
        const svc = this.#get<KubeService>('Service', key);
        const s = svc ? kubeServiceToService(this.view, svc, report) : undefined;
        if (s) service(s);
        break;
      }
      case 'ServiceEntry': {
        // Allocations are redone from scratch: a host that went keeps nothing.
        const mine = this.#vipHolders.get(refOf(kind, key));
        this.#vipHolders.delete(refOf(kind, key));
        for (const k of mine ?? []) {
          if ([...this.#vipHolders.values()].some((held) => held.has(k))) continue;
          const ip = this.#vips.get(k);
          if (ip) this.#vipsInUse.delete(ip);
          this.#vips.delete(k);
        }
        this.#allocating = refOf(kind, key);
        const se = this.#get<ServiceEntry>('ServiceEntry', key);
        if (!se) break;
        const ns = nsOf(se);
        const k8sHostnames = new Set([...this.#inNamespace<KubeService>('Service', ns)].map((s) => `${s.metadata?.name ?? ''}.${ns}.svc.${this.settings.domainSuffix}`));
        const older = (other: ServiceEntry) => {
          const a = other.metadata?.creationTimestamp ?? '';
          const b = se.metadata?.creationTimestamp ?? '';
          return a !== b ? a < b : (other.metadata?.name ?? '') < (se.metadata?.name ?? '');
        };
        for (const s of serviceEntryServices(this.view, se, report)) {
          const winner = [...this.#inNamespace<ServiceEntry>('ServiceEntry', ns)].find((o) => o !== se && (o.spec?.hosts ?? []).includes(s.hostname) && older(o));
          if (k8sHostnames.has(s.hostname)) report.problem('spec.hosts', `${s.hostname} is a Kubernetes Service's hostname; the Service wins`);
          else if (winner) report.problem('spec.hosts', `${s.hostname} is also a host of the older ServiceEntry ${ns}/${winner.metadata?.name ?? ''}, which wins`);
          else service(s);
        }
        for (const w of serviceEntryWorkloads(this.view, se, report)) workload(w);
        break;
      }
      case 'AuthorizationPolicy': {
        const ap = this.#get<KubeAuthorizationPolicy>('AuthorizationPolicy', key);
        const [ns = ''] = key.split('/');
        let cache = this.#selectorPolicies.get(ns);
        const converted = ap ? convertAuthorizationPolicy(ap, this.settings, report) : undefined;
        if (converted?.scope === 'WORKLOAD_SELECTOR') {
          if (!cache) this.#selectorPolicies.set(ns, (cache = new Map()));
          cache.set(key, policySelector(ap!) ?? {});
        } else {
          cache?.delete(key);
          if (cache?.size === 0) this.#selectorPolicies.delete(ns);
        }
        policy(converted);
        break;
      }
      case 'PeerAuthentication': {
        const pa = this.#get<PeerAuthentication>('PeerAuthentication', key);
        if (pa) policy(convertPeerAuthentication(pa, { rootNamespace: this.settings.rootNamespace, peerAuthentications: (ns) => this.view.peerAuthentications(ns) }, report));
        break;
      }
      case 'WaypointPolicy': {
        const gw = this.settings.autoAllowWaypointPolicy ? this.#get<Gateway>('Gateway', key) : undefined;
        if (gw) policy(waypointAllowPolicy(this.view, gw));
        break;
      }
      case 'StaticPolicy':
        if ((this.#objects.get('PeerAuthentication')?.size ?? 0) > 0) policy(staticStrictPolicy(this.settings.rootNamespace));
        break;
      default:
        break;
    }
    return out;
  }

  #allocateVip(namespace: string, host: string): string {
    const key = `${namespace}/${host}`;
    const known = this.#vips.get(key);
    if (known) return known;
    // FNV-1a of the key picks the slot; the next free one on collision.
    let h = 0x811c9dc5;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193) >>> 0;
    let slot = (h % 65_534) + 1;
    let ip = '';
    for (let tries = 0; tries < 65_534; tries++, slot = (slot % 65_534) + 1) {
      ip = `240.240.${slot >> 8}.${slot & 255}`;
      if (!this.#vipsInUse.has(ip)) break;
    }
    this.#vips.set(key, ip);
    this.#vipsInUse.add(ip);
    if (this.#allocating) addTo(this.#vipHolders, this.#allocating, key);
    return ip;
  }

  #snapshotCount(which: 'workload' | 'service'): number {
    let n = 0;
    for (const p of this.#published.values()) n += which === 'workload' ? p.workloads : p.addresses.length - p.workloads;
    return n;
  }

  #schedule(): void {
    if (!this.#autoFlush || this.#held > 0 || this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      if (this.#held === 0 && (this.#dirty.size > 0 || [...this.#pendingExtension.values()].some((c) => c.length > 0) || this.#flushes === 0)) this.flush();
    });
  }

  #extensionContext(): ExtensionContext {
    return {
      view: this.view,
      snapshot: this.#snapshot,
      objects: (kind) => this.#objects.get(kind)?.values() ?? EMPTY_ITER,
      object: (kind, namespace, name) => this.#get(kind, namespace ? `${namespace}/${name}` : name),
    };
  }

  #makeView(): ClusterView {
    const self = this;
    return {
      settings: this.settings,
      network: () => self.#network,
      namespace: (name) => self.#get<Namespace>('Namespace', name),
      node: (name) => self.#get<Node>('Node', name),
      pods: (ns) => self.#inNamespace<Pod>('Pod', ns),
      services: (ns) => self.#inNamespace<KubeService>('Service', ns),
      service: (ns, name) => self.#get<KubeService>('Service', `${ns}/${name}`),
      *endpointSlicesOfPod(ns, podName) {
        for (const key of self.#slicesByPod.get(`${ns}/${podName}`) ?? []) {
          const slice = self.#get<EndpointSlice>('EndpointSlice', key);
          if (slice) yield slice;
        }
      },
      serviceEntries: (ns) => self.#inNamespace<ServiceEntry>('ServiceEntry', ns),
      workloadEntries: (ns) => self.#inNamespace<WorkloadEntry>('WorkloadEntry', ns),
      gateway: (ns, name) => self.#get<Gateway>('Gateway', `${ns}/${name}`),
      gatewayClass: (name) => self.#get<GatewayClass>('GatewayClass', name),
      authorizationPolicies: (ns) => self.#inNamespace<KubeAuthorizationPolicy>('AuthorizationPolicy', ns),
      peerAuthentications: (ns) => self.#inNamespace<PeerAuthentication>('PeerAuthentication', ns),
      allocateVip: (ns, host) => self.#allocateVip(ns, host),
      waypointServiceAccounts: (ns, name) => [...new Set(self.#waypointPods.get(`${ns}/${name}`)?.values() ?? [])].sort(),
      *selectorPolicies(ns) {
        for (const [key, selector] of self.#selectorPolicies.get(ns) ?? []) yield { key, selector };
      },
    };
  }
}
