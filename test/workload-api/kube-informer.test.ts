import test, { type ExecutionContext } from 'ava';
import { KubeConfig } from '@kubernetes/client-node';
import { ErrorCode } from '../../src/core/error-codes.ts';
import { startInformer, type Informer, type InformerOptions } from '../../src/workload-api/kube/index.ts';
import { startFakeKube, type FakeKube, type FakeKubeOptions } from '../../src/demo/api-server.ts';
import { captureLog } from '../helpers/log.ts';

interface Pod {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string>; uid?: string };
  spec?: { nodeName?: string };
}

function pod(name: string, nodeName = 'node-a', labels: Record<string, string> = {}): Pod {
  return { metadata: { name, namespace: 'default', labels }, spec: { nodeName } };
}

async function fakeKube(t: ExecutionContext, options: FakeKubeOptions = {}): Promise<FakeKube> {
  const fake = await startFakeKube(options);
  t.teardown(() => fake.close());
  return fake;
}

function kubeConfigFor(fake: FakeKube): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(fake.kubeconfigPath);
  return kc;
}

/** Every event as `verb ns/name`, and a way to wait until a given number arrived. */
function record(informer: Informer<Pod>): { events: string[]; waitFor(count: number): Promise<string[]> } {
  const events: string[] = [];
  const waiters: Array<{ count: number; resolve: (e: string[]) => void }> = [];
  const push = (verb: string, obj: Pod): void => {
    events.push(`${verb} ${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`);
    for (const w of [...waiters]) {
      if (events.length >= w.count) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve([...events]);
      }
    }
  };
  informer.on('add', (o) => push('add', o));
  informer.on('update', (o) => push('update', o));
  informer.on('delete', (o) => push('delete', o));
  return {
    events,
    waitFor: (count) => (events.length >= count ? Promise.resolve([...events]) : new Promise((resolve) => waiters.push({ count, resolve }))),
  };
}

function informerOn(t: ExecutionContext, fake: FakeKube, options: Partial<InformerOptions> = {}): Informer<Pod> {
  const informer = startInformer<Pod>({
    kubeConfig: kubeConfigFor(fake),
    path: '/api/v1/pods',
    logger: captureLog().logger,
    backoff: { initialMs: 5, maxMs: 50 },
    ...options,
  });
  t.teardown(() => informer.close());
  return informer;
}

/** Bounded event-loop turns (no timers) until `check` holds. */
async function until(check: () => boolean, turns = 20_000): Promise<boolean> {
  for (let i = 0; i < turns && !check(); i++) await new Promise((resolve) => setImmediate(resolve));
  return check();
}

const names = (pods: Pod[]): string[] => pods.map((p) => p.metadata?.name ?? '').sort();
const watchRequests = (fake: FakeKube) => fake.requests.filter((r) => r.watch);

// ---- the fake itself behaves like the API server ----

