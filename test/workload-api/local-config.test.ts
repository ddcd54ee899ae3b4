import test from 'ava';
import { once } from 'node:events';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode } from '../../src/core/error-codes.ts';
import { parseLocalConfig, type LocalConfig } from '../../src/workload-api/local-config.ts';
import { LocalConfigError, startLocalSource } from '../../src/workload-api/local-source.ts';
import { WorkloadStore } from '../../src/workload-api/store.ts';
import { captureLog } from '../helpers/log.ts';
import { tempDir } from '../helpers/tmp.ts';

/** ztunnel's examples/localhost.yaml, as reference ztunnel.md §10.2 describes it. */
const LOCALHOST_YAML = `
workloads:
- uid: cluster1//v1/Pod/default/local
  name: local
  namespace: default
  serviceAccount: default
  workloadIps: ["127.0.0.1"]
  protocol: HBONE
  node: local
  services:
    "default/example.com":
      80: 8080
    "default/example2.com":
      80: 8080
- uid: cluster1//v1/Pod/default/local-tcp
  name: local-tcp
  namespace: default
  serviceAccount: default
  workloadIps: ["127.0.0.2"]
  protocol: TCP
  node: local
  services:
    "default/example.com":
      80: 8080
    "default/example2.com":
      80: 8080
policies:
- action: Allow
  rules:
  - - - notDestinationPorts:
        - 9999
  name: deny-9999
  namespace: default
  scope: Namespace
services:
- name: local
  namespace: default
  hostname: example.com
  vips:
  - /127.10.0.1
  ports:
    80: 8080
  subjectAltNames:
  - spiffe://cluster.local/ns/default/sa/local
  canonical: true
- name: remote
  namespace: default
  hostname: example2.com
  vips:
  - remote/127.10.0.2
  ports:
    80: 8080
  canonical: true
`;

function parsed(text: string): LocalConfig {
  const result = parseLocalConfig(text);
  if (!result.ok) throw new Error(`expected a valid config, got:\n${result.errors.join('\n')}`);
  return result.value;
}

function errorsOf(text: string): readonly string[] {
  const result = parseLocalConfig(text);
  if (result.ok) throw new Error('expected the config to be refused');
  return result.errors;
}

/** Replaces the file in one step (write aside, rename over), as config tooling does. */
async function replaceFile(path: string, text: string): Promise<void> {
  await writeFile(`${path}.tmp`, text);
  await rename(`${path}.tmp`, path);
}

const fsWatchers = () => process.getActiveResourcesInfo().filter((r) => r === 'FSEventWrap').length;

/** Waits a bounded number of event-loop turns (no timers) for the watcher count to reach `expected`. */
async function settleWatchers(expected: number): Promise<number> {
  for (let i = 0; i < 500 && fsWatchers() !== expected; i++) await new Promise((resolve) => setImmediate(resolve));
  return fsWatchers();
}

// --- parsing: the reference example -----------------------------------------------------------

