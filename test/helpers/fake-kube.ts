import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A fake Kubernetes API server, over real HTTP on 127.0.0.1. The API server is the one thing that cannot run here,
 * so this fake follows the real one for what the project uses (core/v1 pods and namespaces):
 * - one global, monotonically increasing resourceVersion (a string on the wire), `uid` and `creationTimestamp`;
 * - list answers `{kind: PodList, apiVersion: v1, metadata: {resourceVersion}, items}`, items without kind/apiVersion;
 * - errors are `Status` objects (NotFound, AlreadyExists, Conflict, Unauthorized, UnsupportedMediaType);
 * - watch streams `{"type", "object"}` lines of events after the given resourceVersion; with a field or label selector
 *   an object that stops matching arrives as DELETED and one that starts matching as ADDED, as the real watch cache does;
 * - a resourceVersion older than the retained history (see `compact()`) gets one ERROR event (410 Expired) and the
 *   stream ends; `timeoutSeconds` ends the stream; `allowWatchBookmarks` lets `sendBookmarks()` reach the watcher;
 * - PATCH with `merge-patch+json` or `strategic-merge-patch+json` (both applied as a JSON merge patch: enough for
 *   labels and annotations), also on `pods/{name}/status`.
 */

export type FakeResource = 'pods' | 'namespaces';

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
}

export interface FakeKubeOptions {
  /** Require `Authorization: Bearer <token>`; the kubeconfig carries it. */
  readonly token?: string;
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
  readonly subresource?: string;
}

interface Watcher {
  readonly scope: Scope;
  readonly matches: (obj: KubeObjectJson) => boolean;
  readonly bookmarks: boolean;
  readonly res: ServerResponse;
  readonly timer?: NodeJS.Timeout;
}

const KIND: Record<FakeResource, string> = { pods: 'Pod', namespaces: 'Namespace' };

function clone<T>(value: T): T {
  return structuredClone(value);
}

