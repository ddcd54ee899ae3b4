// Original file: proto/authorization.proto

import type { Match as _istio_security_Match, Match__Output as _istio_security_Match__Output } from '../../istio/security/Match.ts';

export interface Clause {
  'matches'?: (_istio_security_Match)[];
}

export interface Clause__Output {
  'matches': (_istio_security_Match__Output)[];
}
