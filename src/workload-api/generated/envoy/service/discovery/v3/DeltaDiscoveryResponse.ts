// Original file: proto/discovery.proto

import type { Resource as _envoy_service_discovery_v3_Resource, Resource__Output as _envoy_service_discovery_v3_Resource__Output } from '../../../../envoy/service/discovery/v3/Resource.ts';

export interface DeltaDiscoveryResponse {
  'systemVersionInfo'?: (string);
  'resources'?: (_envoy_service_discovery_v3_Resource)[];
  'typeUrl'?: (string);
  'nonce'?: (string);
  'removedResources'?: (string)[];
}

export interface DeltaDiscoveryResponse__Output {
  'systemVersionInfo': (string);
  'resources': (_envoy_service_discovery_v3_Resource__Output)[];
  'typeUrl': (string);
  'nonce': (string);
  'removedResources': (string)[];
}
