import test from 'ava';
import { ErrorCode, MeshError } from '../../src/core/index.ts';
import {
  DEFAULT_HOST_PROBE_SNAT_CONFIG,
  DEFAULT_INPOD_RULES_CONFIG,
  ipsetName,
  parseIpsetSave,
  inpodRulesConfig,
  parseInpodPresence,
  renderHostProbeSnat,
  renderHostProbeSnatRemoval,
  renderInpodRemoval,
  renderInpodRules,
  renderPolicyRouting,
  restoreCommand,
} from '../../src/cni/inpod-rules.ts';

/** Reference §1.7, verbatim: istio-cni's in-pod rules with the IPv4 defaults. */
const REFERENCE_IPV4 = `* mangle
-N ISTIO_PRERT
-N ISTIO_OUTPUT
-A PREROUTING -j ISTIO_PRERT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff
-A ISTIO_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
COMMIT
* nat
-N ISTIO_PRERT
-N ISTIO_OUTPUT
-A OUTPUT -j ISTIO_OUTPUT
-A PREROUTING -j ISTIO_PRERT
-A ISTIO_PRERT -s 169.254.7.127 -p tcp -m tcp -j ACCEPT
-A ISTIO_OUTPUT -d 169.254.7.127 -p tcp -m tcp -j ACCEPT
-A ISTIO_PRERT ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15006
-A ISTIO_OUTPUT ! -o lo -p udp -m mark ! --mark 0x539/0xfff -m udp --dport 53 -j REDIRECT --to-port 15053
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp --dport 53 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15053
-A ISTIO_OUTPUT -p tcp -m mark --mark 0x111/0xfff -j ACCEPT
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -j ACCEPT
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001
COMMIT
* raw
-N ISTIO_OUTPUT
-N ISTIO_PRERT
-A PREROUTING -j ISTIO_PRERT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -p udp -m mark --mark 0x539/0xfff -m udp --dport 53 -j CT --zone 1
-A ISTIO_PRERT -p udp -m mark ! --mark 0x539/0xfff -m udp --sport 53 -j CT --zone 1
COMMIT
`;

test('default IPv4 rendering is the reference listing', (t) => {
  t.is(renderInpodRules(), REFERENCE_IPV4);
  t.is(renderInpodRules(DEFAULT_INPOD_RULES_CONFIG, 'ipv4'), REFERENCE_IPV4);
  t.is(renderInpodRules(inpodRulesConfig()), REFERENCE_IPV4);
  t.is(restoreCommand('ipv4'), 'iptables-restore');
});

test('IPv6 rendering: ::1/128 for localhost and the v6 probe address', (t) => {
  const expected = REFERENCE_IPV4.replaceAll('127.0.0.1/32', '::1/128').replaceAll(
    '169.254.7.127',
    'fd16:9254:7127:1337:ffff:ffff:ffff:ffff',
  );
  t.is(renderInpodRules(DEFAULT_INPOD_RULES_CONFIG, 'ipv6'), expected);
  t.is(restoreCommand('ipv6'), 'ip6tables-restore');
});

test('DNS capture off: no DNS redirects and no raw table', (t) => {
  const text = renderInpodRules(inpodRulesConfig({ dnsCapture: false }));
  t.is(
    text,
    `* mangle
-N ISTIO_PRERT
-N ISTIO_OUTPUT
-A PREROUTING -j ISTIO_PRERT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff
-A ISTIO_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
COMMIT
* nat
-N ISTIO_PRERT
-N ISTIO_OUTPUT
-A OUTPUT -j ISTIO_OUTPUT
-A PREROUTING -j ISTIO_PRERT
-A ISTIO_PRERT -s 169.254.7.127 -p tcp -m tcp -j ACCEPT
-A ISTIO_OUTPUT -d 169.254.7.127 -p tcp -m tcp -j ACCEPT
-A ISTIO_PRERT ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15006
-A ISTIO_OUTPUT -p tcp -m mark --mark 0x111/0xfff -j ACCEPT
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -j ACCEPT
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001
COMMIT
`,
  );
});

test('custom ports, marks and probe address', (t) => {
  const config = inpodRulesConfig({
    outboundPort: 25001,
    inboundPort: 25006,
    hbonePort: 25008,
    dnsCapturePort: 25053,
    mark: 0x7b,
    markMask: 0xff,
    connmark: 0x22,
    probeSnatIpv4: '169.254.9.9',
  });
  const expected = REFERENCE_IPV4.replaceAll('15001', '25001')
    .replaceAll('15006', '25006')
    .replaceAll('15008', '25008')
    .replaceAll('15053', '25053')
    .replaceAll('0x539/0xfff', '0x7b/0xff')
    .replaceAll('0x111/0xfff', '0x22/0xff')
    .replaceAll('169.254.7.127', '169.254.9.9');
  t.is(renderInpodRules(config), expected);
});

test('ingress mode drops the probe ACCEPT and the 15006 redirect in PRERT', (t) => {
  const text = renderInpodRules(inpodRulesConfig({ bypassInboundCapture: true }));
  t.is(
    text,
    REFERENCE_IPV4.replace('-A ISTIO_PRERT -s 169.254.7.127 -p tcp -m tcp -j ACCEPT\n', '').replace(
      '-A ISTIO_PRERT ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15006\n',
      '',
    ),
  );
});

