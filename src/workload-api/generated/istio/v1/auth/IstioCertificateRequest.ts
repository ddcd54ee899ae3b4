// Original file: proto/citadel.proto

import type { Struct as _google_protobuf_Struct, Struct__Output as _google_protobuf_Struct__Output } from '../../../google/protobuf/Struct.ts';
import type { Long } from '@grpc/proto-loader';

export interface IstioCertificateRequest {
  'csr'?: (string);
  'validityDuration'?: (number | string | Long);
  'metadata'?: (_google_protobuf_Struct | null);
}

export interface IstioCertificateRequest__Output {
  'csr': (string);
  'validityDuration': (number);
  'metadata': (_google_protobuf_Struct__Output | null);
}
