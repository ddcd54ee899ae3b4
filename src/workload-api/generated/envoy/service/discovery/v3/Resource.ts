// Original file: proto/discovery.proto

import type { Any as _google_protobuf_Any, Any__Output as _google_protobuf_Any__Output } from '../../../../google/protobuf/Any.ts';
import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from '../../../../google/protobuf/Duration.ts';

export interface _envoy_service_discovery_v3_Resource_CacheControl {
  'doNotCache'?: (boolean);
}

export interface _envoy_service_discovery_v3_Resource_CacheControl__Output {
  'doNotCache': (boolean);
}

export interface Resource {
  'version'?: (string);
  'resource'?: (_google_protobuf_Any | null);
  'name'?: (string);
  'aliases'?: (string)[];
  'ttl'?: (_google_protobuf_Duration | null);
  'cacheControl'?: (_envoy_service_discovery_v3_Resource_CacheControl | null);
}

export interface Resource__Output {
  'version': (string);
  'resource': (_google_protobuf_Any__Output | null);
  'name': (string);
  'aliases': (string)[];
  'ttl': (_google_protobuf_Duration__Output | null);
  'cacheControl': (_envoy_service_discovery_v3_Resource_CacheControl__Output | null);
}
