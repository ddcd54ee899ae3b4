import { Server, ServerCredentials, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { onceClose, type ServerHandle } from '../core/lifecycle.ts';

export interface GrpcService {
  readonly definition: ServiceDefinition;
  readonly implementation: UntypedServiceImplementation;
}

export interface GrpcServerOptions {
  readonly host: string;
  readonly port: number;
  /** Server TLS (Istio's 15012 is TLS, server-only); plaintext when absent (tests, sidecar-less dev). */
  readonly tls?: { readonly certChainPem: string; readonly privateKeyPem: string };
  readonly services: readonly GrpcService[];
  /** Max message size both ways (Istio's clients decode up to 200 MiB). */
  readonly maxMessageBytes?: number;
  /** How long close() waits for open calls before cancelling them. */
  readonly drainMs?: number;
}

export interface GrpcServerHandle extends ServerHandle {
  readonly server: Server;
}

/** One gRPC server for the control plane's services (xDS and CA share port 15012). */
export async function startGrpcServer(options: GrpcServerOptions): Promise<GrpcServerHandle> {
  const maxBytes = options.maxMessageBytes ?? 200 * 1024 * 1024;
  const server = new Server({ 'grpc.max_receive_message_length': maxBytes, 'grpc.max_send_message_length': maxBytes });
  for (const service of options.services) server.addService(service.definition, service.implementation);
  const credentials = options.tls
    ? ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(options.tls.certChainPem), private_key: Buffer.from(options.tls.privateKeyPem) }], false)
    : ServerCredentials.createInsecure();
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${options.port}`, credentials, (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  const close = onceClose(async () => {
    const deadline = setTimeout(() => server.forceShutdown(), options.drainMs ?? 5_000);
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    clearTimeout(deadline);
  });
  return {
    server,
    address: () => ({ address: options.host, port, family: options.host.includes(':') ? 'IPv6' : 'IPv4' }),
    close,
  };
}
