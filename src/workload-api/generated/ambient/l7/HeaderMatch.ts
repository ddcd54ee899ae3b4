// Original file: proto/l7.proto

import type { StringMatch as _ambient_l7_StringMatch, StringMatch__Output as _ambient_l7_StringMatch__Output } from '../../ambient/l7/StringMatch.ts';

export interface HeaderMatch {
  'name'?: (string);
  'value'?: (_ambient_l7_StringMatch | null);
  'invert'?: (boolean);
}

export interface HeaderMatch__Output {
  'name': (string);
  'value': (_ambient_l7_StringMatch__Output | null);
  'invert': (boolean);
}
