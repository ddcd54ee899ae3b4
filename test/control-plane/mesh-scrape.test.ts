import test from 'ava';
import { once } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { discoverMeshTargets, parseMeshTargets, scrapeTarget, scrapeTargets } from '../../src/control-plane/mesh-scrape.ts';

/** Scraping real HTTP servers on loopback: what counts as down, and why. */

async function server(t: { teardown(fn: () => Promise<void> | void): void }, handle: (res: ServerResponse, path: string) => void): Promise<string> {
  const open = new Set<ServerResponse>();
  const s = createServer((req, res) => {
    open.add(res);
    res.on('close', () => open.delete(res));
    handle(res, req.url ?? '/');
  });
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  t.teardown(async () => {
    for (const res of open) res.destroy();
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  });
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

test('scrapeTarget: a target that does not answer in time is down, and so is one answering too much or redirecting', async (t) => {
  const base = await server(t, (res, path) => {
    if (path === '/slow') return void res.writeHead(200); // headers, then nothing
    if (path === '/big') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      return void res.end(`${'x 1\n'.repeat(5000)}`);
    }
    if (path === '/moved') {
      res.writeHead(302, { location: '/metrics' });
      return void res.end();
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('istio_build{component="ztunnel",tag="1"} 1\n');
  });
  const options = { timeoutMs: 200, maxBytes: 1000 };
  t.deepEqual(await scrapeTarget(`${base}/slow`, options), { url: `${base}/slow`, up: false, error: 'no answer in 200 ms', samples: [], problems: [] });
  t.deepEqual(await scrapeTarget(`${base}/big`, options), { url: `${base}/big`, up: false, error: 'answer larger than 1000 bytes', samples: [], problems: [] });
  t.like(await scrapeTarget(`${base}/moved`, options), { up: false, error: 'unexpected redirect' });
  t.deepEqual(await scrapeTargets([`${base}/metrics`], options), [{ url: `${base}/metrics`, up: true, samples: [{ name: 'istio_build', labels: { component: 'ztunnel', tag: '1' }, value: 1 }], problems: [] }]);
});

test('parseMeshTargets: absolute http(s) URLs, duplicates once, every bad one named', (t) => {
  t.deepEqual(parseMeshTargets(['http://a:15020/metrics', 'https://b/stats/prometheus', 'http://a:15020/metrics']), { ok: true, value: ['http://a:15020/metrics', 'https://b/stats/prometheus'] });
  t.deepEqual(parseMeshTargets(['/metrics', 'file:///etc/passwd', 'http://ok/']), { ok: false, errors: ['[0] "/metrics": not an absolute URL', '[1] "file:///etc/passwd": must be http or https'] });
  t.deepEqual(parseMeshTargets([]), { ok: true, value: [] });
});

test('discoverMeshTargets: ztunnel pods of the system namespace and waypoint pods that ask to be scraped; nothing else', (t) => {
  const pod = (namespace: string, name: string, labels: Record<string, string>, annotations: Record<string, string>, ip = '10.0.0.1', phase = 'Running') => ({
    metadata: { namespace, name, labels, annotations },
    status: { phase, podIP: ip },
  });
  const scrape = { 'prometheus.io/scrape': 'true' };
  const waypoints = new Set(['shop/waypoint']);
  const found = discoverMeshTargets(
    [
      pod('istio-system', 'ztunnel-a', { app: 'ztunnel' }, { ...scrape, 'prometheus.io/port': '15020', 'prometheus.io/path': '/metrics' }, '10.0.0.1'),
      pod('istio-system', 'ztunnel-b', { app: 'ztunnel' }, scrape, 'fd00::2'),
      pod('shop', 'waypoint-x', { 'gateway.networking.k8s.io/gateway-name': 'waypoint' }, scrape, '10.0.1.5'),
      // Not ours or not asking: left alone.
      pod('shop', 'app', { app: 'web' }, { ...scrape, 'prometheus.io/port': '9090' }),
      pod('shop', 'ztunnel-lookalike', { app: 'ztunnel' }, scrape),
      pod('shop', 'not-a-waypoint', { 'gateway.networking.k8s.io/gateway-name': 'ingress' }, scrape),
      pod('istio-system', 'ztunnel-quiet', { app: 'ztunnel' }, {}),
      pod('istio-system', 'ztunnel-pending', { app: 'ztunnel' }, scrape, '10.0.0.9', 'Pending'),
      pod('istio-system', 'ztunnel-bad-port', { app: 'ztunnel' }, { ...scrape, 'prometheus.io/port': '99999' }),
      { metadata: { namespace: 'istio-system', name: 'no-ip', labels: { app: 'ztunnel' }, annotations: scrape }, status: { phase: 'Running' } },
    ],
    'istio-system',
    (ns, name) => waypoints.has(`${ns}/${name}`),
  );
  t.deepEqual(found, ['http://10.0.0.1:15020/metrics', 'http://10.0.1.5:15020/stats/prometheus', 'http://[fd00::2]:15020/metrics']);
});
