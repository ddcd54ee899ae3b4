import test from 'ava';
import { parse as parseYamlText } from 'yaml';
import { boolFlag, durationMs, parseArgs, stringFlag, type FlagSpec } from '../../src/cli/argv.ts';
import { formatTable } from '../../src/cli/tabwriter.ts';
import { parseConfigDump, renderZtunnelConfig, serialHex, ztunnelConfigKind, type ZtunnelDump } from '../../src/cli/ztunnel-config.ts';

/** Pure tests: istioctl's tables from both dump shapes (Istio's ztunnel and ours), -o json|yaml, flags. */

const NOW = Date.parse('2026-06-01T00:00:00Z');

/** A dump in Istio's ztunnel shape (workloadIps, vips "network/ip", endpoints, Pascal-case enums). */
const ISTIO_DUMP = {
  workloads: [
    { uid: 'Kubernetes//Pod/bookinfo/reviews-v1-1', name: 'reviews-v1-1', namespace: 'bookinfo', workloadIps: ['10.244.1.37'], protocol: 'HBONE', node: 'worker', status: 'Healthy', waypoint: { destination: 'bookinfo/waypoint.bookinfo.svc.cluster.local' } },
    { uid: 'Kubernetes//Pod/bookinfo/details-v1-1', name: 'details-v1-1', namespace: 'bookinfo', workloadIps: ['10.244.2.51'], protocol: 'HBONE', node: 'worker2', status: 'Healthy', waypoint: { destination: '/10.96.65.117' } },
    { uid: 'Kubernetes//Pod/bookinfo/waypoint-1', name: 'waypoint-1', namespace: 'bookinfo', workloadIps: ['10.244.2.52'], protocol: 'TCP', node: 'worker2', status: 'Healthy' },
    { uid: 'Kubernetes//Pod/bookinfo/reviews-v2-1', name: 'reviews-v2-1', namespace: 'bookinfo', workloadIps: ['10.244.1.38'], protocol: 'HBONE', node: 'worker', status: 'Unhealthy' },
    { uid: 'Kubernetes/networking.istio.io/ServiceEntry/default/ext', name: 'ext', namespace: 'default', workloadIps: [], hostname: 'ext.example.com', protocol: 'TCP', node: '', status: 'Healthy', waypoint: { destination: 'other/gone.other.svc' } },
  ],
  services: {
    'bookinfo/reviews.bookinfo.svc.cluster.local': {
      name: 'reviews', namespace: 'bookinfo', hostname: 'reviews.bookinfo.svc.cluster.local', vips: ['/10.96.74.131'],
      endpoints: { a: { workloadUid: 'Kubernetes//Pod/bookinfo/reviews-v1-1' }, b: { workloadUid: 'Kubernetes//Pod/bookinfo/reviews-v2-1' } },
      waypoint: { destination: 'bookinfo/waypoint.bookinfo.svc.cluster.local' },
    },
    'bookinfo/waypoint.bookinfo.svc.cluster.local': {
      name: 'waypoint', namespace: 'bookinfo', hostname: 'waypoint.bookinfo.svc.cluster.local', vips: ['/10.96.65.117'],
      endpoints: { c: { workloadUid: 'Kubernetes//Pod/bookinfo/waypoint-1' } },
    },
    'default/kubernetes.default.svc.cluster.local': { name: 'kubernetes', namespace: 'default', hostname: 'kubernetes.default.svc.cluster.local', vips: ['/10.96.0.1', 'net2/fd00::1'], endpoints: {} },
  },
  policies: [
    { name: 'allow-waypoint', namespace: 'default', scope: 'WorkloadSelector', action: 'Allow', rules: [] },
    { name: 'allow-nothing', namespace: 'default', scope: 'Namespace', action: 'Allow', rules: [] },
    { name: 'deny-all', namespace: 'istio-system', scope: 'Global', action: 'Deny', rules: [] },
  ],
  certificates: [
    {
      identity: 'spiffe://cluster.local/ns/bookinfo/sa/reviews', state: 'Available',
      certChain: [
        { pem: 'x', serialNumber: '255', validFrom: '2026-05-31T00:00:00Z', expirationTime: '2026-06-02T00:00:00Z' },
        { pem: 'x', serialNumber: '4096', validFrom: '2026-01-01T00:00:00Z', expirationTime: '2027-01-01T00:00:00Z' },
      ],
      rootCerts: [{ pem: 'x', serialNumber: '1', validFrom: '2020-01-01T00:00:00Z', expirationTime: '2026-01-01T00:00:00Z' }],
    },
    { identity: 'spiffe://cluster.local/ns/istio-system/sa/ztunnel', state: 'Initializing', certChain: [], rootCerts: [] },
    { identity: 'spiffe://cluster.local/ns/a/sa/b', state: 'Unavailable: the CA refused', certChain: [], rootCerts: [] },
  ],
  config: { adminPort: 15000 },
};

