// Original file: proto/l7.proto

import type { StringMatch as _ambient_l7_StringMatch, StringMatch__Output as _ambient_l7_StringMatch__Output } from '../../ambient/l7/StringMatch.ts';
import type { HeaderMatch as _ambient_l7_HeaderMatch, HeaderMatch__Output as _ambient_l7_HeaderMatch__Output } from '../../ambient/l7/HeaderMatch.ts';
import type { QueryParamMatch as _ambient_l7_QueryParamMatch, QueryParamMatch__Output as _ambient_l7_QueryParamMatch__Output } from '../../ambient/l7/QueryParamMatch.ts';

export interface RouteMatch {
  'path'?: (_ambient_l7_StringMatch | null);
  'headers'?: (_ambient_l7_HeaderMatch)[];
  'queryParams'?: (_ambient_l7_QueryParamMatch)[];
  'method'?: (string);
}

export interface RouteMatch__Output {
  'path': (_ambient_l7_StringMatch__Output | null);
  'headers': (_ambient_l7_HeaderMatch__Output)[];
  'queryParams': (_ambient_l7_QueryParamMatch__Output)[];
  'method': (string);
}
