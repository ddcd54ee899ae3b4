// Original file: proto/l7.proto

import type { RouteMatch as _ambient_l7_RouteMatch, RouteMatch__Output as _ambient_l7_RouteMatch__Output } from '../../ambient/l7/RouteMatch.ts';
import type { WeightedBackend as _ambient_l7_WeightedBackend, WeightedBackend__Output as _ambient_l7_WeightedBackend__Output } from '../../ambient/l7/WeightedBackend.ts';
import type { HeaderMutation as _ambient_l7_HeaderMutation, HeaderMutation__Output as _ambient_l7_HeaderMutation__Output } from '../../ambient/l7/HeaderMutation.ts';
import type { Redirect as _ambient_l7_Redirect, Redirect__Output as _ambient_l7_Redirect__Output } from '../../ambient/l7/Redirect.ts';
import type { Rewrite as _ambient_l7_Rewrite, Rewrite__Output as _ambient_l7_Rewrite__Output } from '../../ambient/l7/Rewrite.ts';
import type { Duration as _google_protobuf_Duration, Duration__Output as _google_protobuf_Duration__Output } from '../../google/protobuf/Duration.ts';
import type { RetryPolicy as _ambient_l7_RetryPolicy, RetryPolicy__Output as _ambient_l7_RetryPolicy__Output } from '../../ambient/l7/RetryPolicy.ts';
import type { FaultInjection as _ambient_l7_FaultInjection, FaultInjection__Output as _ambient_l7_FaultInjection__Output } from '../../ambient/l7/FaultInjection.ts';
import type { Mirror as _ambient_l7_Mirror, Mirror__Output as _ambient_l7_Mirror__Output } from '../../ambient/l7/Mirror.ts';
import type { CorsPolicy as _ambient_l7_CorsPolicy, CorsPolicy__Output as _ambient_l7_CorsPolicy__Output } from '../../ambient/l7/CorsPolicy.ts';

export interface HttpRoute {
  'name'?: (string);
  'matches'?: (_ambient_l7_RouteMatch)[];
  'backends'?: (_ambient_l7_WeightedBackend)[];
  'requestHeaders'?: (_ambient_l7_HeaderMutation | null);
  'responseHeaders'?: (_ambient_l7_HeaderMutation | null);
  'redirect'?: (_ambient_l7_Redirect | null);
  'rewrite'?: (_ambient_l7_Rewrite | null);
  'timeout'?: (_google_protobuf_Duration | null);
  'retries'?: (_ambient_l7_RetryPolicy | null);
  'fault'?: (_ambient_l7_FaultInjection | null);
  'mirrors'?: (_ambient_l7_Mirror)[];
  'cors'?: (_ambient_l7_CorsPolicy | null);
}

export interface HttpRoute__Output {
  'name': (string);
  'matches': (_ambient_l7_RouteMatch__Output)[];
  'backends': (_ambient_l7_WeightedBackend__Output)[];
  'requestHeaders': (_ambient_l7_HeaderMutation__Output | null);
  'responseHeaders': (_ambient_l7_HeaderMutation__Output | null);
  'redirect': (_ambient_l7_Redirect__Output | null);
  'rewrite': (_ambient_l7_Rewrite__Output | null);
  'timeout': (_google_protobuf_Duration__Output | null);
  'retries': (_ambient_l7_RetryPolicy__Output | null);
  'fault': (_ambient_l7_FaultInjection__Output | null);
  'mirrors': (_ambient_l7_Mirror__Output)[];
  'cors': (_ambient_l7_CorsPolicy__Output | null);
}
