import test from 'ava';
import { encodeMessage } from '../../src/workload-api/proto.ts';
import { decodeAck, decodeWorkloadRequest, decodeZdsHello, encodeAck, encodeWorkloadRequest, encodeZdsHello, ZdsMessage, type ZdsRequest } from '../../src/workload-api/zds.ts';

/** The ZDS codec against the bytes of reference ztunnel.md §1.3 (field numbers included). */

const bytes = (...parts: Array<number | string>) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from([p]))));
const info = { name: 'web-0', namespace: 'prod', serviceAccount: 'web' };

test('ZdsHello is {version: V1} (field 1, enum 1)', (t) => {
  t.deepEqual(encodeZdsHello(), bytes(0x08, 0x01));
  t.deepEqual(decodeZdsHello(encodeZdsHello()), { ok: true, value: 'V1' });
});

test('Ack: an empty error is an ACK, else a NACK with the text (WorkloadResponse.ack = 1, Ack.error = 1)', (t) => {
  t.deepEqual(encodeAck(), bytes(0x0a, 0x00));
  t.deepEqual(encodeAck(''), bytes(0x0a, 0x00));
  t.deepEqual(encodeAck('boom'), bytes(0x0a, 0x06, 0x0a, 0x04, 'boom'));
  t.deepEqual(decodeAck(encodeAck()), { ok: true, value: '' });
  t.deepEqual(decodeAck(encodeAck('no netns')), { ok: true, value: 'no netns' });
  t.false(decodeAck(Buffer.alloc(0)).ok);
});

test('field numbers: add=1, del=2 (DelWorkload.uid is tag 2), snapshot_sent=3, keep=5', (t) => {
  t.deepEqual(encodeMessage(ZdsMessage.request, { del: { uid: 'u1' } }), bytes(0x12, 0x04, 0x12, 0x02, 'u1'));
  t.deepEqual(encodeMessage(ZdsMessage.request, { keep: { uid: 'u1' } }), bytes(0x2a, 0x04, 0x0a, 0x02, 'u1'));
  t.deepEqual(encodeMessage(ZdsMessage.request, { snapshotSent: {} }), bytes(0x1a, 0x00));
  // Hand-built: add{uid "u1", workload_info{name "a", namespace "b", service_account "c"}}.
  const add = bytes(0x0a, 0x0f, 0x0a, 0x02, 'u1', 0x12, 0x09, 0x0a, 0x01, 'a', 0x12, 0x01, 'b', 0x1a, 0x01, 'c');
  t.deepEqual(decodeWorkloadRequest(add), { ok: true, value: { kind: 'add', uid: 'u1', workloadInfo: { name: 'a', namespace: 'b', serviceAccount: 'c' } } });
  t.deepEqual(decodeWorkloadRequest(bytes(0x12, 0x04, 0x12, 0x02, 'u1')), { ok: true, value: { kind: 'del', uid: 'u1' } });
  t.deepEqual(decodeWorkloadRequest(bytes(0x2a, 0x04, 0x0a, 0x02, 'u1')), { ok: true, value: { kind: 'keep', uid: 'u1' } });
  t.deepEqual(decodeWorkloadRequest(bytes(0x1a, 0x00)), { ok: true, value: { kind: 'snapshotSent' } });
});

const requests: ZdsRequest[] = [
  { kind: 'add', uid: 'pod-uid-1', workloadInfo: info },
  { kind: 'keep', uid: 'pod-uid-2' },
  { kind: 'del', uid: 'pod-uid-3' },
  { kind: 'snapshotSent' },
];
for (const request of requests) {
  test(`round trip: ${request.kind}`, (t) => {
    t.deepEqual(decodeWorkloadRequest(encodeWorkloadRequest(request)), { ok: true, value: request });
  });
}

const bad: Array<[string, Buffer, RegExp]> = [
  ['no payload', Buffer.alloc(0), /^WorkloadRequest: no payload/],
  ['not protobuf', bytes(0x0a, 0xff, 0xff), /^WorkloadRequest: not a valid protobuf message/],
  ['add without workload_info', encodeMessage(ZdsMessage.request, { add: { uid: 'u1' } }), /^add\.workload_info: missing/],
  ['add without uid', encodeMessage(ZdsMessage.request, { add: { workloadInfo: info } }), /^add\.uid: missing/],
  ['add with an empty service account', encodeMessage(ZdsMessage.request, { add: { uid: 'u1', workloadInfo: { ...info, serviceAccount: '' } } }), /^add\.workload_info\.service_account: missing/],
  ['del without uid', encodeMessage(ZdsMessage.request, { del: {} }), /^del\.uid: missing/],
  ['keep without uid', encodeMessage(ZdsMessage.request, { keep: {} }), /^keep\.uid: missing/],
];
for (const [name, input, message] of bad) {
  test(`bad input: ${name}`, (t) => {
    const result = decodeWorkloadRequest(input);
    if (result.ok) return t.fail(`decoded as ${JSON.stringify(result.value)}`);
    t.regex(result.errors.join('; '), message);
  });
}
