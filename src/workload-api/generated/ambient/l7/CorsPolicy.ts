// Original file: proto/l7.proto

import type { StringMatch as _ambient_l7_StringMatch, StringMatch__Output as _ambient_l7_StringMatch__Output } from '../../ambient/l7/StringMatch.ts';
import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from '../../google/protobuf/Duration.ts';
import type { BoolValue as _google_protobuf_BoolValue, BoolValue__Output as _google_protobuf_BoolValue__Output } from '../../google/protobuf/BoolValue.ts';

export interface CorsPolicy {
  'allowOrigins'?: (_ambient_l7_StringMatch)[];
  'allowMethods'?: (string)[];
  'allowHeaders'?: (string)[];
  'exposeHeaders'?: (string)[];
  'maxAge'?: (_google_protobuf_Duration | null);
  'allowCredentials'?: (_google_protobuf_BoolValue | null);
  'forwardNotMatchingPreflights'?: (_google_protobuf_BoolValue | null);
}

export interface CorsPolicy__Output {
  'allowOrigins': (_ambient_l7_StringMatch__Output)[];
  'allowMethods': (string)[];
  'allowHeaders': (string)[];
  'exposeHeaders': (string)[];
  'maxAge': (_google_protobuf_Duration__Output | null);
  'allowCredentials': (_google_protobuf_BoolValue__Output | null);
  'forwardNotMatchingPreflights': (_google_protobuf_BoolValue__Output | null);
}