test('localhost.yaml parses into 2 workloads, 2 services and 1 policy', (t) => {
  const config = parsed(LOCALHOST_YAML);
  t.is(config.workloads.length, 2);
  t.is(config.services.length, 2);
  t.is(config.policies.length, 1);

  const [local, localTcp] = config.workloads;
  t.like(local, {
    uid: 'cluster1//v1/Pod/default/local', name: 'local', namespace: 'default', serviceAccount: 'default', addresses: ['127.0.0.1'],
    tunnelProtocol: 'HBONE', node: 'local', status: 'HEALTHY', networkMode: 'STANDARD', workloadType: 'deployment', capacity: 1,
    // No xDS-style defaulting in the local file.
    trustDomain: '', clusterId: '', network: '',
  });
  t.deepEqual([...(local?.services ?? new Map())], [
    ['default/example.com', [{ servicePort: 80, targetPort: 8080, appProtocol: 'UNKNOWN' }]],
    ['default/example2.com', [{ servicePort: 80, targetPort: 8080, appProtocol: 'UNKNOWN' }]],
  ]);
  t.like(localTcp, { name: 'local-tcp', addresses: ['127.0.0.2'], tunnelProtocol: 'NONE' });

  const [svcLocal, svcRemote] = config.services;
  t.like(svcLocal, {
    name: 'local', namespace: 'default', hostname: 'example.com', canonical: true, ipFamilies: 'AUTOMATIC', visibility: 'PUBLIC',
    subjectAltNames: ['spiffe://cluster.local/ns/default/sa/local'],
  });
  t.deepEqual(svcLocal?.addresses, [{ network: '', ip: '127.10.0.1' }]);
  t.deepEqual(svcLocal?.ports, [{ servicePort: 80, targetPort: 8080, appProtocol: 'UNKNOWN' }]);
  t.deepEqual(svcRemote?.addresses, [{ network: 'remote', ip: '127.10.0.2' }]);

  const [policy] = config.policies;
  t.like(policy, { name: 'deny-9999', namespace: 'default', scope: 'NAMESPACE', action: 'ALLOW', dryRun: false });
  t.is(policy?.rules.length, 1);
  t.is(policy?.rules[0]?.clauses.length, 1);
  t.deepEqual(policy?.rules[0]?.clauses[0]?.matches[0]?.notDestinationPorts, [9999]);
  t.deepEqual(policy?.rules[0]?.clauses[0]?.matches[0]?.principals, []);
});

test('an empty file, or one with only comments, is an empty config', (t) => {
  for (const text of ['', '\n', '# nothing here\n', 'workloads:\nservices: []\n']) {
    t.deepEqual(parsed(text), { workloads: [], services: [], policies: [] }, JSON.stringify(text));
  }
});

