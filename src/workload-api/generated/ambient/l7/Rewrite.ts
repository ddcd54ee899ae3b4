// Original file: proto/l7.proto


export interface Rewrite {
  'fullPath'?: (string);
  'prefixMatch'?: (string);
  'host'?: (string);
  'path'?: "fullPath"|"prefixMatch";
}

export interface Rewrite__Output {
  'fullPath'?: (string);
  'prefixMatch'?: (string);
  'host': (string);
  'path'?: "fullPath"|"prefixMatch";
}
