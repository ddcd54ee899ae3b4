// Original file: proto/workload.proto

import type { AppProtocol as _istio_workload_AppProtocol, AppProtocol__Output as _istio_workload_AppProtocol__Output } from '../../istio/workload/AppProtocol.ts';

export interface Port {
  'servicePort'?: (number);
  'targetPort'?: (number);
  'appProtocol'?: (_istio_workload_AppProtocol);
}

export interface Port__Output {
  'servicePort': (number);
  'targetPort': (number);
  'appProtocol': (_istio_workload_AppProtocol__Output);
}