/** The same kind of mesh in our ztunnel's shape (the store's domain objects through toJson). */
const OUR_DUMP = {
  workloads: [
    { uid: 'c1//v1/Pod/default/server', name: 'server', namespace: 'default', addresses: ['127.0.0.1'], hostname: '', node: 'node-a', tunnelProtocol: 'HBONE', status: 'HEALTHY', services: { 'default/echo.default.svc.cluster.local': [{ servicePort: 80, targetPort: 8080, appProtocol: 'UNKNOWN' }] }, waypoint: { destination: { kind: 'hostname', namespace: 'default', hostname: 'wp.default.svc.cluster.local' }, hboneMtlsPort: 15008 } },
    { uid: 'c1//v1/Pod/default/client', name: 'client', namespace: 'default', addresses: ['127.0.0.2'], hostname: '', node: 'node-b', tunnelProtocol: 'NONE', status: 'UNHEALTHY', services: { 'default/echo.default.svc.cluster.local': [] } },
  ],
  services: [
    { name: 'echo', namespace: 'default', hostname: 'echo.default.svc.cluster.local', addresses: [{ network: '', ip: '10.96.0.10' }], ports: [], waypoint: { destination: { kind: 'address', network: '', ip: '10.96.0.20' }, hboneMtlsPort: 15008 } },
    { name: 'wp', namespace: 'default', hostname: 'wp.default.svc.cluster.local', addresses: [{ network: '', ip: '10.96.0.20' }], ports: [] },
  ],
  policies: [{ name: 'deny-client', namespace: 'default', scope: 'NAMESPACE', action: 'DENY', rules: [], dryRun: false }],
  certificates: [],
};

function dumpOf(value: unknown): ZtunnelDump {
  const parsed = parseConfigDump(JSON.stringify(value));
  if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
  return parsed.value;
}

test('formatTable: columns as wide as the widest cell plus the padding; the last cell is not padded', (t) => {
  t.is(formatTable([['A', 'BB', 'C'], ['long', 'x', 'last cell']]), 'A    BB C\nlong x  last cell\n');
  t.is(formatTable([['A', 'B'], ['é', 'x']], 3), 'A   B\né   x\n', 'widths count code points');
  t.is(formatTable([['ONLY']]), 'ONLY\n');
});

test('workloads: istioctl columns, sorted by namespace.name then node; waypoint by hostname or VIP; None / NA; hostname when no IP', (t) => {
  t.is(
    renderZtunnelConfig('workloads', dumpOf(ISTIO_DUMP)),
    [
      'NAMESPACE POD NAME     ADDRESS         NODE    WAYPOINT PROTOCOL',
      'bookinfo  details-v1-1 10.244.2.51     worker2 waypoint HBONE',
      'bookinfo  reviews-v1-1 10.244.1.37     worker  waypoint HBONE',
      'bookinfo  reviews-v2-1 10.244.1.38     worker  None     HBONE',
      'bookinfo  waypoint-1   10.244.2.52     worker2 None     TCP',
      'default   ext          ext.example.com         NA       TCP',
      '',
    ].join('\n'),
  );
});

