import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { classifyUpgrade, switchingProtocolsHead } from '../../src/waypoint/upgrade.ts';
import { once } from 'node:events';
import { constants as h2 } from 'node:http2';
import { clientFrame, parseFrames } from '../helpers/websocket.ts';
import { sample, until } from '../helpers/prometheus.ts';
import { hasCommand } from '../helpers/commands.ts';
import { HOST, VIP, startFixture, type WaypointFixture } from './harness.ts';

/**
 * HTTP/1.1 upgrades through the waypoint: a real WebSocket client (Python `websockets`, Debian
 * python3-websockets) → HBONE bridge → waypoint → HBONE → the pod's RFC 6455 echo server. Routing, header
 * mutation, rewrite and L7 authorization apply to the upgrade request; frames are relayed both ways; a close
 * from either side reaches the other; the request is counted with response code 101 once it ends.
 */

const run = promisify(execFile);
const REVIEWS = `${VIP.reviews}:9080`;
const L7 = `
routeConfigurations:
  - namespace: prod
    hostname: ${HOST.reviews}
    routes:
      - name: ws-rewrite
        matches: [{ path: { prefix: /chat } }]
        rewrite: { prefixMatch: /ws/echo }
        backends: [{ namespace: prod, hostname: ${HOST.reviews}, subset: v2, weight: 1 }]
        requestHeaders: { set: [{ name: x-via-route, value: ws-rewrite }] }
        responseHeaders: { set: [{ name: x-route, value: ws-rewrite }] }
        timeout: 200ms
        retries: { attempts: 3, retryOn: [5xx] }
      - name: ws-resilience
        matches: [{ path: { prefix: /ws/reject-503 } }, { path: { prefix: /ws/hang } }]
        backends: [{ namespace: prod, hostname: ${HOST.reviews}, subset: v1, weight: 1 }]
        timeout: 300ms
        retries: { attempts: 3, retryOn: [5xx, reset] }
        mirrors: [{ namespace: prod, hostname: ${HOST.reviews}, subset: v2 }]
      - name: rest
        matches: [{ path: { prefix: / } }]
        backends: [{ namespace: prod, hostname: ${HOST.reviews}, subset: v1, weight: 1 }]
destinationPolicies:
  - namespace: prod
    hostname: ${HOST.reviews}
    subsets:
      - { name: v1, labels: { version: v1 } }
      - { name: v2, labels: { version: v2 } }
authorizationPolicies:
  - name: no-private-ws
    namespace: prod
    action: DENY
    rules: [{ to: [{ paths: [/ws/private*] }] }]
`;

const CLIENT = `
import asyncio, json, sys
import websockets

async def main(url, mode):
    out = {}
    try:
        async with websockets.connect(url, extra_headers={'x-client': 'py'}, subprotocols=['chat.v1'], open_timeout=5, close_timeout=5, max_size=None) as ws:
            out['subprotocol'] = ws.subprotocol
            out['headers'] = {k.lower(): v for k, v in ws.response_headers.raw_items()}
            if mode == 'echo':
                await ws.send('hello')
                out['text'] = await ws.recv()
                data = bytes(range(256)) * 1000
                await ws.send(data)
                out['binary_ok'] = (await ws.recv()) == data
                await asyncio.sleep(0.4)  # longer than the route timeout: it no longer applies
                big = 'x' * 300000
                await ws.send(big)
                out['big_ok'] = (await ws.recv()) == big
                await ws.close(code=1000, reason='bye')
                out['close_code'] = ws.close_code
            else:
                await ws.send('close-me')
                try:
                    await ws.recv()
                except websockets.ConnectionClosed as e:
                    out['close_code'] = e.rcvd.code if e.rcvd else None
                    out['close_reason'] = e.rcvd.reason if e.rcvd else None
    except websockets.InvalidStatusCode as e:
        out['status'] = e.status_code
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], sys.argv[2]))
`;

async function havePython(t: { log(m: string): void }): Promise<boolean> {
  try {
    await run('/usr/bin/python3', ['-c', 'import websockets']);
    return true;
  } catch {
    if (process.env['CI']) throw new Error('python3 with websockets is required (Debian package python3-websockets)');
    t.log('python3-websockets not installed; skipped outside CI');
    return false;
  }
}

