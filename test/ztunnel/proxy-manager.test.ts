import test from 'ava';
import { Readiness } from '../../src/core/lifecycle.ts';
import { silentLogger } from '../../src/core/logger.ts';
import type { Workload } from '../../src/workload-api/types.ts';
import type { ZdsRequest } from '../../src/workload-api/zds.ts';
import { addDecision, managerReady, ProxyManager, uidsToDrain, WORKLOAD_PROXY_MANAGER_TASK, type AddDecision, type StartPodProxy } from '../../src/ztunnel/proxy-manager.ts';
import { zdsViolation } from '../../src/ztunnel/zds-client.ts';

/** The in-pod proxy manager's decisions (pure, table-driven) and its bookkeeping over fakes. */

const drainTable: Array<[string, string[], string[], string[]]> = [
  ['nothing known', [], ['a'], []],
  ['all mentioned', ['a', 'b'], ['a', 'b'], []],
  ['one not mentioned', ['a', 'b', 'c'], ['a', 'c'], ['b']],
  ['none mentioned (sorted)', ['c', 'a'], [], ['a', 'c']],
  ['mentioned but unknown is ignored', ['a'], ['a', 'z'], []],
];
for (const [name, known, mentioned, expected] of drainTable) {
  test(`uidsToDrain: ${name}`, (t) => t.deepEqual(uidsToDrain(known, new Set(mentioned)), expected));
}

const addTable: Array<[string, { netns: string; up: boolean } | undefined, string, AddDecision]> = [
  ['new uid', undefined, '1:10', 'start'],
  ['same netns, up', { netns: '1:10', up: true }, '1:10', 'unchanged'],
  ['same netns, pending', { netns: '1:10', up: false }, '1:10', 'retry'],
  ['other netns, up', { netns: '1:10', up: true }, '1:11', 'replace'],
  ['other netns, pending', { netns: '1:10', up: false }, '2:10', 'replace'],
];
for (const [name, existing, netns, expected] of addTable) {
  test(`addDecision: ${name}`, (t) => t.is(addDecision(existing, netns), expected));
}

test('managerReady: only after SnapshotSent with nothing pending', (t) => {
  t.false(managerReady(false, 0));
  t.false(managerReady(true, 1));
  t.true(managerReady(true, 0));
});

const add: ZdsRequest = { kind: 'add', uid: 'u', workloadInfo: { name: 'n', namespace: 'ns', serviceAccount: 'sa' } };
const violations: Array<[string, boolean, ZdsRequest, boolean, RegExp | undefined]> = [
  ['add with fd', false, add, true, undefined],
  ['add with fd after snapshot', true, add, true, undefined],
  ['add without fd', false, add, false, /carries no network namespace fd/],
  ['keep before snapshot', false, { kind: 'keep', uid: 'u' }, false, undefined],
  ['keep after snapshot', true, { kind: 'keep', uid: 'u' }, false, /KeepWorkload u after SnapshotSent/],
  ['keep with fd', false, { kind: 'keep', uid: 'u' }, true, /must not carry a file descriptor/],
  ['del with fd', false, { kind: 'del', uid: 'u' }, true, /must not carry a file descriptor/],
  ['del after snapshot', true, { kind: 'del', uid: 'u' }, false, undefined],
  ['first snapshot', false, { kind: 'snapshotSent' }, false, undefined],
  ['duplicate snapshot', true, { kind: 'snapshotSent' }, false, /duplicate SnapshotSent/],
];
for (const [name, snapshotSent, request, fd, expected] of violations) {
  test(`zdsViolation: ${name}`, (t) => {
    const violation = zdsViolation(snapshotSent, request, fd);
    if (expected) t.regex(violation ?? '', expected);
    else t.is(violation, undefined);
  });
}

