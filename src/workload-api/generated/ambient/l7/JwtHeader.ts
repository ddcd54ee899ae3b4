// Original file: proto/l7.proto


export interface JwtHeader {
  'name'?: (string);
  'prefix'?: (string);
}

export interface JwtHeader__Output {
  'name': (string);
  'prefix': (string);
}
