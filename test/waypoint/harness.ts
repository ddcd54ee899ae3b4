import type { ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { createServer as createH1Server, request as h1request, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect as h2connect, createServer as createH2Server, type ClientHttp2Session, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { createHboneClient, type HboneClient } from '../../src/hbone/client.ts';
import { forwardToTarget } from '../../src/hbone/forward.ts';
import { relay } from '../../src/hbone/relay.ts';
import { startHboneServer, type HboneServer } from '../../src/hbone/server.ts';
import { LocalCaClient } from '../../src/identity/local-ca-client.ts';
import { parse } from '../../src/waypoint/config.ts';
import { copyingDuplexPair, socketOver } from '../helpers/duplex-pair.ts';
import { startWaypoint, type Waypoint } from '../../src/waypoint/waypoint.ts';
import { captureLog, type CapturedLog } from '../helpers/log.ts';
import { testPki, type TestPki } from '../helpers/pki.ts';
import { tempDir } from '../helpers/tmp.ts';
import { webSocketEcho, type WsEvent } from '../helpers/websocket.ts';

/**
 * A waypoint in-process on loopback with everything real around it: a CA, two "pods" (127.0.0.2 and
 * 127.0.0.3) each with an HTTP app (HTTP/1.1 and h2c on one port) behind a ztunnel-like HBONE server
 * (the project's HBONE server with the pod's certificate, forwarding to the app), and an HBONE client
 * with the identity of a calling workload. The mesh comes from LOCAL_XDS, the L7 config from a file.
 */

export const VIP = { reviews: '10.96.0.10', secure: '10.96.0.11', tcp: '10.96.0.12' } as const;
export const HOST = { reviews: 'reviews.prod.svc.cluster.local', secure: 'secure.prod.svc.cluster.local', tcp: 'tcp.prod.svc.cluster.local' } as const;
export const PODS = [
  { name: 'reviews-v1', ip: '127.0.0.2', version: 'v1' },
  { name: 'reviews-v2', ip: '127.0.0.3', version: 'v2' },
] as const;
export const CLIENT_IP = '127.0.0.1';

/** Shared by the apps: per-key failure budgets for `/flaky`. */
const flaky = new Map<string, number>();

export interface AppRecord {
  readonly pod: string;
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly protocol: string;
  /** The request body's size and sha256 (hex) as the app received it. */
  readonly bodyBytes: number;
  readonly bodySha256: string;
}

function app(pod: string, requests: AppRecord[]) {
  return (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    // A mirror target that never reads its body nor answers (the v2 pod only), for slow-mirror tests.
    if (pod === 'reviews-v2' && url.pathname.startsWith('/upload/stall')) return void req.pause();
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const received = Buffer.concat(chunks);
      const record: AppRecord = {
        pod, method: req.method ?? '', url: req.url ?? '', headers: req.headers as Record<string, string>, protocol: req.httpVersion,
        bodyBytes: received.length, bodySha256: createHash('sha256').update(received).digest('hex'),
      };
      requests.push(record);
      const r = res as ServerResponse;
      const json = (status: number, body: unknown, extra: Record<string, string> = {}) => {
        const text = JSON.stringify(body);
        r.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-pod': pod, ...extra });
        r.end(text);
      };
      if (url.pathname.startsWith('/upload')) return json(200, { pod, bytes: record.bodyBytes, sha256: record.bodySha256 });
      if (url.pathname === '/admin') return json(200, { secret: 'ADMIN SECRET', pod });
      if (url.pathname.startsWith('/status/')) return json(Number(url.pathname.slice(8)), { pod });
      if (url.pathname === '/flaky') {
        const key = url.searchParams.get('key') ?? '';
        const left = flaky.get(key) ?? Number(url.searchParams.get('fail') ?? '0');
        flaky.set(key, left - 1);
        if (left > 0) return json(503, { pod, failed: true });
        return json(200, { pod, recovered: true });
      }
      if (url.pathname === '/slow') {
        const timer = setTimeout(() => json(200, { pod, slow: true }), Number(url.searchParams.get('ms') ?? '1000'));
        res.once('close', () => clearTimeout(timer));
        return;
      }
      if (url.pathname === '/grpc') {
        const h2res = res as Http2ServerResponse;
        h2res.writeHead(200, { 'content-type': 'application/grpc', 'x-pod': pod });
        h2res.addTrailers({ 'grpc-status': url.searchParams.get('status') ?? '0', 'grpc-message': 'done' });
        h2res.end(Buffer.from([0, 0, 0, 0, 2, 8, 1]));
        return;
      }
      return json(200, { pod, method: req.method, url: req.url, body: Buffer.concat(chunks).toString() });
    });
  };
}

