export * from './types.ts';
export * from './store.ts';
export * from './store-handlers.ts';
export * from './xds-types.ts';
export * from './xds-client.ts';
export { xdsService, type XdsServerOptions, type XdsServerStats, type XdsService, type XdsAckEvent as XdsServerAckEvent, type XdsNackEvent as XdsServerNackEvent } from './xds-server.ts';
export * from './snapshot.ts';
export * from './ca-service.ts';
export * from './ca-client.ts';
export * from './grpc-server.ts';
export * from './grpc-auth.ts';
export * from './local-config.ts';
export * from './local-source.ts';
export * from './env.ts';
export { TypeUrl, GrpcMethod, encodeMessage, decodeMessage } from './proto.ts';
export * from './xds-metrics.ts';
export * from './zds.ts';
// Types only: @kubernetes/client-node takes ~0.5 s to load, so the informer itself is imported from './kube/index.ts'
// by the processes that watch Kubernetes (cni agent, control plane), and the proxies do not pay for it.
export type { Informer, InformerOptions, InformerEvents, KubeObject } from './kube/informer.ts';
export * from './encode.ts';
export * from './l7-types.ts';
export * from './l7-store.ts';
export * from './l7-handlers.ts';
export * from './l7-local.ts';
export * from './l7-encode.ts';
export { routeConfigurationFromWire, destinationPolicyFromWire, l7AuthorizationFromWire } from './l7-convert.ts';
