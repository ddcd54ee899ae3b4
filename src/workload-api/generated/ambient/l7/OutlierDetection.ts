// Original file: proto/l7.proto

import type { UInt32Value as _google_protobuf_UInt32Value, UInt32Value__Output as _google_protobuf_UInt32Value__Output } from '../../google/protobuf/UInt32Value.ts';
import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from '../../google/protobuf/Duration.ts';
import type { Int32Value as _google_protobuf_Int32Value, Int32Value__Output as _google_protobuf_Int32Value__Output } from '../../google/protobuf/Int32Value.ts';

export interface OutlierDetection {
  'consecutive_5xxErrors'?: (_google_protobuf_UInt32Value | null);
  'consecutiveGatewayErrors'?: (_google_protobuf_UInt32Value | null);
  'interval'?: (_google_protobuf_Duration | null);
  'baseEjectionTime'?: (_google_protobuf_Duration | null);
  'maxEjectionPercent'?: (_google_protobuf_UInt32Value | null);
  'minHealthPercent'?: (_google_protobuf_Int32Value | null);
}

export interface OutlierDetection__Output {
  'consecutive_5xxErrors': (_google_protobuf_UInt32Value__Output | null);
  'consecutiveGatewayErrors': (_google_protobuf_UInt32Value__Output | null);
  'interval': (_google_protobuf_Duration__Output | null);
  'baseEjectionTime': (_google_protobuf_Duration__Output | null);
  'maxEjectionPercent': (_google_protobuf_UInt32Value__Output | null);
  'minHealthPercent': (_google_protobuf_Int32Value__Output | null);
}
