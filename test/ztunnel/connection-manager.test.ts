import test from 'ava';
import { once } from 'node:events';
import { constants as h2 } from 'node:http2';
import { dial } from '../../src/hbone/forward.ts';
import type { HboneHandler } from '../../src/hbone/server.ts';
import { spiffeId, type SpiffeId } from '../../src/identity/spiffe.ts';
import { WorkloadStore } from '../../src/workload-api/store.ts';
import type { AuthorizationPolicy, PolicyMatch, Workload } from '../../src/workload-api/types.ts';
import { ConnectionManager, connectionsToClose, POLICY_CHANGED_REASON, WORKLOAD_REMOVED_REASON, type TrackedConnection } from '../../src/ztunnel/connection-manager.ts';
import { hboneFixture } from '../helpers/hbone.ts';
import { testWorkload } from '../helpers/mesh.ts';
import { echo, tcpServer } from '../helpers/tcp.ts';

// ---- builders: plain domain objects ----

const NS = 'ns';
const SERVER_IP = '127.0.0.1';
const alice = spiffeId('cluster.local', NS, 'alice');
const bob = spiffeId('cluster.local', NS, 'bob');

const emptyMatch: PolicyMatch = {
  namespaces: [], notNamespaces: [], principals: [], notPrincipals: [], sourceIps: [], notSourceIps: [],
  destinationIps: [], notDestinationIps: [], destinationPorts: [], notDestinationPorts: [], serviceAccounts: [], notServiceAccounts: [],
};

/** A namespace policy in NS with one rule of one clause of one match. */
function policy(name: string, action: 'ALLOW' | 'DENY', fields: Partial<PolicyMatch>): AuthorizationPolicy {
  return { name, namespace: NS, scope: 'NAMESPACE', action, dryRun: false, rules: [{ clauses: [{ matches: [{ ...emptyMatch, ...fields }] }] }] };
}
const principal = (id: SpiffeId) => ({ kind: 'exact' as const, value: `${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}` });

const server: Workload = testWorkload({ name: 'server', namespace: NS, addresses: [SERVER_IP] });

function storeWith(...policies: AuthorizationPolicy[]): WorkloadStore {
  const store = new WorkloadStore();
  store.upsertWorkload(server);
  for (const p of policies) store.upsertPolicy(p);
  return store;
}

interface FakeConnection extends TrackedConnection {
  readonly closedWith: string[];
}

/** A connection to `server` from `peer` (plaintext when undefined); `close` records its reason. */
function fake(id: string, peer?: SpiffeId, destinationPort = 8080): FakeConnection {
  const closedWith: string[] = [];
  return {
    id,
    workload: server,
    attributes: { sourceIp: '10.0.0.1', destinationIp: SERVER_IP, destinationPort, ...(peer ? { peer } : {}) },
    closedWith,
    close: (reason) => void closedWith.push(reason),
  };
}

// ---- pure decision ----

test('connectionsToClose: no policies closes nothing', (t) => {
  t.deepEqual(connectionsToClose([fake('a', alice), fake('p')], storeWith()), []);
});

test('connectionsToClose: names the connections a DENY matches, with the documented reason', (t) => {
  const a = fake('a', alice);
  const decisions = connectionsToClose([a, fake('b', bob)], storeWith(policy('deny-alice', 'DENY', { principals: [principal(alice)] })));
  t.deepEqual(decisions, [{ connection: a, reason: `${POLICY_CHANGED_REASON}: explicitly denied by: ${NS}/deny-alice` }]);
});

// ---- the manager ----

test('recheck with no policies closes nothing', (t) => {
  const manager = new ConnectionManager();
  const conns = [fake('a', alice), fake('b', bob), fake('p')];
  for (const c of conns) manager.register(c);
  t.deepEqual(manager.recheck(storeWith()), { checked: 3, closed: [] });
  t.is(manager.count(), 3);
  t.true(conns.every((c) => c.closedWith.length === 0));
});

test('a DENY for one principal closes exactly its connections and leaves the others', (t) => {
  const manager = new ConnectionManager();
  const a1 = fake('a1', alice);
  const a2 = fake('a2', alice, 9090);
  const b = fake('b', bob);
  const p = fake('p');
  for (const c of [a1, b, a2, p]) manager.register(c);
  const store = storeWith();
  t.deepEqual(manager.recheck(store).closed, []);

  store.upsertPolicy(policy('deny-alice', 'DENY', { principals: [principal(alice)] }));
  const reason = 'connection closed due to policy change: explicitly denied by: ns/deny-alice';
  t.deepEqual(manager.recheck(store), { checked: 4, closed: [{ id: 'a1', reason }, { id: 'a2', reason }] });
  t.deepEqual(a1.closedWith, [reason]);
  t.deepEqual(a2.closedWith, [reason]);
  t.deepEqual(b.closedWith, []);
  t.deepEqual(p.closedWith, []);
  t.is(manager.count(), 2);
  t.deepEqual(manager.dump().map((d) => d.id), ['b', 'p']);

  // closed connections are gone: a second recheck neither sees nor closes them again
  t.deepEqual(manager.recheck(store), { checked: 2, closed: [] });
  t.is(a1.closedWith.length, 1);
});

