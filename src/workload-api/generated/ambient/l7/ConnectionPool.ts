// Original file: proto/l7.proto

import type { UInt32Value as _google_protobuf_UInt32Value, UInt32Value__Output as _google_protobuf_UInt32Value__Output } from '../../google/protobuf/UInt32Value.ts';
import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from '../../google/protobuf/Duration.ts';

export interface ConnectionPool {
  'maxConnections'?: (_google_protobuf_UInt32Value | null);
  'http1MaxPendingRequests'?: (_google_protobuf_UInt32Value | null);
  'http2MaxRequests'?: (_google_protobuf_UInt32Value | null);
  'maxRequestsPerConnection'?: (_google_protobuf_UInt32Value | null);
  'maxRetries'?: (_google_protobuf_UInt32Value | null);
  'connectTimeout'?: (_google_protobuf_Duration | null);
}

export interface ConnectionPool__Output {
  'maxConnections': (_google_protobuf_UInt32Value__Output | null);
  'http1MaxPendingRequests': (_google_protobuf_UInt32Value__Output | null);
  'http2MaxRequests': (_google_protobuf_UInt32Value__Output | null);
  'maxRequestsPerConnection': (_google_protobuf_UInt32Value__Output | null);
  'maxRetries': (_google_protobuf_UInt32Value__Output | null);
  'connectTimeout': (_google_protobuf_Duration__Output | null);
}
