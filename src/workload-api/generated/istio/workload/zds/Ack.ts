// Original file: proto/zds.proto


export interface Ack {
  'error'?: (string);
}

export interface Ack__Output {
  'error': (string);
}
