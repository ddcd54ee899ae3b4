import test from 'ava';
import { emptyMatch } from '../../src/control-plane/authorization.ts';
import type { PeerAuthentication } from '../../src/control-plane/kube-objects.ts';
import {
  convertPeerAuthentication, parentMode, peerAuthenticationRefs, staticStrictPolicy, type PeerAuthenticationLookup,
} from '../../src/control-plane/peer-authentication.ts';
import { Report } from '../../src/control-plane/report.ts';
import type { PolicyMatch } from '../../src/workload-api/types.ts';
import { authorize } from '../../src/ztunnel/rbac.ts';

// PeerAuthentication → Authorization: every case of reference istio-ambient.md §3.8, as tables; the converted
// policies are also run through ztunnel's own L4 authorization to show they mean what they should.

const ROOT = 'istio-system';
const STATIC = `${ROOT}/istio_converted_static_strict`;

let clock = 0;
function pa(namespace: string, name: string, spec: NonNullable<PeerAuthentication['spec']>, created?: string): PeerAuthentication {
  clock++;
  return { metadata: { name, namespace, creationTimestamp: created ?? `2026-01-01T00:00:${String(clock).padStart(2, '0')}Z` }, spec };
}

function lookup(...pas: PeerAuthentication[]): PeerAuthenticationLookup {
  return { rootNamespace: ROOT, peerAuthentications: (ns) => pas.filter((p) => p.metadata?.namespace === ns) };
}

const match = (f: Partial<PolicyMatch>): PolicyMatch => ({ ...emptyMatch(), ...f });
const APP = { app: 'web' };
const sel = { selector: { matchLabels: APP } };

test('the static strict policy: root namespace, WORKLOAD_SELECTOR, DENY, one group not_principals presence', (t) => {
  t.deepEqual(staticStrictPolicy(ROOT), {
    name: 'istio_converted_static_strict',
    namespace: ROOT,
    scope: 'WORKLOAD_SELECTOR',
    action: 'DENY',
    rules: [{ clauses: [{ matches: [match({ notPrincipals: [{ kind: 'presence' }] })] }] }],
    dryRun: false,
  });
});

test('effective mode: mesh ← namespace ← workload; UNSET inherits; DISABLE is PERMISSIVE; oldest wins; default PERMISSIVE', (t) => {
  const table: Array<[string, PeerAuthentication[], string[]]> = [
    ['nothing', [], []],
    ['mesh STRICT', [pa(ROOT, 'mesh', { mtls: { mode: 'STRICT' } })], [STATIC]],
    ['mesh STRICT, namespace PERMISSIVE', [pa(ROOT, 'mesh', { mtls: { mode: 'STRICT' } }), pa('ns1', 'ns', { mtls: { mode: 'PERMISSIVE' } })], []],
    ['mesh STRICT, namespace DISABLE', [pa(ROOT, 'mesh', { mtls: { mode: 'STRICT' } }), pa('ns1', 'ns', { mtls: { mode: 'DISABLE' } })], []],
    ['mesh STRICT, namespace UNSET', [pa(ROOT, 'mesh', { mtls: { mode: 'STRICT' } }), pa('ns1', 'ns', { mtls: { mode: 'UNSET' } })], [STATIC]],
    ['mesh STRICT, namespace without mtls', [pa(ROOT, 'mesh', { mtls: { mode: 'STRICT' } }), pa('ns1', 'ns', {})], [STATIC]],
    ['namespace PERMISSIVE, workload STRICT', [pa('ns1', 'ns', { mtls: { mode: 'PERMISSIVE' } }), pa('ns1', 'wl', { ...sel, mtls: { mode: 'STRICT' } })], [STATIC]],
    ['namespace STRICT, workload PERMISSIVE', [pa('ns1', 'ns', { mtls: { mode: 'STRICT' } }), pa('ns1', 'wl', { ...sel, mtls: { mode: 'PERMISSIVE' } })], []],
    ['namespace STRICT, workload UNSET', [pa('ns1', 'ns', { mtls: { mode: 'STRICT' } }), pa('ns1', 'wl', { ...sel, mtls: { mode: 'UNSET' } })], [STATIC]],
    ['workload STRICT not selecting', [pa('ns1', 'wl', { selector: { matchLabels: { app: 'other' } }, mtls: { mode: 'STRICT' } })], []],
    ['a STRICT namespace policy in another namespace', [pa('ns2', 'ns', { mtls: { mode: 'STRICT' } })], []],
    [
      'two namespace policies: the oldest wins',
      [pa('ns1', 'young', { mtls: { mode: 'PERMISSIVE' } }, '2026-02-01T00:00:00Z'), pa('ns1', 'old', { mtls: { mode: 'STRICT' } }, '2025-02-01T00:00:00Z')],
      [STATIC],
    ],
  ];
  for (const [name, pas, expected] of table) t.deepEqual(peerAuthenticationRefs(lookup(...pas), 'ns1', APP), expected, name);
  t.is(parentMode(lookup(), 'ns1'), 'PERMISSIVE');
});