test('workloads: --namespace, --address and --node filters (case-insensitive), alone and together', (t) => {
  const dump = dumpOf(ISTIO_DUMP);
  const names = (filter: object) =>
    renderZtunnelConfig('workloads', dump, { filter })
      .trim()
      .split('\n')
      .slice(1)
      .map((line) => line.split(/\s+/)[1]);
  t.deepEqual(names({ namespace: 'DEFAULT' }), ['ext']);
  t.deepEqual(names({ address: '10.244.1.38' }), ['reviews-v2-1']);
  t.deepEqual(names({ node: 'worker2' }), ['details-v1-1', 'waypoint-1']);
  t.deepEqual(names({ namespace: 'bookinfo', node: 'worker' }), ['reviews-v1-1', 'reviews-v2-1']);
  t.deepEqual(names({ namespace: 'nope' }), []);
});

test('services: VIPs without their network, the waypoint by name, healthy/all endpoints', (t) => {
  t.is(
    renderZtunnelConfig('services', dumpOf(ISTIO_DUMP)),
    [
      'NAMESPACE SERVICE NAME SERVICE VIP       WAYPOINT ENDPOINTS',
      'bookinfo  reviews      10.96.74.131      waypoint 1/2',
      'bookinfo  waypoint     10.96.65.117      None     1/1',
      'default   kubernetes   10.96.0.1,fd00::1 None     0/0',
      '',
    ].join('\n'),
  );
  t.is(renderZtunnelConfig('services', dumpOf(ISTIO_DUMP), { filter: { namespace: 'default' } }).trim().split('\n').length, 2);
});

test('policies: Pascal-case action and scope, sorted by namespace and name; namespace filter', (t) => {
  t.is(
    renderZtunnelConfig('policies', dumpOf(ISTIO_DUMP)),
    ['NAMESPACE    POLICY NAME    ACTION SCOPE', 'default      allow-nothing  Allow  Namespace', 'default      allow-waypoint Allow  WorkloadSelector', 'istio-system deny-all       Deny   Global', ''].join('\n'),
  );
  t.is(renderZtunnelConfig('policies', dumpOf(ISTIO_DUMP), { filter: { namespace: 'istio-system' } }), 'NAMESPACE    POLICY NAME ACTION SCOPE\nistio-system deny-all    Deny   Global\n');
});

test('certificates: Leaf, Intermediate and Root rows with hex serials and validity at "now"; NA rows without a chain; padding 5', (t) => {
  const id = 'spiffe://cluster.local/ns/bookinfo/sa/reviews';
  const zt = 'spiffe://cluster.local/ns/istio-system/sa/ztunnel';
  const ab = 'spiffe://cluster.local/ns/a/sa/b';
  const w = zt.length + 5;
  const row = (cells: string[]) => cells.map((c, i) => (i < cells.length - 1 ? c.padEnd([w, 'Intermediate'.length + 5, 'Initializing'.length + 5, 'VALID CERT'.length + 5, 'SERIAL NUMBER'.length + 5, '2026-06-02T00:00:00Z'.length + 5][i] as number) : c)).join('');
  t.is(
    renderZtunnelConfig('certificates', dumpOf(ISTIO_DUMP), { now: NOW }),
    [
      row(['CERTIFICATE NAME', 'TYPE', 'STATUS', 'VALID CERT', 'SERIAL NUMBER', 'NOT AFTER', 'NOT BEFORE']),
      row([id, 'Leaf', 'Available', 'true', 'ff', '2026-06-02T00:00:00Z', '2026-05-31T00:00:00Z']),
      row([id, 'Intermediate', 'Available', 'true', '1000', '2027-01-01T00:00:00Z', '2026-01-01T00:00:00Z']),
      row([id, 'Root', 'Available', 'false', '1', '2026-01-01T00:00:00Z', '2020-01-01T00:00:00Z']),
      row([zt, 'NA', 'Initializing', 'false', 'NA', 'NA', 'NA']),
      row([ab, 'NA', 'Unavailable', 'false', 'NA', 'NA', 'NA']),
      '',
    ].join('\n'),
  );
  // The widest "VALID CERT" cell is the header, so that column is 15 wide.
  t.regex(renderZtunnelConfig('certificates', dumpOf(ISTIO_DUMP), { now: NOW }).split('\n')[1] as string, /Available {8}true {11}ff {16}2026/);
});