test('virtual interfaces come first in nat ISTIO_PRERT', (t) => {
  const text = renderInpodRules(inpodRulesConfig({ virtualInterfaces: ['tun0', 'tun1'] }));
  t.is(
    text,
    REFERENCE_IPV4.replace(
      '-A PREROUTING -j ISTIO_PRERT\n-A ISTIO_PRERT -s',
      `-A PREROUTING -j ISTIO_PRERT
-A ISTIO_PRERT -i tun0 -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_PRERT -i tun0 -p tcp -j RETURN
-A ISTIO_PRERT -i tun1 -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_PRERT -i tun1 -p tcp -j RETURN
-A ISTIO_PRERT -s`,
    ),
  );
});

test('invalid config is CONFIG_INVALID naming the field', (t) => {
  const cases = [
    [{ outboundPort: 0 }, 'outboundPort'],
    [{ dnsCapturePort: 70000 }, 'dnsCapturePort'],
    [{ mark: -1 }, 'mark'],
    [{ probeSnatIpv4: '169.254.7.127\n-A OUTPUT -j DROP' }, 'probeSnatIpv4'],
    [{ probeSnatIpv6: '169.254.7.127' }, 'probeSnatIpv6'],
    [{ virtualInterfaces: ['eth0 -j DROP'] }, 'virtualInterfaces[0]'],
  ] as const;
  for (const [overrides, field] of cases) {
    const err = t.throws(() => inpodRulesConfig(overrides), { instanceOf: MeshError });
    t.is(err?.code, ErrorCode.CONFIG_INVALID);
    t.true(err?.message.includes(field), err?.message);
  }
  t.true(Object.isFrozen(inpodRulesConfig()));
});

test('removal (reference form): -D the six jumps, -F then -X both chains in mangle, nat, raw', (t) => {
  const table = (name: string) => `* ${name}
-D PREROUTING -j ISTIO_PRERT
-D OUTPUT -j ISTIO_OUTPUT
-F ISTIO_PRERT
-F ISTIO_OUTPUT
-X ISTIO_PRERT
-X ISTIO_OUTPUT
COMMIT
`;
  t.is(renderInpodRemoval(), table('mangle') + table('nat') + table('raw'));
});

/** What iptables-save prints in a pod netns holding the default rules and somebody else's rules. */
const SAVED = `# Generated by iptables-save v1.8.9 (nf_tables) on Wed Nov 25 19:04:53 2026
*filter
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 9 -j ACCEPT
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:ISTIO_OUTPUT - [0:0]
:ISTIO_PRERT - [0:0]
-A PREROUTING -j ISTIO_PRERT
-A OUTPUT -p udp -m udp --dport 9999 -j ACCEPT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
-A ISTIO_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:ISTIO_OUTPUT - [0:0]
:ISTIO_PRERT - [0:0]
-A PREROUTING -j ISTIO_PRERT
-A OUTPUT -j ISTIO_OUTPUT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -d 169.254.7.127/32 -p tcp -m tcp -j ACCEPT
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:ISTIO_OUTPUT - [0:0]
:ISTIO_PRERT - [0:0]
-A PREROUTING -j ISTIO_PRERT
-A OUTPUT -j ISTIO_OUTPUT
COMMIT
`;

test('parseInpodPresence finds the ISTIO chains and every jump into them, nothing else', (t) => {
  t.deepEqual(parseInpodPresence(SAVED), {
    mangle: { chains: ['ISTIO_OUTPUT', 'ISTIO_PRERT'], jumps: ['-A PREROUTING -j ISTIO_PRERT', '-A OUTPUT -j ISTIO_OUTPUT'] },
    nat: {
      chains: ['ISTIO_OUTPUT', 'ISTIO_PRERT'],
      jumps: ['-A PREROUTING -j ISTIO_PRERT', '-A OUTPUT -j ISTIO_OUTPUT', '-A OUTPUT -j ISTIO_OUTPUT'],
    },
    raw: { chains: ['ISTIO_OUTPUT', 'ISTIO_PRERT'], jumps: ['-A PREROUTING -j ISTIO_PRERT', '-A OUTPUT -j ISTIO_OUTPUT'] },
  });
  t.deepEqual(parseInpodPresence('*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j RETURN\nCOMMIT\n'), {});
});

test('removal from a parsed iptables-save deletes exactly what is there (duplicates too)', (t) => {
  t.is(
    renderInpodRemoval(parseInpodPresence(SAVED)),
    `* mangle
-D PREROUTING -j ISTIO_PRERT
-D OUTPUT -j ISTIO_OUTPUT
-F ISTIO_OUTPUT
-F ISTIO_PRERT
-X ISTIO_OUTPUT
-X ISTIO_PRERT
COMMIT
* nat
-D PREROUTING -j ISTIO_PRERT
-D OUTPUT -j ISTIO_OUTPUT
-D OUTPUT -j ISTIO_OUTPUT
-F ISTIO_OUTPUT
-F ISTIO_PRERT
-X ISTIO_OUTPUT
-X ISTIO_PRERT
COMMIT
* raw
-D PREROUTING -j ISTIO_PRERT
-D OUTPUT -j ISTIO_OUTPUT
-F ISTIO_OUTPUT
-F ISTIO_PRERT
-X ISTIO_OUTPUT
-X ISTIO_PRERT
COMMIT
`,
  );
  t.is(renderInpodRemoval({}), '');
});

