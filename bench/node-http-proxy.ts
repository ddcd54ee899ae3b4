/**
 * The platform's floor for the waypoint benchmark: node's own HTTP/1.1 server and client as a plain
 * reverse proxy (keep-alive upstream, no TLS, no HBONE, no routing, no log), doing what the nginx path
 * does per request (adds X-Request-Id and X-Forwarded-Proto). Whatever a proxy built on node:http
 * costs per request, this costs at least.
 *
 *   node dist/bench/node-http-proxy.js --upstream 127.0.0.1:PORT [--port 0]
 *
 * Binds 127.0.0.1, prints `{"ready":true,"port":N}` once listening, and exits on SIGTERM/SIGINT or when
 * stdin (if a pipe) closes, through `process.exit` so that `node --cpu-prof` writes its profile.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { fstatSync } from 'node:fs';
import { Agent, createServer, request, type OutgoingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { upstream: { type: 'string' }, port: { type: 'string', default: '0' } } });
const match = /^(.+):(\d+)$/.exec(values.upstream ?? '');
if (!match) {
  process.stderr.write('node-http-proxy: --upstream HOST:PORT is required\n');
  process.exit(2);
}
const [, host, upstreamPort] = match as unknown as [string, string, string];

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);
const agent = new Agent({ keepAlive: true, maxSockets: Infinity, scheduling: 'lifo' });

const server = createServer({ noDelay: true }, (req, res) => {
  const headers: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k)) headers[k] = v;
  headers['x-request-id'] = randomUUID();
  headers['x-forwarded-proto'] = 'http';
  const upstream = request({ host, port: Number(upstreamPort), method: req.method, path: req.url, headers, agent }, (response) => {
    const out: OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(response.headers)) if (!HOP_BY_HOP.has(k)) out[k] = v;
    res.writeHead(response.statusCode ?? 502, out);
    response.pipe(res);
  });
  upstream.on('error', () => {
    if (res.headersSent) return void res.destroy();
    res.writeHead(502, { 'content-length': '0' }).end();
  });
  req.pipe(upstream);
});
server.listen({ host: '127.0.0.1', port: Number(values.port) });
await once(server, 'listening');
process.stdout.write(`${JSON.stringify({ ready: true, port: (server.address() as AddressInfo).port })}\n`);

const stop = () => process.exit(0);
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
if (fstatSync(0).isFIFO()) process.stdin.on('end', stop).on('error', stop).resume();