test('every optional field maps onto the domain types', (t) => {
  const config = parsed(`
workloads:
- uid: w1
  namespace: ns
  workloadIps: ["fd00:0::1", "10.0.0.1"]
  networkMode: HostNetwork
  status: Unhealthy
  workloadType: CronJob
  trustDomain: example.org
  clusterId: c1
  capacity: 7
  nativeTunnel: true
  applicationTunnel: {protocol: PROXY, port: 15088}
  authorizationPolicies: [ns/p1]
  locality: {region: r, zone: z}
  waypoint: {destination: "net1/10.9.9.9", hboneMtlsPort: 15008}
  networkGateway: {destination: "istio-system/gw.example.com", hboneMtlsPort: 15009}
services:
- name: s
  namespace: ns
  hostname: s.example
  vips: ["net1/fd00::10"]
  cidrVips: [{network: net1, cidr: "10.96.0.0/12"}, {cidr: "10.1.1.1/32"}]
  ports: {443: 8443, 80: 0}
  waypoint: {destination: "ns/waypoint.ns.svc.cluster.local", hboneMtlsPort: 15008}
  weightedWaypoints: [{destination: {destination: "/10.2.2.2", hboneMtlsPort: 15008}, weight: 3}]
  loadBalancer: {routingPreferences: [Network, Zone], mode: Standard, healthPolicy: AllowAll}
  ipFamilies: Dual
  visibility: Namespace
policies:
- name: p1
  namespace: ns
  scope: WorkloadSelector
  action: Deny
  dryRun: true
  rules:
  - - - namespaces: [{Exact: a}, {Prefix: b}, {Suffix: c}, {Presence: []}]
        sourceIps: ["10.0.0.0/8", "10.1.2.3", "fd00::/8"]
        serviceAccounts: [{namespace: ns, serviceAccount: sa}]
        destinationPorts: [80]
`);
  const [w] = config.workloads;
  t.like(w, {
    addresses: ['fd00::1', '10.0.0.1'], networkMode: 'HOST_NETWORK', status: 'UNHEALTHY', workloadType: 'cronjob', trustDomain: 'example.org',
    clusterId: 'c1', capacity: 7, nativeTunnel: true, applicationTunnel: { protocol: 'PROXY', port: 15088 }, authorizationPolicies: ['ns/p1'],
    locality: { region: 'r', zone: 'z', subzone: '' }, serviceAccount: '',
  });
  t.deepEqual(w?.waypoint, { destination: { kind: 'address', network: 'net1', ip: '10.9.9.9' }, hboneMtlsPort: 15008 });
  t.deepEqual(w?.networkGateway, { destination: { kind: 'hostname', namespace: 'istio-system', hostname: 'gw.example.com' }, hboneMtlsPort: 15009 });

  const [s] = config.services;
  t.deepEqual(s?.addresses, [
    { network: 'net1', ip: 'fd00::10' },
    { network: 'net1', ip: '10.96.0.0', prefixLength: 12 },
    { network: '', ip: '10.1.1.1' },
  ]);
  t.deepEqual(s?.ports.map((p) => [p.servicePort, p.targetPort]), [[80, 0], [443, 8443]]);
  t.deepEqual(s?.waypoint?.destination, { kind: 'hostname', namespace: 'ns', hostname: 'waypoint.ns.svc.cluster.local' });
  t.deepEqual(s?.weightedWaypoints, [{ destination: { destination: { kind: 'address', network: '', ip: '10.2.2.2' }, hboneMtlsPort: 15008 }, weight: 3 }]);
  t.deepEqual(s?.loadBalancing, { routingPreference: ['NETWORK', 'ZONE'], mode: 'UNSPECIFIED_MODE', healthPolicy: 'ALLOW_ALL' });
  t.like(s, { ipFamilies: 'DUAL', visibility: 'NAMESPACE', canonical: false, ingressUseWaypoint: false });

  const [p] = config.policies;
  t.like(p, { scope: 'WORKLOAD_SELECTOR', action: 'DENY', dryRun: true });
  const m = p?.rules[0]?.clauses[0]?.matches[0];
  t.deepEqual(m?.namespaces, [{ kind: 'exact', value: 'a' }, { kind: 'prefix', value: 'b' }, { kind: 'suffix', value: 'c' }, { kind: 'presence' }]);
  t.deepEqual(m?.sourceIps, [{ ip: '10.0.0.0', prefixLength: 8 }, { ip: '10.1.2.3', prefixLength: 32 }, { ip: 'fd00::', prefixLength: 8 }]);
  t.deepEqual(m?.serviceAccounts, [{ namespace: 'ns', serviceAccount: 'sa' }]);
  t.deepEqual(m?.destinationPorts, [80]);
});

// --- parsing: refusals, each with its field path -----------------------------------------------

const W = 'namespace: ns\n  workloadIps: []';
const S = 'name: s\n  namespace: ns\n  hostname: h\n  vips: ["/10.0.0.1"]\n  ports: {80: 8080}';
const P = 'name: p\n  namespace: ns\n  scope: Namespace\n  action: Allow';

