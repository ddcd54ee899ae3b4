// Original file: proto/zds.proto


export interface KeepWorkload {
  'uid'?: (string);
}

export interface KeepWorkload__Output {
  'uid': (string);
}
