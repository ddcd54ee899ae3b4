import test from 'ava';
import { spiffeId } from '../../src/identity/spiffe.ts';
import type { AuthorizationPolicy, PolicyMatch } from '../../src/workload-api/types.ts';
import { authorize, cidrContains, type ConnectionAttributes } from '../../src/ztunnel/rbac.ts';

const emptyMatch: PolicyMatch = {
  namespaces: [], notNamespaces: [], principals: [], notPrincipals: [], sourceIps: [], notSourceIps: [],
  destinationIps: [], notDestinationIps: [], destinationPorts: [], notDestinationPorts: [], serviceAccounts: [], notServiceAccounts: [],
};
const match = (fields: Partial<PolicyMatch>): PolicyMatch => ({ ...emptyMatch, ...fields });

function policy(name: string, action: 'ALLOW' | 'DENY', rules: PolicyMatch[][][], extra: Partial<AuthorizationPolicy> = {}): AuthorizationPolicy {
  return { name, namespace: 'prod', scope: 'NAMESPACE', action, dryRun: false, rules: rules.map((clauses) => ({ clauses: clauses.map((matches) => ({ matches })) })), ...extra };
}

const sleep = spiffeId('cluster.local', 'prod', 'sleep');
const conn = (over: Partial<ConnectionAttributes> = {}): ConnectionAttributes => ({ sourceIp: '10.0.0.1', destinationIp: '10.0.1.5', destinationPort: 8080, peer: sleep, ...over });
/** A plaintext connection: no peer identity. */
const plaintext = (): ConnectionAttributes => ({ sourceIp: '10.0.0.1', destinationIp: '10.0.1.5', destinationPort: 8080 });

