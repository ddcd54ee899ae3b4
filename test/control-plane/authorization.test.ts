import test from 'ava';
import { convertAuthorizationPolicy, emptyMatch, parseCidr, parsePort, stringMatch, ZTUNNEL_ACCEPTED } from '../../src/control-plane/authorization.ts';
import type { KubeAuthorizationPolicy, PolicyRule } from '../../src/control-plane/kube-objects.ts';
import { Report } from '../../src/control-plane/report.ts';
import type { AuthorizationPolicy, PolicyMatch } from '../../src/workload-api/types.ts';

// AuthorizationPolicy → Authorization: every case of reference istio-ambient.md §3.7, as tables.

const SETTINGS = { rootNamespace: 'istio-system', enableDryRun: false };

function match(fields: Partial<PolicyMatch>): PolicyMatch {
  return { ...emptyMatch(), ...fields };
}

function policy(spec: NonNullable<KubeAuthorizationPolicy['spec']>, meta: { namespace?: string; annotations?: Record<string, string> } = {}): KubeAuthorizationPolicy {
  return { metadata: { name: 'p', namespace: meta.namespace ?? 'ns1', ...(meta.annotations ? { annotations: meta.annotations } : {}) }, spec };
}

function convert(p: KubeAuthorizationPolicy, settings = SETTINGS): { out: AuthorizationPolicy | undefined; report: Report } {
  const report = new Report();
  return { out: convertAuthorizationPolicy(p, settings, report), report };
}

const rule = (r: PolicyRule) => ({ rules: [r] });

test('strings: * is presence, *x suffix, x* prefix, else exact', (t) => {
  const table: Array<[string, ReturnType<typeof stringMatch>]> = [
    ['*', { kind: 'presence' }],
    ['*.example.com', { kind: 'suffix', value: '.example.com' }],
    ['cluster.local/ns/a/*', { kind: 'prefix', value: 'cluster.local/ns/a/' }],
    ['cluster.local/ns/a/sa/b', { kind: 'exact', value: 'cluster.local/ns/a/sa/b' }],
  ];
  for (const [input, expected] of table) t.deepEqual(stringMatch(input), expected, input);
});

test('ports and CIDRs parse as the reference says, and nothing else does', (t) => {
  t.is(parsePort('80'), 80);
  t.is(parsePort('65535'), 65535);
  t.is(parsePort('65536'), undefined);
  t.is(parsePort('8o'), undefined);
  t.is(parsePort('-1'), undefined);
  t.deepEqual(parseCidr('10.0.0.1'), { ip: '10.0.0.1', prefixLength: 32 });
  t.deepEqual(parseCidr('10.0.0.0/8'), { ip: '10.0.0.0', prefixLength: 8 });
  t.deepEqual(parseCidr('fd00::1'), { ip: 'fd00::1', prefixLength: 128 });
  t.deepEqual(parseCidr('fd00::/16'), { ip: 'fd00::', prefixLength: 16 });
  t.is(parseCidr('10.0.0.0/33'), undefined);
  t.is(parseCidr('10.0.0'), undefined);
  t.is(parseCidr('10.0.0.0/8/1'), undefined);
});