test('certificates: a legacy chain (root last, no rootCerts) labels its last entry Root', (t) => {
  const dump = dumpOf({ certificates: [{ identity: 'x', state: 'Available', certChain: [{ serialNumber: '10', validFrom: '', expirationTime: '' }, { serialNumber: '11', validFrom: '', expirationTime: '' }] }] });
  const types = renderZtunnelConfig('certificates', dump, { now: NOW }).trim().split('\n').slice(1).map((l) => l.split(/\s+/)[1]);
  t.deepEqual(types, ['Leaf', 'Root']);
});

test('serialHex: decimal (ztunnel) to lower-case hex, hex passed through lower-cased', (t) => {
  t.is(serialHex('255'), 'ff');
  t.is(serialHex('304852670837283720938472093847209384720'), BigInt('304852670837283720938472093847209384720').toString(16));
  t.is(serialHex('5DEECE66D'), '5deece66d');
  t.is(serialHex(''), 'NA');
});

test('our dump shape: addresses, tunnelProtocol, HEALTHY, structured waypoints, endpoints through each workload\'s services, upper-case policy enums', (t) => {
  const dump = dumpOf(OUR_DUMP);
  t.is(
    renderZtunnelConfig('workloads', dump),
    ['NAMESPACE POD NAME ADDRESS   NODE   WAYPOINT PROTOCOL', 'default   client   127.0.0.2 node-b None     TCP', 'default   server   127.0.0.1 node-a wp       HBONE', ''].join('\n'),
  );
  t.is(
    renderZtunnelConfig('services', dump),
    ['NAMESPACE SERVICE NAME SERVICE VIP WAYPOINT ENDPOINTS', 'default   echo         10.96.0.10  wp       1/2', 'default   wp           10.96.0.20  None     0/0', ''].join('\n'),
  );
  t.is(renderZtunnelConfig('policies', dump), 'NAMESPACE POLICY NAME ACTION SCOPE\ndefault   deny-client Deny   Namespace\n');
});

test('all: the four tables, each after an empty line', (t) => {
  const dump = dumpOf(OUR_DUMP);
  const all = renderZtunnelConfig('all', dump, { now: NOW });
  const expected = ['workloads', 'services', 'policies', 'certificates'].map((k) => `\n${renderZtunnelConfig(k as 'workloads', dump, { now: NOW })}`).join('');
  t.is(all, expected);
  t.true(all.includes('\nCERTIFICATE NAME     TYPE     STATUS     VALID CERT'));
});

