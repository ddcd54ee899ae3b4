// Original file: proto/l7.proto

import type { Header as _ambient_l7_Header, Header__Output as _ambient_l7_Header__Output } from '../../ambient/l7/Header.ts';

export interface HeaderMutation {
  'set'?: (_ambient_l7_Header)[];
  'add'?: (_ambient_l7_Header)[];
  'remove'?: (string)[];
}

export interface HeaderMutation__Output {
  'set': (_ambient_l7_Header__Output)[];
  'add': (_ambient_l7_Header__Output)[];
  'remove': (string)[];
}
