import { once } from 'node:events';
import { isIP } from 'node:net';
import { createTcpSocketIn, listenTcpIn } from '../sys/netns.ts';
import type { SocketFactory } from './socket-factory.ts';

/**
 * The in-pod (shared mode) socket factory: one pod's listeners and upstream sockets are created inside
 * that pod's network namespace (`netnsFd`, handed over by the node agent through ZDS), so the pod's
 * capture rules see them as the pod's own. Upstream sockets carry `mark` from their first packet (SYN),
 * which lets them past those rules (reference ztunnel.md §4.1).
 *
 * Listeners bind 0.0.0.0 only: IPv4 is enough for now (dual-stack pods need a second listener on `::`).
 * The caller keeps ownership of `netnsFd` and must keep it open while the factory is in use.
 */

export interface InPodSocketFactoryOptions {
  /** SO_MARK on upstream sockets (`PACKET_MARK`, 1337 in shared mode). */
  readonly mark?: number | undefined;
  /** SO_REUSEPORT on listeners (`INPOD_PORT_REUSE`). */
  readonly reusePort?: boolean | undefined;
}

const LISTEN_HOST = '0.0.0.0';

export function inPodSocketFactory(netnsFd: number, options: InPodSocketFactoryOptions = {}): SocketFactory {
  return {
    async listen(server, port) {
      const fd = listenTcpIn(netnsFd, { host: LISTEN_HOST, port, family: 4, reusePort: options.reusePort });
      server.listen({ fd });
      await once(server, 'listening');
    },
    connect({ host, port, localAddress }) {
      const socket = createTcpSocketIn(netnsFd, isIP(host) === 6 ? 6 : 4, { mark: options.mark });
      socket.setNoDelay(true);
      return socket.connect({ host, port, ...(localAddress ? { localAddress } : {}) });
    },
  };
}
