import { CertificateAuthority } from '../../src/identity/ca.ts';
import { startGrpcServer, type GrpcServerHandle } from '../../src/workload-api/grpc-server.ts';
import { ResourceSnapshot } from '../../src/workload-api/snapshot.ts';
import { WorkloadStore } from '../../src/workload-api/store.ts';
import { addressHandler, authorizationHandler } from '../../src/workload-api/store-handlers.ts';
import { startXdsClient, xdsNode, type XdsClient } from '../../src/workload-api/xds-client.ts';
import { xdsService, type XdsServerOptions, type XdsService } from '../../src/workload-api/xds-server.ts';
import type { Logger } from '../../src/core/logger.ts';

export const ISTIOD = 'istiod.istio-system.svc';

export interface XdsServerFixture {
  readonly snapshot: ResourceSnapshot;
  readonly service: XdsService;
  readonly server: GrpcServerHandle;
  readonly rootPem: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Our ADS server over TLS on loopback, with a serving certificate for istiod signed by `ca`. */
export async function startXdsServer(
  ca: CertificateAuthority,
  options: { snapshot?: ResourceSnapshot; port?: number } & Omit<XdsServerOptions, 'snapshot'> = {},
): Promise<XdsServerFixture> {
  const snapshot = options.snapshot ?? new ResourceSnapshot();
  const service = xdsService({ ...options, snapshot });
  const server = await startGrpcServer({ host: '127.0.0.1', port: options.port ?? 0, tls: ca.issueServingCertificate([ISTIOD]), services: [service], drainMs: 500 });
  return {
    snapshot,
    service,
    server,
    rootPem: ca.rootsPem.join(''),
    port: server.address().port,
    close: async () => {
      await service.close();
      await server.close();
    },
  };
}

/** Our ADS client feeding a fresh store, verifying the server as istiod (reached as localhost). */
export function startStoreClient(port: number, rootPem: string, logger?: Logger): { client: XdsClient; store: WorkloadStore } {
  const store = new WorkloadStore();
  const client = startXdsClient({
    address: `localhost:${port}`,
    rootCaPem: rootPem,
    alternateHostname: ISTIOD,
    auth: { token: { kind: 'literal', token: 'test-token' }, clusterId: 'Kubernetes' },
    node: xdsNode({ podName: 'ztunnel-x', podNamespace: 'istio-system', nodeName: 'node-1' }),
    handlers: [addressHandler(store), authorizationHandler(store)],
    ...(logger ? { logger } : {}),
  });
  return { client, store };
}
