import { setTimeout as sleep } from 'node:timers/promises';
import { closeInOrder, onceClose, type Handle } from '../core/lifecycle.ts';
import type { Logger } from '../core/logger.ts';
import type { HboneClient } from '../hbone/client.ts';
import { startHboneServer, type HboneServer } from '../hbone/server.ts';
import type { CertificateProvider } from '../identity/cert-manager.ts';
import { formatSpiffeId, spiffeIdEquals, type SpiffeId } from '../identity/spiffe.ts';
import type { WorkloadCertificate } from '../identity/workload-certificate.ts';
import type { StateReader } from '../workload-api/store.ts';
import type { Workload } from '../workload-api/types.ts';
import type { ConnectionManager } from './connection-manager.ts';
import { inboundHandler, type InboundLocal, type InboundTelemetry } from './inbound.ts';
import { startPlaintextListener } from './inbound-plaintext.ts';
import { startOutboundListener } from './outbound.ts';
import type { SocketFactory } from './socket-factory.ts';

/**
 * The proxy for one workload: outbound (15001), inbound HBONE (15008) and inbound plaintext (15006),
 * all through one socket factory. Dedicated mode runs one of these in ztunnel's own namespace; the
 * in-pod mode runs one per pod with a factory that opens sockets in the pod's namespace.
 */

export interface ProxyPorts {
  readonly outbound: number;
  readonly inbound: number;
  readonly inboundPlaintext: number;
}

export const DEFAULT_PROXY_PORTS: ProxyPorts = { outbound: 15001, inbound: 15008, inboundPlaintext: 15006 };

/** Subscription to certificate renewals (the CertManager's `certificate` event). */
export interface CertificateEvents {
  on(event: 'certificate', listener: (certificate: WorkloadCertificate) => void): unknown;
  off(event: 'certificate', listener: (certificate: WorkloadCertificate) => void): unknown;
}

export interface WorkloadProxyOptions {
  /** The proxied workload's identity (known before xDS: from PROXY_WORKLOAD_INFO or ZDS). */
  readonly identity: SpiffeId;
  /** The proxied workload as the mesh state has it now; undefined until xDS delivers it. */
  readonly workload: () => Workload | undefined;
  readonly state: StateReader;
  readonly factory: SocketFactory;
  readonly hbone: HboneClient;
  readonly certificates: CertificateProvider;
  readonly certificateEvents?: CertificateEvents;
  readonly connections: ConnectionManager;
  readonly telemetry: InboundTelemetry;
  readonly ports?: ProxyPorts;
  readonly logger: Logger;
  /** How long an outbound connection waits for the workload to appear in the mesh state (ztunnel: 5 s). */
  readonly sourceWaitMs?: number;
  /** How long `close()` lets live connections finish (the termination deadline). */
  readonly drainMs?: number;
}

export interface WorkloadProxy extends Handle {
  /** The ports actually bound (useful when started with port 0). */
  ports(): ProxyPorts;
  stats(): { readonly outbound: number; readonly inboundPlaintext: number; readonly hbone: { readonly connections: number; readonly streams: number } };
}

const SOURCE_POLL_MS = 50;

export async function startWorkloadProxy(options: WorkloadProxyOptions): Promise<WorkloadProxy> {
  const log = options.logger.child({ component: 'proxy', identity: formatSpiffeId(options.identity) });
  const ports = options.ports ?? DEFAULT_PROXY_PORTS;
  // The bound ports join as each listener starts (they differ from `ports` when those are 0).
  const ownPorts: number[] = [...new Set([ports.outbound, ports.inbound, ports.inboundPlaintext, ...Object.values(DEFAULT_PROXY_PORTS)])];
  const own = (port: number) => {
    if (!ownPorts.includes(port)) ownPorts.push(port);
  };
  const local = (): InboundLocal | undefined => {
    const workload = options.workload();
    return workload && { workload, ownPorts };
  };
  const waitForSource = async (): Promise<Workload | undefined> => {
    const deadline = Date.now() + (options.sourceWaitMs ?? 5000);
    for (;;) {
      const workload = options.workload();
      if (workload || Date.now() >= deadline) return workload;
      await sleep(SOURCE_POLL_MS);
    }
  };
  const drainMs = options.drainMs !== undefined ? { drainMs: options.drainMs } : {};

  const started: Handle[] = [];
  try {
    const certificate = await options.certificates.fetch(options.identity);
    const hboneServer: HboneServer = await startHboneServer({
      host: '0.0.0.0',
      port: ports.inbound,
      listen: (server) => options.factory.listen(server, ports.inbound),
      certificate,
      handler: inboundHandler({ state: options.state, local, connectSocket: options.factory.connect, logger: options.logger, telemetry: options.telemetry, connections: options.connections }),
      logger: options.logger,
      ...drainMs,
    });
    started.push(hboneServer);
    own(hboneServer.address().port);
    const onCertificate = (next: WorkloadCertificate) => {
      if (!spiffeIdEquals(next.identity, options.identity)) return;
      hboneServer.setCertificate(next);
      log.info({ notAfter: new Date(next.notAfter).toISOString() }, 'HBONE certificate rotated');
    };
    options.certificateEvents?.on('certificate', onCertificate);
    started.push({ close: async () => void options.certificateEvents?.off('certificate', onCertificate) });

    const plaintext = await startPlaintextListener({
      factory: options.factory,
      port: ports.inboundPlaintext,
      state: options.state,
      local,
      telemetry: options.telemetry,
      connections: options.connections,
      logger: options.logger,
      ...drainMs,
    });
    started.push(plaintext);
    own(plaintext.address().port);
    const outbound = await startOutboundListener({
      factory: options.factory,
      port: ports.outbound,
      state: options.state,
      source: waitForSource,
      network: options.telemetry.network,
      ownPorts,
      hbone: options.hbone,
      metrics: options.telemetry.metrics,
      accessLog: options.telemetry.accessLog,
      logger: options.logger,
      ...drainMs,
    });
    started.push(outbound);
    own(outbound.address().port);
    const bound: ProxyPorts = { outbound: outbound.address().port, inbound: hboneServer.address().port, inboundPlaintext: plaintext.address().port };
    log.info({ ports: bound }, 'workload proxy started');

    // Listeners stop accepting and drain together; each cuts what is left at the deadline.
    const close = onceClose(async () => {
      const listeners = [outbound, plaintext, hboneServer];
      await Promise.allSettled(listeners.map((l) => l.close()));
      await closeInOrder(started);
      log.info('workload proxy stopped');
    });
    return {
      ports: () => bound,
      close,
      stats: () => ({ outbound: outbound.connections(), inboundPlaintext: plaintext.connections(), hbone: hboneServer.stats() }),
    };
  } catch (err) {
    await closeInOrder(started.reverse()).catch(() => {});
    throw err;
  }
}