test('port level: STRICT ports under a non-strict mode → one group per port; referenced instead of the static policy', (t) => {
  const wl = pa('ns1', 'wl', { ...sel, mtls: { mode: 'PERMISSIVE' }, portLevelMtls: { '9090': { mode: 'STRICT' }, '8080': { mode: 'STRICT' }, '7070': { mode: 'PERMISSIVE' } } });
  const l = lookup(wl);
  const converted = convertPeerAuthentication(wl, l, new Report());
  t.deepEqual(converted, {
    name: 'converted_peer_authentication_wl',
    namespace: 'ns1',
    scope: 'WORKLOAD_SELECTOR',
    action: 'DENY',
    rules: [
      { clauses: [{ matches: [match({ notPrincipals: [{ kind: 'presence' }], destinationPorts: [8080] })] }] },
      { clauses: [{ matches: [match({ notPrincipals: [{ kind: 'presence' }], destinationPorts: [9090] })] }] },
    ],
    dryRun: false,
  });
  t.deepEqual(peerAuthenticationRefs(l, 'ns1', APP), ['ns1/converted_peer_authentication_wl']);
  // ztunnel's evaluation: plaintext is denied on 8080 and 9090 only.
  const plaintext = (port: number) => authorize([converted!], { sourceIp: '10.0.0.1', destinationIp: '10.0.0.2', destinationPort: port }).decision.allowed;
  t.false(plaintext(8080));
  t.false(plaintext(9090));
  t.true(plaintext(7070));
  t.true(plaintext(80));
});

test('port level: PERMISSIVE/DISABLE ports under STRICT → one group of not_destination_ports clauses and the unauthenticated one', (t) => {
  const wl = pa('ns1', 'wl', { ...sel, portLevelMtls: { '8080': { mode: 'PERMISSIVE' }, '9090': { mode: 'DISABLE' }, '443': { mode: 'STRICT' } } });
  const l = lookup(pa(ROOT, 'mesh', { mtls: { mode: 'STRICT' } }), wl);
  const converted = convertPeerAuthentication(wl, l, new Report());
  t.deepEqual(converted?.rules, [
    {
      clauses: [
        { matches: [match({ notDestinationPorts: [8080] })] },
        { matches: [match({ notDestinationPorts: [9090] })] },
        { matches: [match({ notPrincipals: [{ kind: 'presence' }] })] },
      ],
    },
  ]);
  t.deepEqual(peerAuthenticationRefs(l, 'ns1', APP), ['ns1/converted_peer_authentication_wl'], 'the static policy is not also referenced');
  const plaintext = (port: number) => authorize([converted!], { sourceIp: '10.0.0.1', destinationIp: '10.0.0.2', destinationPort: port }).decision.allowed;
  t.true(plaintext(8080));
  t.true(plaintext(9090));
  t.false(plaintext(443));
  t.false(plaintext(80));
  const peer = { trustDomain: 'cluster.local', namespace: 'a', serviceAccount: 'b' };
  t.true(authorize([converted!], { sourceIp: '10.0.0.1', destinationIp: '10.0.0.2', destinationPort: 80, peer }).decision.allowed, 'mTLS passes');
});

test('port level: all strict or nothing to do → not converted (the static policy applies when STRICT)', (t) => {
  const allStrict = pa('ns1', 'wl', { ...sel, mtls: { mode: 'STRICT' }, portLevelMtls: { '8080': { mode: 'STRICT' } } });
  t.is(convertPeerAuthentication(allStrict, lookup(allStrict), new Report()), undefined);
  t.deepEqual(peerAuthenticationRefs(lookup(allStrict), 'ns1', APP), [STATIC]);
  const nothing = pa('ns1', 'wl', { ...sel, mtls: { mode: 'PERMISSIVE' }, portLevelMtls: { '8080': { mode: 'PERMISSIVE' }, '9090': { mode: 'UNSET' } } });
  t.is(convertPeerAuthentication(nothing, lookup(nothing), new Report()), undefined);
  t.deepEqual(peerAuthenticationRefs(lookup(nothing), 'ns1', APP), []);
  // UNSET at the workload with port exceptions inherits STRICT from the namespace.
  const inherits = pa('ns1', 'wl', { ...sel, portLevelMtls: { '8080': { mode: 'PERMISSIVE' } } });
  t.truthy(convertPeerAuthentication(inherits, lookup(pa('ns1', 'ns', { mtls: { mode: 'STRICT' } }), inherits), new Report()));
  // Selector policies in the root namespace are not converted.
  const rootSel = pa(ROOT, 'wl', { ...sel, portLevelMtls: { '8080': { mode: 'STRICT' } } });
  t.is(convertPeerAuthentication(rootSel, lookup(rootSel), new Report()), undefined);
});

test('bad input: an unknown mode or port key is a problem and counts as UNSET; portLevelMtls without selector is ignored', (t) => {
  const report = new Report();
  const wl = pa('ns1', 'wl', { ...sel, mtls: { mode: 'STRICTEST' }, portLevelMtls: { http: { mode: 'STRICT' }, '8080': { mode: 'MAYBE' }, '9090': { mode: 'STRICT' } } });
  const converted = convertPeerAuthentication(wl, lookup(wl), report);
  t.deepEqual(converted?.rules.length, 1, 'only 9090 converts');
  t.deepEqual(report.problems, [
    'spec.mtls.mode: unknown mode "STRICTEST" (UNSET, DISABLE, PERMISSIVE, STRICT); taken as UNSET',
    // (integer-like keys come first in a JSON object)
    'spec.portLevelMtls["8080"].mode: unknown mode "MAYBE" (UNSET, DISABLE, PERMISSIVE, STRICT); taken as UNSET',
    'spec.portLevelMtls["http"]: is not a port (1-65535); ignored',
  ]);
  const nsLevel = new Report();
  t.is(convertPeerAuthentication(pa('ns1', 'ns', { portLevelMtls: { '80': { mode: 'STRICT' } } }), lookup(), nsLevel), undefined);
  t.deepEqual(nsLevel.problems, ['spec.portLevelMtls: is only allowed with a selector; ignored']);
});
