// Original file: proto/l7.proto

import type { JwtRule as _ambient_l7_JwtRule, JwtRule__Output as _ambient_l7_JwtRule__Output } from '../../ambient/l7/JwtRule.ts';

export interface RequestAuthentication {
  'name'?: (string);
  'namespace'?: (string);
  'targetServices'?: (string)[];
  'rules'?: (_ambient_l7_JwtRule)[];
}

export interface RequestAuthentication__Output {
  'name': (string);
  'namespace': (string);
  'targetServices': (string)[];
  'rules': (_ambient_l7_JwtRule__Output)[];
}
