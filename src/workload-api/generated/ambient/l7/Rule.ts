// Original file: proto/l7.proto


export interface _ambient_l7_Rule_Condition {
  'key'?: (string);
  'values'?: (string)[];
  'notValues'?: (string)[];
}

export interface _ambient_l7_Rule_Condition__Output {
  'key': (string);
  'values': (string)[];
  'notValues': (string)[];
}

export interface _ambient_l7_Rule_From {
  'principals'?: (string)[];
  'notPrincipals'?: (string)[];
  'requestPrincipals'?: (string)[];
  'notRequestPrincipals'?: (string)[];
  'namespaces'?: (string)[];
  'notNamespaces'?: (string)[];
  'ipBlocks'?: (string)[];
  'notIpBlocks'?: (string)[];
}

export interface _ambient_l7_Rule_From__Output {
  'principals': (string)[];
  'notPrincipals': (string)[];
  'requestPrincipals': (string)[];
  'notRequestPrincipals': (string)[];
  'namespaces': (string)[];
  'notNamespaces': (string)[];
  'ipBlocks': (string)[];
  'notIpBlocks': (string)[];
}

export interface _ambient_l7_Rule_To {
  'hosts'?: (string)[];
  'notHosts'?: (string)[];
  'ports'?: (string)[];
  'notPorts'?: (string)[];
  'methods'?: (string)[];
  'notMethods'?: (string)[];
  'paths'?: (string)[];
  'notPaths'?: (string)[];
}

export interface _ambient_l7_Rule_To__Output {
  'hosts': (string)[];
  'notHosts': (string)[];
  'ports': (string)[];
  'notPorts': (string)[];
  'methods': (string)[];
  'notMethods': (string)[];
  'paths': (string)[];
  'notPaths': (string)[];
}

export interface Rule {
  'from'?: (_ambient_l7_Rule_From)[];
  'to'?: (_ambient_l7_Rule_To)[];
  'when'?: (_ambient_l7_Rule_Condition)[];
}

export interface Rule__Output {
  'from': (_ambient_l7_Rule_From__Output)[];
  'to': (_ambient_l7_Rule_To__Output)[];
  'when': (_ambient_l7_Rule_Condition__Output)[];
}
