import test from 'ava';
import { parseZtunnelConfig, ZTUNNEL_FLAGS, type LogLevel, type ZtunnelConfig } from '../../src/ztunnel/config.ts';

type Env = Record<string, string | undefined>;

function value(env: Env, flags: Record<string, string> = {}): ZtunnelConfig {
  const result = parseZtunnelConfig(flags, env);
  if (!result.ok) throw new Error(`unexpected errors: ${result.errors.join('; ')}`);
  return result.value;
}

function errors(env: Env, flags: Record<string, string> = {}): readonly string[] {
  const result = parseZtunnelConfig(flags, env);
  return result.ok ? [] : result.errors;
}

const DEDICATED = { PROXY_MODE: 'dedicated', PROXY_WORKLOAD_INFO: 'default/local/sa' };

test('defaults: shared mode with ztunnel ports, mark 1337, 5 s deadline, info logs', (t) => {
  const config = value({});
  t.like(config, {
    proxyMode: 'shared',
    workloadInfo: undefined,
    fakeCa: false,
    fakeCaRootPath: undefined,
    fakeCaDir: undefined,
    trustDomain: 'cluster.local',
    nodeName: '',
    network: '',
    clusterDomain: 'cluster.local',
    packetMark: 1337,
    portReuse: true,
    inpodUds: '/var/run/ztunnel/ztunnel.sock',
    terminationDeadlineMs: 5000,
    istioVersion: undefined,
    logLevel: 'info',
    adminPort: 15000,
    statsPort: 15020,
    readinessPort: 15021,
    proxyPorts: { outbound: 15001, inbound: 15008, inboundPlaintext: 15006 },
  });
  t.is(config.workloadApi.clusterId, 'Kubernetes');
  t.true(Object.isFrozen(config) && Object.isFrozen(config.proxyPorts));
});

test('plain variables are read; an empty value counts as unset', (t) => {
  t.like(value({ FAKE_CA: 'true', FAKE_CA_ROOT_PATH: '/tmp/root.pem', FAKE_CA_DIR: '/tmp/ca', TRUST_DOMAIN: 'td', NODE_NAME: 'n1', NETWORK: 'net', CLUSTER_DOMAIN: 'c.d', INPOD_PORT_REUSE: 'false', INPOD_UDS: '/tmp/zds.sock', ISTIO_META_ISTIO_VERSION: '1.27.0' }), {
    fakeCa: true, fakeCaRootPath: '/tmp/root.pem', fakeCaDir: '/tmp/ca', trustDomain: 'td', nodeName: 'n1', network: 'net', clusterDomain: 'c.d', portReuse: false, inpodUds: '/tmp/zds.sock', istioVersion: '1.27.0',
  });
  t.like(value({ ISTIO_META_ISTIO_VERSION: '', TRUST_DOMAIN: '', INPOD_UDS: '' }), { istioVersion: undefined, trustDomain: 'cluster.local', inpodUds: '/var/run/ztunnel/ztunnel.sock' });
});

test('workload API settings come from parseWorkloadApiEnv and its errors are merged', (t) => {
  t.is(value({ XDS_ADDRESS: '' }).workloadApi.xdsAddress, undefined);
  t.deepEqual(errors({ XDS_ON_DEMAND: 'maybe', PROXY_MODE: 'x' }).map((e) => e.split(':')[0]), ['PROXY_MODE', 'XDS_ON_DEMAND']);
});

test('dedicated mode requires workload info; shared mode parses it when given', (t) => {
  t.like(value(DEDICATED), { proxyMode: 'dedicated', workloadInfo: { namespace: 'default', name: 'local', serviceAccount: 'sa' } });
  const missing = errors({ PROXY_MODE: 'dedicated' });
  t.is(missing.length, 1);
  t.regex(missing[0] as string, /^PROXY_WORKLOAD_INFO: required/);
  t.deepEqual(value({ PROXY_WORKLOAD_INFO: 'ns/n/s' }).workloadInfo, { namespace: 'ns', name: 'n', serviceAccount: 's' });
});

