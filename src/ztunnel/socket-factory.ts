import { once } from 'node:events';
import { isIP, type Server } from 'node:net';
import type { ConnectSocket } from '../hbone/forward.ts';
import { createTcpSocket } from '../sys/socket-options.ts';

/**
 * Where a workload proxy's sockets live. Dedicated mode uses the host factory below: listeners and
 * upstream sockets in ztunnel's own network namespace. The in-pod (shared) mode of the capture issue
 * supplies a factory whose sockets are created inside the pod's namespace; nothing else changes.
 */
export interface SocketFactory {
  /** Starts `server` listening on `port` (0: any free port) on this proxy's addresses. */
  listen(server: Server, port: number): Promise<void>;
  /** Opens an upstream TCP connection (marked with the proxy's packet mark, if any). */
  readonly connect: ConnectSocket;
}

export interface HostSocketFactoryOptions {
  /** Listen address; `0.0.0.0` by default (`::` would also take IPv4 through mapped addresses). */
  readonly host?: string;
  /** SO_MARK for upstream sockets (`PACKET_MARK`; 0x539 lets them past the capture rules). */
  readonly mark?: number | undefined;
  /** SO_REUSEPORT on listeners (`INPOD_PORT_REUSE`). */
  readonly reusePort?: boolean;
}

export function hostSocketFactory(options: HostSocketFactoryOptions = {}): SocketFactory {
  const host = options.host ?? '0.0.0.0';
  return {
    async listen(server, port) {
      server.listen({ host, port, ...(options.reusePort ? { reusePort: true } : {}) });
      await once(server, 'listening');
    },
    connect({ host: target, port, localAddress }) {
      const socket = createTcpSocket(isIP(target) === 6 ? 6 : 4, { mark: options.mark });
      socket.setNoDelay(true);
      return socket.connect({ host: target, port, ...(localAddress ? { localAddress } : {}) });
    },
  };
}
