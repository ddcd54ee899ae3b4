import test from 'ava';
import { once } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseMeshTargets, scrapeTarget, scrapeTargets } from '../../src/control-plane/mesh-scrape.ts';

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
