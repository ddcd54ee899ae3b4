import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseYaml } from '../core/yaml.ts';

/**
 * A fake Kubernetes API server, over real HTTP on 127.0.0.1. The API server is the one thing that cannot run here,
 * so this fake follows the real one for what the project uses (the resources of `RESOURCES` below):
 * - one global, monotonically increasing resourceVersion (a string on the wire), `uid` and `creationTimestamp`;
 * - core resources under `/api/v1`, the others under `/apis/{group}/{version}`; namespaced ones under
 *   `.../namespaces/{ns}/{plural}` (and listed across namespaces at `.../{plural}`), cluster-scoped at `.../{plural}`;
 *   discovery (`/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`) lists them, as client-node's generic object
 *   API needs;
 * - list answers `{kind: PodList, apiVersion: v1, metadata: {resourceVersion}, items}`, items without kind/apiVersion;
 * - errors are `Status` objects (NotFound, AlreadyExists, Conflict, Unauthorized, UnsupportedMediaType, BadRequest);
 * - watch streams `{"type", "object"}` lines of events after the given resourceVersion; with a field or label selector
 *   an object that stops matching arrives as DELETED and one that starts matching as ADDED, as the real watch cache does;
 *   label selectors take `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`; field selectors only the
 *   fields the real server indexes (metadata.name, metadata.namespace, and per resource e.g. spec.nodeName on pods),
 *   others are a 400 as they are there;
 * - a resourceVersion older than the retained history (see `compact()`) gets one ERROR event (410 Expired) and the
 *   stream ends; `timeoutSeconds` ends the stream; `allowWatchBookmarks` lets `sendBookmarks()` reach the watcher;
 * - PATCH with `merge-patch+json` or `strategic-merge-patch+json` (both applied as a JSON merge patch: enough for
 *   labels, annotations and status);
 * - the `status` subresource where the real resource has one (pods, services, deployments, the Istio and Gateway API
 *   kinds):
 *   writes to the main resource keep the stored status, writes to `/status` change only the status (for pods also
 *   labels and annotations, as the pod status strategy allows: istio-cni patches its annotation there);
 * - server-side apply (PATCH `application/apply-patch+yaml`, `fieldManager` required, `force`): creates the object
 *   if absent, else merges the given fields; each manager owns the leaf fields it applied (arrays are atomic), a
 *   field another manager applied with a different value is a 409 Conflict unless `force=true`, and a field the
 *   same manager applied before and omits now is removed. Managers are reported in `metadata.managedFields`.
 * - DELETE returns the last state of the object (no finalizers, no garbage collection of dependants);
 * - `POST /apis/authentication.k8s.io/v1/tokenreviews`: tokens the test registered (`registerToken`) authenticate
 *   as their user and groups (audiences intersected when both sides name some), any other token does not.
 *
 * The test API (`create`, `update`, `delete`, `get`) is privileged: it writes every field, status included.
 * Namespaces are not required to exist before objects are created in them.
 */

export type FakeResource =
  | 'pods'
  | 'namespaces'
  | 'services'
  | 'nodes'
  | 'serviceaccounts'
  | 'configmaps'
  | 'endpointslices'
  | 'deployments'
  | 'serviceentries'
  | 'workloadentries'
  | 'authorizationpolicies'
  | 'peerauthentications'
  | 'gateways'
  | 'gatewayclasses'
  | 'httproutes'
  | 'grpcroutes'
  | 'daemonsets'
  | 'destinationrules'
  | 'virtualservices'
  | 'requestauthentications';

export interface ResourceInfo {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
  readonly singular: string;
  readonly namespaced: boolean;
  readonly status: boolean;
  /** Field selector keys beyond metadata.name and metadata.namespace. */
  readonly fields: readonly string[];
}

const r = (group: string, version: string, kind: string, namespaced: boolean, status = false, fields: readonly string[] = []): ResourceInfo => ({
  group,
  version,
  kind,
  singular: kind.toLowerCase(),
  namespaced,
  status,
  fields,
});

export const RESOURCES: Readonly<Record<FakeResource, ResourceInfo>> = {
  pods: r('', 'v1', 'Pod', true, true, ['spec.nodeName', 'spec.serviceAccountName', 'spec.hostNetwork', 'spec.restartPolicy', 'spec.schedulerName', 'status.phase', 'status.podIP', 'status.nominatedNodeName']),
  namespaces: r('', 'v1', 'Namespace', false, false, ['status.phase']),
  services: r('', 'v1', 'Service', true, true, ['spec.clusterIP', 'spec.type']),
  nodes: r('', 'v1', 'Node', false, false, ['spec.unschedulable']),
  serviceaccounts: r('', 'v1', 'ServiceAccount', true),
  configmaps: r('', 'v1', 'ConfigMap', true),
  endpointslices: r('discovery.k8s.io', 'v1', 'EndpointSlice', true),
  deployments: r('apps', 'v1', 'Deployment', true, true),
  serviceentries: r('networking.istio.io', 'v1', 'ServiceEntry', true, true),
  workloadentries: r('networking.istio.io', 'v1', 'WorkloadEntry', true, true),
  authorizationpolicies: r('security.istio.io', 'v1', 'AuthorizationPolicy', true, true),
  peerauthentications: r('security.istio.io', 'v1', 'PeerAuthentication', true, true),
  gateways: r('gateway.networking.k8s.io', 'v1', 'Gateway', true, true),
  gatewayclasses: r('gateway.networking.k8s.io', 'v1', 'GatewayClass', false, true),
  httproutes: r('gateway.networking.k8s.io', 'v1', 'HTTPRoute', true, true),
  grpcroutes: r('gateway.networking.k8s.io', 'v1', 'GRPCRoute', true, true),
  daemonsets: r('apps', 'v1', 'DaemonSet', true, true),
  destinationrules: r('networking.istio.io', 'v1', 'DestinationRule', true, true),
  virtualservices: r('networking.istio.io', 'v1', 'VirtualService', true, true),
  requestauthentications: r('security.istio.io', 'v1', 'RequestAuthentication', true, true),
};