test('an ALLOW-only policy closes every connection it does not match', (t) => {
  const manager = new ConnectionManager();
  const a = fake('a', alice);
  const b = fake('b', bob);
  const p = fake('p');
  for (const c of [a, b, p]) manager.register(c);
  const result = manager.recheck(storeWith(policy('only-alice', 'ALLOW', { principals: [principal(alice)] })));
  const reason = 'connection closed due to policy change: allow policies exist, but none allowed';
  t.deepEqual(result, { checked: 3, closed: [{ id: 'b', reason }, { id: 'p', reason }] });
  t.deepEqual(a.closedWith, []);
  t.deepEqual(b.closedWith, [reason]);
  t.deepEqual(p.closedWith, [reason]);
  t.is(manager.count(), 1);
});

test('policies of other namespaces and dry-run policies close nothing', (t) => {
  const manager = new ConnectionManager();
  const a = fake('a', alice);
  manager.register(a);
  const elsewhere: AuthorizationPolicy = { ...policy('deny-all', 'DENY', { principals: [{ kind: 'presence' }] }), namespace: 'other' };
  const dryRun: AuthorizationPolicy = { ...policy('audit', 'DENY', { principals: [{ kind: 'presence' }] }), dryRun: true };
  t.deepEqual(manager.recheck(storeWith(elsewhere, dryRun)).closed, []);
  t.deepEqual(a.closedWith, []);
});

test('a connection whose close throws is still unregistered and the others still closed', (t) => {
  const manager = new ConnectionManager();
  const bad: TrackedConnection = { ...fake('bad', alice), close: () => { throw new Error('boom'); } };
  const good = fake('good', alice);
  manager.register(bad);
  manager.register(good);
  const result = manager.recheck(storeWith(policy('deny-alice', 'DENY', { principals: [principal(alice)] })));
  t.deepEqual(result.closed.map((c) => c.id), ['bad', 'good']);
  t.is(good.closedWith.length, 1);
  t.is(manager.count(), 0);
});

test('unregister removes from counts and is idempotent; count by workload', (t) => {
  const manager = new ConnectionManager();
  const other = testWorkload({ name: 'other', namespace: NS });
  const unregisterA = manager.register(fake('a', alice));
  manager.register(fake('b', bob));
  manager.register({ ...fake('o', alice), workload: other });
  t.is(manager.count(), 3);
  t.is(manager.count(server.uid), 2);
  t.is(manager.count(other.uid), 1);
  unregisterA();
  unregisterA();
  t.is(manager.count(), 2);
  t.is(manager.count(server.uid), 1);
  t.is(manager.count('Kubernetes//Pod/ns/none'), 0);
});

test('dump lists ids with workload uid, source, destination and peer, and is JSON-able', (t) => {
  const manager = new ConnectionManager();
  manager.register(fake('a', alice));
  manager.register(fake('p'));
  const expected = [
    { id: 'a', workload: 'Kubernetes//Pod/ns/server', sourceIp: '10.0.0.1', destinationIp: SERVER_IP, destinationPort: 8080, peer: 'spiffe://cluster.local/ns/ns/sa/alice' },
    { id: 'p', workload: 'Kubernetes//Pod/ns/server', sourceIp: '10.0.0.1', destinationIp: SERVER_IP, destinationPort: 8080 },
  ];
  t.deepEqual(manager.dump(), expected);
  t.deepEqual(JSON.parse(JSON.stringify(manager.dump())), expected);
});

test('drain resolves true at once with no connections', async (t) => {
  const manager = new ConnectionManager();
  t.true(await manager.drain(60_000));
  t.true(manager.draining);
});

test('drain resolves true when the last connection unregisters', async (t) => {
  const manager = new ConnectionManager();
  const unregisterA = manager.register(fake('a', alice));
  const unregisterB = manager.register(fake('b', bob));
  let settled = false;
  const drained = manager.drain(60_000).then((clean) => ((settled = true), clean));
  unregisterA();
  await Promise.resolve();
  t.false(settled);
  unregisterB();
  t.true(await drained);
});