const refusals: ReadonlyArray<readonly [string, string, readonly string[]]> = [
  ['bad workload IP', `workloads:\n- ${W}\n  uid: a\n- namespace: ns\n  uid: b\n  workloadIps: ["10.0.0.300"]\n`,
    ['workloads[1].workloadIps[0]: "10.0.0.300" is not an IP address']],
  ['VIP without a network part', `services:\n- ${S}\n  cidrVips: []\n- name: t\n  namespace: ns\n  hostname: h2\n  vips: ["127.10.0.1"]\n  ports: {}\n`,
    ['services[1].vips[0]: must be <network>/<ip>, got "127.10.0.1"']],
  ['VIP with a bad IP', 'services:\n- name: s\n  namespace: ns\n  hostname: h\n  vips: ["net/300.0.0.1"]\n  ports: {}\n',
    ['services[0].vips[0]: must be <network>/<ip>, got "net/300.0.0.1"']],
  ['unknown top-level field', 'workloads: []\nbogus: 1\n', ['bogus: unknown field']],
  ['unknown workload field', `workloads:\n- ${W}\n  bogus: true\n`, ['workloads[0].bogus: unknown field']],
  ['unknown nested field', `workloads:\n- ${W}\n  locality: {region: r, city: c}\n`, ['workloads[0].locality.city: unknown field']],
  ['unknown gateway field', `services:\n- ${S}\n  waypoint: {destination: "ns/wp", hboneMtlsPort: 15008, port: 1}\n`, ['services[0].waypoint.port: unknown field']],
  ['unknown match field', `policies:\n- ${P}\n  rules: [[[{sourcePorts: [1]}]]]\n`, ['policies[0].rules[0][0][0].sourcePorts: unknown field']],
  ['unknown string match kind', `policies:\n- ${P}\n  rules: [[[{principals: [{Regex: ".*"}]}]]]\n`, ['policies[0].rules[0][0][0].principals[0].Regex: unknown field']],
  ['ingressUseWaypoint is not in the local schema', `services:\n- ${S}\n  ingressUseWaypoint: true\n`, ['services[0].ingressUseWaypoint: unknown field']],
  ['unknown protocol', `workloads:\n- ${W}\n  protocol: UDP\n`, ['workloads[0].protocol: must be one of TCP, HBONE; got "UDP"']],
  ['enums are case-sensitive', `workloads:\n- ${W}\n  protocol: hbone\n`, ['workloads[0].protocol: must be one of TCP, HBONE; got "hbone"']],
  ['unknown workload type', `workloads:\n- ${W}\n  workloadType: StatefulSet\n`, ['workloads[0].workloadType: must be one of deployment, cronjob, pod, job; got "statefulset"']],
  ['unknown scope', `policies:\n- name: p\n  namespace: ns\n  scope: Cluster\n  action: Allow\n  rules: []\n`,
    ['policies[0].scope: must be one of Global, Namespace, WorkloadSelector; got "Cluster"']],
  ['unknown ipFamilies', `services:\n- ${S}\n  ipFamilies: IPv5\n`, ['services[0].ipFamilies: must be one of Dual, IPv4, IPv6; got "IPv5"']],
  ['unknown routing preference', `services:\n- ${S}\n  loadBalancer: {routingPreferences: [Planet]}\n`,
    ['services[0].loadBalancer.routingPreferences[0]: must be one of Region, Zone, Subzone, Node, Cluster, Network; got "Planet"']],
  ['bad policy port', `policies:\n${['a', 'b', 'c'].map((n) => `- ${P.replace('name: p', `name: ${n}`)}\n  rules: ${n === 'c' ? '[[[{}], [{notDestinationPorts: [70000]}]]]' : '[]'}\n`).join('')}`,
    ['policies[2].rules[0][1][0].notDestinationPorts[0]: must be 1-65535, got 70000']],
  ['port zero in a policy', `policies:\n- ${P}\n  rules: [[[{destinationPorts: [0]}]]]\n`, ['policies[0].rules[0][0][0].destinationPorts[0]: must be 1-65535, got 0']],
  ['bad service port', 'services:\n- name: s\n  namespace: ns\n  hostname: h\n  vips: []\n  ports: {0: 80}\n',
    ['services[0].ports["0"]: service port must be 1-65535, got "0"']],
  ['bad target port', 'services:\n- name: s\n  namespace: ns\n  hostname: h\n  vips: []\n  ports: {80: 65536}\n',
    ['services[0].ports["80"]: target port must be 0-65535, got 65536']],
  ['bad workload service key', `workloads:\n- ${W}\n  services: {"example.com": {80: 8080}}\n`, ['workloads[0].services["example.com"]: key must be <namespace>/<hostname>']],
  ['bad gateway destination', `workloads:\n- ${W}\n  waypoint: {destination: "waypoint", hboneMtlsPort: 15008}\n`,
    ['workloads[0].waypoint.destination: must be <network>/<ip> or <namespace>/<hostname>, got "waypoint"']],
  ['CIDR with too long a prefix', `policies:\n- ${P}\n  rules: [[[{sourceIps: ["10.0.0.0/33"]}]]]\n`,
    ['policies[0].rules[0][0][0].sourceIps[0]: "10.0.0.0/33" is not a CIDR (prefix length must be 0-32)']],
  ['CIDR with a bad address', `policies:\n- ${P}\n  rules: [[[{notDestinationIps: ["10.0.0/8"]}]]]\n`,
    ['policies[0].rules[0][0][0].notDestinationIps[0]: "10.0.0/8" is not a CIDR']],
  ['CIDR VIP', `services:\n- ${S}\n  cidrVips: [{network: n, cidr: "fd00::/129"}]\n`, ['services[0].cidrVips[0].cidr: "fd00::/129" is not a CIDR (prefix length must be 0-128)']],
  ['missing required fields', 'workloads:\n- uid: a\nservices:\n- name: s\n  namespace: ns\n  hostname: h\n',
    ['workloads[0].namespace: is required', 'workloads[0].workloadIps: is required', 'services[0].vips: is required', 'services[0].ports: is required']],
  ['wrong shapes', 'workloads:\n- namespace: ns\n  workloadIps: "10.0.0.1"\n  capacity: many\n  name: 42\n',
    ['workloads[0].workloadIps: must be a list, got "10.0.0.1"', 'workloads[0].name: must be a string, got the number 42', 'workloads[0].capacity: must be 0-4294967295, got "many"']],
  ['a list where a mapping belongs', 'workloads:\n- [1]\n', ['workloads[0]: must be a mapping, got a list']],
  ['duplicate workload uid', `workloads:\n- ${W}\n  uid: x\n- ${W}\n  uid: x\n`, ['workloads[1].uid: duplicate uid "x" (first at workloads[0])']],
  ['duplicate policy', `policies:\n- ${P}\n  rules: []\n- ${P}\n  rules: []\n`, ['policies[1].name: duplicate policy "ns/p" (first at policies[0])']],
  ['duplicate YAML key', 'workloads:\n- namespace: a\n  namespace: b\n  workloadIps: []\n', ['line 3, column 3: Map keys must be unique']],
  ['top level is a list (the old format)', '- name: local\n  namespace: default\n', ['<root>: must be a mapping with workloads, services, policies; got a list']],
  ['top level is a scalar', 'hello\n', ['<root>: must be a mapping with workloads, services, policies; got "hello"']],
];

