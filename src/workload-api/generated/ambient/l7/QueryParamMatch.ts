// Original file: proto/l7.proto

import type { StringMatch as _ambient_l7_StringMatch, StringMatch__Output as _ambient_l7_StringMatch__Output } from '../../ambient/l7/StringMatch.ts';

export interface QueryParamMatch {
  'name'?: (string);
  'value'?: (_ambient_l7_StringMatch | null);
}

export interface QueryParamMatch__Output {
  'name': (string);
  'value': (_ambient_l7_StringMatch__Output | null);
}
