// Original file: proto/zds.proto

import type { WorkloadInfo as _istio_workload_zds_WorkloadInfo, WorkloadInfo__Output as _istio_workload_zds_WorkloadInfo__Output } from '../../../istio/workload/zds/WorkloadInfo.ts';

export interface AddWorkload {
  'uid'?: (string);
  'workloadInfo'?: (_istio_workload_zds_WorkloadInfo | null);
}

export interface AddWorkload__Output {
  'uid': (string);
  'workloadInfo': (_istio_workload_zds_WorkloadInfo__Output | null);
}