const RESOURCE_NAMES = Object.keys(RESOURCES) as FakeResource[];

/** The collection path of a resource, cluster-wide or in one namespace: what an informer is given. */
export function resourcePath(resource: FakeResource, namespace?: string): string {
  const info = RESOURCES[resource];
  const prefix = info.group === '' ? `/api/${info.version}` : `/apis/${info.group}/${info.version}`;
  return namespace !== undefined && info.namespaced ? `${prefix}/namespaces/${encodeURIComponent(namespace)}/${resource}` : `${prefix}/${resource}`;
}

const apiVersionOf = (info: ResourceInfo): string => (info.group === '' ? info.version : `${info.group}/${info.version}`);

export interface KubeMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

export interface KubeObjectJson {
  kind?: string;
  apiVersion?: string;
  metadata?: KubeMeta;
  [key: string]: unknown;
}

/** What the test API accepts: any object with Kubernetes metadata (a typed Pod, a literal). */
export interface FakeObjectInput {
  kind?: string;
  apiVersion?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
}

export interface FakeKubeRequest {
  readonly method: string;
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly watch: boolean;
  /** The Content-Type of a write, e.g. `application/apply-patch+yaml`. */
  readonly contentType?: string;
}

export interface FakeKubeOptions {
  /** Require `Authorization: Bearer <token>`; the kubeconfig carries it. */
  readonly token?: string;
  /** API groups this server does not serve (CRDs not installed): 404 on their paths and absent from discovery. */
  readonly omitGroups?: readonly string[];
  /**
   * Allocate a ClusterIP from this IPv4 range (e.g. `10.96.0.0/16`) for each Service created without one, as the
   * real API server does; headless (`None`) and ExternalName services get none. Without it, Services keep what
   * they were given.
   */
  readonly serviceClusterIpRange?: string;
}

/** Who a registered token authenticates as in a TokenReview. */
export interface FakeTokenUser {
  readonly username: string;
  readonly uid?: string;
  readonly groups?: readonly string[];
  /** Audiences the token is valid for; none = any audience the review asks for. */
  readonly audiences?: readonly string[];
  /** `user.extra`, e.g. a bound token's `authentication.kubernetes.io/node-name` and `pod-name`. */
  readonly extra?: Readonly<Record<string, readonly string[]>>;
}

export interface FakeKube {
  readonly url: string;
  /** A kubeconfig file pointing at this server (removed on close). */
  readonly kubeconfigPath: string;
  /** Every request received, in order. */
  readonly requests: readonly FakeKubeRequest[];
  /** The current (latest) resourceVersion. */
  resourceVersion(): string;
  create(resource: FakeResource, obj: FakeObjectInput): KubeObjectJson;
  /** Replaces the stored object (all fields but the server-owned metadata). */
  update(resource: FakeResource, obj: FakeObjectInput): KubeObjectJson;
  delete(resource: FakeResource, namespace: string | undefined, name: string): KubeObjectJson | undefined;
  get(resource: FakeResource, namespace: string | undefined, name: string): KubeObjectJson | undefined;
  /** Every stored object of a resource (in one namespace if given). */
  list(resource: FakeResource, namespace?: string): KubeObjectJson[];
  /** A token TokenReview will accept, for the given user. */
  registerToken(token: string, user: FakeTokenUser): void;
  /** Forgets the event history up to now: a watch from an older resourceVersion then gets 410 Expired. */
  compact(): void;
  /** Cuts every open watch connection (as a load balancer or an API server restart would). */
  dropWatches(): void;
  /** Sends a BOOKMARK at the current resourceVersion to every watch that allowed bookmarks. */
  sendBookmarks(): void;
  /** The number of watch streams open now. */
  openWatches(): number;
  /** Resolves when the number of watch requests received reaches `count`. */
  waitForWatchRequests(count: number): Promise<void>;
  close(): Promise<void>;
}

interface HistoryEvent {
  readonly rv: number;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly resource: FakeResource;
  readonly object: KubeObjectJson;
  /** The object before a MODIFIED, to turn selector changes into ADDED/DELETED per watcher. */
  readonly previous?: KubeObjectJson;
}

interface Scope {
  readonly resource: FakeResource;
  readonly namespace?: string;
  readonly name?: string;
  readonly subresource?: 'status';
}

type Route =
  | { readonly kind: 'resource'; readonly scope: Scope }
  | { readonly kind: 'tokenreview' }
  | { readonly kind: 'discovery'; readonly body: unknown }
  | { readonly kind: 'unknown' };

interface Watcher {
  readonly scope: Scope;
  readonly matches: (obj: KubeObjectJson) => boolean;
  readonly bookmarks: boolean;
  readonly res: ServerResponse;
  readonly timer?: NodeJS.Timeout;
}