for (const [name, text, expected] of refusals) {
  test(`refused: ${name}`, (t) => {
    t.deepEqual(errorsOf(text), expected);
  });
}

test('a YAML syntax error comes back as a result with its line, not a throw', (t) => {
  const errors = errorsOf('workloads:\n- namespace: "unterminated\n  workloadIps: []\n');
  t.true(errors.length >= 1);
  t.regex(errors[0] ?? '', /^line \d+, column \d+: /);
  const flow = errorsOf('services: [1, 2\n');
  t.regex(flow[0] ?? '', /^line 2, column 1: /);
});

test('several problems are reported together, in file order', (t) => {
  const errors = errorsOf(`
workloads:
- namespace: ns
  workloadIps: ["1.2.3.4", "nope"]
  protocol: QUIC
services:
- name: s
  namespace: ns
  hostname: h
  vips: ["10.0.0.1"]
  ports: {80: 8080}
  colour: blue
policies:
- name: p
  namespace: ns
  scope: Global
  action: Maybe
  rules: []
`);
  t.deepEqual(errors, [
    'workloads[0].workloadIps[1]: "nope" is not an IP address',
    'workloads[0].protocol: must be one of TCP, HBONE; got "QUIC"',
    'services[0].colour: unknown field',
    'services[0].vips[0]: must be <network>/<ip>, got "10.0.0.1"',
    'policies[0].action: must be one of Allow, Deny; got "Maybe"',
  ]);
});