const cases: Array<[string, AuthorizationPolicy[], ConnectionAttributes, boolean, RegExp?]> = [
  ['no policies: allowed', [], conn(), true],
  ['only a non-matching DENY: allowed', [policy('d', 'DENY', [[[match({ destinationPorts: [9999] })]]])], conn(), true],
  ['a matching DENY wins over a matching ALLOW', [policy('a', 'ALLOW', [[]]), policy('d', 'DENY', [[[match({ destinationPorts: [8080] })]]])], conn(), false, /explicitly denied by: prod\/d/],
  ['ALLOW exists but none matches: denied', [policy('a', 'ALLOW', [[[match({ destinationPorts: [1] })]]])], conn(), false, /allow policies exist, but none allowed/],
  ['a rule with no clauses matches everything', [policy('a', 'ALLOW', [[]])], conn(), true, /allowed by: prod\/a/],
  ['a policy with no rules never matches (ALLOW-only ⇒ deny)', [policy('a', 'ALLOW', [])], conn(), false],
  ['a clause with only an all-empty match never matches', [policy('a', 'ALLOW', [[[emptyMatch]]])], conn(), false],
  ['clauses AND: one failing clause fails the rule', [policy('a', 'ALLOW', [[[match({ destinationPorts: [8080] })], [match({ sourceIps: [{ ip: '192.168.0.0', prefixLength: 16 }] })]]])], conn(), false],
  ['matches OR within a clause', [policy('a', 'ALLOW', [[[match({ destinationPorts: [1] }), match({ destinationPorts: [8080] })]]])], conn(), true],
  ['rules OR', [policy('a', 'ALLOW', [[[match({ destinationPorts: [1] })]], [[match({ destinationPorts: [8080] })]]])], conn(), true],
  ['principals compare without spiffe://', [policy('a', 'ALLOW', [[[match({ principals: [{ kind: 'exact', value: 'cluster.local/ns/prod/sa/sleep' }] })]]])], conn(), true],
  ['principals with the spiffe:// prefix do not match', [policy('a', 'ALLOW', [[[match({ principals: [{ kind: 'exact', value: 'spiffe://cluster.local/ns/prod/sa/sleep' }] })]]])], conn(), false],
  ['a positive principal never matches plaintext', [policy('a', 'ALLOW', [[[match({ principals: [{ kind: 'presence' }] })]]])], plaintext(), false],
  ['notPrincipals: a matching negative fails the match', [policy('a', 'ALLOW', [[[match({ notPrincipals: [{ kind: 'suffix', value: '/sa/sleep' }] })]]])], conn(), false],
  ['namespaces by prefix', [policy('a', 'ALLOW', [[[match({ namespaces: [{ kind: 'prefix', value: 'pro' }] })]]])], conn(), true],
  ['namespace of plaintext is empty: presence fails', [policy('a', 'ALLOW', [[[match({ namespaces: [{ kind: 'presence' }] })]]])], plaintext(), false],
  ['service accounts as (ns, sa) pairs', [policy('a', 'ALLOW', [[[match({ serviceAccounts: [{ namespace: 'prod', serviceAccount: 'sleep' }] })]]])], conn(), true],
  ['service accounts never match plaintext', [policy('a', 'ALLOW', [[[match({ serviceAccounts: [{ namespace: 'prod', serviceAccount: 'sleep' }] })]]])], plaintext(), false],
  ['source CIDR', [policy('a', 'ALLOW', [[[match({ sourceIps: [{ ip: '10.0.0.0', prefixLength: 24 }] })]]])], conn(), true],
  ['destination CIDR negative', [policy('a', 'ALLOW', [[[match({ destinationPorts: [8080], notDestinationIps: [{ ip: '10.0.1.5', prefixLength: 32 }] })]]])], conn(), false],
  ['notDestinationPorts: everything but 9999 (the localhost example)', [policy('deny-9999', 'ALLOW', [[[match({ notDestinationPorts: [9999] })]]])], conn(), true],
  ['notDestinationPorts on the excluded port', [policy('deny-9999', 'ALLOW', [[[match({ notDestinationPorts: [9999] })]]])], conn({ destinationPort: 9999 }), false],
  ['a dry-run DENY is not enforced', [policy('d', 'DENY', [[]], { dryRun: true })], conn(), true],
  ['a dry-run ALLOW does not make ALLOW policies exist', [policy('a', 'ALLOW', [[[match({ destinationPorts: [1] })]]], { dryRun: true })], conn(), true],
];
for (const [name, policies, connection, allowed, reason] of cases) {
  test(name, (t) => {
    const { decision } = authorize(policies, connection);
    t.is(decision.allowed, allowed);
    if (reason) t.regex(decision.reason, reason);
  });
}

test('dry-run policies that would match are reported', (t) => {
  const result = authorize([policy('audit', 'DENY', [[]], { dryRun: true }), policy('other', 'DENY', [[[match({ destinationPorts: [1] })]]], { dryRun: true })], conn());
  t.deepEqual(result.dryRunMatches, ['prod/audit']);
});

test('CIDR containment across prefix lengths and families', (t) => {
  t.true(cidrContains({ ip: '10.0.0.0', prefixLength: 8 }, '10.255.1.2'));
  t.false(cidrContains({ ip: '10.0.0.0', prefixLength: 9 }, '10.128.0.1'));
  t.true(cidrContains({ ip: '0.0.0.0', prefixLength: 0 }, '1.2.3.4'));
  t.true(cidrContains({ ip: 'fd00::', prefixLength: 8 }, 'fdff::1'));
  t.false(cidrContains({ ip: 'fd00::', prefixLength: 16 }, 'fd01::1'));
  t.false(cidrContains({ ip: '10.0.0.0', prefixLength: 8 }, 'fd00::1'), 'families differ');
  t.false(cidrContains({ ip: '10.0.0.0', prefixLength: 8 }, 'not-an-ip'));
  t.true(cidrContains({ ip: '10.1.2.3', prefixLength: 32 }, '10.1.2.3'));
  t.false(cidrContains({ ip: '10.1.2.3', prefixLength: 32 }, '10.1.2.4'));
});
