// Original file: proto/authorization.proto

import type { StringMatch as _istio_security_StringMatch, StringMatch__Output as _istio_security_StringMatch__Output } from '../../istio/security/StringMatch.ts';
import type { Address as _istio_security_Address, Address__Output as _istio_security_Address__Output } from '../../istio/security/Address.ts';
import type { ServiceAccountMatch as _istio_security_ServiceAccountMatch, ServiceAccountMatch__Output as _istio_security_ServiceAccountMatch__Output } from '../../istio/security/ServiceAccountMatch.ts';
import type { Extension as _istio_workload_Extension, Extension__Output as _istio_workload_Extension__Output } from '../../istio/workload/Extension.ts';

export interface Match {
  'namespaces'?: (_istio_security_StringMatch)[];
  'notNamespaces'?: (_istio_security_StringMatch)[];
  'principals'?: (_istio_security_StringMatch)[];
  'notPrincipals'?: (_istio_security_StringMatch)[];
  'sourceIps'?: (_istio_security_Address)[];
  'notSourceIps'?: (_istio_security_Address)[];
  'destinationIps'?: (_istio_security_Address)[];
  'notDestinationIps'?: (_istio_security_Address)[];
  'destinationPorts'?: (number)[];
  'notDestinationPorts'?: (number)[];
  'serviceAccounts'?: (_istio_security_ServiceAccountMatch)[];
  'notServiceAccounts'?: (_istio_security_ServiceAccountMatch)[];
  'extensions'?: (_istio_workload_Extension)[];
}

export interface Match__Output {
  'namespaces': (_istio_security_StringMatch__Output)[];
  'notNamespaces': (_istio_security_StringMatch__Output)[];
  'principals': (_istio_security_StringMatch__Output)[];
  'notPrincipals': (_istio_security_StringMatch__Output)[];
  'sourceIps': (_istio_security_Address__Output)[];
  'notSourceIps': (_istio_security_Address__Output)[];
  'destinationIps': (_istio_security_Address__Output)[];
  'notDestinationIps': (_istio_security_Address__Output)[];
  'destinationPorts': (number)[];
  'notDestinationPorts': (number)[];
  'serviceAccounts': (_istio_security_ServiceAccountMatch__Output)[];
  'notServiceAccounts': (_istio_security_ServiceAccountMatch__Output)[];
  'extensions': (_istio_workload_Extension__Output)[];
}