class HttpError extends Error {
  readonly status: number;
  readonly reason: string;
  constructor(status: number, reason: string, message: string) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

function clone<T>(value: T): T {
  return structuredClone(value);
}

function keyOf(namespace: string | undefined, name: string): string {
  return `${namespace ?? ''}/${name}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function statusBody(code: number, reason: string, message: string, details?: Record<string, unknown>): KubeObjectJson {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code };
}

function fieldValue(obj: KubeObjectJson, path: string): string {
  let cur: unknown = obj;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return '';
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur === undefined || cur === null ? '' : String(cur);
}

/** Splits a selector at the commas outside parentheses. */
function selectorTerms(selector: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of selector) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((t) => t.trim()).filter(Boolean);
}

type Term = { key: string; op: '=' | '!=' | '!' | 'exists' | 'in' | 'notin'; values: string[] };

/** Selector terms; for labels also `k`, `!k`, `k in (..)`, `k notin (..)`. `allowed` refuses unknown field keys. */
function compileSelector(
  selector: string | null,
  read: (obj: KubeObjectJson, key: string) => string | undefined,
  setBased: boolean,
  allowed?: (key: string) => boolean,
): (obj: KubeObjectJson) => boolean {
  if (!selector) return () => true;
  const terms: Term[] = selectorTerms(selector).map((term) => {
    let m: RegExpMatchArray | null;
    let t: Term;
    if ((m = /^([^!=]+)!=(.*)$/.exec(term))) t = { key: m[1]!.trim(), op: '!=', values: [m[2]!.trim()] };
    else if ((m = /^([^!=]+)==?(.*)$/.exec(term))) t = { key: m[1]!.trim(), op: '=', values: [m[2]!.trim()] };
    else if (setBased && (m = /^(\S+)\s+(in|notin)\s*\((.*)\)$/.exec(term))) {
      t = { key: m[1]!, op: m[2] as 'in' | 'notin', values: m[3]!.split(',').map((v) => v.trim()).filter(Boolean) };
    } else if (setBased && (m = /^!(.+)$/.exec(term))) t = { key: m[1]!.trim(), op: '!', values: [] };
    else if (setBased && /^[A-Za-z0-9._/-]+$/.test(term)) t = { key: term, op: 'exists', values: [] };
    else throw new HttpError(400, 'BadRequest', `unable to parse requirement: ${JSON.stringify(term)}`);
    if (allowed && !allowed(t.key)) throw new HttpError(400, 'BadRequest', `field label not supported: ${t.key}`);
    return t;
  });
  return (obj) =>
    terms.every((t) => {
      const v = read(obj, t.key);
      switch (t.op) {
        case '=':
          return v !== undefined && v === t.values[0];
        case '!=':
          return v === undefined || v !== t.values[0];
        case '!':
          return v === undefined;
        case 'exists':
          return v !== undefined;
        case 'in':
          return v !== undefined && t.values.includes(v);
        case 'notin':
          return v === undefined || !t.values.includes(v);
      }
    });
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isRecord(patch)) return clone(patch);
  const out: Record<string, unknown> = isRecord(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

// ---- server-side apply: leaf-field ownership ----

/** The leaf paths of an applied object (objects recurse, arrays and scalars are leaves), as JSON-encoded arrays. */
function leafPaths(value: unknown, prefix: string[] = [], out = new Map<string, unknown>()): Map<string, unknown> {
  if (isRecord(value) && Object.keys(value).length > 0) {
    for (const [k, v] of Object.entries(value)) leafPaths(v, [...prefix, k], out);
  } else if (prefix.length > 0) out.set(JSON.stringify(prefix), value);
  return out;
}

function readPath(obj: unknown, path: readonly string[]): unknown {
  let cur = obj;
  for (const p of path) {
    if (!isRecord(cur)) return undefined;
    cur = cur[p];
  }
  return cur;
}

function removePath(obj: Record<string, unknown>, path: readonly string[]): void {
  const parents: Array<Record<string, unknown>> = [];
  let cur: unknown = obj;
  for (const p of path.slice(0, -1)) {
    if (!isRecord(cur)) return;
    parents.push(cur);
    cur = cur[p];
  }
  if (!isRecord(cur)) return;
  delete cur[path[path.length - 1]!];
  // Empty maps left behind go too, as a removed field's parent does when nothing else owns it.
  for (let i = path.length - 2; i >= 0; i--) {
    const child = readPath(obj, path.slice(0, i + 1));
    if (isRecord(child) && Object.keys(child).length === 0) delete parents[i]![path[i]!];
    else break;
  }
}

/** Fields ignored in ownership: the server's own metadata. */
const SERVER_FIELDS = new Set(['["metadata","name"]', '["metadata","namespace"]', '["metadata","resourceVersion"]', '["metadata","uid"]', '["metadata","creationTimestamp"]', '["metadata","managedFields"]', '["apiVersion"]', '["kind"]']);

function jsonEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function discoveryBodies(): Map<string, unknown> {
  const bodies = new Map<string, unknown>();
  const groups = new Map<string, FakeResource[]>();
  for (const name of RESOURCE_NAMES) {
    const gv = apiVersionOf(RESOURCES[name]);
    groups.set(gv, [...(groups.get(gv) ?? []), name]);
  }
  bodies.set('/api', { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1' }] });
  const apiGroups = [...groups.keys()]
    .filter((gv) => gv.includes('/'))
    .map((gv) => {
      const [group, version] = gv.split('/') as [string, string];
      const v = { groupVersion: gv, version };
      return { name: group, versions: [v], preferredVersion: v };
    });
  bodies.set('/apis', { kind: 'APIGroupList', apiVersion: 'v1', groups: apiGroups });
  for (const [gv, names] of groups) {
    const resources: unknown[] = [];
    for (const name of names) {
      const info = RESOURCES[name];
      const verbs = ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'];
      resources.push({ name, singularName: info.singular, namespaced: info.namespaced, kind: info.kind, verbs });
      if (info.status) resources.push({ name: `${name}/status`, singularName: '', namespaced: info.namespaced, kind: info.kind, verbs: ['get', 'patch', 'update'] });
    }
    if (gv === 'authentication.k8s.io/v1') continue;
    bodies.set(gv.includes('/') ? `/apis/${gv}` : `/api/${gv}`, { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: gv, resources });
  }
  bodies.set('/apis/authentication.k8s.io/v1', {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: 'authentication.k8s.io/v1',
    resources: [{ name: 'tokenreviews', singularName: 'tokenreview', namespaced: false, kind: 'TokenReview', verbs: ['create'] }],
  });
  const gl = bodies.get('/apis') as { groups: unknown[] };
  const authV = { groupVersion: 'authentication.k8s.io/v1', version: 'v1' };
  gl.groups.push({ name: 'authentication.k8s.io', versions: [authV], preferredVersion: authV });
  return bodies;
}

const DISCOVERY = discoveryBodies();

/** Parses a request path into what it names. */
function parsePath(path: string): Route {
  const discovery = DISCOVERY.get(path.replace(/\/+$/, ''));
  if (discovery !== undefined) return { kind: 'discovery', body: discovery };
  const parts = path.split('/').filter(Boolean).map((p) => decodeURIComponent(p));
  let group: string;
  let version: string;
  let rest: string[];
  if (parts[0] === 'api' && parts.length >= 2) {
    group = '';
    version = parts[1]!;
    rest = parts.slice(2);
  } else if (parts[0] === 'apis' && parts.length >= 3) {
    group = parts[1]!;
    version = parts[2]!;
    rest = parts.slice(3);
  } else return { kind: 'unknown' };
  if (group === 'authentication.k8s.io' && version === 'v1' && rest.length === 1 && rest[0] === 'tokenreviews') return { kind: 'tokenreview' };
  const find = (plural: string | undefined): FakeResource | undefined =>
    RESOURCE_NAMES.find((n) => n === plural && RESOURCES[n].group === group && RESOURCES[n].version === version);
  const sub = (s: string | undefined, res: FakeResource): 'status' | undefined | null =>
    s === undefined ? undefined : s === 'status' && RESOURCES[res].status ? 'status' : null;
  // Cluster-wide: /{plural}, /{plural}/{name}, /{plural}/{name}/status (namespaces included).
  const top = find(rest[0]);
  if (top !== undefined && !(top === 'namespaces' && rest.length >= 3 && find(rest[2]) !== undefined)) {
    if (rest.length === 1) return { kind: 'resource', scope: { resource: top } };
    if (RESOURCES[top].namespaced) return { kind: 'unknown' };
    const s = sub(rest[2], top);
    if (rest.length > 3 || s === null) return { kind: 'unknown' };
    return { kind: 'resource', scope: { resource: top, name: rest[1]!, ...(s ? { subresource: s } : {}) } };
  }
  // Namespaced: /namespaces/{ns}/{plural}[/{name}[/status]].
  if (rest[0] !== 'namespaces' || rest.length < 3) return { kind: 'unknown' };
  const res = find(rest[2]);
  if (res === undefined || !RESOURCES[res].namespaced) return { kind: 'unknown' };
  const namespace = rest[1]!;
  if (rest.length === 3) return { kind: 'resource', scope: { resource: res, namespace } };
  const s = sub(rest[4], res);
  if (rest.length > 5 || s === null) return { kind: 'unknown' };
  return { kind: 'resource', scope: { resource: res, namespace, name: rest[3]!, ...(s ? { subresource: s } : {}) } };
}

interface ManagedField {
  manager: string;
  operation: 'Apply' | 'Update';
  apiVersion: string;
  time: string;
  fieldsType: 'FieldsV1';
  /** Our simplification of FieldsV1: the owned leaf paths, each a JSON array of keys. */
  fieldsV1: Record<string, unknown>;
  subresource?: string;
}

const now = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/** Hands out the addresses of an IPv4 range in order, skipping the network address and the first host (kept for the API service). */
function clusterIpAllocator(cidr: string): () => string {
  const [base, bits] = cidr.split('/');
  const octets = (base ?? '').split('.').map(Number);
  const prefix = Number(bits);
  if (octets.length !== 4 || octets.some((o) => !Number.isInteger(o) || o < 0 || o > 255) || !Number.isInteger(prefix) || prefix < 8 || prefix > 30) {
    throw new RangeError(`serviceClusterIpRange: not an IPv4 CIDR: ${cidr}`);
  }
  const start = ((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0;
  const size = 2 ** (32 - prefix);
  let next = 2;
  return () => {
    if (next >= size - 1) throw new HttpError(422, 'Invalid', `the service ClusterIP range ${cidr} is exhausted`);
    const n = (start + next++) >>> 0;
    return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
  };
}

function assignClusterIp(service: KubeObjectJson, allocate: () => string): void {
  const spec = (service['spec'] ?? {}) as Record<string, unknown>;
  if (spec['type'] === 'ExternalName' || (typeof spec['clusterIP'] === 'string' && spec['clusterIP'] !== '')) return;
  const ip = allocate();
  service['spec'] = { ...spec, clusterIP: ip, clusterIPs: [ip] };
}

export async function startFakeKube(options: FakeKubeOptions = {}): Promise<FakeKube> {
  let rv = 1;
  /** Events with rv <= compactedRv are no longer retained. */
  let compactedRv = 1;
  const stores = new Map<FakeResource, Map<string, KubeObjectJson>>(RESOURCE_NAMES.map((n) => [n, new Map()]));
  const store = (resource: FakeResource): Map<string, KubeObjectJson> => stores.get(resource)!;
  const history: HistoryEvent[] = [];
  const watchers = new Set<Watcher>();
  const requests: FakeKubeRequest[] = [];
  const requestWaiters: Array<{ count: number; resolve: () => void }> = [];
  const tokens = new Map<string, FakeTokenUser>();
  const allocateClusterIp = options.serviceClusterIpRange === undefined ? undefined : clusterIpAllocator(options.serviceClusterIpRange);

  const nsOf = (resource: FakeResource, namespace: string | undefined): string | undefined =>
    RESOURCES[resource].namespaced ? (namespace ?? 'default') : undefined;

  const inScope = (scope: Scope, obj: KubeObjectJson): boolean =>
    !RESOURCES[scope.resource].namespaced || scope.namespace === undefined || obj.metadata?.namespace === scope.namespace;

  const withType = (resource: FakeResource, obj: KubeObjectJson): KubeObjectJson => ({
    ...clone(obj),
    kind: RESOURCES[resource].kind,
    apiVersion: apiVersionOf(RESOURCES[resource]),
  });

  const writeEvent = (w: Watcher, type: string, object: KubeObjectJson): void => {
    w.res.write(`${JSON.stringify({ type, object })}\n`);
  };

  const deliver = (w: Watcher, ev: HistoryEvent): void => {
    if (ev.resource !== w.scope.resource || !inScope(w.scope, ev.object)) return;
    const isNow = w.matches(ev.object);
    const before = ev.type === 'MODIFIED' && ev.previous ? w.matches(ev.previous) : isNow;
    let type: string = ev.type;
    if (ev.type === 'MODIFIED') {
      if (isNow && !before) type = 'ADDED';
      else if (!isNow && before) type = 'DELETED';
      else if (!isNow) return;
    } else if (!isNow) return;
    writeEvent(w, type, withType(ev.resource, ev.object));
  };

  const record = (ev: HistoryEvent): void => {
    history.push(ev);
    for (const w of watchers) deliver(w, ev);
  };

  const validate = (resource: FakeResource, obj: KubeObjectJson): { namespace: string | undefined; name: string } => {
    const name = obj.metadata?.name;
    if (!name) throw new HttpError(422, 'Invalid', `${RESOURCES[resource].kind} is invalid: metadata.name: Required value: name or generateName is required`);
    return { namespace: nsOf(resource, obj.metadata?.namespace), name };
  };

  const api = {
    create(resource: FakeResource, input: FakeObjectInput): KubeObjectJson {
      const obj = input as KubeObjectJson;
      const { namespace, name } = validate(resource, obj);
      const key = keyOf(namespace, name);
      if (store(resource).has(key)) throw new HttpError(409, 'AlreadyExists', `${resource} "${name}" already exists`);
      rv++;
      const stored: KubeObjectJson = clone(obj);
      delete stored.kind;
      delete stored.apiVersion;
      stored.metadata = {
        ...stored.metadata,
        name,
        ...(namespace !== undefined ? { namespace } : {}),
        uid: randomUUID(),
        resourceVersion: String(rv),
        creationTimestamp: now(),
      };
      delete stored.metadata.generateName;
      if (resource === 'services' && allocateClusterIp) assignClusterIp(stored, allocateClusterIp);
      store(resource).set(key, stored);
      record({ rv, type: 'ADDED', resource, object: clone(stored) });
      return withType(resource, stored);
    },
    update(resource: FakeResource, input: FakeObjectInput): KubeObjectJson {
      const obj = input as KubeObjectJson;
      const { namespace, name } = validate(resource, obj);
      const key = keyOf(namespace, name);
      const old = store(resource).get(key);
      if (!old) throw new HttpError(404, 'NotFound', `${resource} "${name}" not found`);
      const wanted = obj.metadata?.resourceVersion;
      if (wanted !== undefined && wanted !== old.metadata?.resourceVersion) {
        throw new HttpError(409, 'Conflict', `Operation cannot be fulfilled on ${resource} "${name}": the object has been modified; please apply your changes to the latest version and try again`);
      }
      rv++;
      const stored: KubeObjectJson = clone(obj);
      delete stored.kind;
      delete stored.apiVersion;
      stored.metadata = { ...stored.metadata, ...serverMeta(old), resourceVersion: String(rv) };
      store(resource).set(key, stored);
      record({ rv, type: 'MODIFIED', resource, object: clone(stored), previous: clone(old) });
      return withType(resource, stored);
    },
    delete(resource: FakeResource, namespace: string | undefined, name: string): KubeObjectJson | undefined {
      const key = keyOf(nsOf(resource, namespace), name);
      const old = store(resource).get(key);
      if (!old) return undefined;
      store(resource).delete(key);
      rv++;
      const last: KubeObjectJson = { ...clone(old), metadata: { ...clone(old.metadata), resourceVersion: String(rv) } };
      record({ rv, type: 'DELETED', resource, object: last });
      return withType(resource, last);
    },
    get(resource: FakeResource, namespace: string | undefined, name: string): KubeObjectJson | undefined {
      const obj = store(resource).get(keyOf(nsOf(resource, namespace), name));
      return obj ? withType(resource, obj) : undefined;
    },
    list(resource: FakeResource, namespace?: string): KubeObjectJson[] {
      return [...store(resource).values()]
        .filter((o) => inScope({ resource, ...(namespace !== undefined ? { namespace } : {}) }, o))
        .map((o) => withType(resource, o));
    },
  };

  function serverMeta(old: KubeObjectJson): KubeMeta {
    const m = old.metadata ?? {};
    return {
      ...(m.name !== undefined ? { name: m.name } : {}),
      ...(m.namespace !== undefined ? { namespace: m.namespace } : {}),
      ...(m.uid !== undefined ? { uid: m.uid } : {}),
      ...(m.creationTimestamp !== undefined ? { creationTimestamp: m.creationTimestamp } : {}),
    };
  }

  /** What a client write may change: on the main resource everything but the status; on /status only the status. */
  const restrictWrite = (scope: Scope, old: KubeObjectJson | undefined, next: KubeObjectJson): KubeObjectJson => {
    const info = RESOURCES[scope.resource];
    if (!info.status) return next;
    if (scope.subresource === 'status') {
      if (!old) throw new HttpError(404, 'NotFound', `${scope.resource} "${scope.name ?? ''}" not found`);
      const out: KubeObjectJson = { ...clone(old), ...(next.status !== undefined ? { status: clone(next.status) } : {}) };
      if (next.status === undefined) delete out.status;
      out.metadata = { ...clone(old.metadata), ...(next.metadata?.resourceVersion !== undefined ? { resourceVersion: next.metadata.resourceVersion } : {}) };
      if (scope.resource === 'pods') {
        // The pod status strategy resets the spec only: labels and annotations written through /status stay.
        if (next.metadata?.labels !== undefined) out.metadata.labels = clone(next.metadata.labels);
        else delete out.metadata.labels;
        if (next.metadata?.annotations !== undefined) out.metadata.annotations = clone(next.metadata.annotations);
        else delete out.metadata.annotations;
      } else if (old.metadata?.resourceVersion !== undefined && next.metadata?.resourceVersion === undefined) {
        delete out.metadata.resourceVersion;
      }
      return out;
    }
    const out = clone(next);
    if (old?.status !== undefined) out.status = clone(old.status);
    else if (!old && scope.resource === 'pods') out.status = { phase: 'Pending' };
    else delete out.status;
    return out;
  };

  const send = (res: ServerResponse, code: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  const sendError = (res: ServerResponse, err: unknown, scope?: Scope): void => {
    const status = err instanceof HttpError ? err.status : err instanceof SyntaxError ? 400 : 500;
    const reason = err instanceof HttpError ? err.reason : err instanceof SyntaxError ? 'BadRequest' : 'InternalError';
    const message = err instanceof Error ? err.message : String(err);
    const details = scope?.name !== undefined ? { name: scope.name, kind: scope.resource } : undefined;
    send(res, status, statusBody(status, reason, message, details));
  };

  const selectorsOf = (resource: FakeResource, query: URLSearchParams): ((obj: KubeObjectJson) => boolean) => {
    const allowedFields = new Set(['metadata.name', 'metadata.namespace', ...RESOURCES[resource].fields]);
    const fields = compileSelector(query.get('fieldSelector'), (obj, key) => fieldValue(obj, key), false, (k) => allowedFields.has(k));
    const labels = compileSelector(query.get('labelSelector'), (obj, key) => obj.metadata?.labels?.[key], true);
    return (obj) => fields(obj) && labels(obj);
  };

  const handleList = (res: ServerResponse, scope: Scope, query: URLSearchParams): void => {
    const matches = selectorsOf(scope.resource, query);
    const items = [...store(scope.resource).values()].filter((o) => inScope(scope, o) && matches(o)).map((o) => clone(o));
    const info = RESOURCES[scope.resource];
    send(res, 200, { kind: `${info.kind}List`, apiVersion: apiVersionOf(info), metadata: { resourceVersion: String(rv) }, items });
  };

  const handleWatch = (res: ServerResponse, scope: Scope, query: URLSearchParams): void => {
    const matches = selectorsOf(scope.resource, query);
    const from = query.get('resourceVersion');
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    if (from !== null && from !== '' && from !== '0' && Number(from) < compactedRv) {
      res.end(`${JSON.stringify({ type: 'ERROR', object: statusBody(410, 'Expired', `too old resource version: ${from} (${compactedRv})`) })}\n`);
      return;
    }
    const timeout = Number(query.get('timeoutSeconds') ?? '0');
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    timer?.unref();
    const w: Watcher = {
      scope,
      matches,
      bookmarks: query.get('allowWatchBookmarks') === 'true' || query.get('allowWatchBookmarks') === '1',
      res,
      ...(timer ? { timer } : {}),
    };
    watchers.add(w);
    res.on('close', () => {
      watchers.delete(w);
      if (timer) clearTimeout(timer);
    });
    if (from === null || from === '' || from === '0') {
      // "Any" resourceVersion: the current state as synthetic ADDED events, then changes.
      for (const o of store(scope.resource).values()) {
        if (inScope(scope, o) && w.matches(o)) writeEvent(w, 'ADDED', withType(scope.resource, o));
      }
      return;
    }
    for (const ev of history) if (ev.rv > Number(from)) deliver(w, ev);
  };

  const parseJsonObject = (text: string): KubeObjectJson => {
    const value: unknown = JSON.parse(text);
    if (!isRecord(value)) throw new HttpError(400, 'BadRequest', 'the request body must be a JSON object');
    return value as KubeObjectJson;
  };

  const checkBodyType = (scope: Scope, body: KubeObjectJson): void => {
    const info = RESOURCES[scope.resource];
    if (body.kind !== undefined && body.kind !== info.kind) throw new HttpError(400, 'BadRequest', `the kind of the body (${body.kind}) does not match the resource (${info.kind})`);
    if (body.apiVersion !== undefined && body.apiVersion !== apiVersionOf(info)) {
      throw new HttpError(400, 'BadRequest', `the API version of the body (${body.apiVersion}) does not match the expected API version (${apiVersionOf(info)})`);
    }
  };

  /** The object's name and namespace from the URL, overriding (and checked against) the body. */
  const placeIn = (scope: Scope, body: KubeObjectJson, name: string | undefined): KubeObjectJson => {
    const namespaced = RESOURCES[scope.resource].namespaced;
    if (namespaced && scope.namespace !== undefined && body.metadata?.namespace !== undefined && body.metadata.namespace !== scope.namespace) {
      throw new HttpError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request');
    }
    if (scope.name !== undefined && body.metadata?.name !== undefined && body.metadata.name !== scope.name) {
      throw new HttpError(400, 'BadRequest', 'the name of the object does not match the name on the URL');
    }
    return {
      ...body,
      metadata: {
        ...body.metadata,
        ...(name !== undefined ? { name } : {}),
        ...(namespaced ? { namespace: scope.namespace ?? body.metadata?.namespace ?? 'default' } : {}),
      },
    };
  };

  /** Server-side apply of `applied` by `manager` onto the stored object (or a new one). */
  const apply = (scope: Scope, applied: KubeObjectJson, manager: string, force: boolean): { code: number; obj: KubeObjectJson } => {
    const info = RESOURCES[scope.resource];
    if (applied.kind !== info.kind || applied.apiVersion !== apiVersionOf(info)) {
      throw new HttpError(400, 'BadRequest', `apply requires apiVersion ${apiVersionOf(info)} and kind ${info.kind} in the body`);
    }
    const placed = placeIn(scope, applied, scope.name);
    delete placed.kind;
    delete placed.apiVersion;
    const sub = scope.subresource;
    // On /status only the status counts; on the main resource the status is not the client's.
    const relevant: KubeObjectJson = sub === 'status' ? { status: placed.status } : clone(placed);
    if (sub !== 'status' && info.status) delete relevant.status;
    const leaves = new Map([...leafPaths(relevant)].filter(([k]) => !SERVER_FIELDS.has(k)));
    const current = api.get(scope.resource, scope.namespace, scope.name!);
    if (!current && sub === 'status') throw new HttpError(404, 'NotFound', `${scope.resource} "${scope.name!}" not found`);
    const managed: ManagedField[] = clone((current?.metadata?.managedFields as ManagedField[] | undefined) ?? []);
    const mine = managed.find((m) => m.manager === manager && m.operation === 'Apply' && (m.subresource ?? '') === (sub ?? ''));
    const conflicts: string[] = [];
    for (const [path, value] of leaves) {
      for (const other of managed) {
        if (other === mine || !(path in other.fieldsV1)) continue;
        if (!jsonEqual(readPath(current, JSON.parse(path) as string[]), value)) conflicts.push(`conflict with "${other.manager}": ${(JSON.parse(path) as string[]).join('.')}`);
      }
    }
    if (conflicts.length > 0 && !force) throw new HttpError(409, 'Conflict', `Apply failed with ${conflicts.length} conflict(s): ${conflicts.join('; ')}`);
    if (applied.metadata?.resourceVersion !== undefined && current && applied.metadata.resourceVersion !== current.metadata?.resourceVersion) {
      throw new HttpError(409, 'Conflict', `Operation cannot be fulfilled on ${scope.resource} "${scope.name!}": the object has been modified`);
    }
    let next: KubeObjectJson = current ? clone(current) : { metadata: {} };
    delete next.kind;
    delete next.apiVersion;
    // Fields this manager applied before and omits now go, unless another manager owns them too.
    if (mine) {
      for (const path of Object.keys(mine.fieldsV1)) {
        if (leaves.has(path) || managed.some((m) => m !== mine && path in m.fieldsV1)) continue;
        removePath(next, JSON.parse(path) as string[]);
      }
    }
    next = mergePatch(next, relevant) as KubeObjectJson;
    // Forced fields change hands: the other managers lose them.
    const owned = Object.fromEntries([...leaves.keys()].map((k) => [k, {}]));
    const others = managed
      .filter((m) => m !== mine)
      .map((m) => ({ ...m, fieldsV1: Object.fromEntries(Object.entries(m.fieldsV1).filter(([k]) => !(k in owned))) }))
      .filter((m) => Object.keys(m.fieldsV1).length > 0);
    const entry: ManagedField = { manager, operation: 'Apply', apiVersion: apiVersionOf(info), time: now(), fieldsType: 'FieldsV1', fieldsV1: owned, ...(sub ? { subresource: sub } : {}) };
    next.metadata = { ...next.metadata, name: scope.name!, ...(placed.metadata?.namespace !== undefined ? { namespace: placed.metadata.namespace } : {}), managedFields: [...others, entry] };
    delete next.metadata.resourceVersion;
    if (!current) return { code: 201, obj: api.create(scope.resource, next) };
    return { code: 200, obj: api.update(scope.resource, next) };
  };

  const handleTokenReview = (res: ServerResponse, body: KubeObjectJson): void => {
    if (body.kind !== 'TokenReview') throw new HttpError(400, 'BadRequest', 'the body must be a TokenReview');
    const spec = isRecord(body.spec) ? body.spec : {};
    const token = typeof spec.token === 'string' ? spec.token : '';
    const asked = Array.isArray(spec.audiences) ? spec.audiences.filter((a): a is string => typeof a === 'string') : [];
    const user = tokens.get(token);
    const base = { kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null }, spec };
    const audiences = user?.audiences === undefined ? asked : asked.length === 0 ? [...user.audiences] : asked.filter((a) => user.audiences!.includes(a));
    if (!user || (asked.length > 0 && audiences.length === 0)) {
      send(res, 201, { ...base, status: { user: {}, error: user ? 'token audiences do not match' : 'invalid bearer token' } });
      return;
    }
    send(res, 201, {
      ...base,
      status: {
        authenticated: true,
        user: { username: user.username, uid: user.uid ?? randomUUID(), groups: [...(user.groups ?? [])], ...(user.extra ? { extra: clone(user.extra) } : {}) },
        ...(audiences.length > 0 ? { audiences } : {}),
      },
    });
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://fake');
    const query = url.searchParams;
    const isWatch = req.method === 'GET' && (query.get('watch') === 'true' || query.get('watch') === '1');
    const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
    requests.push({ method: req.method ?? 'GET', path: url.pathname, query: Object.fromEntries(query), watch: isWatch, ...(contentType ? { contentType } : {}) });
    for (const w of [...requestWaiters]) {
      if (requests.filter((q) => q.watch).length >= w.count) {
        requestWaiters.splice(requestWaiters.indexOf(w), 1);
        w.resolve();
      }
    }
    if (options.token !== undefined && req.headers.authorization !== `Bearer ${options.token}`) {
      send(res, 401, statusBody(401, 'Unauthorized', 'Unauthorized'));
      return;
    }
    const route = parsePath(url.pathname);
    const omitted = (options.omitGroups ?? []).some((g) => url.pathname === `/apis/${g}` || url.pathname.startsWith(`/apis/${g}/`));
    if (omitted) {
      send(res, 404, statusBody(404, 'NotFound', 'the server could not find the requested resource'));
      return;
    }
    if (route.kind === 'discovery') {
      if (req.method !== 'GET') throw new HttpError(405, 'MethodNotAllowed', `method ${req.method ?? ''} not allowed`);
      send(res, 200, route.body);
      return;
    }
    if (route.kind === 'tokenreview') {
      if (req.method !== 'POST') throw new HttpError(405, 'MethodNotAllowed', `method ${req.method ?? ''} not allowed`);
      handleTokenReview(res, parseJsonObject(await readBody(req)));
      return;
    }
    if (route.kind === 'unknown') {
      send(res, 404, statusBody(404, 'NotFound', 'the server could not find the requested resource'));
      return;
    }
    const scope = route.scope;
    try {
      switch (req.method) {
        case 'GET': {
          if (scope.name === undefined) {
            if (isWatch) handleWatch(res, scope, query);
            else handleList(res, scope, query);
            return;
          }
          const obj = api.get(scope.resource, scope.namespace, scope.name);
          if (!obj) throw new HttpError(404, 'NotFound', `${scope.resource} "${scope.name}" not found`);
          send(res, 200, obj);
          return;
        }
        case 'POST': {
          if (scope.name !== undefined) throw new HttpError(405, 'MethodNotAllowed', 'POST is not allowed on an object');
          const body = parseJsonObject(await readBody(req));
          checkBodyType(scope, body);
          const generate = typeof body.metadata?.generateName === 'string' && !body.metadata.name ? `${body.metadata.generateName}${randomUUID().slice(0, 5)}` : undefined;
          const placed = placeIn(scope, body, generate ?? body.metadata?.name);
          send(res, 201, api.create(scope.resource, restrictWrite(scope, undefined, placed)));
          return;
        }
        case 'PUT': {
          if (scope.name === undefined) throw new HttpError(405, 'MethodNotAllowed', 'PUT requires a name');
          const body = parseJsonObject(await readBody(req));
          checkBodyType(scope, body);
          const placed = placeIn(scope, body, scope.name);
          const old = api.get(scope.resource, scope.namespace, scope.name);
          if (!old) throw new HttpError(404, 'NotFound', `${scope.resource} "${scope.name}" not found`);
          send(res, 200, api.update(scope.resource, restrictWrite(scope, old, placed)));
          return;
        }
        case 'PATCH': {
          if (scope.name === undefined) throw new HttpError(405, 'MethodNotAllowed', 'PATCH requires a name');
          const text = await readBody(req);
          if (contentType === 'application/apply-patch+yaml') {
            const manager = query.get('fieldManager');
            if (!manager) throw new HttpError(400, 'BadRequest', 'PATCH, application/apply-patch+yaml requires fieldManager to be set');
            const parsed = parseYaml(text);
            if (!parsed.ok) throw new HttpError(400, 'BadRequest', `error decoding YAML: ${parsed.errors.join('; ')}`);
            if (!isRecord(parsed.value)) throw new HttpError(400, 'BadRequest', 'the applied configuration must be an object');
            const force = query.get('force') === 'true';
            const { code, obj } = apply(scope, parsed.value as KubeObjectJson, manager, force);
            send(res, code, obj);
            return;
          }
          if (contentType !== 'application/merge-patch+json' && contentType !== 'application/strategic-merge-patch+json') {
            throw new HttpError(
              415,
              'UnsupportedMediaType',
              `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got ${contentType})`,
            );
          }
          const current = api.get(scope.resource, scope.namespace, scope.name);
          if (!current) throw new HttpError(404, 'NotFound', `${scope.resource} "${scope.name}" not found`);
          const patch = parseJsonObject(text);
          const merged = mergePatch(current, patch) as KubeObjectJson;
          // A patch carries no precondition unless it names a resourceVersion itself.
          if (patch.metadata?.resourceVersion === undefined && merged.metadata) delete merged.metadata.resourceVersion;
          merged.metadata = { ...merged.metadata, name: scope.name, ...(RESOURCES[scope.resource].namespaced ? { namespace: scope.namespace } : {}) };
          send(res, 200, api.update(scope.resource, restrictWrite(scope, current, merged)));
          return;
        }
        case 'DELETE': {
          if (scope.name === undefined || scope.subresource !== undefined) throw new HttpError(405, 'MethodNotAllowed', 'DELETE requires an object');
          const gone = api.delete(scope.resource, scope.namespace, scope.name);
          if (!gone) throw new HttpError(404, 'NotFound', `${scope.resource} "${scope.name}" not found`);
          send(res, 200, gone);
          return;
        }
        default:
          send(res, 405, statusBody(405, 'MethodNotAllowed', `method ${req.method ?? ''} not allowed`));
      }
    } catch (err) {
      if (res.headersSent) res.destroy();
      else sendError(res, err, scope);
    }
  };

  const server: Server = createServer((req, res) => {
    req.on('error', () => {});
    res.on('error', () => {});
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendError(res, err);
      else res.destroy();
    });
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;

  const dir = await mkdtemp(join(tmpdir(), 'fake-kube-'));
  const kubeconfigPath = join(dir, 'kubeconfig');
  const kubeconfig = {
    apiVersion: 'v1',
    kind: 'Config',
    // client-node refuses plain http unless TLS verification is explicitly off, as it would be for a real http endpoint.
    clusters: [{ name: 'fake', cluster: { server: url, 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'fake', user: options.token !== undefined ? { token: options.token } : {} }],
    contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake' } }],
    'current-context': 'fake',
  };
  await writeFile(kubeconfigPath, JSON.stringify(kubeconfig, null, 2));

  // The test API throws plain Errors with a status, as before.
  const testApi = <A extends unknown[], R>(fn: (...args: A) => R) => (...args: A): R => {
    try {
      return fn(...args);
    } catch (err) {
      if (err instanceof HttpError) throw Object.assign(new Error(err.message), { status: err.status });
      throw err;
    }
  };

  let closed: Promise<void> | undefined;
  return {
    url,
    kubeconfigPath,
    requests,
    resourceVersion: () => String(rv),
    create: testApi(api.create),
    update: testApi(api.update),
    delete: testApi(api.delete),
    get: testApi(api.get),
    list: testApi(api.list),
    registerToken(token, user) {
      tokens.set(token, user);
    },
    compact() {
      history.length = 0;
      compactedRv = rv;
    },
    dropWatches() {
      for (const w of [...watchers]) {
        watchers.delete(w);
        if (w.timer) clearTimeout(w.timer);
        w.res.socket?.destroy();
      }
    },
    sendBookmarks() {
      for (const w of watchers) {
        if (w.bookmarks) {
          const info = RESOURCES[w.scope.resource];
          writeEvent(w, 'BOOKMARK', { kind: info.kind, apiVersion: apiVersionOf(info), metadata: { resourceVersion: String(rv) } });
        }
      }
    },
    openWatches: () => watchers.size,
    waitForWatchRequests(count) {
      if (requests.filter((q) => q.watch).length >= count) return Promise.resolve();
      return new Promise((resolve) => requestWaiters.push({ count, resolve }));
    },
    close() {
      closed ??= (async () => {
        for (const w of [...watchers]) {
          if (w.timer) clearTimeout(w.timer);
          w.res.end();
        }
        watchers.clear();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        await rm(dir, { recursive: true, force: true });
      })();
      return closed;
    },
  };
}