test('service endpoints are accepted and ignored (they are derived from workloads)', (t) => {
  const config = parsed(`services:\n- ${S}\n  endpoints:\n    uid1: {workloadUid: uid1, port: {80: 8080}, status: Healthy}\n`);
  t.is(config.services.length, 1);
});

// --- the source: loading into the store and reloading ------------------------------------------

test.serial('inline LOCAL_XDS fills the store: lookups by address, VIP, endpoints and policies', async (t) => {
  const store = new WorkloadStore();
  const source = await startLocalSource({ store, inline: LOCALHOST_YAML });
  t.teardown(() => source.close());
  const local = store.workloadByAddress('', '127.0.0.1');
  t.is(local?.name, 'local');
  t.is(store.workloadByAddress('', '127.0.0.2')?.tunnelProtocol, 'NONE');
  t.is(store.serviceByVip('remote', '127.10.0.2')?.hostname, 'example2.com');
  t.is(store.serviceByVip('', '127.10.0.1')?.name, 'local');
  t.deepEqual(store.endpoints('default', 'example.com').map((e) => e.workload.name).sort(), ['local', 'local-tcp']);
  t.truthy(local);
  if (!local) return;
  t.true(store.policiesFor(local).some((p) => `${p.namespace}/${p.name}` === 'default/deny-9999'));
  t.deepEqual(store.counts(), { workloads: 2, services: 2, policies: 1 });
  t.false(source.watching, 'inline config has nothing to watch');
  t.is(source.reloads, 0);
});

test.serial('a changed file replaces the whole state', async (t) => {
  const dir = await tempDir(t, 'ambient-local-config-');
  const path = join(dir, 'local.yaml');
  await writeFile(path, LOCALHOST_YAML);
  const store = new WorkloadStore();
  const log = captureLog();
  const source = await startLocalSource({ store, path, watch: true, logger: log.logger, debounceMs: 10 });
  t.teardown(() => source.close());
  t.is(store.counts().workloads, 2);

  const reloaded = once(source, 'reload');
  await replaceFile(path, `workloads:\n- uid: only\n  name: only\n  namespace: other\n  workloadIps: ["10.1.1.1"]\n`);
  const [config] = await reloaded;
  t.is(config.workloads.length, 1);
  t.is(source.reloads, 1);
  t.deepEqual(store.counts(), { workloads: 1, services: 0, policies: 0 });
  t.is(store.workloadByAddress('', '10.1.1.1')?.name, 'only');
  t.is(store.workloadByAddress('', '127.0.0.1'), undefined, 'the old workloads are gone');
  t.is(store.serviceByVip('remote', '127.10.0.2'), undefined, 'the old services are gone');

  // An in-place rewrite (not a rename) is seen too. The watcher may catch the file truncated but
  // not yet written (an empty file is a valid, empty config), so wait for the reload of the content.
  const again = new Promise<void>((resolve) => {
    const onReload = (c: LocalConfig) => {
      if (c.workloads.length !== 2) return;
      source.off('reload', onReload);
      resolve();
    };
    source.on('reload', onReload);
  });
  await writeFile(path, LOCALHOST_YAML);
  await again;
  t.true(source.reloads >= 2);
  t.deepEqual(store.counts(), { workloads: 2, services: 2, policies: 1 });
});

