import test from 'ava';
import { ErrorCode } from '../../src/core/error-codes.ts';
import { MeshError } from '../../src/core/errors.ts';
import { CertManager, type CaClient, type Timers } from '../../src/identity/cert-manager.ts';
import { formatSpiffeId, spiffeId, type SpiffeId } from '../../src/identity/spiffe.ts';
import type { Workload } from '../../src/workload-api/types.ts';
import { IdentityManager, identityChanges } from '../../src/ztunnel/identity-manager.ts';
import { testWorkload } from '../helpers/mesh.ts';
import { testPki } from '../helpers/pki.ts';

const NODE = 'node1';
const ids = (list: readonly SpiffeId[]) => list.map(formatSpiffeId);
const uri = (ns: string, sa: string) => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;

interface Case {
  readonly name: string;
  readonly before: ReadonlyArray<[string, SpiffeId]>;
  readonly workloads: readonly Workload[];
  readonly next: readonly string[]; // uids
  readonly prefetch: readonly string[];
  readonly forget: readonly string[];
}

const a1 = testWorkload({ name: 'a1', namespace: 'ns', serviceAccount: 'a' });
const a2 = testWorkload({ name: 'a2', namespace: 'ns', serviceAccount: 'a' });
const b = testWorkload({ name: 'b', namespace: 'ns', serviceAccount: 'b' });
const idA = spiffeId('cluster.local', 'ns', 'a');
const idB = spiffeId('cluster.local', 'ns', 'b');

const cases: Case[] = [
  { name: 'nothing before, nothing now', before: [], workloads: [], next: [], prefetch: [], forget: [] },
  { name: 'a new local HBONE workload is prefetched', before: [], workloads: [b], next: [b.uid], prefetch: [uri('ns', 'b')], forget: [] },
  {
    name: 'a workload on another node is ignored',
    before: [],
    workloads: [testWorkload({ name: 'x', namespace: 'ns', node: 'node2' })],
    next: [],
    prefetch: [],
    forget: [],
  },
  {
    name: 'a NONE-tunnel workload is ignored',
    before: [],
    workloads: [testWorkload({ name: 'x', namespace: 'ns', tunnelProtocol: 'NONE' })],
    next: [],
    prefetch: [],
    forget: [],
  },
  {
    name: 'a NONE-tunnel workload with a native tunnel counts',
    before: [],
    workloads: [testWorkload({ name: 'x', namespace: 'ns', tunnelProtocol: 'NONE', nativeTunnel: true })],
    next: ['Kubernetes//Pod/ns/x'],
    prefetch: [uri('ns', 'x')],
    forget: [],
  },
  {
    name: 'two workloads sharing an identity prefetch it once',
    before: [],
    workloads: [a1, a2],
    next: [a1.uid, a2.uid],
    prefetch: [uri('ns', 'a')],
    forget: [],
  },
  {
    name: 'one of two workloads sharing an identity goes: nothing forgotten',
    before: [[a1.uid, idA], [a2.uid, idA]],
    workloads: [a2],
    next: [a2.uid],
    prefetch: [],
    forget: [],
  },
  {
    name: 'the last workload with an identity goes: forgotten',
    before: [[a2.uid, idA]],
    workloads: [],
    next: [],
    prefetch: [],
    forget: [uri('ns', 'a')],
  },
  {
    name: 'both workloads sharing an identity go at once: forgotten once',
    before: [[a1.uid, idA], [a2.uid, idA]],
    workloads: [],
    next: [],
    prefetch: [],
    forget: [uri('ns', 'a')],
  },
  {
    name: 'a uid changing identity forgets the old and prefetches the new',
    before: [[a1.uid, idA]],
    workloads: [{ ...a1, serviceAccount: 'c' }],
    next: [a1.uid],
    prefetch: [uri('ns', 'c')],
    forget: [uri('ns', 'a')],
  },
  {
    name: 'a workload moving to another node is forgotten',
    before: [[b.uid, idB]],
    workloads: [{ ...b, node: 'node2' }],
    next: [],
    prefetch: [],
    forget: [uri('ns', 'b')],
  },
  {
    name: 'unchanged workloads change nothing',
    before: [[a1.uid, idA], [b.uid, idB]],
    workloads: [b, a1],
    next: [b.uid, a1.uid],
    prefetch: [],
    forget: [],
  },
  {
    name: 'several identities come out sorted by formatted id',
    before: [],
    workloads: [testWorkload({ name: 'z', namespace: 'ns' }), b, testWorkload({ name: 'y', namespace: 'other', trustDomain: 'a.example' })],
    next: ['Kubernetes//Pod/ns/z', b.uid, 'Kubernetes//Pod/other/y'],
    prefetch: ['spiffe://a.example/ns/other/sa/y', uri('ns', 'b'), uri('ns', 'z')],
    forget: [],
  },
  {
    name: 'a workload whose identity is not a valid SPIFFE id is left out',
    before: [],
    workloads: [testWorkload({ name: 'x', namespace: 'ns', serviceAccount: 'bad/sa' })],
    next: [],
    prefetch: [],
    forget: [],
  },
];

