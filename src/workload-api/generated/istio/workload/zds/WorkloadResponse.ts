// Original file: proto/zds.proto

import type { Ack as _istio_workload_zds_Ack, Ack__Output as _istio_workload_zds_Ack__Output } from '../../../istio/workload/zds/Ack.ts';

export interface WorkloadResponse {
  'ack'?: (_istio_workload_zds_Ack | null);
  'payload'?: "ack";
}

export interface WorkloadResponse__Output {
  'ack'?: (_istio_workload_zds_Ack__Output | null);
  'payload'?: "ack";
}