/** A manager over fakes: fds are numbers whose namespace is `ns:<fd % 100>`; startProxy fails while `failing` holds the uid. */
function fakeManager(options: { retryMs?: number } = {}) {
  const readiness = new Readiness();
  const started: StartPodProxy[] = [];
  const stopped: string[] = [];
  const closedFds: number[] = [];
  const failing = new Set<string>();
  const workload = { uid: 'cluster1//v1/Pod/ns/n' } as Workload;
  const manager = new ProxyManager({
    trustDomain: 'td',
    state: { workloadByUid: () => undefined, workloadByName: (ns, name) => (ns === 'ns' && name === 'n' ? workload : undefined) },
    startProxy: async (pod) => {
      if (failing.has(pod.uid)) throw new Error('listen EADDRINUSE');
      started.push(pod);
      return { close: async () => void stopped.push(`${pod.uid}@${pod.netnsFd}`) };
    },
    netns: { inode: (fd) => `ns:${fd % 100}`, close: (fd) => void closedFds.push(fd) },
    readiness,
    logger: silentLogger(),
    ...(options.retryMs !== undefined ? { retryMs: options.retryMs } : {}),
  });
  return { manager, readiness, started, stopped, closedFds, failing, workload };
}
const info = (name: string) => ({ name, namespace: 'ns', serviceAccount: 'sa' });
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

test('ProxyManager: add starts a proxy with the pod identity; same netns is idempotent; a new netns replaces it', async (t) => {
  const { manager, started, stopped, closedFds, workload } = fakeManager();
  t.is(await manager.add('u1', info('n'), 101), undefined);
  t.is(started.length, 1);
  t.deepEqual(started[0]!.identity, { trustDomain: 'td', namespace: 'ns', serviceAccount: 'sa' });
  t.is(started[0]!.workload(), workload);
  t.is(await manager.add('u1', info('n'), 201), undefined); // ns:1 again
  t.is(started.length, 1);
  t.deepEqual(closedFds, [201]);
  t.is(await manager.add('u1', info('n'), 102), undefined); // ns:2
  await settle();
  t.is(started.length, 2);
  t.deepEqual(stopped, ['u1@101']);
  t.deepEqual(closedFds, [201, 101]);
  await manager.close();
  t.deepEqual(stopped, ['u1@101', 'u1@102']);
  t.deepEqual(closedFds, [201, 101, 102]);
});

test('ProxyManager: SnapshotSent drains what was not mentioned; readiness clears then, and is re-armed on disconnect', async (t) => {
  const { manager, readiness, stopped } = fakeManager();
  t.deepEqual(readiness.report().pending, [WORKLOAD_PROXY_MANAGER_TASK]);
  manager.connectionStarted();
  await manager.add('a', info('a'), 1);
  await manager.add('b', info('b'), 2);
  await manager.add('c', info('c'), 3);
  await manager.snapshotSent();
  t.true(readiness.report().ready);
  manager.connectionLost();
  t.deepEqual(readiness.report().pending, [WORKLOAD_PROXY_MANAGER_TASK]);
  manager.connectionStarted();
  await manager.keep('a');
  await manager.add('c', info('c'), 3);
  await manager.del('c'); // del before the snapshot: gone, and not kept
  await manager.snapshotSent();
  await settle();
  t.deepEqual(stopped.sort(), ['b@2', 'c@3']);
  t.deepEqual(Object.keys(manager.dump()), ['a']);
  t.true(readiness.report().ready);
  await manager.close();
});

test('ProxyManager: a start failure is a NACK; the pod stays pending (not ready) and is retried', async (t) => {
  const { manager, readiness, failing, started } = fakeManager({ retryMs: 30 });
  failing.add('u1');
  manager.connectionStarted();
  t.regex((await manager.add('u1', info('n'), 1)) ?? '', /failed to start the proxy for ns\/n: listen EADDRINUSE/);
  await manager.snapshotSent();
  t.deepEqual(manager.dump()['u1']?.state, 'Pending');
  t.false(readiness.report().ready);
  failing.delete('u1');
  const keepAlive = setInterval(() => {}, 1000); // the retry timer is unref'd
  await readiness.whenReady();
  clearInterval(keepAlive);
  t.is(started.length, 1);
  t.deepEqual(manager.dump()['u1']?.state, 'Up');
  await manager.close();
});
