// Original file: proto/citadel.proto


export interface IstioCertificateResponse {
  'certChain'?: (string)[];
}

export interface IstioCertificateResponse__Output {
  'certChain': (string)[];
}
