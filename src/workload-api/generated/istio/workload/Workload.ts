// Original file: proto/workload.proto

import type { TunnelProtocol as _istio_workload_TunnelProtocol, TunnelProtocol__Output as _istio_workload_TunnelProtocol__Output } from '../../istio/workload/TunnelProtocol.ts';
import type { GatewayAddress as _istio_workload_GatewayAddress, GatewayAddress__Output as _istio_workload_GatewayAddress__Output } from '../../istio/workload/GatewayAddress.ts';
import type { WorkloadType as _istio_workload_WorkloadType, WorkloadType__Output as _istio_workload_WorkloadType__Output } from '../../istio/workload/WorkloadType.ts';
import type { WorkloadStatus as _istio_workload_WorkloadStatus, WorkloadStatus__Output as _istio_workload_WorkloadStatus__Output } from '../../istio/workload/WorkloadStatus.ts';
import type { PortList as _istio_workload_PortList, PortList__Output as _istio_workload_PortList__Output } from '../../istio/workload/PortList.ts';
import type { ApplicationTunnel as _istio_workload_ApplicationTunnel, ApplicationTunnel__Output as _istio_workload_ApplicationTunnel__Output } from '../../istio/workload/ApplicationTunnel.ts';
import type { Locality as _istio_workload_Locality, Locality__Output as _istio_workload_Locality__Output } from '../../istio/workload/Locality.ts';
import type { NetworkMode as _istio_workload_NetworkMode, NetworkMode__Output as _istio_workload_NetworkMode__Output } from '../../istio/workload/NetworkMode.ts';
import type { Extension as _istio_workload_Extension, Extension__Output as _istio_workload_Extension__Output } from '../../istio/workload/Extension.ts';
import type { UInt32Value as _google_protobuf_UInt32Value, UInt32Value__Output as _google_protobuf_UInt32Value__Output } from '../../google/protobuf/UInt32Value.ts';

export interface Workload {
  'name'?: (string);
  'namespace'?: (string);
  'addresses'?: (Buffer | Uint8Array | string)[];
  'network'?: (string);
  'tunnelProtocol'?: (_istio_workload_TunnelProtocol);
  'trustDomain'?: (string);
  'serviceAccount'?: (string);
  'waypoint'?: (_istio_workload_GatewayAddress | null);
  'node'?: (string);
  'canonicalName'?: (string);
  'canonicalRevision'?: (string);
  'workloadType'?: (_istio_workload_WorkloadType);
  'workloadName'?: (string);
  'nativeTunnel'?: (boolean);
  'authorizationPolicies'?: (string)[];
  'status'?: (_istio_workload_WorkloadStatus);
  'clusterId'?: (string);
  'networkGateway'?: (_istio_workload_GatewayAddress | null);
  'uid'?: (string);
  'hostname'?: (string);
  'services'?: ({[key: string]: _istio_workload_PortList});
  'applicationTunnel'?: (_istio_workload_ApplicationTunnel | null);
  'locality'?: (_istio_workload_Locality | null);
  'networkMode'?: (_istio_workload_NetworkMode);
  'extensions'?: (_istio_workload_Extension)[];
  'capacity'?: (_google_protobuf_UInt32Value | null);
}

export interface Workload__Output {
  'name': (string);
  'namespace': (string);
  'addresses': (Buffer)[];
  'network': (string);
  'tunnelProtocol': (_istio_workload_TunnelProtocol__Output);
  'trustDomain': (string);
  'serviceAccount': (string);
  'waypoint': (_istio_workload_GatewayAddress__Output | null);
  'node': (string);
  'canonicalName': (string);
  'canonicalRevision': (string);
  'workloadType': (_istio_workload_WorkloadType__Output);
  'workloadName': (string);
  'nativeTunnel': (boolean);
  'authorizationPolicies': (string)[];
  'status': (_istio_workload_WorkloadStatus__Output);
  'clusterId': (string);
  'networkGateway': (_istio_workload_GatewayAddress__Output | null);
  'uid': (string);
  'hostname': (string);
  'services': ({[key: string]: _istio_workload_PortList__Output});
  'applicationTunnel': (_istio_workload_ApplicationTunnel__Output | null);
  'locality': (_istio_workload_Locality__Output | null);
  'networkMode': (_istio_workload_NetworkMode__Output);
  'extensions': (_istio_workload_Extension__Output)[];
  'capacity': (_google_protobuf_UInt32Value__Output | null);
}