async function wsClient(port: number, path: string, mode: 'echo' | 'server-close'): Promise<Record<string, unknown>> {
  const { stdout } = await run('/usr/bin/python3', ['-c', CLIENT, `ws://127.0.0.1:${port}${path}`, mode], { timeout: 20_000 });
  return JSON.parse(stdout) as Record<string, unknown>;
}

const events = (f: WaypointFixture, kind: string) => f.wsEvents.filter((e) => e.kind === kind);

test('classifyUpgrade: websocket, h2c (served as plain HTTP/1.1), others, and no upgrade', (t) => {
  t.deepEqual(classifyUpgrade({ connection: 'keep-alive, Upgrade', upgrade: 'WebSocket' }), { kind: 'websocket' });
  t.deepEqual(classifyUpgrade({ connection: 'Upgrade, HTTP2-Settings', upgrade: 'h2c' }), { kind: 'h2c' });
  t.deepEqual(classifyUpgrade({ connection: 'upgrade', upgrade: 'foo/2' }), { kind: 'unsupported', token: 'foo/2' });
  t.deepEqual(classifyUpgrade({ upgrade: 'websocket' }), { kind: 'none' }, 'Upgrade without Connection: upgrade is no upgrade');
  t.deepEqual(classifyUpgrade({ connection: 'upgrade' }), { kind: 'none' });
  t.deepEqual(classifyUpgrade({}), { kind: 'none' });
});

test('switchingProtocolsHead writes the 101 and drops values that would split the head', (t) => {
  const head = switchingProtocolsHead(new Map<string, string | string[]>([['upgrade', 'websocket'], ['x-a', ['1', '2']], ['x-bad', 'a\r\nx-injected: 1']]));
  t.is(head, 'HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nx-a: 1\r\nx-a: 2\r\n\r\n');
});

test.serial('a WebSocket is routed, rewritten and relayed both ways; a client close reaches the server; counted as 101 with its bytes', async (t) => {
  if (!(await havePython(t))) {
    t.pass();
    return;
  }
  const f = await startFixture(t, { l7: L7 });
  const port = await f.bridge(REVIEWS);
  const out = await wsClient(port, '/chat/room1', 'echo');
  t.is(out['text'], 'hello');
  t.true(out['binary_ok']);
  t.true(out['big_ok'], 'a 300 KB message after the route timeout has passed');
  t.is(out['close_code'], 1000);
  t.is(out['subprotocol'], 'chat.v1');
  const headers = out['headers'] as Record<string, string>;
  t.is(headers['x-route'], 'ws-rewrite', 'response header mutation on the 101');
  t.is(headers['x-backend'], 'ws-echo');
  const open = events(f, 'open')[0];
  t.is(open?.pod, 'reviews-v2', 'the route picked the v2 subset');
  t.is(open?.kind === 'open' ? open.url : '', '/ws/echo/room1', 'the prefix rewrite applied');
  t.is(open?.kind === 'open' ? open.headers['x-via-route'] : '', 'ws-rewrite', 'request header mutation');
  t.is(open?.kind === 'open' ? open.headers['x-client'] : '', 'py');
  t.deepEqual(events(f, 'message').map((e) => (e.kind === 'message' ? e.bytes : 0)), [5, 256_000, 300_000]);
  t.deepEqual(events(f, 'close-received').map((e) => (e.kind === 'close-received' ? e.code : 0)), [1000]);
  await until(() => events(f, 'end').length === 1, 'the server seeing the TCP end');

  await until(() => f.log.records.some((r) => r['component'] === 'access' && r['response_code'] === 101), 'the access record of the upgrade');
  const access = f.log.records.find((r) => r['component'] === 'access' && r['response_code'] === 101);
  t.is(access?.['route_name'], 'ws-rewrite');
  t.true(Number(access?.['bytes_received']) > 556_000, `bytes_received ${access?.['bytes_received']}`);
  t.true(Number(access?.['bytes_sent']) > 556_000, `bytes_sent ${access?.['bytes_sent']}`);
  t.is(f.log.records.filter((r) => r['component'] === 'access').length, 1, 'one request, no retries');
  const metrics = await f.metrics();
  t.is(sample(metrics, 'istio_requests_total', 'response_code="101"', 'reporter="waypoint"'), 1);
  t.true((sample(metrics, 'istio_request_bytes_sum', 'response_code="101"') ?? 0) > 556_000);
  t.true((sample(metrics, 'istio_response_bytes_sum', 'response_code="101"') ?? 0) > 556_000);
});

