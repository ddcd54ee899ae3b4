/**
 * A TCP echo target for the latency benchmark: binds 127.0.0.1 (or --host), echoes every byte back on the
 * same connection (Nagle off), and ends its side when the peer ends. Prints `{"ready":true,"port":N}`
 * once listening. Exits on SIGTERM/SIGINT or when its stdin, if a pipe, closes
 * (the orchestrator went away).
 *
 *   node dist/bench/echo-server.js [--port 0] [--host 127.0.0.1]
 */
import { once } from 'node:events';
import { fstatSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' }, host: { type: 'string', default: '127.0.0.1' } } });

const sockets = new Set<Socket>();
const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
  sockets.add(socket);
  socket.on('error', () => {});
  socket.once('close', () => sockets.delete(socket));
  socket.pipe(socket);
});
server.on('error', (err) => {
  process.stderr.write(`echo-server: ${err.message}\n`);
  process.exit(1);
});
server.listen({ host: values.host, port: Number(values.port), backlog: 4096 });
await once(server, 'listening');
process.stdout.write(`${JSON.stringify({ ready: true, port: (server.address() as AddressInfo).port })}\n`);

const stop = () => {
  for (const socket of sockets) socket.destroy();
  server.close();
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
if (fstatSync(0).isFIFO()) process.stdin.on('end', stop).on('error', stop).resume();
