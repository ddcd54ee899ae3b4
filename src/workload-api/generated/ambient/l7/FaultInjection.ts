// Original file: proto/l7.proto

import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from '../../google/protobuf/Duration.ts';
import type { Percent as _ambient_l7_Percent, Percent__Output as _ambient_l7_Percent__Output } from '../../ambient/l7/Percent.ts';

export interface _ambient_l7_FaultInjection_Abort {
  'httpStatus'?: (number);
  'grpcStatus'?: (number);
  'percentage'?: (_ambient_l7_Percent | null);
  'error'?: "httpStatus"|"grpcStatus";
}

export interface _ambient_l7_FaultInjection_Abort__Output {
  'httpStatus'?: (number);
  'grpcStatus'?: (number);
  'percentage': (_ambient_l7_Percent__Output | null);
  'error'?: "httpStatus"|"grpcStatus";
}

export interface _ambient_l7_FaultInjection_Delay {
  'fixedDelay'?: (_google_protobuf_Duration | null);
  'percentage'?: (_ambient_l7_Percent | null);
}

export interface _ambient_l7_FaultInjection_Delay__Output {
  'fixedDelay': (_google_protobuf_Duration__Output | null);
  'percentage': (_ambient_l7_Percent__Output | null);
}

export interface FaultInjection {
  'delay'?: (_ambient_l7_FaultInjection_Delay | null);
  'abort'?: (_ambient_l7_FaultInjection_Abort | null);
}

export interface FaultInjection__Output {
  'delay': (_ambient_l7_FaultInjection_Delay__Output | null);
  'abort': (_ambient_l7_FaultInjection_Abort__Output | null);
}
