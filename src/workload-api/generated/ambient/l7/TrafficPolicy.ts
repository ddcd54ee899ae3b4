// Original file: proto/l7.proto

import type { LoadBalancer as _ambient_l7_LoadBalancer, LoadBalancer__Output as _ambient_l7_LoadBalancer__Output } from '../../ambient/l7/LoadBalancer.ts';
import type { ConnectionPool as _ambient_l7_ConnectionPool, ConnectionPool__Output as _ambient_l7_ConnectionPool__Output } from '../../ambient/l7/ConnectionPool.ts';
import type { OutlierDetection as _ambient_l7_OutlierDetection, OutlierDetection__Output as _ambient_l7_OutlierDetection__Output } from '../../ambient/l7/OutlierDetection.ts';

export interface TrafficPolicy {
  'loadBalancer'?: (_ambient_l7_LoadBalancer | null);
  'connectionPool'?: (_ambient_l7_ConnectionPool | null);
  'outlierDetection'?: (_ambient_l7_OutlierDetection | null);
}

export interface TrafficPolicy__Output {
  'loadBalancer': (_ambient_l7_LoadBalancer__Output | null);
  'connectionPool': (_ambient_l7_ConnectionPool__Output | null);
  'outlierDetection': (_ambient_l7_OutlierDetection__Output | null);
}
