// Original file: proto/l7.proto


export interface Redirect {
  'scheme'?: (string);
  'host'?: (string);
  'port'?: (number);
  'fullPath'?: (string);
  'prefixMatch'?: (string);
  'statusCode'?: (number);
  'path'?: "fullPath"|"prefixMatch";
}

export interface Redirect__Output {
  'scheme': (string);
  'host': (string);
  'port': (number);
  'fullPath'?: (string);
  'prefixMatch'?: (string);
  'statusCode': (number);
  'path'?: "fullPath"|"prefixMatch";
}
