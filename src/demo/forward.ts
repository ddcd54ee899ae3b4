import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { closeFd, createServerIn, createTcpSocketIn, openNetns } from '../sys/netns.ts';

/**
 * TCP forwarders across network namespaces, for what a cluster's network would give the demo: the waypoint pod
 * reaching the control plane (which listens on this machine's loopback), and the user's browser reaching the
 * waypoint's metrics inside its pod.
 */

export interface Forwarder {
  readonly port: number;
  close(): Promise<void>;
}

/** Joins two sockets both ways; when one ends for good, so does the other. */
function splice(a: Socket, b: Socket): void {
  a.on('error', () => {});
  b.on('error', () => {});
  a.once('close', () => b.destroy());
  b.once('close', () => a.destroy());
  a.pipe(b);
  b.pipe(a);
}

function closeServer(server: Server, sockets: Set<Socket>): Promise<void> {
  for (const s of sockets) s.destroy();
  return new Promise((resolve) => server.close(() => resolve()));
}

function track(server: Server): Set<Socket> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  return sockets;
}

/** Listens on `host:port` here (0 picks a port) and connects each client to `target` inside the namespace at `netnsPath`. */
export async function forwardInto(listen: { host: string; port: number }, netnsPath: string, target: { host: string; port: number }): Promise<Forwarder> {
  const fd = openNetns(netnsPath);
  const server = createServer((client) => {
    let upstream: Socket;
    try {
      upstream = createTcpSocketIn(fd, 4);
    } catch {
      client.destroy();
      return;
    }
    upstream.connect(target.port, target.host);
    splice(client, upstream);
  });
  const sockets = track(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      await closeServer(server, sockets);
      closeFd(fd);
    },
  };
}

/** Listens on `listen` inside the namespace at `netnsPath` and connects each client to `target` here. */
export async function forwardOutOf(netnsPath: string, listen: { host: string; port: number }, target: { host: string; port: number }): Promise<Forwarder> {
  const fd = openNetns(netnsPath);
  try {
    const server = await createServerIn(fd, { host: listen.host, port: listen.port }, (client) => splice(client, connect(target.port, target.host)));
    const sockets = track(server);
    return {
      port: (server.address() as AddressInfo).port,
      async close() {
        await closeServer(server, sockets);
        closeFd(fd);
      },
    };
  } catch (err) {
    closeFd(fd);
    throw err;
  }
}
