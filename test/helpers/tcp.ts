import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';

export interface TcpTestServer {
  readonly port: number;
  readonly server: Server;
  close(): Promise<void>;
}

/** A loopback TCP server (half-open allowed) running `onSocket` per connection; `close()` destroys all. */
export async function tcpServer(onSocket: (socket: Socket) => void, host = '127.0.0.1'): Promise<TcpTestServer> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
    onSocket(socket);
  });
  server.listen(0, host);
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    server,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Echoes everything back and ends its side when the peer ends. */
export const echo = (socket: Socket) => socket.pipe(socket);

/** Reads a stream to its end, returning byte count and SHA-256. */
export async function drainHash(stream: Duplex): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream.iterator({ destroyOnReturn: false })) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { bytes, sha256: hash.digest('hex') };
}

/** Reads a stream to its end as text, leaving it open for writing (a plain for-await would destroy it). */
export async function readAll(stream: Duplex): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream.iterator({ destroyOnReturn: false })) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}

/** Writes `total` deterministic pseudo-random bytes with backpressure, then ends; returns their SHA-256. */
export async function sendPattern(stream: Duplex, total: number, seed = 1): Promise<string> {
  const hash = createHash('sha256');
  const chunk = Buffer.alloc(256 * 1024);
  let x = seed >>> 0 || 1;
  for (let sent = 0; sent < total; ) {
    const n = Math.min(chunk.length, total - sent);
    for (let i = 0; i < n; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      chunk.writeUInt32LE(x >>> 0, i);
    }
    const piece = Buffer.from(chunk.subarray(0, n));
    hash.update(piece);
    sent += n;
    if (!stream.write(piece)) await once(stream, 'drain');
  }
  stream.end();
  return hash.digest('hex');
}