test('-o json: the dump\'s own entries, filtered and sorted like the table, indented by 4; -o yaml sorts keys', (t) => {
  const dump = dumpOf(ISTIO_DUMP);
  const json = renderZtunnelConfig('policies', dump, { output: 'json', filter: { namespace: 'default' } });
  t.true(json.startsWith('[\n    {\n        "name": "allow-nothing"'));
  t.deepEqual(JSON.parse(json), [ISTIO_DUMP.policies[1], ISTIO_DUMP.policies[0]]);
  const workloads = JSON.parse(renderZtunnelConfig('workloads', dump, { output: 'json', filter: { node: 'worker' } })) as Array<{ name: string }>;
  t.deepEqual(workloads.map((w) => w.name), ['reviews-v1-1', 'reviews-v2-1']);
  const yaml = renderZtunnelConfig('services', dump, { output: 'yaml', filter: { namespace: 'bookinfo' } });
  t.deepEqual(parseYamlText(yaml), Object.values(ISTIO_DUMP.services).slice(0, 2));
  t.true(yaml.startsWith('- endpoints:') && yaml.indexOf('\n  hostname:') < yaml.indexOf('\n  name:') && yaml.indexOf('\n  name:') < yaml.indexOf('\n  vips:'), 'keys sorted');
  t.deepEqual(JSON.parse(renderZtunnelConfig('all', dump, { output: 'json' })), ISTIO_DUMP);
  t.deepEqual(JSON.parse(renderZtunnelConfig('certificates', dump, { output: 'json' })), ISTIO_DUMP.certificates);
});

test('parseConfigDump: not JSON, not an object, or entries of the wrong type are refused with the field named', (t) => {
  const bad = (text: string) => {
    const r = parseConfigDump(text);
    return r.ok ? [] : r.errors;
  };
  t.regex(bad('{')[0] ?? '', /not JSON/);
  t.deepEqual(bad('[]'), ['the config dump is not a JSON object']);
  t.deepEqual(bad('{"workloads": 3}'), ['config dump: workloads: expected a list or a map, got number']);
  t.deepEqual(bad('{"services": [1, {}]}'), ['config dump: services[0]: expected an object']);
  const empty = parseConfigDump('{}');
  t.true(empty.ok);
  if (empty.ok) t.is(renderZtunnelConfig('workloads', empty.value), 'NAMESPACE POD NAME ADDRESS NODE WAYPOINT PROTOCOL\n');
});

test('ztunnelConfigKind: istioctl\'s names and aliases', (t) => {
  t.is(ztunnelConfigKind('w'), 'workloads');
  t.is(ztunnelConfigKind('svc'), 'services');
  t.is(ztunnelConfigKind('pol'), 'policies');
  t.is(ztunnelConfigKind('certs'), 'certificates');
  t.is(ztunnelConfigKind('all'), 'all');
  t.is(ztunnelConfigKind('constructor'), undefined);
});

const SPECS: FlagSpec[] = [
  { name: 'namespace', short: 'n', kind: 'string', help: '' },
  { name: 'wait', short: 'w', kind: 'boolean', help: '' },
  { name: 'all-namespaces', short: 'A', kind: 'boolean', help: '' },
  { name: 'for', kind: 'string', help: '' },
];

test('parseArgs: pflag forms for strings and booleans, grouped shorthands, positionals and --', (t) => {
  const r = parseArgs(['apply', '-n', 'prod', '--for=workload', '-wA', 'x', '--', '--not-a-flag'], SPECS);
  t.true(r.ok);
  if (!r.ok) return;
  t.deepEqual(r.value.flags, { namespace: 'prod', for: 'workload', wait: true, 'all-namespaces': true });
  t.deepEqual(r.value.positionals, ['apply', 'x', '--not-a-flag']);
  const b = parseArgs(['-nprod', '--wait=false', '-n=other'], SPECS);
  t.true(b.ok);
  if (b.ok) {
    t.is(stringFlag(b.value, 'namespace'), 'other');
    t.false(boolFlag(b.value, 'wait', true));
  }
  const bad = parseArgs(['--nope', '-x', '--wait=maybe', '--for'], SPECS);
  t.false(bad.ok);
  if (!bad.ok) t.deepEqual(bad.errors, ['--nope: unknown flag', '-x: unknown shorthand flag', '--wait: "maybe" is not a boolean', '--for: needs a value']);
});

test('durationMs: Go durations and bare seconds', (t) => {
  t.is(durationMs('90s'), 90_000);
  t.is(durationMs('1m30s'), 90_000);
  t.is(durationMs('500ms'), 500);
  t.is(durationMs('5'), 5000);
  t.is(durationMs('soon'), undefined);
});