const badValues: [string, Env, Record<string, string>, RegExp][] = [
  ['PROXY_MODE', { PROXY_MODE: 'sidecar' }, {}, /^PROXY_MODE: "sidecar"/],
  ['PROXY_WORKLOAD_INFO, two parts', { PROXY_WORKLOAD_INFO: 'ns/name' }, {}, /^PROXY_WORKLOAD_INFO: "ns\/name"/],
  ['PROXY_WORKLOAD_INFO, four parts', { PROXY_WORKLOAD_INFO: 'a/b/c/d' }, {}, /^PROXY_WORKLOAD_INFO: /],
  ['PROXY_WORKLOAD_INFO, empty part', { PROXY_WORKLOAD_INFO: 'a//c' }, {}, /^PROXY_WORKLOAD_INFO: /],
  ['FAKE_CA', { FAKE_CA: 'yes' }, {}, /^FAKE_CA: "yes" must be true or false/],
  ['INPOD_PORT_REUSE', { INPOD_PORT_REUSE: '1' }, {}, /^INPOD_PORT_REUSE: "1"/],
  ['PACKET_MARK not an integer', { PACKET_MARK: 'abc' }, {}, /^PACKET_MARK: "abc" is not an integer$/],
  ['PACKET_MARK negative', { PACKET_MARK: '-1' }, {}, /^PACKET_MARK: "-1" is not an integer$/],
  ['PACKET_MARK zero', { PACKET_MARK: '0' }, {}, /^PACKET_MARK: "0" must be between/],
  ['PACKET_MARK too big', { PACKET_MARK: '0x100000000' }, {}, /^PACKET_MARK: "0x100000000" must be between/],
  ['CONNECTION_TERMINATION_DEADLINE', { CONNECTION_TERMINATION_DEADLINE: '5' }, {}, /^CONNECTION_TERMINATION_DEADLINE: "5" is not a duration/],
  ['TERMINATION_GRACE_PERIOD_SECONDS', { TERMINATION_GRACE_PERIOD_SECONDS: '30s' }, {}, /^TERMINATION_GRACE_PERIOD_SECONDS: "30s"/],
  ['RUST_LOG', { RUST_LOG: 'verbose' }, {}, /^RUST_LOG: "verbose" is not a level/],
  ['--admin-port too big', {}, { 'admin-port': '65536' }, /^--admin-port: "65536" is not a port/],
  ['--stats-port not a number', {}, { 'stats-port': 'http' }, /^--stats-port: "http"/],
  ['--inbound-plaintext-port negative', {}, { 'inbound-plaintext-port': '-1' }, /^--inbound-plaintext-port: "-1"/],
  ['--proxy-mode', {}, { 'proxy-mode': 'both' }, /^--proxy-mode: "both"/],
  ['--workload-info', {}, { 'workload-info': 'x' }, /^--workload-info: "x"/],
  ['unknown flag', {}, { foo: '1' }, /^--foo: unknown flag$/],
];

for (const [name, env, flags, expected] of badValues) {
  test(`bad value is reported with its name: ${name}`, (t) => {
    const found = errors(env, flags);
    t.is(found.length, 1, found.join('; '));
    t.regex(found[0] as string, expected);
  });
}

test('all problems are reported at once', (t) => {
  const found = errors({ PROXY_MODE: 'dedicated', PACKET_MARK: 'abc', FAKE_CA: 'no', RUST_LOG: 'loud', SECRET_TTL: 'forever' }, { 'readiness-port': '99999', bar: 'x' });
  for (const name of ['--bar', 'PROXY_WORKLOAD_INFO', 'PACKET_MARK', 'FAKE_CA', 'RUST_LOG', 'SECRET_TTL', '--readiness-port']) {
    t.true(found.some((e) => e.startsWith(`${name}:`)), `${name} missing from ${found.join('; ')}`);
  }
  t.is(found.length, 7);
});