test.serial('a close from the server reaches the client', async (t) => {
  if (!(await havePython(t))) {
    t.pass();
    return;
  }
  const f = await startFixture(t, { l7: L7 });
  const port = await f.bridge(REVIEWS);
  const out = await wsClient(port, '/ws/echo', 'server-close');
  t.is(out['close_code'], 1001);
  t.is(out['close_reason'], 'going away');
  t.deepEqual(events(f, 'close-sent').map((e) => (e.kind === 'close-sent' ? e.code : 0)), [1001]);
  await until(() => f.log.records.some((r) => r['component'] === 'access' && r['response_code'] === 101), 'the access record of the upgrade');
});

test.serial('L7 authorization DENY applies to the upgrade request: 403, and the backend never sees it', async (t) => {
  if (!(await havePython(t))) {
    t.pass();
    return;
  }
  const f = await startFixture(t, { l7: L7 });
  const port = await f.bridge(REVIEWS);
  const out = await wsClient(port, '/ws/private/x', 'echo');
  t.is(out['status'], 403);
  t.is(events(f, 'open').length, 0);
  t.true(f.log.records.some((r) => r['code'] === 'WAYPOINT_AUTHZ_DENIED'));
});

test.serial('curl: a non-101 answer comes back as a normal response; h2c is served as plain HTTP/1.1; other upgrades get 403 upgrade_failed', async (t) => {
  if (!(await hasCommand(t, 'curl'))) return;
  const f = await startFixture(t, { l7: L7 });
  const port = await f.bridge(REVIEWS);
  const upgradeHeaders = ['-H', 'Connection: Upgrade', '-H', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', '-H', 'Sec-WebSocket-Version: 13'];
  const rejected = await run('curl', ['-sS', '--include', '--no-buffer', '--max-time', '5', '--http1.1', ...upgradeHeaders, '-H', 'Upgrade: websocket', `http://127.0.0.1:${port}/ws/reject`]);
  t.regex(rejected.stdout, /^HTTP\/1\.1 400 Bad Request\r\n/);
  t.regex(rejected.stdout, /x-rejected: yes/);
  t.regex(rejected.stdout, /no upgrade here$/);

  const h2c = await run('curl', ['-sS', '--include', '--max-time', '5', '--http2', `http://127.0.0.1:${port}/plain`]);
  t.regex(h2c.stdout, /^HTTP\/1\.1 200 OK\r\n/, 'no 101: the h2c upgrade is ignored');
  const plain = f.requests.find((r) => r.url === '/plain');
  t.is(plain?.headers['upgrade'], undefined, 'the h2c upgrade headers are stripped');
  t.is(plain?.headers['http2-settings'], undefined);

  const other = await run('curl', ['-sS', '--include', '--max-time', '5', '--http1.1', '-H', 'Connection: Upgrade', '-H', 'Upgrade: foo/1', `http://127.0.0.1:${port}/ws/echo`]);
  t.regex(other.stdout, /^HTTP\/1\.1 403 Forbidden\r\n/);
  t.regex(other.stdout, /[Cc]onnection: close/);
  t.regex(other.stdout, /content-length: 0/i);
  const access = f.log.records.find((r) => r['component'] === 'access' && r['response_code'] === 403);
  t.is(access?.['response_code_details'], 'upgrade_failed');
  t.is(events(f, 'open').length, 0);
});

test.serial('HTTP/2 extended CONNECT (RFC 8441): routed as the upgrade, 200 on the stream, frames both ways, close both ways', async (t) => {
  const f = await startFixture(t, { l7: L7 });
  const session = await f.http2(REVIEWS);
  t.teardown(() => session.destroy());
  const [settings] = (await once(session, 'remoteSettings')) as [{ enableConnectProtocol?: boolean }];
  t.true(settings.enableConnectProtocol, 'the waypoint announces SETTINGS_ENABLE_CONNECT_PROTOCOL');
  const stream = session.request({
    [h2.HTTP2_HEADER_METHOD]: 'CONNECT', ':protocol': 'websocket', [h2.HTTP2_HEADER_PATH]: '/chat/h2', [h2.HTTP2_HEADER_SCHEME]: 'http',
    [h2.HTTP2_HEADER_AUTHORITY]: REVIEWS, 'sec-websocket-version': '13', 'sec-websocket-protocol': 'chat.v1',
  }, { endStream: false });
  stream.on('error', () => {});
  const [response] = (await once(stream, 'response')) as [Record<string, unknown>];
  t.is(response[':status'], 200);
  t.is(response['sec-websocket-protocol'], 'chat.v1');
  t.is(response['x-route'], 'ws-rewrite');
  t.is(response['sec-websocket-accept'], undefined);
  let buffered: Buffer = Buffer.alloc(0);
  const received: Array<{ opcode: number; payload: Buffer }> = [];
  stream.on('data', (c: Buffer) => {
    const parsed = parseFrames(Buffer.concat([buffered, c]));
    buffered = parsed.rest;
    received.push(...parsed.frames);
  });
  stream.write(clientFrame(0x1, Buffer.from('over h2')));
  const big = Buffer.alloc(200_000, 7);
  stream.write(clientFrame(0x2, big));
  await until(() => received.length === 2, 'two echoed frames');
  t.deepEqual(received.map((r) => [r.opcode, r.payload.length]), [[0x1, 7], [0x2, 200_000]]);
  t.is(received[0]?.payload.toString(), 'over h2');
  t.true(received[1]?.payload.equals(big));
  const close = Buffer.alloc(2);
  close.writeUInt16BE(1000, 0);
  stream.write(clientFrame(0x8, close));
  await once(stream, 'end');
  t.deepEqual(received.map((r) => r.opcode), [0x1, 0x2, 0x8], 'the server answered the close, then its end reached the client');
  const open = events(f, 'open')[0];
  t.is(open?.kind === 'open' ? open.url : '', '/ws/echo/h2');
  t.is(open?.kind === 'open' ? typeof open.headers['sec-websocket-key'] : '', 'string', 'the HTTP/1.1 handshake got a key');
  t.is(open?.kind === 'open' ? open.headers['x-via-route'] : '', 'ws-rewrite');
  stream.end();
  await until(() => f.log.records.some((r) => r['component'] === 'access' && r['route_name'] === 'ws-rewrite'), 'the access record');
  t.is(f.log.records.find((r) => r['component'] === 'access')?.['response_code'], 200);
});

test.serial('HTTP/2: a DENY applies to the extended CONNECT; a plain CONNECT is refused 403 upgrade_failed', async (t) => {
  const f = await startFixture(t, { l7: L7 });
  const session = await f.http2(REVIEWS);
  t.teardown(() => session.destroy());
  await once(session, 'remoteSettings');
  const ask = async (headers: Record<string, string>) => {
    const stream = session.request(headers, { endStream: false });
    stream.on('error', () => {});
    const [response] = (await once(stream, 'response')) as [Record<string, unknown>];
    stream.close();
    return response[':status'];
  };
  t.is(await ask({ ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/ws/private/1', ':scheme': 'http', ':authority': REVIEWS }), 403);
  t.true(f.log.records.some((r) => r['code'] === 'WAYPOINT_AUTHZ_DENIED'));
  t.is(await ask({ ':method': 'CONNECT', ':authority': REVIEWS }), 403);
  t.true(f.log.records.some((r) => r['component'] === 'access' && r['response_code_details'] === 'upgrade_failed'));
  t.is(events(f, 'open').length, 0);
});

test.serial('an upgrade gets one try (no retry of its 503, no mirror) and the route timeout until the answer (504)', async (t) => {
  const f = await startFixture(t, { l7: L7 });
  const upgradeRequest = (path: string) => f.http1(REVIEWS, { path, headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' } });
  const refused = await upgradeRequest('/ws/reject-503');
  t.is(refused.status, 503);
  t.is(refused.body, 'no upgrade here');
  t.is(refused.headers['x-rejected'], 'yes');
  t.is(f.wsEvents.filter((e) => e.kind === 'rejected').length, 1, 'one try, no retry, no mirror');
  t.true(f.wsEvents.every((e) => e.pod === 'reviews-v1'));

  const started = Date.now();
  const hung = await upgradeRequest('/ws/hang');
  t.is(hung.status, 504);
  t.is(hung.body, 'upstream request timeout');
  t.true(Date.now() - started >= 290, 'the route timeout ran');
  t.is(f.wsEvents.filter((e) => e.kind === 'hang').length, 1);
  const access = f.log.records.filter((r) => r['component'] === 'access').map((r) => [r['response_code'], r['response_flags']]);
  t.deepEqual(access, [[503, '-'], [504, 'UT']]);
});
