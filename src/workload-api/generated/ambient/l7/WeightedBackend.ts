// Original file: proto/l7.proto

import type { HeaderMutation as _ambient_l7_HeaderMutation, HeaderMutation__Output as _ambient_l7_HeaderMutation__Output } from '../../ambient/l7/HeaderMutation.ts';

export interface WeightedBackend {
  'namespace'?: (string);
  'hostname'?: (string);
  'port'?: (number);
  'subset'?: (string);
  'weight'?: (number);
  'requestHeaders'?: (_ambient_l7_HeaderMutation | null);
  'responseHeaders'?: (_ambient_l7_HeaderMutation | null);
}

export interface WeightedBackend__Output {
  'namespace': (string);
  'hostname': (string);
  'port': (number);
  'subset': (string);
  'weight': (number);
  'requestHeaders': (_ambient_l7_HeaderMutation__Output | null);
  'responseHeaders': (_ambient_l7_HeaderMutation__Output | null);
}
