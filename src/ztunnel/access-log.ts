import { formatSpiffeId, type SpiffeId } from '../identity/spiffe.ts';
import type { Service, Workload } from '../workload-api/types.ts';

/**
 * ztunnel's access log (ztunnel.md §6.4), as pure record builders: one `connection complete` record
 * per connection at close (INFO on success, ERROR with `error` on failure), and a short
 * `connection failed` record (WARN) for early denials. Absent fields are left out, as ztunnel does.
 */

export type Direction = 'inbound' | 'outbound';

export interface AccessLogInput {
  readonly direction: Direction;
  /** `ip:port` of the client. */
  readonly srcAddr: string;
  /** The L4 address dialed (inbound: the `:15008` address). */
  readonly dstAddr: string;
  /** The HBONE authority (`ip:port` inside CONNECT), when tunneled. */
  readonly dstHboneAddr?: string | undefined;
  readonly source?: Workload | undefined;
  readonly destination?: Workload | undefined;
  readonly destinationService?: Service | undefined;
  /** Set only for mTLS. */
  readonly sourceIdentity?: SpiffeId | undefined;
  readonly destinationIdentity?: SpiffeId | undefined;
  /** From the reporting proxy's point of view. */
  readonly bytesSent: number;
  readonly bytesRecv: number;
  readonly durationMs: number;
  /** The failure, for operators; absent on success. */
  readonly error?: string | undefined;
}

export interface AccessLogRecord {
  readonly 'src.addr': string;
  readonly 'src.workload'?: string;
  readonly 'src.namespace'?: string;
  readonly 'src.identity'?: string;
  readonly 'src.cluster'?: string;
  readonly 'dst.addr': string;
  readonly 'dst.hbone_addr'?: string;
  readonly 'dst.service'?: string;
  readonly 'dst.workload'?: string;
  readonly 'dst.namespace'?: string;
  readonly 'dst.identity'?: string;
  readonly 'dst.cluster'?: string;
  readonly direction: Direction;
  readonly bytes_sent: number;
  readonly bytes_recv: number;
  readonly duration: string;
  readonly error?: string;
}

export interface ConnectionFailedRecord {
  readonly 'src.addr': string;
  readonly 'dst.addr': string;
  readonly direction: Direction;
  readonly error: string;
}

export const CONNECTION_OPENED = 'connection opened';
export const CONNECTION_COMPLETE = 'connection complete';
export const CONNECTION_FAILED = 'connection failed';

/** Pod name, else canonical service (§6.4). */
const workloadName = (w: Workload | undefined): string | undefined => (w === undefined ? undefined : w.name || w.canonicalName || undefined);
const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);

/** The `connection complete` record: §6.4's field names, in its order. */
export function accessLogRecord(input: AccessLogInput): AccessLogRecord {
  const fields: Record<string, string | number | undefined> = {
    'src.addr': input.srcAddr,
    'src.workload': workloadName(input.source),
    'src.namespace': nonEmpty(input.source?.namespace),
    'src.identity': input.sourceIdentity ? formatSpiffeId(input.sourceIdentity) : undefined,
    'src.cluster': nonEmpty(input.source?.clusterId),
    'dst.addr': input.dstAddr,
    'dst.hbone_addr': nonEmpty(input.dstHboneAddr),
    'dst.service': nonEmpty(input.destinationService?.hostname),
    'dst.workload': workloadName(input.destination),
    'dst.namespace': nonEmpty(input.destination?.namespace),
    'dst.identity': input.destinationIdentity ? formatSpiffeId(input.destinationIdentity) : undefined,
    'dst.cluster': nonEmpty(input.destination?.clusterId),
    direction: input.direction,
    bytes_sent: input.bytesSent,
    bytes_recv: input.bytesRecv,
    duration: `${Math.max(0, Math.floor(input.durationMs))}ms`,
    error: nonEmpty(input.error),
  };
  for (const key of Object.keys(fields)) if (fields[key] === undefined) delete fields[key];
  return fields as unknown as AccessLogRecord;
}

/** The early-denial record: only `src.addr`, `dst.addr`, `direction`, `error`. */
export function connectionFailedRecord(input: { readonly direction: Direction; readonly srcAddr: string; readonly dstAddr: string; readonly error: string }): ConnectionFailedRecord {
  return { 'src.addr': input.srcAddr, 'dst.addr': input.dstAddr, direction: input.direction, error: input.error };
}

/** The level and message ztunnel uses for a finished connection. */
export function accessLogLevel(record: AccessLogRecord): 'info' | 'error' {
  return record.error === undefined ? 'info' : 'error';
}

/** The narrow logger surface the access log needs (pino's `Logger` satisfies it). */
export interface AccessLogSink {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Writes the `connection complete` record at its level. */
export function logConnectionComplete(logger: AccessLogSink, input: AccessLogInput): AccessLogRecord {
  const record = accessLogRecord(input);
  logger[accessLogLevel(record)](record, CONNECTION_COMPLETE);
  return record;
}
