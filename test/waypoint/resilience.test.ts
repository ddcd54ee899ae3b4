import test from 'ava';
import { until } from '../helpers/prometheus.ts';
import { HOST, VIP, startFixture } from './harness.ts';

/** Destination policy at work through the assembled waypoint: pool overflow, outlier ejection, mirroring. */

const REVIEWS = `${VIP.reviews}:9080`;
const L7 = `
routeConfigurations:
  - namespace: prod
    hostname: ${HOST.reviews}
    routes:
      - name: mirrored
        matches: [{ path: { prefix: /mirror } }]
        backends: [{ namespace: prod, hostname: ${HOST.reviews}, subset: v1, weight: 1 }]
        mirrors: [{ namespace: prod, hostname: ${HOST.reviews}, subset: v2 }]
      - name: rest
        matches: [{ path: { prefix: / } }]
destinationPolicies:
  - namespace: prod
    hostname: ${HOST.reviews}
    trafficPolicy:
      connectionPool: { maxConnections: 1, http1MaxPendingRequests: 1 }
      outlierDetection: { consecutive_5xxErrors: 2, baseEjectionTime: 30s, maxEjectionPercent: 50 }
    subsets:
      - { name: v1, labels: { version: v1 } }
      - { name: v2, labels: { version: v2 } }
`;

test.serial('connection-pool overflow: one in flight, one pending, the third answered 503 with the UO flag', async (t) => {
  const f = await startFixture(t, { l7: L7 });
  const results = await Promise.all([0, 1, 2].map(() => f.http1(REVIEWS, { path: '/slow?ms=400' })));
  const statuses = results.map((r) => r.status).sort();
  t.deepEqual(statuses, [200, 200, 503]);
  const overflow = results.find((r) => r.status === 503);
  t.regex(overflow?.body ?? '', /reset reason: overflow/);
  const log = f.log.records.find((r) => r['component'] === 'access' && r['response_code'] === 503);
  t.is(log?.['response_flags'], 'UO');
  t.is(f.requests.filter((r) => r.url.startsWith('/slow')).length, 2);
});

test.serial('outlier detection ejects an endpoint after consecutive 5xx; the other takes the traffic', async (t) => {
  const f = await startFixture(t, { l7: L7 });
  // Round the requests until one endpoint has answered 500 twice in a row (least-request spreads them).
  for (let i = 0; i < 6; i++) t.is((await f.http1(REVIEWS, { path: '/status/500' })).status, 500);
  const cluster = `inbound-vip|9080|http|${HOST.reviews}`;
  const uids = ['Kubernetes//Pod/prod/reviews-v1', 'Kubernetes//Pod/prod/reviews-v2'];
  const ejected = uids.filter((u) => f.waypoint.destinations.ejected(cluster, u));
  t.is(ejected.length, 1, 'maxEjectionPercent 50 of 2 endpoints: exactly one out');
  const remaining = ejected[0]?.endsWith('v1') ? 'reviews-v2' : 'reviews-v1';
  const before = f.requests.length;
  for (let i = 0; i < 10; i++) t.is((await f.http1(REVIEWS, { path: '/ok' })).status, 200);
  t.true(f.requests.slice(before).every((r) => r.pod === remaining), 'no request reached the ejected endpoint');
});

test.serial('mirroring sends a copy to the mirror subset with a -shadow authority; the answer comes from the primary', async (t) => {
  const f = await startFixture(t, { l7: L7 });
  const res = await f.http1(REVIEWS, { method: 'POST', path: '/mirror/x', body: 'payload' });
  t.is(res.status, 200);
  t.is(JSON.parse(res.body).pod, 'reviews-v1');
  await until(() => f.requests.some((r) => r.pod === 'reviews-v2'), 'the mirrored request');
  const shadow = f.requests.find((r) => r.pod === 'reviews-v2');
  t.is(shadow?.url, '/mirror/x');
  t.is(shadow?.headers['host'], `${VIP.reviews}-shadow:9080`);
  t.is(shadow?.method, 'POST');
});
