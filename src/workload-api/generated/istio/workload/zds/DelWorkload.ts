// Original file: proto/zds.proto


export interface DelWorkload {
  'uid'?: (string);
}

export interface DelWorkload__Output {
  'uid': (string);
}