for (const c of cases) {
  test(`identityChanges: ${c.name}`, (t) => {
    const changes = identityChanges(new Map(c.before), c.workloads, NODE);
    t.deepEqual([...changes.next.keys()].sort(), [...c.next].sort());
    t.deepEqual(ids(changes.prefetch), c.prefetch);
    t.deepEqual(ids(changes.forget), c.forget);
  });
}

test('identityChanges does not modify its input', (t) => {
  const before = new Map([[a1.uid, idA]]);
  identityChanges(before, [], NODE);
  t.deepEqual([...before.entries()], [[a1.uid, idA]]);
});

test('sync prefetches the certificates of local workloads', async (t) => {
  const pki = testPki();
  t.teardown(() => pki.close());
  const manager = new IdentityManager({ certificates: pki.certificates, nodeName: NODE });
  const other = testWorkload({ name: 'far', namespace: 'ns', node: 'node2' });
  await manager.sync([a1, a2, b, other]);
  t.truthy(pki.certificates.peek(idA));
  t.truthy(pki.certificates.peek(idB));
  t.is(pki.certificates.peek(pki.id('ns', 'far')), undefined);
  t.deepEqual(manager.localIdentities(), [uri('ns', 'a'), uri('ns', 'b')]);
  const cert = await manager.fetch(idA);
  t.is(cert, pki.certificates.peek(idA)!);
});

test('settled() waits for prefetches started by a sync that was not awaited', async (t) => {
  const pki = testPki();
  t.teardown(() => pki.close());
  const manager = new IdentityManager({ certificates: pki.certificates, nodeName: NODE });
  void manager.sync([b]);
  await manager.settled();
  t.truthy(pki.certificates.peek(idB));
});

test('removing the last workload of an identity forgets its certificate', async (t) => {
  const pki = testPki();
  t.teardown(() => pki.close());
  const manager = new IdentityManager({ certificates: pki.certificates, nodeName: NODE });
  await manager.sync([a1, a2, b]);
  await manager.sync([a2, b]);
  t.truthy(pki.certificates.peek(idA), 'a2 still uses identity a');
  await manager.sync([b]);
  t.is(pki.certificates.peek(idA), undefined);
  t.truthy(pki.certificates.peek(idB));
  t.deepEqual(manager.localIdentities(), [uri('ns', 'b')]);
});

test('a failing CA during prefetch neither throws nor rejects; a later fetch rejects with a code', async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => void process.off('unhandledRejection', onUnhandled));

  const failingCa: CaClient = { createCertificate: () => Promise.reject(new Error('CA unavailable')) };
  const idleTimers: Timers = { set: () => undefined, clear: () => {} }; // no background retries
  const certificates = new CertManager({ ca: failingCa, timers: idleTimers });
  t.teardown(() => certificates.close());
  const manager = new IdentityManager({ certificates, nodeName: NODE });

  await t.notThrowsAsync(manager.sync([b]));
  await t.notThrowsAsync(manager.settled());
  t.is(certificates.peek(idB), undefined);
  t.deepEqual(manager.localIdentities(), [uri('ns', 'b')]);

  const err = await t.throwsAsync(manager.fetch(idB), { instanceOf: MeshError });
  t.is(err?.code, ErrorCode.IDENTITY_CERT_FETCH_FAILED);

  await new Promise((resolve) => setImmediate(resolve));
  t.deepEqual(unhandled, []);
});

test('a provider that throws synchronously does not break sync', async (t) => {
  const manager = new IdentityManager({
    certificates: {
      fetch: () => {
        throw new Error('boom');
      },
      forget: () => {},
    },
    nodeName: NODE,
  });
  await t.notThrowsAsync(manager.sync([b]));
});
