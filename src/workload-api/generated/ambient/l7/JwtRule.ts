// Original file: proto/l7.proto

import type { JwtHeader as _ambient_l7_JwtHeader, JwtHeader__Output as _ambient_l7_JwtHeader__Output } from '../../ambient/l7/JwtHeader.ts';

export interface JwtRule {
  'issuer'?: (string);
  'audiences'?: (string)[];
  'jwks'?: (string);
  'jwksUri'?: (string);
  'fromHeaders'?: (_ambient_l7_JwtHeader)[];
  'fromParams'?: (string)[];
  'forwardOriginalToken'?: (boolean);
}

export interface JwtRule__Output {
  'issuer': (string);
  'audiences': (string)[];
  'jwks': (string);
  'jwksUri': (string);
  'fromHeaders': (_ambient_l7_JwtHeader__Output)[];
  'fromParams': (string)[];
  'forwardOriginalToken': (boolean);
}