test.serial('an invalid rewrite keeps the previous state and reports every error', async (t) => {
  const dir = await tempDir(t, 'ambient-local-config-');
  const path = join(dir, 'local.yaml');
  await writeFile(path, LOCALHOST_YAML);
  const store = new WorkloadStore();
  const log = captureLog();
  const source = await startLocalSource({ store, path, watch: true, logger: log.logger, debounceMs: 10 });
  t.teardown(() => source.close());

  const rejected = once(source, 'rejected');
  const mark = log.mark();
  await replaceFile(path, 'workloads:\n- namespace: ns\n  workloadIps: ["10.0.0.300"]\n  bogus: 1\n');
  const [errors] = await rejected;
  const expected = ['workloads[0].bogus: unknown field', 'workloads[0].workloadIps[0]: "10.0.0.300" is not an IP address'];
  t.deepEqual(errors, expected);
  t.deepEqual(source.lastErrors, expected);
  t.is(source.rejections, 1);
  t.is(source.reloads, 0);
  t.deepEqual(store.counts(), { workloads: 2, services: 2, policies: 1 }, 'the last good state stays');
  t.is(store.workloadByAddress('', '127.0.0.1')?.name, 'local');
  t.is(source.config.workloads.length, 2);
  const logged = log.records.slice(mark).filter((r) => r.code === ErrorCode.CONFIG_INVALID);
  t.deepEqual(logged.map((r) => r.error), expected, 'one CONFIG_INVALID line per error');

  // A fix afterwards applies and clears the errors.
  const reloaded = once(source, 'reload');
  await replaceFile(path, `workloads:\n- namespace: ns\n  workloadIps: ["10.0.0.3"]\n`);
  await reloaded;
  t.deepEqual(source.lastErrors, []);
  t.deepEqual(store.counts(), { workloads: 1, services: 0, policies: 0 });
});

test.serial('an invalid initial file rejects the start with CONFIG_INVALID and leaves no watcher', async (t) => {
  const dir = await tempDir(t, 'ambient-local-config-');
  const path = join(dir, 'local.yaml');
  await writeFile(path, 'workloads:\n- namespace: ns\n  workloadIps: ["1.1.1"]\nextra: 1\n');
  const baseline = fsWatchers();
  const store = new WorkloadStore();
  const err = await t.throwsAsync(startLocalSource({ store, path, watch: true }), { instanceOf: LocalConfigError });
  t.is(err?.code, ErrorCode.CONFIG_INVALID);
  t.deepEqual(err?.errors, ['extra: unknown field', 'workloads[0].workloadIps[0]: "1.1.1" is not an IP address']);
  t.regex(err?.message ?? '', /workloads\[0\]\.workloadIps\[0\]: "1\.1\.1" is not an IP address/);
  t.deepEqual(store.counts(), { workloads: 0, services: 0, policies: 0 }, 'nothing was applied');
  t.is(await settleWatchers(baseline), baseline);
});

test.serial('a missing file, or both sources at once, is a CONFIG_INVALID error', async (t) => {
  const dir = await tempDir(t, 'ambient-local-config-');
  const store = new WorkloadStore();
  await t.throwsAsync(startLocalSource({ store, path: join(dir, 'absent.yaml') }), { code: ErrorCode.CONFIG_INVALID, message: /cannot read local config/ });
  await t.throwsAsync(startLocalSource({ store, path: join(dir, 'a.yaml'), inline: '' }), { code: ErrorCode.CONFIG_INVALID, message: /exactly one/ });
  await t.throwsAsync(startLocalSource({ store }), { code: ErrorCode.CONFIG_INVALID });
});

test.serial('close() stops watching and is idempotent', async (t) => {
  const dir = await tempDir(t, 'ambient-local-config-');
  const path = join(dir, 'local.yaml');
  await writeFile(path, LOCALHOST_YAML);
  const baseline = fsWatchers();
  const store = new WorkloadStore();
  const source = await startLocalSource({ store, path, watch: true, debounceMs: 10 });
  t.true(source.watching);
  t.is(fsWatchers(), baseline + 1);
  let events = 0;
  source.on('reload', () => events++);
  source.on('rejected', () => events++);
  await Promise.all([source.close(), source.close()]);
  t.false(source.watching);
  t.is(await settleWatchers(baseline), baseline, 'the fs watcher is released');
  await writeFile(path, 'workloads: []\n');
  t.is(events, 0);
  t.deepEqual(store.counts(), { workloads: 2, services: 2, policies: 1 });
});
