import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { MethodDefinition, Options as LoaderOptions, PackageDefinition } from '@grpc/proto-loader';
import protobuf from 'protobufjs';

/** xDS type URLs of the workload API (reference ztunnel.md §1). */
export const TypeUrl = {
  address: 'type.googleapis.com/istio.workload.Address',
  authorization: 'type.googleapis.com/istio.security.Authorization',
  /** The waypoint's L7 resources (proto/l7.proto, ours). */
  routeConfiguration: 'type.googleapis.com/ambient.l7.RouteConfiguration',
  destinationPolicy: 'type.googleapis.com/ambient.l7.DestinationPolicy',
  l7Authorization: 'type.googleapis.com/ambient.l7.AuthorizationPolicy',
  requestAuthentication: 'type.googleapis.com/ambient.l7.RequestAuthentication',
} as const;
export type TypeUrl = (typeof TypeUrl)[keyof typeof TypeUrl];

export const GrpcMethod = {
  deltaAds: '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources',
  createCertificate: '/istio.v1.auth.IstioCertificateService/CreateCertificate',
} as const;

/** The .proto files, relative to proto/. */
export const PROTO_FILES = ['workload.proto', 'authorization.proto', 'zds.proto', 'citadel.proto', 'discovery.proto', 'l7.proto'] as const;

/**
 * Conversion options shared by the generated types (scripts/gen-proto.ts passes the same flags),
 * the gRPC loader and protobufjs decoding, so a decoded message has exactly its `__Output` shape.
 */
export const CONVERSION = { longs: Number, enums: String, bytes: Buffer, defaults: true, oneofs: true } as const;
const LOADER_OPTIONS: LoaderOptions = { ...CONVERSION, keepCase: false, arrays: true, objects: true };

/** proto/ of this checkout, found upwards from this file (src/ or dist/src/). */
export function protoDir(): string {
  for (let dir = import.meta.dirname; dir !== dirname(dir); dir = dirname(dir)) {
    if (existsSync(join(dir, 'proto', 'workload.proto'))) return join(dir, 'proto');
  }
  throw new Error('cannot find proto/ above ' + import.meta.dirname);
}

let grpcDefinition: PackageDefinition | undefined;
let root: protobuf.Root | undefined;

/** The gRPC services of our protos. */
const SERVICES = ['envoy.service.discovery.v3.AggregatedDiscoveryService', 'istio.v1.auth.IstioCertificateService'] as const;

/**
 * The package definition for @grpc/grpc-js services (built once), with proto-loader's shape and
 * (de)serialization. It is built from the protobufjs root rather than by proto-loader, which also
 * builds descriptor.proto and file descriptors for reflection: a large object graph that every
 * major GC of a busy proxy had to mark again (it cost the data path about a third more CPU per byte).
 */
export function grpcPackageDefinition(): PackageDefinition {
  if (!grpcDefinition) {
    const definition: Record<string, Record<string, MethodDefinition<object, object>>> = {};
    for (const name of SERVICES) {
      const methods: Record<string, MethodDefinition<object, object>> = {};
      for (const method of protoRoot().lookupService(name).methodsArray) {
        method.resolve();
        const request = method.resolvedRequestType as protobuf.Type;
        const response = method.resolvedResponseType as protobuf.Type;
        methods[method.name] = {
          path: `/${name}/${method.name}`,
          requestStream: method.requestStream === true,
          responseStream: method.responseStream === true,
          requestSerialize: serializer(request),
          requestDeserialize: deserializer(request),
          responseSerialize: serializer(response),
          responseDeserialize: deserializer(response),
          originalName: method.name.charAt(0).toLowerCase() + method.name.slice(1),
          // Reflection data (descriptors) is not served; grpc-js does not read these.
          requestType: { format: 'Protocol Buffer 3 DescriptorProto', type: {}, fileDescriptorProtos: [] },
          responseType: { format: 'Protocol Buffer 3 DescriptorProto', type: {}, fileDescriptorProtos: [] },
        } as unknown as MethodDefinition<object, object>;
      }
      definition[name] = methods;
    }
    grpcDefinition = definition as unknown as PackageDefinition;
  }
  return grpcDefinition;
}

/** proto-loader's serializer: a plain object (or already encoded bytes) to protobuf bytes. */
function serializer(type: protobuf.Type): (value: object) => Buffer {
  return (value) => (Buffer.isBuffer(value) ? value : Buffer.from(type.encode(type.fromObject(value)).finish()));
}

/** proto-loader's deserializer: bytes to the plain `__Output` shape. */
function deserializer(type: protobuf.Type): (bytes: Buffer) => object {
  return (bytes) => type.toObject(type.decode(bytes), LOADER_OPTIONS);
}

/** The protobufjs root with every message of our protos (loaded once). */
export function protoRoot(): protobuf.Root {
  if (!root) {
    const dir = protoDir();
    const loaded = new protobuf.Root();
    loaded.resolvePath = (_origin, target) => (target.startsWith('google/protobuf/') ? target : join(dir, target.replace(dir + '/', '')));
    loaded.loadSync(PROTO_FILES.map((f) => join(dir, f)), { keepCase: false });
    loaded.resolveAll();
    root = loaded;
  }
  return root;
}

/** A message type by its full name (`istio.workload.Address`). */
export function messageType(fullName: string): protobuf.Type {
  return protoRoot().lookupType(fullName);
}

/** Decodes bytes into the plain `__Output` shape; throws on malformed protobuf. */
export function decodeMessage<T>(fullName: string, bytes: Uint8Array): T {
  const type = messageType(fullName);
  return type.toObject(type.decode(bytes), CONVERSION) as T;
}

/**
 * Encodes a plain object (input shape, camelCase) after checking it fits the type. `unchecked`
 * skips the check, so tests can put on the wire what a faulty peer would (unknown enum numbers).
 */
export function encodeMessage(fullName: string, value: object, options: { unchecked?: boolean } = {}): Buffer {
  const type = messageType(fullName);
  const message = type.fromObject(value);
  const problem = options.unchecked ? null : type.verify(message);
  if (problem) throw new TypeError(`${fullName}: ${problem}`);
  return Buffer.from(type.encode(message).finish());
}

/** The full message name behind a type URL (`type.googleapis.com/istio.workload.Address` → `istio.workload.Address`). */
export function messageNameOf(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
}
