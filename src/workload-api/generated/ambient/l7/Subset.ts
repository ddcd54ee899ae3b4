// Original file: proto/l7.proto

import type { TrafficPolicy as _ambient_l7_TrafficPolicy, TrafficPolicy__Output as _ambient_l7_TrafficPolicy__Output } from '../../ambient/l7/TrafficPolicy.ts';

export interface Subset {
  'name'?: (string);
  'labels'?: ({[key: string]: string});
  'workloadUids'?: (string)[];
  'trafficPolicy'?: (_ambient_l7_TrafficPolicy | null);
}

export interface Subset__Output {
  'name': (string);
  'labels': ({[key: string]: string});
  'workloadUids': (string)[];
  'trafficPolicy': (_ambient_l7_TrafficPolicy__Output | null);
}
