import test from 'ava';
import { chooseEndpoint, type LbCandidate } from '../../src/waypoint/load-balancer.ts';
import { portProtocol, sniffProtocol, type PortProtocol } from '../../src/waypoint/protocol.ts';
import { req, sequence } from './helpers.ts';

const ports: Array<[Parameters<typeof portProtocol>[0], PortProtocol]> = [
  [{ name: 'http' }, 'http1'], [{ name: 'http-web' }, 'http1'], [{ name: 'http2-api' }, 'http2'], [{ name: 'grpc' }, 'grpc'],
  [{ name: 'grpc-web' }, 'http1'], [{ name: 'tcp-db' }, 'tcp'], [{ name: 'https' }, 'tcp'], [{ name: 'web' }, 'sniff'],
  [{ name: 'tcp', appProtocol: 'http' }, 'http1'], [{ appProtocol: 'kubernetes.io/h2c' }, 'http2'], [{ appProtocol: 'weird', name: 'grpc-x' }, 'grpc'],
  [{ workloadApi: 'HTTP11' }, 'http1'], [{ workloadApi: 'GRPC' }, 'grpc'], [{ workloadApi: 'TCP' }, 'tcp'], [{ workloadApi: 'UNKNOWN' }, 'sniff'], [{}, 'sniff'],
];
for (const [port, want] of ports) test(`port protocol ${JSON.stringify(port)} → ${want}`, (t) => t.is(portProtocol(port), want));

const sniffs: Array<[string, ReturnType<typeof sniffProtocol>]> = [
  ['GET / HTTP/1.1\r\nHost: a\r\n', 'http1'], ['POST /x HTTP/1.0\r\n', 'http1'], ['GE', 'more'], ['GET /x', 'more'],
  ['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'http2'], ['PRI * HTTP/2', 'more'], ['\x16\x03\x01\x02\x00', 'tcp'], ['SSH-2.0-OpenSSH\r\n', 'tcp'],
  ['GET / SMTP\r\n', 'tcp'], ['HELLO world\r\n', 'tcp'],
];
for (const [bytes, want] of sniffs) test(`sniff ${JSON.stringify(bytes)} → ${want}`, (t) => t.is(sniffProtocol(Buffer.from(bytes, 'latin1')), want));

const eps = (...active: number[]): LbCandidate[] => active.map((a, i) => ({ key: `uid-${i}`, active: a, weight: 1 }));

test('round robin follows the cursor', (t) => {
  const picks = [0, 1, 2, 3, 4].map((cursor) => chooseEndpoint({ policy: { kind: 'round-robin' }, candidates: eps(0, 0, 0), request: req(), cursor, random: Math.random }));
  t.deepEqual(picks, [0, 1, 2, 0, 1]);
});

test('least request (the default) picks the less loaded of two random candidates', (t) => {
  t.is(chooseEndpoint({ policy: undefined, candidates: eps(5, 1, 9), request: req(), cursor: 0, random: sequence(0, 0) }), 1);
  t.is(chooseEndpoint({ policy: { kind: 'least-request' }, candidates: eps(5, 1, 0), request: req(), cursor: 0, random: sequence(0.1, 0.9) }), 2);
});

test('random uses the draw', (t) => {
  t.is(chooseEndpoint({ policy: { kind: 'random' }, candidates: eps(0, 0, 0, 0), request: req(), cursor: 0, random: sequence(0.6) }), 2);
  t.is(chooseEndpoint({ policy: { kind: 'random' }, candidates: [], request: req(), cursor: 0, random: Math.random }), undefined);
});

test('consistent hash: the same key lands on the same endpoint, removing another endpoint does not move it, keys spread', (t) => {
  const policy = { kind: 'hash', key: { kind: 'header', name: 'x-user' } } as const;
  const all = eps(0, 0, 0, 0, 0);
  const pick = (user: string, candidates = all) => candidates[chooseEndpoint({ policy, candidates, request: req({ headers: { 'x-user': user } }), cursor: 0, random: Math.random })!]!.key;
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const user = `user-${i}`;
    const first = pick(user);
    t.is(pick(user), first);
    const other = first === 'uid-0' ? 'uid-1' : 'uid-0';
    const without = all.filter((c) => c.key !== other);
    t.is(pick(user, without), first, 'removing an endpoint that was not chosen does not move the key');
    seen.add(first);
  }
  t.is(seen.size, 5);
  const cookie = { kind: 'hash', key: { kind: 'cookie', name: 'session' } } as const;
  const a = chooseEndpoint({ policy: cookie, candidates: all, request: req({ headers: { cookie: 'x=1; session=abc' } }), cursor: 0, random: sequence(0) });
  const b = chooseEndpoint({ policy: cookie, candidates: all, request: req({ headers: { cookie: 'session=abc' } }), cursor: 0, random: sequence(0.99) });
  t.is(a, b);
  const ip = { kind: 'hash', key: { kind: 'source-ip' } } as const;
  t.is(chooseEndpoint({ policy: ip, candidates: all, request: req(), cursor: 0, random: sequence(0) }), chooseEndpoint({ policy: ip, candidates: all, request: req(), cursor: 0, random: sequence(0.99) }));
});
