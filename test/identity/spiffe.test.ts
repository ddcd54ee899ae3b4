import test from 'ava';
import { formatSpiffeId, parseSpiffeId, spiffeId } from '../../src/identity/spiffe.ts';
import { spiffeIdsFromSubjectAltName } from '../../src/identity/workload-certificate.ts';

test('parses exactly spiffe://<td>/ns/<ns>/sa/<sa>', (t) => {
  const parsed = parseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');
  t.deepEqual(parsed, { ok: true, value: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' } });
  t.is(formatSpiffeId(spiffeId('td.example', 'a-b', 'c.d')), 'spiffe://td.example/ns/a-b/sa/c.d');
});

const invalid = [
  '',
  'cluster.local/ns/default/sa/sleep',
  'http://cluster.local/ns/default/sa/sleep',
  'spiffe://cluster.local/ns/default/sa',
  'spiffe://cluster.local/ns/default/sa/sleep/extra',
  'spiffe://cluster.local/sa/sleep/ns/default',
  'spiffe://cluster.local/ns//sa/sleep',
  'spiffe://Cluster.Local/ns/default/sa/sleep',
  'spiffe://cluster.local:443/ns/default/sa/sleep',
  'spiffe://cluster.local/ns/default/sa/sleep?x=1',
  'spiffe:///ns/default/sa/sleep',
  'SPIFFE://cluster.local/ns/default/sa/sleep',
];
for (const uri of invalid) {
  test(`refuses ${JSON.stringify(uri)}`, (t) => {
    const parsed = parseSpiffeId(uri);
    t.false(parsed.ok);
    if (!parsed.ok) t.true(parsed.errors[0]!.length > 0);
  });
}

test('spiffeId() throws on invalid parts', (t) => {
  t.throws(() => spiffeId('cluster.local', 'a/b', 'sa'), { instanceOf: TypeError });
});

test('reads SPIFFE ids out of a subjectAltName string, skipping others', (t) => {
  const ids = spiffeIdsFromSubjectAltName('DNS:foo, URI:spiffe://td/ns/a/sa/b, URI:https://x, URI:spiffe://td/ns/c/sa/d');
  t.deepEqual(ids.map(formatSpiffeId), ['spiffe://td/ns/a/sa/b', 'spiffe://td/ns/c/sa/d']);
});