function keyOf(namespace: string | undefined, name: string): string {
  return `${namespace ?? ''}/${name}`;
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

/** Equality-based selector terms, comma-separated: `k=v`, `k==v`, `k!=v`; for labels also `k` and `!k`. */
function compileSelector(selector: string | null, read: (obj: KubeObjectJson, key: string) => string | undefined): (obj: KubeObjectJson) => boolean {
  if (!selector) return () => true;
  const terms = selector.split(',').map((t) => t.trim()).filter(Boolean).map((term) => {
    let m: RegExpMatchArray | null;
    if ((m = /^([^!=]+)!=(.*)$/.exec(term))) return { key: m[1]!.trim(), op: '!=' as const, value: m[2]!.trim() };
    if ((m = /^([^!=]+)==?(.*)$/.exec(term))) return { key: m[1]!.trim(), op: '=' as const, value: m[2]!.trim() };
    if ((m = /^!(.+)$/.exec(term))) return { key: m[1]!.trim(), op: '!' as const, value: '' };
    return { key: term, op: 'exists' as const, value: '' };
  });
  return (obj) =>
    terms.every((t) => {
      const v = read(obj, t.key);
      switch (t.op) {
        case '=':
          return v !== undefined && v === t.value;
        case '!=':
          return v === undefined || v !== t.value;
        case '!':
          return v === undefined;
        case 'exists':
          return v !== undefined;
      }
    });
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return clone(patch);
  const out: Record<string, unknown> =
    target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** Parses `/api/v1/...` into what it names; undefined for paths this fake does not serve. */
function parsePath(path: string): Scope | undefined {
  const parts = path.split('/').filter(Boolean);
  if (parts[0] !== 'api' || parts[1] !== 'v1') return undefined;
  const rest = parts.slice(2);
  if (rest.length === 1 && rest[0] === 'pods') return { resource: 'pods' };
  if (rest[0] !== 'namespaces') return undefined;
  if (rest.length === 1) return { resource: 'namespaces' };
  const ns = decodeURIComponent(rest[1]!);
  if (rest.length === 2) return { resource: 'namespaces', name: ns };
  if (rest[2] !== 'pods') return undefined;
  if (rest.length === 3) return { resource: 'pods', namespace: ns };
  if (rest.length === 4) return { resource: 'pods', namespace: ns, name: decodeURIComponent(rest[3]!) };
  if (rest.length === 5 && rest[4] === 'status') return { resource: 'pods', namespace: ns, name: decodeURIComponent(rest[3]!), subresource: 'status' };
  return undefined;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function startFakeKube(options: FakeKubeOptions = {}): Promise<FakeKube> {
  let rv = 1;
  /** Events with rv <= compactedRv are no longer retained. */
  let compactedRv = 1;
  const stores: Record<FakeResource, Map<string, KubeObjectJson>> = { pods: new Map(), namespaces: new Map() };
  const history: HistoryEvent[] = [];
  const watchers = new Set<Watcher>();
  const requests: FakeKubeRequest[] = [];
  const requestWaiters: Array<{ count: number; resolve: () => void }> = [];

  const inScope = (scope: Scope, obj: KubeObjectJson): boolean =>
    scope.resource === 'namespaces' || scope.namespace === undefined || obj.metadata?.namespace === scope.namespace;

  const withType = (resource: FakeResource, obj: KubeObjectJson): KubeObjectJson => ({ ...clone(obj), kind: KIND[resource], apiVersion: 'v1' });

  const writeEvent = (w: Watcher, type: string, object: KubeObjectJson): void => {
    w.res.write(`${JSON.stringify({ type, object })}\n`);
  };

  const deliver = (w: Watcher, ev: HistoryEvent): void => {
    if (ev.resource !== w.scope.resource || !inScope(w.scope, ev.object)) return;
    const now = w.matches(ev.object);
    const before = ev.type === 'MODIFIED' && ev.previous ? w.matches(ev.previous) : now;
    let type: string = ev.type;
    if (ev.type === 'MODIFIED') {
      if (now && !before) type = 'ADDED';
      else if (!now && before) type = 'DELETED';
      else if (!now) return;
    } else if (!now) return;
    writeEvent(w, type, withType(ev.resource, ev.object));
  };

  const record = (ev: HistoryEvent): void => {
    history.push(ev);
    for (const w of watchers) deliver(w, ev);
  };

  const validate = (resource: FakeResource, obj: KubeObjectJson): { namespace: string | undefined; name: string } => {
    const name = obj.metadata?.name;
    if (!name) throw new Error('fake-kube: metadata.name is required');
    const namespace = resource === 'pods' ? (obj.metadata?.namespace ?? 'default') : undefined;
    return { namespace, name };
  };

  const api = {
    create(resource: FakeResource, input: FakeObjectInput): KubeObjectJson {
      const obj = input as KubeObjectJson;
      const { namespace, name } = validate(resource, obj);
      const key = keyOf(namespace, name);
      if (stores[resource].has(key)) throw Object.assign(new Error(`${resource} "${name}" already exists`), { status: 409 });
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
        creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      };
      stores[resource].set(key, stored);
      record({ rv, type: 'ADDED', resource, object: clone(stored) });
      return withType(resource, stored);
    },
    update(resource: FakeResource, input: FakeObjectInput): KubeObjectJson {
      const obj = input as KubeObjectJson;
      const { namespace, name } = validate(resource, obj);
      const key = keyOf(namespace, name);
      const old = stores[resource].get(key);
      if (!old) throw Object.assign(new Error(`${resource} "${name}" not found`), { status: 404 });
      const wanted = obj.metadata?.resourceVersion;
      if (wanted !== undefined && wanted !== old.metadata?.resourceVersion) {
        throw Object.assign(new Error(`Operation cannot be fulfilled on ${resource} "${name}": the object has been modified`), { status: 409 });
      }
      rv++;
      const stored: KubeObjectJson = clone(obj);
      delete stored.kind;
      delete stored.apiVersion;
      stored.metadata = { ...stored.metadata, ...serverMeta(old), resourceVersion: String(rv) };
      stores[resource].set(key, stored);
      record({ rv, type: 'MODIFIED', resource, object: clone(stored), previous: clone(old) });
      return withType(resource, stored);
    },
    delete(resource: FakeResource, namespace: string | undefined, name: string): KubeObjectJson | undefined {
      const key = keyOf(resource === 'pods' ? (namespace ?? 'default') : undefined, name);
      const old = stores[resource].get(key);
      if (!old) return undefined;
      stores[resource].delete(key);
      rv++;
      const last: KubeObjectJson = { ...clone(old), metadata: { ...clone(old.metadata), resourceVersion: String(rv) } };
      record({ rv, type: 'DELETED', resource, object: last });
      return withType(resource, last);
    },
    get(resource: FakeResource, namespace: string | undefined, name: string): KubeObjectJson | undefined {
      const obj = stores[resource].get(keyOf(resource === 'pods' ? (namespace ?? 'default') : undefined, name));
      return obj ? withType(resource, obj) : undefined;
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

  const send = (res: ServerResponse, code: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  const sendError = (res: ServerResponse, err: unknown, scope?: Scope): void => {
    const status = (err as { status?: number }).status ?? 500;
    const reason = { 404: 'NotFound', 409: 'Conflict', 415: 'UnsupportedMediaType', 400: 'BadRequest' }[status as 404] ?? 'InternalError';
    const message = err instanceof Error ? err.message : String(err);
    const details = scope?.name !== undefined ? { name: scope.name, kind: scope.resource } : undefined;
    send(res, status, statusBody(status, message.includes('already exists') ? 'AlreadyExists' : reason, message, details));
  };

  const selectorsOf = (query: URLSearchParams): ((obj: KubeObjectJson) => boolean) => {
    const fields = compileSelector(query.get('fieldSelector'), (obj, key) => fieldValue(obj, key));
    const labels = compileSelector(query.get('labelSelector'), (obj, key) => obj.metadata?.labels?.[key]);
    return (obj) => fields(obj) && labels(obj);
  };

  const handleList = (res: ServerResponse, scope: Scope, query: URLSearchParams): void => {
    const matches = selectorsOf(query);
    const items = [...stores[scope.resource].values()].filter((o) => inScope(scope, o) && matches(o)).map((o) => clone(o));
    send(res, 200, { kind: `${KIND[scope.resource]}List`, apiVersion: 'v1', metadata: { resourceVersion: String(rv) }, items });
  };

  const handleWatch = (res: ServerResponse, scope: Scope, query: URLSearchParams): void => {
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
      matches: selectorsOf(query),
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
      for (const o of stores[scope.resource].values()) {
        if (inScope(scope, o) && w.matches(o)) writeEvent(w, 'ADDED', withType(scope.resource, o));
      }
      return;
    }
    for (const ev of history) if (ev.rv > Number(from)) deliver(w, ev);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://fake');
    const query = url.searchParams;
    const isWatch = req.method === 'GET' && (query.get('watch') === 'true' || query.get('watch') === '1');
    requests.push({ method: req.method ?? 'GET', path: url.pathname, query: Object.fromEntries(query), watch: isWatch });
    for (const w of [...requestWaiters]) {
      if (requests.filter((r) => r.watch).length >= w.count) {
        requestWaiters.splice(requestWaiters.indexOf(w), 1);
        w.resolve();
      }
    }
    if (options.token !== undefined && req.headers.authorization !== `Bearer ${options.token}`) {
      send(res, 401, statusBody(401, 'Unauthorized', 'Unauthorized'));
      return;
    }
    const scope = parsePath(url.pathname);
    if (!scope) {
      send(res, 404, statusBody(404, 'NotFound', 'the server could not find the requested resource'));
      return;
    }
    const namespaced = scope.resource === 'pods';
    try {
      switch (req.method) {
        case 'GET': {
          if (scope.name === undefined) {
            if (isWatch) handleWatch(res, scope, query);
            else handleList(res, scope, query);
            return;
          }
          const obj = api.get(scope.resource, scope.namespace, scope.name);
          if (!obj) throw Object.assign(new Error(`${scope.resource} "${scope.name}" not found`), { status: 404 });
          send(res, 200, obj);
          return;
        }
        case 'POST': {
          if (scope.name !== undefined) throw Object.assign(new Error('method not allowed on an object'), { status: 400 });
          const body = JSON.parse(await readBody(req)) as KubeObjectJson;
          const meta = { ...body.metadata, ...(namespaced ? { namespace: scope.namespace ?? body.metadata?.namespace ?? 'default' } : {}) };
          send(res, 201, api.create(scope.resource, { ...body, metadata: meta }));
          return;
        }
        case 'PUT': {
          if (scope.name === undefined) throw Object.assign(new Error('name required'), { status: 400 });
          const body = JSON.parse(await readBody(req)) as KubeObjectJson;
          const meta = { ...body.metadata, name: scope.name, ...(namespaced ? { namespace: scope.namespace } : {}) };
          send(res, 200, api.update(scope.resource, { ...body, metadata: meta }));
          return;
        }
        case 'PATCH': {
          if (scope.name === undefined) throw Object.assign(new Error('name required'), { status: 400 });
          const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
          if (type !== 'application/merge-patch+json' && type !== 'application/strategic-merge-patch+json') {
            throw Object.assign(new Error(`the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got ${type})`), { status: 415 });
          }
          const current = api.get(scope.resource, scope.namespace, scope.name);
          if (!current) throw Object.assign(new Error(`${scope.resource} "${scope.name}" not found`), { status: 404 });
          const patch = JSON.parse(await readBody(req)) as KubeObjectJson;
          const merged = mergePatch(current, patch) as KubeObjectJson;
          // A patch carries no precondition unless it names a resourceVersion itself.
          if (patch.metadata?.resourceVersion === undefined && merged.metadata) delete merged.metadata.resourceVersion;
          merged.metadata = { ...merged.metadata, name: scope.name, ...(namespaced ? { namespace: scope.namespace } : {}) };
          send(res, 200, api.update(scope.resource, merged));
          return;
        }
        case 'DELETE': {
          if (scope.name === undefined) throw Object.assign(new Error('name required'), { status: 400 });
          const gone = api.delete(scope.resource, scope.namespace, scope.name);
          if (!gone) throw Object.assign(new Error(`${scope.resource} "${scope.name}" not found`), { status: 404 });
          send(res, 200, gone);
          return;
        }
        default:
          send(res, 405, statusBody(405, 'MethodNotAllowed', `method ${req.method} not allowed`));
      }
    } catch (err) {
      if (err instanceof SyntaxError) sendError(res, Object.assign(err, { status: 400 }), scope);
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

  let closed: Promise<void> | undefined;
  return {
    url,
    kubeconfigPath,
    requests,
    resourceVersion: () => String(rv),
    create: api.create,
    update: api.update,
    delete: api.delete,
    get: api.get,
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
        if (w.bookmarks) writeEvent(w, 'BOOKMARK', { kind: KIND[w.scope.resource], apiVersion: 'v1', metadata: { resourceVersion: String(rv) } });
      }
    },
    openWatches: () => watchers.size,
    waitForWatchRequests(count) {
      if (requests.filter((r) => r.watch).length >= count) return Promise.resolve();
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