/** An app speaking HTTP/1.1 and h2c on one port (the first bytes decide). */
async function startApp(pod: string, host: string, requests: AppRecord[], wsEvents: PodWsEvent[]): Promise<Server> {
  const handler = app(pod, requests);
  const h1 = createH1Server(handler);
  h1.on('upgrade', webSocketEcho((e) => wsEvents.push({ pod, ...e })));
  const h2 = createH2Server(handler);
  const server = createNetServer({ allowHalfOpen: false }, (socket: Socket) => {
    socket.on('error', () => {});
    socket.once('data', (first: Buffer) => {
      // Through a duplex pair: node's HTTP/1.1 parser reads a real socket's handle directly and would
      // miss bytes put back with unshift().
      const [theirs, ours] = copyingDuplexPair();
      ours.on('error', () => socket.destroy());
      ours.write(first);
      socket.pipe(ours).pipe(socket);
      socket.once('close', () => ours.destroy());
      (first.subarray(0, 3).toString() === 'PRI' ? h2 : h1).emit('connection', theirs);
    });
  });
  server.listen({ host, port: 0 });
  await once(server, 'listening');
  return server;
}

export type PodWsEvent = WsEvent & { readonly pod: string };

export interface WaypointFixture {
  readonly pki: TestPki;
  readonly waypoint: Waypoint;
  readonly client: HboneClient;
  readonly log: CapturedLog;
  readonly requests: AppRecord[];
  /** What the pods' WebSocket echo servers saw. */
  readonly wsEvents: PodWsEvent[];
  readonly l7Path: string;
  /** Opens a tunnel to the waypoint for `authority` (VIP:port). */
  tunnel(authority: string): ReturnType<HboneClient['connect']>;
  /** One HTTP/1.1 request over a fresh tunnel. */
  http1(authority: string, options: { method?: string; path: string; headers?: Record<string, string>; body?: string }): Promise<{ status: number; headers: IncomingMessage['headers']; body: string }>;
  /** An h2c session over one tunnel. */
  http2(authority: string): Promise<ClientHttp2Session>;
  /** A local TCP port bridged to the waypoint over HBONE with `authority` (for curl and nghttp). */
  bridge(authority: string): Promise<number>;
  metrics(): Promise<string>;
}

export const meshYaml = (apps: readonly number[]) => `
workloads:
- uid: Kubernetes//Pod/prod/web
  name: web
  namespace: prod
  serviceAccount: web
  workloadIps: ["${CLIENT_IP}"]
  protocol: HBONE
  workloadName: web
  canonicalName: web
  canonicalRevision: v1
${PODS.map((p, i) => `- uid: Kubernetes//Pod/prod/${p.name}
  name: ${p.name}
  namespace: prod
  serviceAccount: reviews
  workloadIps: ["${p.ip}"]
  protocol: HBONE
  workloadName: ${p.name}
  canonicalName: reviews
  canonicalRevision: ${p.version}
  services:
    "prod/${HOST.reviews}": { 9080: ${apps[i]} }
    "prod/${HOST.secure}": { 9080: ${apps[i]} }
    "prod/${HOST.tcp}": { 7000: ${apps[i]} }`).join('\n')}
services:
- name: reviews
  namespace: prod
  hostname: ${HOST.reviews}
  vips: ["/${VIP.reviews}"]
  ports: { 9080: 9080 }
- name: secure
  namespace: prod
  hostname: ${HOST.secure}
  vips: ["/${VIP.secure}"]
  ports: { 9080: 9080 }
- name: tcp
  namespace: prod
  hostname: ${HOST.tcp}
  vips: ["/${VIP.tcp}"]
  ports: { 7000: 7000 }
`;

