import { formatSpiffeId, type SpiffeId } from '../identity/spiffe.ts';
import type { Service, Workload } from './types.ts';

/**
 * The source and destination labels of Istio's standard metrics (reference istio-ambient.md §5.2), shared by
 * ztunnel's TCP series and the waypoint's HTTP series: in Istio's order, every one a string, `unknown` for
 * whatever is not known. Each proxy adds `reporter` before and its protocol's labels after.
 */
export const PEER_LABELS = [
  'source_workload',
  'source_canonical_service',
  'source_canonical_revision',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
  'destination_service',
  'destination_service_namespace',
  'destination_service_name',
  'destination_workload',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_cluster',
] as const;

export type PeerLabels = { readonly [K in (typeof PEER_LABELS)[number]]: string };

export const UNKNOWN = 'unknown';

export interface PeerLabelInput {
  readonly source?: Workload | undefined;
  readonly sourcePrincipal?: SpiffeId | undefined;
  /** The workload actually connected to. */
  readonly destination?: Workload | undefined;
  readonly destinationService?: Service | undefined;
  readonly destinationPrincipal?: SpiffeId | undefined;
}

export const orUnknown = (value: string | undefined): string => (value === undefined || value === '' ? UNKNOWN : value);
const principal = (id: SpiffeId | undefined): string => (id ? formatSpiffeId(id) : UNKNOWN);

export function peerLabels(input: PeerLabelInput): PeerLabels {
  const src = input.source;
  const dst = input.destination;
  const svc = input.destinationService;
  return {
    source_workload: orUnknown(src?.workloadName),
    source_canonical_service: orUnknown(src?.canonicalName),
    source_canonical_revision: orUnknown(src?.canonicalRevision),
    source_workload_namespace: orUnknown(src?.namespace),
    source_principal: principal(input.sourcePrincipal),
    source_app: orUnknown(src?.canonicalName),
    source_version: orUnknown(src?.canonicalRevision),
    source_cluster: orUnknown(src?.clusterId),
    destination_service: orUnknown(svc?.hostname),
    destination_service_namespace: orUnknown(svc?.namespace),
    destination_service_name: orUnknown(svc?.name),
    destination_workload: orUnknown(dst?.workloadName),
    destination_canonical_service: orUnknown(dst?.canonicalName),
    destination_canonical_revision: orUnknown(dst?.canonicalRevision),
    destination_workload_namespace: orUnknown(dst?.namespace),
    destination_principal: principal(input.destinationPrincipal),
    destination_app: orUnknown(dst?.canonicalName),
    destination_version: orUnknown(dst?.canonicalRevision),
    destination_cluster: orUnknown(dst?.clusterId),
  };
}
