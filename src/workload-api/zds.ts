import { errorMessage } from '../core/errors.ts';
import { fail, ok, type Result } from '../core/result.ts';
import { decodeMessage, encodeMessage } from './proto.ts';

/**
 * The ZDS codec (package `istio.workload.zds`, reference ztunnel.md §1.3): the messages the node
 * agent and ztunnel exchange over a SOCK_SEQPACKET socket, one raw protobuf message per packet.
 * The wire shapes stay here; callers see the readonly domain types below. Decoding never throws: a
 * malformed or incomplete request is an error result whose text names the field, for the log and NACK.
 */

/** The pod, as the node agent names it (WorkloadInfo). */
export interface ZdsWorkloadInfo {
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** One decoded WorkloadRequest. `add` carries the pod's netns fd out of band (SCM_RIGHTS). */
export type ZdsRequest =
  | { readonly kind: 'add'; readonly uid: string; readonly workloadInfo: ZdsWorkloadInfo }
  | { readonly kind: 'keep'; readonly uid: string }
  | { readonly kind: 'del'; readonly uid: string }
  | { readonly kind: 'snapshotSent' };

const ZDS = 'istio.workload.zds';
export const ZdsMessage = {
  hello: `${ZDS}.ZdsHello`,
  request: `${ZDS}.WorkloadRequest`,
  response: `${ZDS}.WorkloadResponse`,
} as const;

/** `ZdsHello{version: V1}`, the first message ztunnel sends. */
export function encodeZdsHello(): Buffer {
  return encodeMessage(ZdsMessage.hello, { version: 'V1' });
}

/** `WorkloadResponse{ack: {error}}`: an empty (or absent) error is an ACK, anything else a NACK with that text. */
export function encodeAck(error?: string): Buffer {
  // Proto3 omits an empty string, as prost does: an ACK is `0a 00`.
  return encodeMessage(ZdsMessage.response, { ack: error ? { error } : {} });
}

interface WireInfo {
  readonly name?: string | null;
  readonly namespace?: string | null;
  readonly serviceAccount?: string | null;
}
interface WireRequest {
  readonly payload?: string;
  readonly add?: { readonly uid?: string | null; readonly workloadInfo?: WireInfo | null } | null;
  readonly keep?: { readonly uid?: string | null } | null;
  readonly del?: { readonly uid?: string | null } | null;
  readonly snapshotSent?: object | null;
}

function uidOf(field: string, message: { readonly uid?: string | null } | null | undefined): Result<string> {
  const uid = message?.uid ?? '';
  return uid === '' ? fail(`${field}.uid: missing`) : ok(uid);
}

/** Decodes one WorkloadRequest packet; an error names what is wrong (`add.workload_info: missing ...`). */
export function decodeWorkloadRequest(bytes: Uint8Array): Result<ZdsRequest> {
  let wire: WireRequest;
  try {
    wire = decodeMessage<WireRequest>(ZdsMessage.request, bytes);
  } catch (err) {
    return fail(`WorkloadRequest: not a valid protobuf message: ${errorMessage(err)}`);
  }
  switch (wire.payload) {
    case 'add': {
      const uid = uidOf('add', wire.add);
      if (!uid.ok) return uid;
      const info = wire.add?.workloadInfo;
      if (!info) return fail('add.workload_info: missing (ztunnel requires it)');
      const workloadInfo = { name: info.name ?? '', namespace: info.namespace ?? '', serviceAccount: info.serviceAccount ?? '' };
      const empty = (['name', 'namespace', 'serviceAccount'] as const).filter((k) => workloadInfo[k] === '');
      if (empty.length > 0) return fail(...empty.map((k) => `add.workload_info.${k === 'serviceAccount' ? 'service_account' : k}: missing`));
      return ok({ kind: 'add', uid: uid.value, workloadInfo: Object.freeze(workloadInfo) });
    }
    case 'keep': {
      const uid = uidOf('keep', wire.keep);
      return uid.ok ? ok({ kind: 'keep', uid: uid.value }) : uid;
    }
    case 'del': {
      const uid = uidOf('del', wire.del);
      return uid.ok ? ok({ kind: 'del', uid: uid.value }) : uid;
    }
    case 'snapshotSent':
      return ok({ kind: 'snapshotSent' });
    default:
      return fail('WorkloadRequest: no payload (expected add, keep, del or snapshot_sent)');
  }
}

/** Encodes a request as the node agent would (for fake ZDS servers in tests and tools). */
export function encodeWorkloadRequest(request: ZdsRequest): Buffer {
  switch (request.kind) {
    case 'add':
      return encodeMessage(ZdsMessage.request, { add: { uid: request.uid, workloadInfo: request.workloadInfo } });
    case 'keep':
      return encodeMessage(ZdsMessage.request, { keep: { uid: request.uid } });
    case 'del':
      return encodeMessage(ZdsMessage.request, { del: { uid: request.uid } });
    case 'snapshotSent':
      return encodeMessage(ZdsMessage.request, { snapshotSent: {} });
  }
}

/** Decodes a WorkloadResponse: the ack's error text ('' for an ACK); an error when there is no ack. */
export function decodeAck(bytes: Uint8Array): Result<string> {
  try {
    const wire = decodeMessage<{ payload?: string; ack?: { error?: string | null } | null }>(ZdsMessage.response, bytes);
    if (wire.payload !== 'ack') return fail('WorkloadResponse: no ack');
    return ok(wire.ack?.error ?? '');
  } catch (err) {
    return fail(`WorkloadResponse: not a valid protobuf message: ${errorMessage(err)}`);
  }
}

/** Decodes a ZdsHello's version ('V1', 'NOT_USED', or the number of an unknown one). */
export function decodeZdsHello(bytes: Uint8Array): Result<string> {
  try {
    const wire = decodeMessage<{ version?: string | number | null }>(ZdsMessage.hello, bytes);
    return ok(String(wire.version ?? 'NOT_USED'));
  } catch (err) {
    return fail(`ZdsHello: not a valid protobuf message: ${errorMessage(err)}`);
  }
}
