// Original file: proto/zds.proto


export interface WorkloadInfo {
  'name'?: (string);
  'namespace'?: (string);
  'serviceAccount'?: (string);
}

export interface WorkloadInfo__Output {
  'name': (string);
  'namespace': (string);
  'serviceAccount': (string);
}
