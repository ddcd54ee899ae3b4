// Original file: proto/l7.proto

import type { TrafficPolicy as _ambient_l7_TrafficPolicy, TrafficPolicy__Output as _ambient_l7_TrafficPolicy__Output } from '../../ambient/l7/TrafficPolicy.ts';
import type { Subset as _ambient_l7_Subset, Subset__Output as _ambient_l7_Subset__Output } from '../../ambient/l7/Subset.ts';

export interface DestinationPolicy {
  'namespace'?: (string);
  'hostname'?: (string);
  'trafficPolicy'?: (_ambient_l7_TrafficPolicy | null);
  'subsets'?: (_ambient_l7_Subset)[];
}

export interface DestinationPolicy__Output {
  'namespace': (string);
  'hostname': (string);
  'trafficPolicy': (_ambient_l7_TrafficPolicy__Output | null);
  'subsets': (_ambient_l7_Subset__Output)[];
}
