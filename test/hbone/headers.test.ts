import test from 'ava';
import { randomBytes } from 'node:crypto';
import { formatBaggage, formatForwarded, newTraceparent, parseBaggage, parseForwarded, traceparentOrNew } from '../../src/hbone/headers.ts';

test('baggage is written in Istio order without empty values and parsed back', (t) => {
  const baggage = { clusterName: 'Kubernetes', namespace: 'default', workloadType: 'deployment' as const, workloadName: 'sleep', serviceName: 'sleep', serviceVersion: 'v1', region: '', zone: 'zone a' };
  const header = formatBaggage(baggage);
  t.is(header, 'k8s.cluster.name=Kubernetes,k8s.namespace.name=default,k8s.deployment.name=sleep,service.name=sleep,service.version=v1,cloud.availability_zone=zone%20a');
  const { region: _unused, ...withoutEmpty } = baggage;
  t.deepEqual(parseBaggage(header), withoutEmpty);
});

test('baggage parsing tolerates spaces, properties, unknown keys and junk', (t) => {
  t.deepEqual(parseBaggage(' k8s.namespace.name = prod ;prop=1, other=x, =novalue, broken, k8s.job.name=%zz, k8s.pod.name=p'), {
    namespace: 'prod',
    workloadType: 'pod',
    workloadName: 'p',
  });
  t.deepEqual(parseBaggage(undefined), {});
});

test('forwarded carries the client and, for services, the host', (t) => {
  t.is(formatForwarded('10.0.0.1:3456'), 'for="10.0.0.1:3456"');
  t.is(formatForwarded('10.0.0.1:3456', 'reviews.default.svc.cluster.local'), 'for="10.0.0.1:3456";host=reviews.default.svc.cluster.local');
  t.deepEqual(parseForwarded('for="[fd00::1]:80";host=a.b, for=1.1.1.1'), { for: '[fd00::1]:80', host: 'a.b' });
  t.deepEqual(parseForwarded('garbage'), {});
});

test('traceparent: new ones are well formed and distinct; invalid ones are replaced', (t) => {
  const a = newTraceparent();
  t.regex(a, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  t.not(a, newTraceparent());
  t.is(traceparentOrNew(a), a);
  for (const bad of [undefined, '', '00-0-0-00', `00-${'0'.repeat(32)}-${'1'.repeat(16)}-01`, `00-${'A'.repeat(32)}-${'1'.repeat(16)}-01`]) {
    const replaced = traceparentOrNew(bad);
    t.not(replaced, bad);
    t.regex(replaced, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  }
});

test('fuzz: header parsers never throw on random input', (t) => {
  for (let i = 0; i < 10_000; i++) {
    const input = randomBytes(1 + (i % 64)).toString('latin1');
    parseBaggage(input);
    parseForwarded(input);
    traceparentOrNew(input);
  }
  t.pass();
});
