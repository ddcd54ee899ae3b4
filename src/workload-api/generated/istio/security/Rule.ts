// Original file: proto/authorization.proto

import type { Clause as _istio_security_Clause, Clause__Output as _istio_security_Clause__Output } from '../../istio/security/Clause.ts';

export interface Rule {
  'clauses'?: (_istio_security_Clause)[];
}

export interface Rule__Output {
  'clauses': (_istio_security_Clause__Output)[];
}