test('drain resolves false on the deadline with connections left; closeAll then closes them', async (t) => {
  const manager = new ConnectionManager();
  const a = fake('a', alice);
  const p = fake('p');
  manager.register(a);
  manager.register(p);
  t.false(await manager.drain(5));
  t.is(manager.count(), 2);
  t.is(manager.closeAll('drain deadline passed'), 2);
  t.deepEqual(a.closedWith, ['drain deadline passed']);
  t.deepEqual(p.closedWith, ['drain deadline passed']);
  t.is(manager.count(), 0);
  t.deepEqual(manager.dump(), []);
  t.is(manager.closeAll('again'), 0);
  t.is(a.closedWith.length, 1);
});

test('closeAll lets a pending drain resolve true', async (t) => {
  const manager = new ConnectionManager();
  manager.register(fake('a', alice));
  const drained = manager.drain(60_000);
  manager.closeAll('shutting down');
  t.true(await drained);
});

// ---- integration: a real HBONE tunnel torn down by a policy change ----

test('a policy update closes a live HBONE tunnel', async (t) => {
  const upstream = await tcpServer(echo);
  const manager = new ConnectionManager();
  const store = storeWith();
  let next = 0;
  const handler: HboneHandler = async (request) => {
    if (request.target.kind !== 'address') throw new Error('test sends addresses only');
    const socket = await dial(request.target.ip, request.target.port, 5_000, request.signal);
    const unregister = manager.register({
      id: `tunnel-${next++}`,
      workload: server,
      attributes: { sourceIp: request.remoteAddress, destinationIp: request.target.ip, destinationPort: request.target.port, peer: request.peer },
      // the server relays the CONNECT stream to `socket`: destroying it resets the stream too
      close: (reason) => socket.destroy(new Error(reason)),
    });
    return { status: 200, upstream: socket, onClose: unregister };
  };
  const fixture = await hboneFixture({ handler });
  t.teardown(async () => {
    await fixture.close();
    await upstream.close();
  });

  const tunnel = await fixture.connect(`${SERVER_IP}:${upstream.port}`);
  let streamError: NodeJS.ErrnoException | undefined;
  tunnel.stream.on('error', (err) => (streamError = err));
  const closed = new Promise<void>((resolve) => tunnel.stream.once('close', () => resolve()));
  tunnel.stream.write('ping');
  const [echoed] = (await once(tunnel.stream, 'data')) as [Buffer];
  t.is(echoed.toString(), 'ping');
  t.is(manager.count(), 1);
  t.is(manager.dump()[0]?.peer, 'spiffe://cluster.local/ns/ns/sa/client');

  // a policy that does not match the client leaves the tunnel alone
  store.upsertPolicy(policy('deny-alice', 'DENY', { principals: [principal(alice)] }));
  t.deepEqual(manager.recheck(store), { checked: 1, closed: [] });

  store.upsertPolicy(policy('deny-client', 'DENY', { principals: [principal(fixture.pki.id(NS, 'client'))] }));
  t.deepEqual(manager.recheck(store), {
    checked: 1,
    closed: [{ id: 'tunnel-0', reason: 'connection closed due to policy change: explicitly denied by: ns/deny-client' }],
  });
  await closed;
  t.is(tunnel.stream.rstCode, h2.NGHTTP2_CONNECT_ERROR);
  t.is(streamError?.code, 'ERR_HTTP2_STREAM_ERROR');
  t.is(manager.count(), 0);
});

test('connectionsToClose: judges each connection by its workload as the state has it now, and closes those whose workload is gone', (t) => {
  const store = storeWith(policy('deny-alice', 'DENY', { principals: [principal(alice)] }));
  const selected: AuthorizationPolicy = { ...policy('deny-bob', 'DENY', { principals: [principal(bob)] }), scope: 'WORKLOAD_SELECTOR' };
  store.upsertPolicy(selected);
  const fromBob = fake('b', bob);
  t.deepEqual(connectionsToClose([fromBob], store), [], 'a selector policy applies only once the workload lists it');
  // The registered connection still holds the old workload object; the state now lists the policy.
  store.upsertWorkload({ ...server, authorizationPolicies: [`${NS}/deny-bob`] });
  t.deepEqual(connectionsToClose([fromBob], store).map((d) => d.reason), [`${POLICY_CHANGED_REASON}: explicitly denied by: ${NS}/deny-bob`]);
  store.removeWorkload(server.uid);
  t.deepEqual(connectionsToClose([fake('p')], store).map((d) => d.reason), [WORKLOAD_REMOVED_REASON]);
});