test('flags win over environment variables', (t) => {
  const config = value({ PROXY_MODE: 'shared', PROXY_WORKLOAD_INFO: 'env/env/env' }, { 'proxy-mode': 'dedicated', 'workload-info': 'flag/flag/flag' });
  t.is(config.proxyMode, 'dedicated');
  t.deepEqual(config.workloadInfo, { namespace: 'flag', name: 'flag', serviceAccount: 'flag' });
  t.deepEqual(errors({ PROXY_MODE: 'bogus' }, { 'proxy-mode': 'shared' }), []);
});

test('port flags, 0 allowed for ephemeral ports', (t) => {
  t.like(value({}, { 'admin-port': '0', 'stats-port': '1', 'readiness-port': '65535', 'outbound-port': '0', 'inbound-port': '18008', 'inbound-plaintext-port': '18006' }), {
    adminPort: 0, statsPort: 1, readinessPort: 65535, proxyPorts: { outbound: 0, inbound: 18008, inboundPlaintext: 18006 },
  });
});

const deadlines: [string, Env, number][] = [
  ['CONNECTION_TERMINATION_DEADLINE in ms', { CONNECTION_TERMINATION_DEADLINE: '500ms' }, 500],
  ['CONNECTION_TERMINATION_DEADLINE wins over the grace period', { CONNECTION_TERMINATION_DEADLINE: '1m2s', TERMINATION_GRACE_PERIOD_SECONDS: '30' }, 62_000],
  ['grace period > 10 s: minus 5 s', { TERMINATION_GRACE_PERIOD_SECONDS: '30' }, 25_000],
  ['grace period 11 s: minus 5 s', { TERMINATION_GRACE_PERIOD_SECONDS: '11' }, 6000],
  ['grace period 10 s: minus 1 s', { TERMINATION_GRACE_PERIOD_SECONDS: '10' }, 9000],
  ['grace period 5 s: minus 1 s', { TERMINATION_GRACE_PERIOD_SECONDS: '5' }, 4000],
  ['grace period 1 s: at least 1 s', { TERMINATION_GRACE_PERIOD_SECONDS: '1' }, 1000],
  ['grace period 0 s: at least 1 s', { TERMINATION_GRACE_PERIOD_SECONDS: '0' }, 1000],
  ['nothing set: 5 s', {}, 5000],
];

for (const [name, env, expected] of deadlines) {
  test(`termination deadline: ${name}`, (t) => {
    t.is(value(env).terminationDeadlineMs, expected);
  });
}

const marks: [string, Env, number | undefined][] = [
  ['shared default', {}, 1337],
  ['dedicated default', DEDICATED, undefined],
  ['decimal', { PACKET_MARK: '42' }, 42],
  ['hex', { PACKET_MARK: '0x539' }, 0x539],
  ['hex upper bound', { PACKET_MARK: '0xFFFFFFFF' }, 0xffff_ffff],
  ['set in dedicated mode', { ...DEDICATED, PACKET_MARK: '0x10' }, 16],
];

for (const [name, env, expected] of marks) {
  test(`PACKET_MARK: ${name}`, (t) => {
    t.is(value(env).packetMark, expected);
  });
}

const logs: [string, LogLevel][] = [
  ['debug', 'debug'],
  ['off', 'off'],
  ['WARN', 'warn'],
  ['info,access=debug', 'info'],
  ['access=debug,trace', 'trace'],
  ['hickory=off, error', 'error'],
  ['access=debug', 'info'],
];

for (const [text, expected] of logs) {
  test(`RUST_LOG=${text} → ${expected}`, (t) => {
    t.is(value({ RUST_LOG: text }).logLevel, expected);
  });
}

test('ZTUNNEL_FLAGS lists every accepted flag and they are all accepted', (t) => {
  t.deepEqual([...ZTUNNEL_FLAGS].sort(), ['admin-port', 'inbound-plaintext-port', 'inbound-port', 'outbound-port', 'proxy-mode', 'readiness-port', 'stats-port', 'workload-info']);
  const flags = Object.fromEntries(ZTUNNEL_FLAGS.map((f) => [f, f.endsWith('port') ? '0' : f === 'proxy-mode' ? 'shared' : 'a/b/c']));
  t.deepEqual(errors({}, flags), []);
});