test('re-apply over existing rules replaces them in one transaction per table', (t) => {
  const present = parseInpodPresence(SAVED);
  const text = renderInpodRules(inpodRulesConfig({ dnsCapture: false }), 'ipv4', present);
  const sections = text.split('COMMIT\n').filter(Boolean);
  t.is(sections.length, 3);
  t.is(
    sections[0],
    `* mangle
-D PREROUTING -j ISTIO_PRERT
-D OUTPUT -j ISTIO_OUTPUT
-F ISTIO_OUTPUT
-F ISTIO_PRERT
-A PREROUTING -j ISTIO_PRERT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff
-A ISTIO_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
`,
  );
  t.true(sections[1]?.startsWith('* nat\n-D PREROUTING -j ISTIO_PRERT\n-D OUTPUT -j ISTIO_OUTPUT\n-D OUTPUT -j ISTIO_OUTPUT\n-F ISTIO_OUTPUT\n-F ISTIO_PRERT\n-A OUTPUT'));
  // DNS capture now off: raw's chains are removed, not rewritten.
  t.is(
    sections[2],
    `* raw
-D PREROUTING -j ISTIO_PRERT
-D OUTPUT -j ISTIO_OUTPUT
-F ISTIO_OUTPUT
-X ISTIO_OUTPUT
-F ISTIO_PRERT
-X ISTIO_PRERT
`,
  );
});

test('policy routing argv: fwmark rule and local route in table 100', (t) => {
  t.deepEqual(renderPolicyRouting(), {
    rule: ['rule', 'add', 'fwmark', '0x111/0xfff', 'pref', '32764', 'lookup', '100'],
    route: ['route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '100'],
    remove: [
      ['route', 'del', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '100'],
      ['rule', 'del', 'fwmark', '0x111/0xfff', 'pref', '32764', 'lookup', '100'],
    ],
  });
  const v6 = renderPolicyRouting(inpodRulesConfig({ routeTable: 200 }), 'ipv6');
  t.deepEqual(v6.rule, ['-6', 'rule', 'add', 'fwmark', '0x111/0xfff', 'pref', '32764', 'lookup', '200']);
  t.deepEqual(v6.route, ['-6', 'route', 'add', 'local', '::/0', 'dev', 'lo', 'table', '200']);
});

test('host probe SNAT is the reference §1.9 listing, per family', (t) => {
  t.is(
    renderHostProbeSnat(),
    `* nat
-N ISTIO_POSTRT
-I POSTROUTING 1 -j ISTIO_POSTRT
-A ISTIO_POSTRT -m owner --socket-exists -p tcp -m set --match-set istio-inpod-probes-v4 dst -j SNAT --to-source 169.254.7.127
COMMIT
`,
  );
  t.is(
    renderHostProbeSnat(undefined, 'ipv6'),
    `* nat
-N ISTIO_POSTRT
-I POSTROUTING 1 -j ISTIO_POSTRT
-A ISTIO_POSTRT -m owner --socket-exists -p tcp -m set --match-set istio-inpod-probes-v6 dst -j SNAT --to-source fd16:9254:7127:1337:ffff:ffff:ffff:ffff
COMMIT
`,
  );
  t.is(renderHostProbeSnatRemoval(), '* nat\n-D POSTROUTING -j ISTIO_POSTRT\n-F ISTIO_POSTRT\n-X ISTIO_POSTRT\nCOMMIT\n');
});

test('parseIpsetSave: the entries of one set with their uid comments; other sets and lines skipped', (t) => {
  const save = [
    'create istio-inpod-probes-v4 hash:ip family inet hashsize 1024 maxelem 65536 comment bucketsize 12 initval 0x1',
    'add istio-inpod-probes-v4 10.244.1.2 comment "0b3c-uid-1"',
    'add istio-inpod-probes-v4 10.244.1.3',
    'add other-set 10.0.0.9 comment "x"',
    'add istio-inpod-probes-v4 10.244.1.4 comment "with \\"quote\\""',
  ].join('\n');
  t.deepEqual(parseIpsetSave(save, 'istio-inpod-probes-v4'), [
    { ip: '10.244.1.2', comment: '0b3c-uid-1' },
    { ip: '10.244.1.3', comment: undefined },
    { ip: '10.244.1.4', comment: 'with \\"quote\\"' },
  ]);
  t.deepEqual(parseIpsetSave('', 'istio-inpod-probes-v4'), []);
  t.is(ipsetName(DEFAULT_HOST_PROBE_SNAT_CONFIG, 'ipv6'), 'istio-inpod-probes-v6');
});
