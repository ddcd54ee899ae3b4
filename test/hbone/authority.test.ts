import test from 'ava';
import { randomBytes } from 'node:crypto';
import { formatAuthority, parseAuthority } from '../../src/hbone/authority.ts';

const accepted: Array<[string, unknown]> = [
  ['10.0.0.1:8080', { kind: 'address', ip: '10.0.0.1', port: 8080 }],
  ['[fd00::1]:80', { kind: 'address', ip: 'fd00::1', port: 80 }],
  ['[::ffff:10.0.0.1]:443', { kind: 'address', ip: '::ffff:10.0.0.1', port: 443 }],
  ['reviews.default.svc.cluster.local:9080', { kind: 'hostname', hostname: 'reviews.default.svc.cluster.local', port: 9080 }],
  ['svc:65535', { kind: 'hostname', hostname: 'svc', port: 65535 }],
  ['1.2.3.4:1', { kind: 'address', ip: '1.2.3.4', port: 1 }],
];
for (const [authority, expected] of accepted) {
  test(`accepts ${authority}`, (t) => t.deepEqual(parseAuthority(authority), { ok: true, value: expected }));
}

const refused = ['', ':80', '10.0.0.1', '10.0.0.1:', '10.0.0.1:0', '10.0.0.1:65536', '10.0.0.1:-1', '10.0.0.1:8o', '10.0.0.1:+80', 'fd00::1:80', '[fd00::1]', '[10.0.0.1]:80', '[zz::1]:80', '999.1.1.1:80', '1.2.3:80', 'a_b:80', '-a:80', 'a..b:80', 'x'.repeat(64) + ':80', 'host :80', 'h/st:80'];
for (const authority of refused) {
  test(`refuses ${JSON.stringify(authority)}`, (t) => {
    const parsed = parseAuthority(authority);
    t.false(parsed.ok);
    if (!parsed.ok) t.regex(parsed.errors[0]!, /^authority /);
  });
}

test('formats IPv6 with brackets and round-trips', (t) => {
  t.is(formatAuthority('fd00::1', 80), '[fd00::1]:80');
  t.is(formatAuthority('10.0.0.1', 80), '10.0.0.1:80');
  for (const [authority] of accepted) {
    const parsed = parseAuthority(authority);
    if (!parsed.ok) return t.fail();
    const host = parsed.value.kind === 'address' ? parsed.value.ip : parsed.value.hostname;
    t.is(formatAuthority(host, parsed.value.port), authority);
  }
});

test('fuzz: random bytes never throw and anything accepted re-formats to itself', (t) => {
  const alphabet = '0123456789abcdef:.[]-_ %/';
  let accepted = 0;
  for (let i = 0; i < 20_000; i++) {
    const bytes = randomBytes(1 + (i % 24));
    const input = i % 2 ? bytes.toString('latin1') : [...bytes].map((b) => alphabet[b % alphabet.length]).join('');
    const parsed = parseAuthority(input);
    if (!parsed.ok) continue;
    accepted++;
    const host = parsed.value.kind === 'address' ? parsed.value.ip : parsed.value.hostname;
    t.true(parsed.value.port >= 1 && parsed.value.port <= 65535);
    t.is(parseAuthority(formatAuthority(host, parsed.value.port)).ok, true);
  }
  t.log(`${accepted} of 20000 random inputs parsed`);
  t.pass();
});
