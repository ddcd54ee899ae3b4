// Original file: proto/authorization.proto

import type { Scope as _istio_security_Scope, Scope__Output as _istio_security_Scope__Output } from '../../istio/security/Scope.ts';
import type { Action as _istio_security_Action, Action__Output as _istio_security_Action__Output } from '../../istio/security/Action.ts';
import type { Rule as _istio_security_Rule, Rule__Output as _istio_security_Rule__Output } from '../../istio/security/Rule.ts';
import type { Extension as _istio_workload_Extension, Extension__Output as _istio_workload_Extension__Output } from '../../istio/workload/Extension.ts';

export interface Authorization {
  'name'?: (string);
  'namespace'?: (string);
  'scope'?: (_istio_security_Scope);
  'action'?: (_istio_security_Action);
  'rules'?: (_istio_security_Rule)[];
  'dryRun'?: (boolean);
  'extensions'?: (_istio_workload_Extension)[];
}

export interface Authorization__Output {
  'name': (string);
  'namespace': (string);
  'scope': (_istio_security_Scope__Output);
  'action': (_istio_security_Action__Output);
  'rules': (_istio_security_Rule__Output)[];
  'dryRun': (boolean);
  'extensions': (_istio_workload_Extension__Output)[];
}
