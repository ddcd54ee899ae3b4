// Original file: proto/l7.proto

import type { Rule as _ambient_l7_Rule, Rule__Output as _ambient_l7_Rule__Output } from '../../ambient/l7/Rule.ts';

// Original file: proto/l7.proto

export const _ambient_l7_AuthorizationPolicy_Action = {
  ALLOW: 'ALLOW',
  DENY: 'DENY',
} as const;

export type _ambient_l7_AuthorizationPolicy_Action =
  | 'ALLOW'
  | 0
  | 'DENY'
  | 1

export type _ambient_l7_AuthorizationPolicy_Action__Output = typeof _ambient_l7_AuthorizationPolicy_Action[keyof typeof _ambient_l7_AuthorizationPolicy_Action]

export interface AuthorizationPolicy {
  'name'?: (string);
  'namespace'?: (string);
  'action'?: (_ambient_l7_AuthorizationPolicy_Action);
  'targetServices'?: (string)[];
  'rules'?: (_ambient_l7_Rule)[];
  'dryRun'?: (boolean);
}

export interface AuthorizationPolicy__Output {
  'name': (string);
  'namespace': (string);
  'action': (_ambient_l7_AuthorizationPolicy_Action__Output);
  'targetServices': (string)[];
  'rules': (_ambient_l7_Rule__Output)[];
  'dryRun': (boolean);
}
