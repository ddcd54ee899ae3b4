// Original file: proto/l7.proto

import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from '../../google/protobuf/Duration.ts';

export interface RetryPolicy {
  'attempts'?: (number);
  'perTryTimeout'?: (_google_protobuf_Duration | null);
  'retryOn'?: (string)[];
  'retriableStatusCodes'?: (number)[];
}

export interface RetryPolicy__Output {
  'attempts': (number);
  'perTryTimeout': (_google_protobuf_Duration__Output | null);
  'retryOn': (string)[];
  'retriableStatusCodes': (number)[];
}