test('fake: a list carries the collection resourceVersion, items without kind, and a PodList kind', async (t) => {
  const fake = await fakeKube(t);
  fake.create('namespaces', { metadata: { name: 'default' } });
  const created = fake.create('pods', pod('p1'));
  const response = await fetch(`${fake.url}/api/v1/namespaces/default/pods`);
  const list = (await response.json()) as { kind: string; apiVersion: string; metadata: { resourceVersion: string }; items: Array<Record<string, unknown>> };
  t.is(list.kind, 'PodList');
  t.is(list.apiVersion, 'v1');
  t.is(list.metadata.resourceVersion, fake.resourceVersion());
  t.is(list.items.length, 1);
  t.is(list.items[0]?.kind, undefined);
  t.truthy(created.metadata?.uid);
  t.is((list.items[0]?.metadata as { uid: string }).uid, created.metadata?.uid as string);
  t.regex(String(created.metadata?.creationTimestamp), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  t.is(created.metadata?.resourceVersion, fake.resourceVersion(), 'the last write holds the latest resourceVersion');
  const single = (await (await fetch(`${fake.url}/api/v1/namespaces/default/pods/p1`)).json()) as { kind: string };
  t.is(single.kind, 'Pod');
});

test('fake: a missing object is a 404 Status', async (t) => {
  const fake = await fakeKube(t);
  const response = await fetch(`${fake.url}/api/v1/namespaces/default/pods/nope`);
  t.is(response.status, 404);
  t.like(await response.json(), { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404, details: { name: 'nope', kind: 'pods' } });
});

test('fake: a watch from a compacted resourceVersion gets one 410 Expired ERROR event and ends', async (t) => {
  const fake = await fakeKube(t);
  const first = fake.create('pods', pod('p1'));
  fake.create('pods', pod('p2'));
  fake.compact();
  const response = await fetch(`${fake.url}/api/v1/pods?watch=1&resourceVersion=${first.metadata?.resourceVersion ?? ''}`);
  t.is(response.status, 200);
  const lines = (await response.text()).trim().split('\n').map((l) => JSON.parse(l) as { type: string; object: Record<string, unknown> });
  t.is(lines.length, 1);
  t.is(lines[0]?.type, 'ERROR');
  t.like(lines[0]?.object, { kind: 'Status', code: 410, reason: 'Expired', status: 'Failure' });
});

test('fake: a watch streams events after its resourceVersion and honours timeoutSeconds; selector changes become ADDED/DELETED', async (t) => {
  const fake = await fakeKube(t);
  const p1 = fake.create('pods', pod('p1', 'node-a'));
  fake.create('pods', pod('p2', 'node-b'));
  fake.update('pods', { ...pod('p2', 'node-a') });
  fake.update('pods', { ...pod('p1', 'node-b') });
  const response = await fetch(`${fake.url}/api/v1/pods?watch=true&timeoutSeconds=1&fieldSelector=spec.nodeName%3Dnode-a&resourceVersion=${p1.metadata?.resourceVersion}`);
  const lines = (await response.text()).trim().split('\n').map((l) => JSON.parse(l) as { type: string; object: Pod & { kind: string } });
  t.deepEqual(lines.map((l) => `${l.type} ${l.object.metadata?.name}`), ['ADDED p2', 'DELETED p1']);
  t.is(lines[0]?.object.kind, 'Pod');
});

test('fake: merge patches on pods/status change annotations; json-patch is refused with a 415 Status', async (t) => {
  const fake = await fakeKube(t);
  fake.create('pods', { ...pod('p1'), metadata: { name: 'p1', namespace: 'default', annotations: { keep: 'me', drop: 'me' } } });
  for (const type of ['application/merge-patch+json', 'application/strategic-merge-patch+json']) {
    const response = await fetch(`${fake.url}/api/v1/namespaces/default/pods/p1/status`, {
      method: 'PATCH',
      headers: { 'content-type': type },
      body: JSON.stringify({ metadata: { annotations: { [type]: 'yes', drop: null } } }),
    });
    t.is(response.status, 200);
  }
  t.deepEqual(fake.get('pods', 'default', 'p1')?.metadata?.annotations, {
    keep: 'me',
    'application/merge-patch+json': 'yes',
    'application/strategic-merge-patch+json': 'yes',
  });
  const refused = await fetch(`${fake.url}/api/v1/namespaces/default/pods/p1`, { method: 'PATCH', headers: { 'content-type': 'application/json-patch+json' }, body: '[]' });
  t.is(refused.status, 415);
  t.like(await refused.json(), { kind: 'Status', code: 415, reason: 'UnsupportedMediaType' });
});

test('fake: with a token configured, a request without it is a 401 Status', async (t) => {
  const fake = await fakeKube(t, { token: 'sekret' });
  const response = await fetch(`${fake.url}/api/v1/pods`);
  t.is(response.status, 401);
  t.like(await response.json(), { kind: 'Status', code: 401, reason: 'Unauthorized' });
});

// ---- the informer ----

test('informer: the initial list fills the cache, emits one add per object, then resolves synced', async (t) => {
  const fake = await fakeKube(t, { token: 'sekret' });
  fake.create('pods', pod('p1'));
  fake.create('pods', pod('p2'));
  const informer = informerOn(t, fake);
  const rec = record(informer);
  await informer.synced;
  t.deepEqual(names(informer.list()), ['p1', 'p2']);
  t.deepEqual([...rec.events].sort(), ['add default/p1', 'add default/p2']);
  t.is(informer.get('default', 'p1')?.spec?.nodeName, 'node-a');
  t.is(informer.get('default', 'nope'), undefined);
  t.is(informer.resourceVersion(), fake.resourceVersion());
  t.is(fake.requests[0]?.watch, false, 'a list comes first');
});

test('informer: ADDED, MODIFIED and DELETED flow through as add, update and delete', async (t) => {
  const fake = await fakeKube(t);
  const informer = informerOn(t, fake);
  const rec = record(informer);
  const updates: Array<[Pod, Pod]> = [];
  informer.on('update', (obj, previous) => updates.push([obj, previous]));
  await informer.synced;
  await fake.waitForWatchRequests(1);
  fake.create('pods', pod('p1'));
  await rec.waitFor(1);
  fake.update('pods', pod('p1', 'node-a', { app: 'x' }));
  await rec.waitFor(2);
  t.deepEqual(informer.get('default', 'p1')?.metadata?.labels, { app: 'x' });
  fake.delete('pods', 'default', 'p1');
  t.deepEqual(await rec.waitFor(3), ['add default/p1', 'update default/p1', 'delete default/p1']);
  t.deepEqual(informer.list(), []);
  t.deepEqual(updates[0]?.[1].metadata?.labels, {}, 'update carries the previous object');
  t.is(informer.resourceVersion(), fake.resourceVersion());
  t.is(watchRequests(fake).length, 1, 'one watch carried it all');
  t.like(watchRequests(fake)[0]?.query, { allowWatchBookmarks: 'true', timeoutSeconds: '300' });
});

test('informer: a fieldSelector on spec.nodeName keeps out pods of other nodes, in the list and in the watch', async (t) => {
  const fake = await fakeKube(t);
  fake.create('pods', pod('mine-1', 'node-a'));
  fake.create('pods', pod('theirs-1', 'node-b'));
  const informer = informerOn(t, fake, { fieldSelector: 'spec.nodeName=node-a' });
  const rec = record(informer);
  await informer.synced;
  await fake.waitForWatchRequests(1);
  fake.create('pods', pod('theirs-2', 'node-b'));
  fake.create('pods', pod('mine-2', 'node-a'));
  t.deepEqual(await rec.waitFor(2), ['add default/mine-1', 'add default/mine-2']);
  t.deepEqual(names(informer.list()), ['mine-1', 'mine-2']);
  t.true(fake.requests.every((r) => r.query.fieldSelector === 'spec.nodeName=node-a'));
});

test('informer: a labelSelector narrows the collection', async (t) => {
  const fake = await fakeKube(t);
  fake.create('pods', pod('in', 'node-a', { 'istio.io/dataplane-mode': 'ambient' }));
  fake.create('pods', pod('out', 'node-a'));
  const informer = informerOn(t, fake, { labelSelector: 'istio.io/dataplane-mode=ambient' });
  await informer.synced;
  t.deepEqual(names(informer.list()), ['in']);
});

test('informer: bookmarks advance the resourceVersion without events', async (t) => {
  const fake = await fakeKube(t);
  const informer = informerOn(t, fake, { fieldSelector: 'spec.nodeName=node-a' });
  const rec = record(informer);
  await informer.synced;
  await fake.waitForWatchRequests(1);
  fake.create('pods', pod('theirs', 'node-b'));
  t.not(informer.resourceVersion(), fake.resourceVersion());
  fake.sendBookmarks();
  t.true(await until(() => informer.resourceVersion() === fake.resourceVersion()));
  t.deepEqual(rec.events, []);
});

test('informer: a dropped watch reconnects from the last resourceVersion, missing nothing and repeating nothing', async (t) => {
  const fake = await fakeKube(t);
  fake.create('pods', pod('p0'));
  const informer = informerOn(t, fake);
  const rec = record(informer);
  await informer.synced;
  await fake.waitForWatchRequests(1);
  const p1 = fake.create('pods', pod('p1'));
  await rec.waitFor(2);
  fake.dropWatches();
  fake.create('pods', pod('p2')); // while disconnected
  await fake.waitForWatchRequests(2);
  fake.create('pods', pod('p3'));
  t.deepEqual(await rec.waitFor(4), ['add default/p0', 'add default/p1', 'add default/p2', 'add default/p3']);
  t.is(watchRequests(fake)[1]?.query.resourceVersion, p1.metadata?.resourceVersion, 'resumed where it was');
  t.is(fake.requests.filter((r) => !r.watch).length, 1, 'no relist was needed');
  fake.dropWatches();
  await fake.waitForWatchRequests(3);
  fake.delete('pods', 'default', 'p0');
  t.deepEqual(await rec.waitFor(5), ['add default/p0', 'add default/p1', 'add default/p2', 'add default/p3', 'delete default/p0']);
  t.deepEqual(names(informer.list()), ['p1', 'p2', 'p3']);
});

test('informer: a watch ended by timeoutSeconds is renewed from its resourceVersion without a relist', async (t) => {
  const fake = await fakeKube(t);
  const informer = informerOn(t, fake, { watchTimeoutSeconds: 1 });
  const rec = record(informer);
  await informer.synced;
  await fake.waitForWatchRequests(1);
  const p1 = fake.create('pods', pod('p1'));
  await rec.waitFor(1);
  await fake.waitForWatchRequests(2);
  t.is(watchRequests(fake)[0]?.query.timeoutSeconds, '1');
  t.is(watchRequests(fake)[1]?.query.resourceVersion, p1.metadata?.resourceVersion);
  t.is(fake.requests.filter((r) => !r.watch).length, 1);
  fake.create('pods', pod('p2'));
  t.deepEqual(await rec.waitFor(2), ['add default/p1', 'add default/p2']);
});

test('informer: after compaction a reconnect gets 410 Gone, lists again and reports only the difference', async (t) => {
  const fake = await fakeKube(t);
  for (const name of ['a', 'b', 'c']) fake.create('pods', pod(name));
  const log = captureLog();
  const informer = informerOn(t, fake, { logger: log.logger });
  const rec = record(informer);
  await informer.synced;
  await fake.waitForWatchRequests(1);
  t.is(rec.events.length, 3);
  // All of this happens while the informer is cut off, then the history it would resume from is gone.
  fake.dropWatches();
  fake.delete('pods', 'default', 'b');
  fake.update('pods', pod('a', 'node-a', { changed: 'yes' }));
  fake.create('pods', pod('d'));
  fake.compact();
  const after = await rec.waitFor(6);
  t.deepEqual(after.slice(3), ['delete default/b', 'update default/a', 'add default/d']);
  t.deepEqual(names(informer.list()), ['a', 'c', 'd']);
  t.deepEqual(informer.get('default', 'a')?.metadata?.labels, { changed: 'yes' });
  t.is(informer.resourceVersion(), fake.resourceVersion());
  // list, watch (410), list, watch
  t.deepEqual(fake.requests.map((r) => (r.watch ? 'watch' : 'list')).slice(0, 4), ['list', 'watch', 'watch', 'list']);
  await fake.waitForWatchRequests(3);
  t.is(watchRequests(fake)[2]?.query.resourceVersion, fake.resourceVersion(), 'the new watch starts at the relist');
  fake.create('pods', pod('e'));
  t.deepEqual((await rec.waitFor(7)).slice(6), ['add default/e']);
  t.true(log.records.some((r) => String(r.msg).includes('410 Gone')));
});

test('informer: a failing API server (401) is retried with backoff, and close ends the retries', async (t) => {
  const fake = await fakeKube(t, { token: 'right' });
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: fake.url, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'wrong' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  const log = captureLog();
  const informer = informerOn(t, fake, { kubeConfig: kc, logger: log.logger });
  const failure = await log.waitForCode(ErrorCode.KUBE_REQUEST_FAILED);
  t.regex(String(failure.err), /HTTP 401/);
  t.true(await until(() => fake.requests.length >= 3), 'it keeps trying');
  await informer.close();
  await t.throwsAsync(informer.synced, { message: /closed before its first list/ });
});

test('informer: close stops the watch and nothing is requested afterwards', async (t) => {
  const fake = await fakeKube(t);
  const informer = informerOn(t, fake);
  await informer.synced;
  await fake.waitForWatchRequests(1);
  t.is(fake.openWatches(), 1);
  await informer.close();
  await informer.close(); // idempotent
  t.true(await until(() => fake.openWatches() === 0), 'the server saw the watch end');
  const count = fake.requests.length;
  fake.create('pods', pod('late'));
  fake.dropWatches();
  await until(() => false, 200); // room for a stray reconnect to show up
  t.is(fake.requests.length, count, 'no request after close');
  t.deepEqual(informer.list(), []);
});

test('informer: a throwing handler is logged and the informer keeps going', async (t) => {
  const fake = await fakeKube(t);
  fake.create('pods', pod('p1'));
  const log = captureLog();
  const informer = informerOn(t, fake, { logger: log.logger });
  informer.on('add', () => {
    throw new Error('boom');
  });
  await informer.synced;
  await log.waitForCode(ErrorCode.KUBE_HANDLER_FAILED);
  t.deepEqual(names(informer.list()), ['p1']);
});
