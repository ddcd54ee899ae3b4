// Original file: proto/l7.proto

import type { Percent as _ambient_l7_Percent, Percent__Output as _ambient_l7_Percent__Output } from '../../ambient/l7/Percent.ts';

export interface Mirror {
  'namespace'?: (string);
  'hostname'?: (string);
  'port'?: (number);
  'subset'?: (string);
  'percentage'?: (_ambient_l7_Percent | null);
}

export interface Mirror__Output {
  'namespace': (string);
  'hostname': (string);
  'port': (number);
  'subset': (string);
  'percentage': (_ambient_l7_Percent__Output | null);
}