test('policies with targetRef(s) are waypoint policies and are not sent', (t) => {
  t.is(convert(policy({ targetRef: { kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' }, rules: [{}] })).out, undefined);
  t.is(convert(policy({ targetRefs: [{ kind: 'Service', group: '', name: 'reviews' }], rules: [{}] })).out, undefined);
  t.truthy(convert(policy({ targetRefs: [], rules: [{}] })).out, 'an empty targetRefs list is no target');
});

test('scope: selector → WORKLOAD_SELECTOR, none → NAMESPACE, none in the root namespace → GLOBAL', (t) => {
  const table: Array<[KubeAuthorizationPolicy, AuthorizationPolicy['scope']]> = [
    [policy({ selector: { matchLabels: { app: 'x' } } }), 'WORKLOAD_SELECTOR'],
    [policy({}), 'NAMESPACE'],
    [policy({ selector: { matchLabels: {} } }), 'NAMESPACE'],
    [policy({}, { namespace: 'istio-system' }), 'GLOBAL'],
    [policy({ selector: { matchLabels: { app: 'x' } } }, { namespace: 'istio-system' }), 'WORKLOAD_SELECTOR'],
  ];
  for (const [p, scope] of table) t.is(convert(p).out?.scope, scope);
});

test('action: ALLOW by default, DENY as is; CUSTOM and AUDIT not sent (UnsupportedValue); unknown is a problem', (t) => {
  t.is(convert(policy({})).out?.action, 'ALLOW');
  t.is(convert(policy({ action: 'DENY' })).out?.action, 'DENY');
  for (const action of ['CUSTOM', 'AUDIT']) {
    const { out, report } = convert(policy({ action, provider: { name: 'ext' } }));
    t.is(out, undefined, action);
    t.like(report.conditions[0], { type: ZTUNNEL_ACCEPTED, status: 'False', reason: 'UnsupportedValue' });
    t.deepEqual(report.problems, []);
  }
  const bad = convert(policy({ action: 'REJECT' }));
  t.is(bad.out, undefined);
  t.regex(bad.report.problems[0] ?? '', /spec\.action: unknown action "REJECT"/);
});

test('dry-run: not sent unless enabled, then sent with dry_run', (t) => {
  const p = policy({ action: 'DENY', rules: [{}] }, { annotations: { 'istio.io/dry-run': 'true' } });
  t.is(convert(p).out, undefined);
  t.is(convert(p, { ...SETTINGS, enableDryRun: true }).out?.dryRun, true);
  t.is(convert(policy({ rules: [{}] }, { annotations: { 'istio.io/dry-run': 'false' } })).out?.dryRun, false);
});

test('rules: none → no groups (an ALLOW that allows nothing); [{}] → one group with no clauses (matches everything)', (t) => {
  t.deepEqual(convert(policy({})).out?.rules, []);
  t.deepEqual(convert(policy({ rules: [] })).out?.rules, []);
  t.deepEqual(convert(policy({ rules: [{}] })).out?.rules, [{ clauses: [] }]);
  t.like(convert(policy({ rules: [{}] })).report.conditions[0], { type: ZTUNNEL_ACCEPTED, status: 'True' });
});

test('a rule: one clause for all `to`, one for all `from`, one per `when`; values of a field OR, fields AND', (t) => {
  const { out, report } = convert(
    policy(
      rule({
        to: [{ operation: { ports: ['8080', '9090'] } }, { operation: { notPorts: ['22'] } }],
        from: [
          { source: { principals: ['cluster.local/ns/a/sa/b'], notNamespaces: ['kube-*'] } },
          { source: { namespaces: ['*'], notPrincipals: ['*/sa/evil'], serviceAccounts: ['other/sa1', 'sa2'], notServiceAccounts: ['sa3'], ipBlocks: ['10.0.0.0/8', '10.1.2.3'], notIpBlocks: ['fd00::/8'] } },
        ],
        when: [
          { key: 'source.ip', values: ['1.2.3.4'], notValues: ['1.2.3.5/32'] },
          { key: 'source.namespace', values: ['a'], notValues: ['b*'] },
          { key: 'source.principal', values: ['*'], notValues: ['x'] },
          { key: 'destination.ip', values: ['10.96.0.1'], notValues: ['10.96.0.2'] },
          { key: 'destination.port', values: ['80'], notValues: ['81'] },
        ],
      }),
    ),
  );
  t.deepEqual(report.problems, []);
  t.deepEqual(out?.rules, [
    {
      clauses: [
        { matches: [match({ destinationPorts: [8080, 9090] }), match({ notDestinationPorts: [22] })] },
        {
          matches: [
            match({ principals: [{ kind: 'exact', value: 'cluster.local/ns/a/sa/b' }], notNamespaces: [{ kind: 'prefix', value: 'kube-' }] }),
            match({
              namespaces: [{ kind: 'presence' }],
              notPrincipals: [{ kind: 'suffix', value: '/sa/evil' }],
              serviceAccounts: [{ namespace: 'other', serviceAccount: 'sa1' }, { namespace: 'ns1', serviceAccount: 'sa2' }],
              notServiceAccounts: [{ namespace: 'ns1', serviceAccount: 'sa3' }],
              sourceIps: [{ ip: '10.0.0.0', prefixLength: 8 }, { ip: '10.1.2.3', prefixLength: 32 }],
              notSourceIps: [{ ip: 'fd00::', prefixLength: 8 }],
            }),
          ],
        },
        { matches: [match({ sourceIps: [{ ip: '1.2.3.4', prefixLength: 32 }], notSourceIps: [{ ip: '1.2.3.5', prefixLength: 32 }] })] },
        { matches: [match({ namespaces: [{ kind: 'exact', value: 'a' }], notNamespaces: [{ kind: 'prefix', value: 'b' }] })] },
        { matches: [match({ principals: [{ kind: 'presence' }], notPrincipals: [{ kind: 'exact', value: 'x' }] })] },
        { matches: [match({ destinationIps: [{ ip: '10.96.0.1', prefixLength: 32 }], notDestinationIps: [{ ip: '10.96.0.2', prefixLength: 32 }] })] },
        { matches: [match({ destinationPorts: [80], notDestinationPorts: [81] })] },
      ],
    },
  ]);
});

test('a match with no fields is not sent, and a clause left with no matches neither', (t) => {
  const { out } = convert(policy(rule({ to: [{ operation: {} }], from: [{ source: {} }, { source: { namespaces: ['a'] } }] })));
  t.deepEqual(out?.rules, [{ clauses: [{ matches: [match({ namespaces: [{ kind: 'exact', value: 'a' }] })] }] }]);
});

const L7_TABLE: Array<[string, PolicyRule]> = [
  ['hosts', { to: [{ operation: { hosts: ['a.com'], ports: ['80'] } }] }],
  ['notHosts', { to: [{ operation: { notHosts: ['a.com'], ports: ['80'] } }] }],
  ['methods', { to: [{ operation: { methods: ['GET'], ports: ['80'] } }] }],
  ['notMethods', { to: [{ operation: { notMethods: ['GET'], ports: ['80'] } }] }],
  ['paths', { to: [{ operation: { paths: ['/x'], ports: ['80'] } }] }],
  ['notPaths', { to: [{ operation: { notPaths: ['/x'], ports: ['80'] } }] }],
  ['requestPrincipals', { to: [{ operation: { ports: ['80'] } }], from: [{ source: { requestPrincipals: ['iss/sub'] } }] }],
  ['notRequestPrincipals', { to: [{ operation: { ports: ['80'] } }], from: [{ source: { notRequestPrincipals: ['iss/sub'] } }] }],
  ['remoteIpBlocks', { to: [{ operation: { ports: ['80'] } }], from: [{ source: { remoteIpBlocks: ['1.2.3.4'] } }] }],
  ['notRemoteIpBlocks', { to: [{ operation: { ports: ['80'] } }], from: [{ source: { notRemoteIpBlocks: ['1.2.3.4'] } }] }],
  ['a non-L4 when key', { to: [{ operation: { ports: ['80'] } }], when: [{ key: 'request.headers[x-user]', values: ['admin'] }] }],
];

test('L7 fields: an ALLOW rule with any of them is dropped (other rules kept), with ZtunnelAccepted UnsupportedValue', (t) => {
  for (const [field, r] of L7_TABLE) {
    const { out, report } = convert(policy({ rules: [r, { from: [{ source: { namespaces: ['ok'] } }] }] }));
    t.deepEqual(out?.rules, [{ clauses: [{ matches: [match({ namespaces: [{ kind: 'exact', value: 'ok' }] })] }] }], field);
    t.like(report.conditions[0], { type: ZTUNNEL_ACCEPTED, status: 'False', reason: 'UnsupportedValue' }, field);
    t.regex(report.conditions[0]?.message ?? '', /waypoint/);
    t.deepEqual(report.problems, [], `${field}: an L7 field is not a problem`);
  }
});

test('L7 fields: a DENY rule keeps its L4 parts (denying more), with ZtunnelAccepted UnsupportedValue', (t) => {
  for (const [field, r] of L7_TABLE) {
    const { out, report } = convert(policy({ action: 'DENY', rules: [r] }));
    t.deepEqual(out?.rules, [{ clauses: [{ matches: [match({ destinationPorts: [80] })] }] }], field);
    t.like(report.conditions[0], { type: ZTUNNEL_ACCEPTED, status: 'False', reason: 'UnsupportedValue' }, field);
  }
  // Nothing but HTTP attributes: the DENY rule is left matching every connection.
  t.deepEqual(convert(policy({ action: 'DENY', rules: [{ to: [{ operation: { methods: ['DELETE'] } }] }] })).out?.rules, [{ clauses: [] }]);
});

test('invalid values: a problem each; an ALLOW rule is dropped, a DENY rule denies everything (fail closed)', (t) => {
  const bad: PolicyRule = { to: [{ operation: { ports: ['80', 'http'] } }], from: [{ source: { ipBlocks: ['10.0.0.300'], serviceAccounts: ['a/b/c'] } }] };
  const allow = convert(policy({ rules: [bad, { from: [{ source: { namespaces: ['ok'] } }] }] }));
  t.is(allow.out?.rules.length, 1, 'the good rule stays');
  t.deepEqual(allow.report.problems, [
    'spec.rules[0].to[0].operation.ports[1]: "http" is not a port (0-65535)',
    'spec.rules[0].from[0].source.serviceAccounts[0]: "a/b/c" must be "<namespace>/<name>" or "<name>"',
    'spec.rules[0].from[0].source.ipBlocks[0]: "10.0.0.300" is not an IP address or CIDR',
  ]);
  const deny = convert(policy({ action: 'DENY', rules: [bad] }));
  t.deepEqual(deny.out?.rules, [{ clauses: [] }]);
  t.is(deny.report.problems.length, 3);
  t.like(convert(policy({ rules: 'nope' as unknown as PolicyRule[] })).report.problems, ['spec.rules: must be a list']);
});

test('a policy without name or namespace is a problem and not sent', (t) => {
  const report = new Report();
  t.is(convertAuthorizationPolicy({ metadata: { name: 'x' }, spec: {} }, SETTINGS, report), undefined);
  t.deepEqual(report.problems, ['metadata: name and namespace are required']);
});