export const L7_YAML = `
routeConfigurations:
  - namespace: prod
    hostname: ${HOST.reviews}
    routes:
      - name: by-header
        matches: [{ headers: [{ name: x-version, value: { exact: v2 } }] }]
        backends: [{ namespace: prod, hostname: ${HOST.reviews}, subset: v2, weight: 1 }]
        responseHeaders: { set: [{ name: x-route, value: by-header }] }
      - name: flaky
        matches: [{ path: { prefix: /flaky } }]
        retries: { attempts: 2, retryOn: [5xx] }
      - name: slow
        matches: [{ path: { prefix: /slow } }]
        timeout: 300ms
      - name: per-try
        matches: [{ path: { prefix: /pertry } }]
        rewrite: { fullPath: /slow }
        retries: { attempts: 1, perTryTimeout: 150ms, retryOn: [5xx] }
      - name: abort
        matches: [{ path: { prefix: /fault/abort } }]
        fault: { abort: { httpStatus: 418 } }
      - name: delay
        matches: [{ path: { prefix: /fault/delay } }]
        fault: { delay: { fixedDelay: 300ms } }
      - name: grpc
        matches: [{ path: { prefix: /grpc } }]
      - name: split
        matches: [{ path: { prefix: / } }]
        backends:
          - { namespace: prod, hostname: ${HOST.reviews}, subset: v1, weight: 90 }
          - { namespace: prod, hostname: ${HOST.reviews}, subset: v2, weight: 10 }
destinationPolicies:
  - namespace: prod
    hostname: ${HOST.reviews}
    subsets:
      - { name: v1, labels: { version: v1 } }
      - { name: v2, labels: { version: v2 } }
authorizationPolicies:
  - name: no-delete
    namespace: prod
    action: DENY
    rules: [{ to: [{ methods: [DELETE] }] }]
  - name: public-only
    namespace: prod
    targetServices: [prod/${HOST.secure}]
    rules: [{ from: [{ principals: [cluster.local/ns/prod/sa/web] }], to: [{ paths: [/public/*, /healthz] }] }]
`;

export interface FixtureOptions {
  readonly l7?: string;
  readonly env?: Record<string, string>;
  /**
   * Where the waypoint's mesh and L7 configuration come from instead of LOCAL_XDS and the L7 file: called with the
   * apps' ports once they listen, it returns the waypoint's xDS variables (XDS_ADDRESS, XDS_ROOT_CA, AUTH_TOKEN, ...).
   */
  readonly workloadApi?: (appPorts: readonly number[], pki: TestPki) => Promise<Record<string, string>>;
}

