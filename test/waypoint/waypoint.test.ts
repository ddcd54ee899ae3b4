import test from 'ava';
import { HOST, VIP, startFixture } from './harness.ts';

test('smoke: an HTTP/1.1 request through the waypoint reaches a pod', async (t) => {
  const f = await startFixture(t);
  const res = await f.http1(`${VIP.reviews}:9080`, { path: '/hello?x=1', headers: { 'x-version': 'v2' } });
  t.is(res.status, 200, res.body);
  t.is(JSON.parse(res.body).pod, 'reviews-v2');
  t.is(res.headers['x-route'], 'by-header');
  t.log(HOST.reviews);
});
