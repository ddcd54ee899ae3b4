import test from 'ava';
import { parseL7Config } from '../../src/workload-api/l7-local.ts';
import type { L7AuthorizationPolicy } from '../../src/workload-api/l7-types.ts';
import { authorizeRequest, istioStringMatch } from '../../src/waypoint/authz.ts';
import { req } from './helpers.ts';

function policies(yaml: string): L7AuthorizationPolicy[] {
  const parsed = parseL7Config(`authorizationPolicies: ${yaml}`);
  if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
  return [...parsed.value.policies];
}

test('Istio string matching: exact, prefix*, *suffix, * (non-empty)', (t) => {
  t.true(istioStringMatch('/a', '/a'));
  t.false(istioStringMatch('/a', '/a/'));
  t.true(istioStringMatch('/api/*', '/api/x'));
  t.false(istioStringMatch('/api/*', '/apix'));
  t.true(istioStringMatch('*.png', '/x.png'));
  t.true(istioStringMatch('*', 'x'));
  t.false(istioStringMatch('*', ''));
});

const set = policies(`[
  { name: deny-delete, namespace: prod, action: DENY, rules: [{ to: [{ methods: [DELETE] }] }] },
  { name: deny-debug-header, namespace: prod, action: DENY, rules: [{ when: [{ key: "request.headers[x-debug]", values: ["*"] }] }] },
  { name: allow-web, namespace: prod, action: ALLOW, rules: [
      { from: [{ principals: [cluster.local/ns/prod/sa/web] }], to: [{ methods: [GET, POST, DELETE], paths: [/api/*, /healthz] }] },
      { from: [{ namespaces: [ops] }], to: [{ ports: ["9090"] }] },
      { from: [{ ipBlocks: [192.168.0.0/16] }], to: [{ hosts: ["*.example.com"] }] },
      { when: [{ key: "request.auth.claims[groups]", values: [admins] }] },
      { from: [{ notPrincipals: ["*"] }], to: [{ paths: [/public] }] } ] },
  { name: audit, namespace: prod, action: DENY, dryRun: true, rules: [{ to: [{ paths: [/api/secret] }] }] }
]`);

const cases: Array<[string, Parameters<typeof req>[0], boolean, string?]> = [
  ['an allowed GET', { path: '/api/users' }, true, 'prod/allow-web'],
  ['DENY wins over a matching ALLOW', { method: 'DELETE', path: '/api/users' }, false, 'prod/deny-delete'],
  ['no ALLOW matches another path', { path: '/admin' }, false, 'prod/allow-web'],
  ['a method not listed', { method: 'PUT', path: '/api/users' }, false],
  ['another principal', { path: '/api/users', source: { principal: 'cluster.local/ns/prod/sa/other' } }, false],
  ['a when header condition denies', { path: '/api/users', headers: { 'x-debug': '1' } }, false, 'prod/deny-debug-header'],
  ['a namespace and port rule', { path: '/x', port: 9090, source: { namespace: 'ops', principal: 'cluster.local/ns/ops/sa/a' } }, true],
  ['the port must match', { path: '/x', port: 9091, source: { namespace: 'ops', principal: 'cluster.local/ns/ops/sa/a' } }, false],
  ['an ip block with a host suffix (the port is ignored)', { path: '/x', authority: 'a.example.com:80', source: { ip: '192.168.3.4', principal: 'x' } }, true],
  ['a host outside the suffix', { path: '/x', authority: 'a.example.org', source: { ip: '192.168.3.4', principal: 'x' } }, false],
  ['a JWT claim condition', { path: '/x', source: { principal: 'x' }, auth: { principal: 'iss/sub', claims: { groups: ['dev', 'admins'] }, audiences: [], presenter: '' } }, true],
  ['a missing claim', { path: '/x', source: { principal: 'x' }, auth: { principal: 'iss/sub', claims: { groups: ['dev'] }, audiences: [], presenter: '' } }, false],
  ['no claims without a JWT', { path: '/x', source: { principal: 'x' } }, false],
  ['notPrincipals * matches only without an identity', { path: '/public', source: { principal: '' } }, true],
  ['… and not with one', { path: '/public', source: { principal: 'cluster.local/ns/a/sa/b' } }, false],
];
for (const [name, request, allowed, policy] of cases) {
  test(`authz: ${name}`, (t) => {
    const d = authorizeRequest(set, req(request));
    t.is(d.allowed, allowed);
    if (policy) t.is(d.policy, policy);
  });
}

test('authz: dry-run policies are reported, not enforced', (t) => {
  const d = authorizeRequest(set, req({ path: '/api/secret' }));
  t.true(d.allowed);
  t.deepEqual(d.dryRun, ['DENY:prod/audit']);
});

test('authz: no policy allows; an ALLOW with no rules denies all; a DENY with no rules denies nothing; an empty rule matches all', (t) => {
  t.true(authorizeRequest([], req()).allowed);
  t.false(authorizeRequest(policies('[{ name: a, namespace: p }]'), req()).allowed);
  t.true(authorizeRequest(policies('[{ name: d, namespace: p, action: DENY }]'), req()).allowed);
  t.true(authorizeRequest(policies('[{ name: a, namespace: p, rules: [{}] }]'), req()).allowed);
  t.false(authorizeRequest(policies('[{ name: d, namespace: p, action: DENY, rules: [{}] }]'), req()).allowed);
});

test('authz: not-fields exclude', (t) => {
  const p = policies('[{ name: a, namespace: p, rules: [{ to: [{ notPaths: [/admin*], notMethods: [DELETE] }] }] }]');
  t.true(authorizeRequest(p, req({ path: '/x' })).allowed);
  t.false(authorizeRequest(p, req({ path: '/admin/x' })).allowed);
  t.false(authorizeRequest(p, req({ path: '/x', method: 'DELETE' })).allowed);
});
