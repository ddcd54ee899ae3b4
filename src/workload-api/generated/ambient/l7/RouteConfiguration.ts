// Original file: proto/l7.proto

import type { HttpRoute as _ambient_l7_HttpRoute, HttpRoute__Output as _ambient_l7_HttpRoute__Output } from '../../ambient/l7/HttpRoute.ts';

export interface RouteConfiguration {
  'namespace'?: (string);
  'hostname'?: (string);
  'ports'?: (number)[];
  'routes'?: (_ambient_l7_HttpRoute)[];
}

export interface RouteConfiguration__Output {
  'namespace': (string);
  'hostname': (string);
  'ports': (number)[];
  'routes': (_ambient_l7_HttpRoute__Output)[];
}