export async function startFixture(t: ExecutionContext, options: FixtureOptions = {}): Promise<WaypointFixture> {
  const pki = testPki();
  const log = captureLog();
  const requests: AppRecord[] = [];
  const wsEvents: PodWsEvent[] = [];
  const apps = await Promise.all(PODS.map((p) => startApp(p.name, p.ip, requests, wsEvents)));
  t.teardown(async () => {
    for (const a of apps) a.close();
  });
  const appPorts = apps.map((a) => (a.address() as AddressInfo).port);

  // One ztunnel-like HBONE server per pod, all on the same port (the waypoint dials podIP:port).
  const podCert = await pki.cert('prod', 'reviews');
  let ztunnels: HboneServer[] = [];
  for (let attempt = 0; ztunnels.length < PODS.length && attempt < 10; attempt++) {
    ztunnels = [];
    try {
      const first = await startHboneServer({ host: PODS[0].ip, port: 0, certificate: podCert, handler: forwardToTarget() });
      ztunnels.push(first);
      for (const p of PODS.slice(1)) ztunnels.push(await startHboneServer({ host: p.ip, port: first.address().port, certificate: podCert, handler: forwardToTarget() }));
    } catch {
      await Promise.all(ztunnels.map((z) => z.close()));
      ztunnels = [];
    }
  }
  if (ztunnels.length < PODS.length) throw new Error('could not bind the pods\' HBONE servers on one port');
  const hbonePort = (ztunnels[0] as HboneServer).address().port;

  const dir = await tempDir(t, 'waypoint-');
  const l7Path = join(dir, 'l7.yaml');
  await writeFile(l7Path, options.l7 ?? L7_YAML);
  const config = parse(
    { 'bind-address': '127.0.0.1', 'hbone-port': '0', 'stats-port': '0', 'readiness-port': '0', 'upstream-hbone-port': String(hbonePort) },
    {
      ...(options.workloadApi ? await options.workloadApi(appPorts, pki) : { XDS_ADDRESS: '', LOCAL_XDS: meshYaml(appPorts), L7_CONFIG_PATH: l7Path }),
      POD_NAMESPACE: 'prod', SERVICE_ACCOUNT: 'waypoint', ...options.env,
    },
  );
  if (!config.ok) throw new Error(config.errors.join('\n'));
  const waypoint = await startWaypoint(config.value, { logger: log.logger, ca: new LocalCaClient(pki.ca) });
  const clientLog = captureLog();
  const client = createHboneClient({ certificates: pki.certificates, logger: clientLog.logger });
  const bridges: Server[] = [];
  t.teardown(async () => {
    for (const b of bridges) b.close();
    await client.close();
    await waypoint.close();
    await Promise.all(ztunnels.map((z) => z.close()));
    await pki.close();
  });

  // A CONNECT that fails says what both ends logged about HBONE meanwhile (a rare early reset was seen once).
  const tunnel = (authority: string) => {
    const since = { waypoint: log.mark(), client: clientLog.mark() };
    return client.connect({
      source: pki.id('prod', 'web'),
      expectedIdentities: [pki.id('prod', 'waypoint')],
      address: { host: '127.0.0.1', port: waypoint.ports().hbone },
      authority,
    }).catch((err: unknown) => {
      const hbone = (records: Array<Record<string, unknown>>, from: number) => records.slice(from).filter((r) => r['component'] === 'hbone-server' || r['component'] === 'hbone-client').map((r) => JSON.stringify(r));
      const seen = [...hbone(log.records, since.waypoint), ...hbone(clientLog.records, since.client)];
      throw Object.assign(err instanceof Error ? err : new Error(String(err)), { message: `${err instanceof Error ? err.message : String(err)}; HBONE log meanwhile: ${seen.join(' | ') || 'none'}` });
    });
  };

  return {
    pki,
    waypoint,
    client,
    log,
    requests,
    wsEvents,
    l7Path,
    tunnel,
    async http1(authority, o) {
      const t1 = await tunnel(authority);
      // Through a duplex pair (see socketOver: a corked writev corrupts on an HTTP/2 stream).
      const socket = socketOver(t1.stream);
      return new Promise((resolve, reject) => {
        const req = h1request({ createConnection: () => socket as never, method: o.method ?? 'GET', path: o.path, headers: { host: authority, ...o.headers } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end(o.body);
      });
    },
    async http2(authority) {
      const t2 = await tunnel(authority);
      const session = h2connect(`http://${authority}`, { createConnection: () => socketOver(t2.stream) as never });
      session.on('error', () => {});
      return session;
    },
    async bridge(authority) {
      const server = createNetServer({ allowHalfOpen: true }, (socket) => {
        socket.on('error', () => {});
        tunnel(authority).then((tn) => void relay(socket, tn.stream), () => socket.destroy());
      });
      server.listen({ host: '127.0.0.1', port: 0 });
      await once(server, 'listening');
      bridges.push(server);
      return (server.address() as AddressInfo).port;
    },
    async metrics() {
      const res = await fetch(`http://127.0.0.1:${waypoint.ports().stats}/stats/prometheus`);
      return res.text();
    },
  };
}

/** One request on an h2 session: status, headers, body and trailers. */
export function h2request(session: ClientHttp2Session, headers: Record<string, string>, body?: Buffer): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer; trailers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined });
    let responseHeaders: Record<string, unknown> = {};
    let trailers: Record<string, unknown> = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (responseHeaders = h));
    stream.on('trailers', (h) => (trailers = h));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve({ status: Number(responseHeaders[':status']), headers: responseHeaders, body: Buffer.concat(chunks), trailers }));
    stream.on('error', reject);
    if (body !== undefined) stream.end(body);
  });
}
