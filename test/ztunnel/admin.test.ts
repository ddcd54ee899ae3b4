import test from 'ava';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import { ErrorCode } from '../../src/core/error-codes.ts';
import { MeshError } from '../../src/core/errors.ts';
import { Readiness, type ServerHandle } from '../../src/core/lifecycle.ts';
import { createLogger } from '../../src/core/logger.ts';
import { createMetricsRegistry, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE } from '../../src/core/metrics.ts';
import { startAdminServer, type AdminServerOptions } from '../../src/ztunnel/admin.ts';
import { startReadinessServer } from '../../src/core/readiness-server.ts';
import { startStatsServer } from '../../src/core/stats-server.ts';
import { captureLog } from '../helpers/log.ts';

const servers: ServerHandle[] = [];
test.after.always(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

function track<T extends ServerHandle>(server: T): T {
  servers.push(server);
  return server;
}

function base(server: ServerHandle): string {
  return `http://127.0.0.1:${server.address().port}`;
}

async function admin(over: Partial<AdminServerOptions> = {}): Promise<{ server: ServerHandle; url: string; log: ReturnType<typeof captureLog> }> {
  const log = captureLog();
  const server = track(
    await startAdminServer({
      port: 0,
      configDump: () => ({ workloads: [], services: [], policies: [] }),
      logger: log.logger,
      onQuit: () => {},
      ...over,
    }),
  );
  return { server, url: base(server), log };
}

/** Parses one sample value out of a Prometheus text exposition. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .join(',');
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m && m[1] === name && (m[2] ?? '') === want) return Number(m[3]);
  }
  return undefined;
}

test('admin: /config_dump returns the callback value as JSON', async (t) => {
  const dump = { workloads: [{ uid: 'Kubernetes//Pod/prod/a', name: 'a' }], services: [{ hostname: 'r.prod.svc' }], policies: [], config: { adminPort: 15000 } };
  const { url } = await admin({ configDump: () => dump });
  const res = await fetch(`${url}/config_dump`);
  t.is(res.status, 200);
  t.is(res.headers.get('content-type'), 'application/json');
  t.deepEqual(await res.json(), dump);
});

test('admin: an async config dump is awaited', async (t) => {
  const { url } = await admin({ configDump: async () => ({ version: { version: '1.0' } }) });
  t.deepEqual(await (await fetch(`${url}/config_dump`)).json(), { version: { version: '1.0' } });
});

test('admin: /logging reads and changes the level of the injected logger', async (t) => {
  const { url, log } = await admin(); // started at debug: the level ?reset restores
  const current = await fetch(`${url}/logging`);
  t.is(current.status, 200);
  t.is(await current.text(), 'current log level is debug\n');

  const set = await fetch(`${url}/logging?level=warn`, { method: 'POST' });
  t.is(set.status, 200);
  t.is(await set.text(), 'current log level is warn\n');
  t.is(log.logger.level, 'warn');
  t.false(log.logger.child({ component: 'x' }).isLevelEnabled('info'));

  const off = await fetch(`${url}/logging?level=off`, { method: 'POST' });
  t.is(await off.text(), 'current log level is off\n');
  t.is(log.logger.level, 'silent');

  const noParams = await fetch(`${url}/logging`, { method: 'POST' });
  t.is(await noParams.text(), 'current log level is off\n');

  const reset = await fetch(`${url}/logging?reset`, { method: 'POST' });
  t.is(reset.status, 200);
  t.is(await reset.text(), 'current log level is debug\n');
  t.is(log.logger.level, 'debug');

  const put = await fetch(`${url}/logging?level=trace`, { method: 'PUT' });
  t.is(put.status, 405);
  await put.arrayBuffer();
  t.is(log.logger.level, 'debug');
});

test('admin: an unknown level is refused with 400 listing the valid ones', async (t) => {
  const { url, log } = await admin();
  log.logger.level = 'info';
  for (const bad of ['verbose', '', 'hbone=debug']) {
    const res = await fetch(`${url}/logging?level=${encodeURIComponent(bad)}`, { method: 'POST' });
    t.is(res.status, 400, bad);
    const body = await res.text();
    t.true(body.includes('error, warn, info, debug, trace, off'), body);
  }
  t.is(log.logger.level, 'info');
});

test('admin: POST /quitquitquit answers 200 then calls onQuit once; GET is 405', async (t) => {
  let resolveQuit!: () => void;
  const quit = new Promise<void>((resolve) => (resolveQuit = resolve));
  let calls = 0;
  const { url } = await admin({
    onQuit: () => {
      calls++;
      resolveQuit();
    },
  });
  const get = await fetch(`${url}/quitquitquit`);
  t.is(get.status, 405);
  t.is(get.headers.get('allow'), 'POST');
  await get.arrayBuffer();
  t.is(calls, 0);

  const post = await fetch(`${url}/quitquitquit`, { method: 'POST' });
  t.is(post.status, 200);
  t.is(await post.text(), 'shutdown now\n');
  await quit;
  t.is(calls, 1);

  const again = await fetch(`${url}/quitquitquit`, { method: 'POST' });
  t.is(again.status, 200);
  await again.arrayBuffer();
  t.is(calls, 1);
});

test('admin: unknown paths are 404 and the index is HTML', async (t) => {
  const { url } = await admin();
  for (const path of ['/nope', '/config_dump/x', '/healthz/ready', '/metrics']) {
    const res = await fetch(`${url}${path}`);
    t.is(res.status, 404, path);
    await res.arrayBuffer();
  }
  const index = await fetch(`${url}/`);
  t.is(index.status, 200);
  t.regex(index.headers.get('content-type') ?? '', /^text\/html/);
  t.true((await index.text()).includes('/config_dump'));
});

test('admin: a throwing or unserialisable config dump is a logged 500 and the server keeps serving', async (t) => {
  let mode: 'throw' | 'cycle' | 'ok' = 'throw';
  const { url, log } = await admin({
    configDump: () => {
      if (mode === 'throw') throw Object.assign(new Error('store unavailable'), { code: 'EDUMP' });
      if (mode === 'cycle') {
        const cyclic: Record<string, unknown> = {};
        cyclic.self = cyclic;
        return cyclic;
      }
      return { ok: true };
    },
  });
  const failed = await fetch(`${url}/config_dump`);
  t.is(failed.status, 500);
  t.true((await failed.text()).includes('store unavailable'));
  const record = await log.waitForCode(ErrorCode.ADMIN_HANDLER_FAILED);
  t.is(record.cause, 'EDUMP');
  t.is(record.level, 'error');
  t.is(record.component, 'admin');
  t.is(record.err, 'store unavailable');

  mode = 'cycle';
  const cyclic = await fetch(`${url}/config_dump`);
  t.is(cyclic.status, 500);
  await cyclic.arrayBuffer();

  mode = 'ok';
  const ok = await fetch(`${url}/config_dump`);
  t.is(ok.status, 200);
  t.deepEqual(await ok.json(), { ok: true });
});

test('admin: a non-loopback host is refused before binding', async (t) => {
  const err = await t.throwsAsync(
    startAdminServer({ host: '0.0.0.0', port: 0, configDump: () => ({}), logger: createLogger({ level: 'silent' }), onQuit: () => {} }),
  );
  t.true(err instanceof MeshError);
  t.is((err as MeshError).code, ErrorCode.CONFIG_INVALID);
});

test('stats: /metrics and /stats/prometheus expose recorded counters', async (t) => {
  const registry = createMetricsRegistry();
  const counter = registry.counter({ name: 'istio_tcp_connections_opened_total', help: 'opened', labelNames: ['reporter'] });
  counter.inc({ reporter: 'destination' }, 3);
  counter.inc({ reporter: 'source' });
  const server = track(await startStatsServer({ host: '127.0.0.1', port: 0, registry }));
  for (const path of ['/metrics', '/stats/prometheus']) {
    const res = await fetch(`${base(server)}${path}`);
    t.is(res.status, 200, path);
    t.is(res.headers.get('content-type'), PROMETHEUS_CONTENT_TYPE);
    const text = await res.text();
    t.is(sample(text, 'istio_tcp_connections_opened_total', { reporter: 'destination' }), 3);
    t.is(sample(text, 'istio_tcp_connections_opened_total', { reporter: 'source' }), 1);
    // The classic text format names a counter's HELP/TYPE as its samples; OpenMetrics, when asked for, by the base name.
    t.true(text.includes('# TYPE istio_tcp_connections_opened_total counter'));
    const om = await fetch(`${base(server)}${path}`, { headers: { accept: 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5' } });
    t.is(om.headers.get('content-type'), OPENMETRICS_CONTENT_TYPE);
    const omText = await om.text();
    t.true(omText.includes('# TYPE istio_tcp_connections_opened counter\n'));
    t.is(sample(omText, 'istio_tcp_connections_opened_total', { reporter: 'destination' }), 3);
    t.true(omText.endsWith('\n# EOF\n'));
  }
  counter.inc({ reporter: 'source' }, 2);
  const later = await (await fetch(`${base(server)}/metrics`)).text();
  t.is(sample(later, 'istio_tcp_connections_opened_total', { reporter: 'source' }), 3);

  const missing = await fetch(`${base(server)}/config_dump`);
  t.is(missing.status, 404);
  await missing.arrayBuffer();
  const post = await fetch(`${base(server)}/metrics`, { method: 'POST' });
  t.is(post.status, 405);
  await post.arrayBuffer();
});

test('readiness: 500 naming the pending tasks, then 200 ready', async (t) => {
  const readiness = new Readiness();
  const proxyReady = readiness.register('proxy');
  readiness.register('state manager');
  const server = track(await startReadinessServer({ host: '127.0.0.1', port: 0, readiness }));
  const url = `${base(server)}/healthz/ready`;

  const first = await fetch(url);
  t.is(first.status, 500);
  t.is(await first.text(), 'not ready, pending: proxy, state manager');

  proxyReady();
  const second = await fetch(url);
  t.is(second.status, 500);
  t.is(await second.text(), 'not ready, pending: state manager');

  readiness.markReady('state manager');
  const ready = await fetch(url);
  t.is(ready.status, 200);
  t.is(await ready.text(), 'ready');

  const post = await fetch(url, { method: 'POST' });
  t.is(post.status, 405);
  await post.arrayBuffer();
  const other = await fetch(`${base(server)}/healthz`);
  t.is(other.status, 404);
  await other.arrayBuffer();
});

test('close() releases the port even with keep-alive clients, and a second close is a no-op', async (t) => {
  const log = createLogger({ level: 'silent' });
  const handles: ServerHandle[] = [
    await startAdminServer({ port: 0, configDump: () => ({}), logger: log, onQuit: () => {} }),
    await startStatsServer({ host: '127.0.0.1', port: 0, registry: createMetricsRegistry() }),
    await startReadinessServer({ host: '127.0.0.1', port: 0, readiness: new Readiness() }),
  ];
  const paths = ['/config_dump', '/metrics', '/healthz/ready'];
  for (const [i, handle] of handles.entries()) {
    const res = await fetch(`${base(handle)}${paths[i]}`); // leaves a keep-alive connection open
    t.is(res.status, 200);
    await res.arrayBuffer();
  }
  for (const handle of handles) {
    const { port } = handle.address();
    await handle.close();
    await handle.close();
    await t.throwsAsync(fetch(`http://127.0.0.1:${port}/`));
    const probe = createServer();
    probe.listen({ host: '127.0.0.1', port });
    await once(probe, 'listening');
    await new Promise<void>((resolve) => probe.close(() => resolve()));
  }
  t.pass();
});

test('admin: a malformed request target is a 400, not a crash', async (t) => {
  const { server, url } = await admin();
  const socket = connect(server.address().port, '127.0.0.1');
  socket.end('GET http://[bad/ HTTP/1.1\r\nHost: x\r\n\r\n');
  let reply = '';
  socket.on('data', (chunk: Buffer) => (reply += chunk.toString()));
  await once(socket, 'close');
  t.true(reply.startsWith('HTTP/1.1 400'), reply);
  const after = await fetch(`${url}/config_dump`);
  t.is(after.status, 200);
  await after.arrayBuffer();
});
