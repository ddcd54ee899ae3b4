import test from 'ava';
import type { NamespaceView, PodView } from '../../src/cni/enrollment.ts';
import {
  convertPrevResult, handleCniInvocation, maskBase64, parseCniArgs,
  type CmdAddEvent, type CniInvocation, type CniOutcome, type PluginDeps, type PodLookup,
} from '../../src/cni/plugin.ts';

// The Kubernetes API server cannot run here, so `lookupPod` is a stub over a fixed table of pods and
// namespaces; `addPodToMesh` records the events it is given. (VERSION is answered by the C shim and
// is tested in shim.test.ts.)

const MODE = 'istio.io/dataplane-mode';

const SELECTORS = [
  { podSelector: { matchLabels: { [MODE]: 'ambient' } } },
  {
    podSelector: { matchExpressions: [{ key: MODE, operator: 'NotIn', values: ['none'] }] },
    namespaceSelector: { matchLabels: { [MODE]: 'ambient' } },
  },
];

function config(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'istio-cni',
    type: 'istio-cni',
    cniVersion: '1.0.0',
    plugin_log_level: 'info',
    cni_agent_run_dir: '/var/run/istio-cni',
    ambient_enabled: true,
    enablement_selectors: SELECTORS,
    exclude_namespaces: ['kube-system'],
    pod_namespace: 'istio-system',
    native_nftables: false,
    enable_ambient_detection_retry: false,
    ...over,
  };
}

const PREV_031 = {
  cniVersion: '0.3.1',
  interfaces: [{ name: 'eth0', sandbox: '/var/run/netns/cni-1234' }],
  ips: [
    { version: '4', interface: 0, address: '10.0.0.5/24', gateway: '10.0.0.1' },
    { version: '6', interface: 0, address: 'fd00::5/64' },
  ],
  routes: [{ dst: '0.0.0.0/0' }],
  dns: {},
};
const PREV_100 = {
  cniVersion: '1.0.0',
  interfaces: [{ name: 'eth0', sandbox: '/var/run/netns/cni-1234' }],
  ips: [
    { interface: 0, address: '10.0.0.5/24', gateway: '10.0.0.1' },
    { interface: 0, address: 'fd00::5/64' },
  ],
  routes: [{ dst: '0.0.0.0/0' }],
  dns: {},
};

const ENV = {
  CNI_COMMAND: 'ADD',
  CNI_CONTAINERID: 'c0ffee',
  CNI_NETNS: '/var/run/netns/cni-1234',
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/opt/cni/bin',
  CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=app;K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=uid-1',
};

function inv(conf: Record<string, unknown> | string, env: Record<string, string> = {}): CniInvocation {
  return { env: { ...ENV, ...env }, stdin: typeof conf === 'string' ? conf : JSON.stringify(conf) };
}

interface Recorder {
  readonly deps: PluginDeps;
  readonly events: CmdAddEvent[];
  readonly lookups: string[];
}

const PODS: Record<string, PodLookup> = {
  'app/web-1': { pod: pod('web-1', 'app', { [MODE]: 'ambient' }), namespace: ns('app') },
  'plain/web-1': { pod: pod('web-1', 'plain'), namespace: ns('plain') },
  'labelled/web-1': { pod: pod('web-1', 'labelled'), namespace: ns('labelled', { [MODE]: 'ambient' }) },
  'labelled/opt-out': { pod: pod('opt-out', 'labelled', { [MODE]: 'none' }), namespace: ns('labelled', { [MODE]: 'ambient' }) },
  'app/host': { pod: { ...pod('host', 'app', { [MODE]: 'ambient' }), hostNetwork: true }, namespace: ns('app') },
};

function pod(name: string, namespace: string, labels?: Record<string, string>): PodView {
  return { name, namespace, uid: `uid-${name}`, ...(labels && { labels }) };
}
function ns(name: string, labels?: Record<string, string>): NamespaceView {
  return { name, ...(labels && { labels }) };
}

function recorder(opts: { addFails?: string; lookupFails?: string } = {}): Recorder {
  const events: CmdAddEvent[] = [];
  const lookups: string[] = [];
  return {
    events,
    lookups,
    deps: {
      lookupPod: async (namespace, name) => {
        lookups.push(`${namespace}/${name}`);
        if (opts.lookupFails !== undefined) throw new Error(opts.lookupFails);
        return PODS[`${namespace}/${name}`];
      },
      addPodToMesh: async (event) => {
        events.push(event);
        if (opts.addFails !== undefined) throw new Error(opts.addFails);
      },
      sleep: async () => {},
    },
  };
}

function stdoutJson(t: { fail(msg: string): void }, outcome: CniOutcome): unknown {
  if (outcome.status !== 'ok') {
    t.fail(`expected ok, got ${JSON.stringify(outcome)}`);
    return undefined;
  }
  return JSON.parse(outcome.stdout);
}

// ---------------------------------------------------------------------------------------------
// ADD output: prevResult re-printed in the config's version

const versionCases: { name: string; confVersion: string; prev: Record<string, unknown> | undefined; want: unknown }[] = [
  {
    name: '0.3.1 prevResult in a 1.0.0 config drops ips[].version',
    confVersion: '1.0.0',
    prev: PREV_031,
    want: { ...PREV_100 },
  },
  {
    name: '1.0.0 prevResult in a 0.4.0 config gains ips[].version',
    confVersion: '0.4.0',
    prev: PREV_100,
    want: { ...PREV_031, cniVersion: '0.4.0' },
  },
  {
    name: 'prevResult without cniVersion is read in the config version (0.3.1 → 0.3.1)',
    confVersion: '0.3.1',
    prev: { ips: [{ address: '10.0.0.5/24' }] },
    want: { cniVersion: '0.3.1', ips: [{ version: '4', address: '10.0.0.5/24' }] },
  },
  {
    name: '1.1.0 config keeps 1.1 fields and has no ips[].version',
    confVersion: '1.1.0',
    prev: { cniVersion: '1.1.0', interfaces: [{ name: 'eth0', mtu: 1450 }], ips: [{ address: '10.0.0.5/24', interface: 0 }] },
    want: { cniVersion: '1.1.0', interfaces: [{ name: 'eth0', mtu: 1450 }], ips: [{ address: '10.0.0.5/24', interface: 0 }] },
  },
  {
    name: '0.3.0 config, wrong ips[].version is recomputed from the address',
    confVersion: '0.3.0',
    prev: { cniVersion: '0.3.0', ips: [{ version: '6', address: '10.0.0.5/24' }] },
    want: { cniVersion: '0.3.0', ips: [{ version: '4', address: '10.0.0.5/24' }] },
  },
  { name: 'no prevResult prints only cniVersion', confVersion: '1.0.0', prev: undefined, want: { cniVersion: '1.0.0' } },
  { name: 'no prevResult, 0.3.1', confVersion: '0.3.1', prev: undefined, want: { cniVersion: '0.3.1' } },
];

for (const c of versionCases) {
  test(`ADD output: ${c.name}`, async (t) => {
    const r = recorder();
    // A pod that is not ambient, so the output path alone is under test.
    const out = await handleCniInvocation(
      inv(config({ cniVersion: c.confVersion, ...(c.prev && { prevResult: c.prev }) }), { CNI_ARGS: 'K8S_POD_NAMESPACE=plain;K8S_POD_NAME=web-1' }),
      r.deps,
    );
    t.deepEqual(stdoutJson(t, out), c.want);
    t.is(r.events.length, 0);
  });
}

test('ADD output: cniVersion comes first and the text ends with a newline', async (t) => {
  const out = await handleCniInvocation(inv(config({ prevResult: PREV_031 }), { CNI_ARGS: '' }), recorder().deps);
  t.is(out.status, 'ok');
  if (out.status === 'ok') {
    t.true(out.stdout.startsWith('{"cniVersion":"1.0.0",'));
    t.true(out.stdout.endsWith('}\n'));
  }
});

// ---------------------------------------------------------------------------------------------
// Errors: bad config, bad env, bad CNI_ARGS, unsupported versions

const errorCases: { name: string; invocation: CniInvocation; code: number; details: RegExp; cniVersion?: string }[] = [
  { name: 'stdin is not JSON', invocation: inv('{"cniVersion":'), code: 6, details: /JSON/ },
  { name: 'config is a list', invocation: inv('[]'), code: 7, details: /^<root>: must be a JSON object/ },
  { name: 'missing cniVersion', invocation: inv(config({ cniVersion: undefined })), code: 7, details: /^cniVersion: / },
  { name: 'unsupported cniVersion', invocation: inv(config({ cniVersion: '0.2.0' })), code: 1, details: /^cniVersion: "0.2.0" is not supported/ },
  { name: 'ambient_enabled not a boolean', invocation: inv(config({ ambient_enabled: 'yes' })), code: 7, details: /^ambient_enabled: must be a boolean/, cniVersion: '1.0.0' },
  { name: 'pod_namespace not a string', invocation: inv(config({ pod_namespace: 3 })), code: 7, details: /^pod_namespace: must be a string/ },
  { name: 'exclude_namespaces entry', invocation: inv(config({ exclude_namespaces: ['a', 2] })), code: 7, details: /^exclude_namespaces\[1\]: must be a string/ },
  {
    name: 'enablement selector operator',
    invocation: inv(config({ enablement_selectors: [{ podSelector: { matchExpressions: [{ key: 'a', operator: 'Nope', values: ['x'] }] } }] })),
    code: 7,
    details: /^enablement_selectors\[0\]\.podSelector\.matchExpressions\[0\]\.operator: must be one of/,
  },
  { name: 'enablement selectors not a list', invocation: inv(config({ enablement_selectors: {} })), code: 7, details: /^enablement_selectors: must be a list/ },
  { name: 'prevResult not an object', invocation: inv(config({ prevResult: 'x' })), code: 7, details: /^prevResult: must be a JSON object/ },
  {
    name: 'prevResult address without prefix',
    invocation: inv(config({ prevResult: { ips: [{ address: '10.0.0.5' }] } })),
    code: 7,
    details: /^prevResult\.ips\[0\]\.address: must be an IP address with a prefix length/,
  },
  {
    name: 'prevResult gateway not an IP',
    invocation: inv(config({ prevResult: { ips: [{ address: '10.0.0.5/24', gateway: 'router' }] } })),
    code: 7,
    details: /^prevResult\.ips\[0\]\.gateway: /,
  },
  { name: 'prevResult in an unsupported version', invocation: inv(config({ prevResult: { cniVersion: '0.2.0' } })), code: 1, details: /^prevResult\.cniVersion: "0.2.0"/ },
  { name: 'CNI_ARGS pair without =', invocation: inv(config(), { CNI_ARGS: 'K8S_POD_NAME;K8S_POD_NAMESPACE=app' }), code: 4, details: /^CNI_ARGS: invalid pair "K8S_POD_NAME"/ },
  { name: 'CNI_ARGS pair with empty key', invocation: inv(config(), { CNI_ARGS: '=x' }), code: 4, details: /^CNI_ARGS: invalid pair "=x"/ },
  { name: 'missing CNI_NETNS', invocation: inv(config(), { CNI_NETNS: '' }), code: 4, details: /^CNI_NETNS$/ },
  { name: 'missing CNI_CONTAINERID', invocation: { env: { CNI_COMMAND: 'ADD', CNI_NETNS: '/n', CNI_IFNAME: 'eth0' }, stdin: JSON.stringify(config()) }, code: 4, details: /^CNI_CONTAINERID$/ },
  { name: 'missing CNI_COMMAND', invocation: { env: {}, stdin: '' }, code: 4, details: /^CNI_COMMAND$/ },
  { name: 'unknown CNI_COMMAND', invocation: inv(config(), { CNI_COMMAND: 'FROB' }), code: 4, details: /^CNI_COMMAND$/ },
];

for (const c of errorCases) {
  test(`error: ${c.name}`, async (t) => {
    const r = recorder();
    const out = await handleCniInvocation(c.invocation, r.deps);
    if (out.status !== 'error') return t.fail(`expected an error, got ${JSON.stringify(out)}`);
    t.is(out.error.code, c.code);
    t.regex(out.error.details ?? '', c.details);
    if (c.cniVersion !== undefined) t.is(out.error.cniVersion, c.cniVersion);
    t.deepEqual(r.events, []);
  });
}

// ---------------------------------------------------------------------------------------------
// DEL / CHECK / GC / STATUS: no-ops that print nothing, whatever the config says

for (const command of ['DEL', 'CHECK', 'GC', 'STATUS']) {
  test(`${command} is a no-op with empty output, even on a broken config`, async (t) => {
    const r = recorder();
    t.deepEqual(await handleCniInvocation(inv('not json', { CNI_COMMAND: command }), r.deps), { status: 'ok', stdout: '' });
    t.deepEqual(r.lookups, []);
    t.deepEqual(r.events, []);
  });
}

// ---------------------------------------------------------------------------------------------
// Skip rules and the ambient decision

const decisionCases: { name: string; conf?: Record<string, unknown>; args: string; lookups: string[]; enrolled: boolean }[] = [
  { name: 'the agent pod itself is skipped before any lookup', args: 'K8S_POD_NAMESPACE=istio-system;K8S_POD_NAME=istio-cni-node-x7k2q', lookups: [], enrolled: false },
  {
    name: 'istio-cni-node- prefix elsewhere is not the agent',
    args: 'K8S_POD_NAMESPACE=app;K8S_POD_NAME=istio-cni-node-x',
    lookups: ['app/istio-cni-node-x'],
    enrolled: false,
  },
  {
    name: 'agent pod in a custom pod_namespace',
    conf: { pod_namespace: 'mesh' },
    args: 'K8S_POD_NAMESPACE=mesh;K8S_POD_NAME=istio-cni-node-a',
    lookups: [],
    enrolled: false,
  },
  { name: 'no CNI_ARGS: not Kubernetes', args: '', lookups: [], enrolled: false },
  { name: 'only a pod name: not Kubernetes', args: 'K8S_POD_NAME=web-1', lookups: [], enrolled: false },
  { name: 'excluded namespace', args: 'K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns-1', lookups: [], enrolled: false },
  { name: 'custom excluded namespace', conf: { exclude_namespaces: ['app'] }, args: 'K8S_POD_NAMESPACE=app;K8S_POD_NAME=web-1', lookups: [], enrolled: false },
  { name: 'ambient disabled', conf: { ambient_enabled: false }, args: 'K8S_POD_NAMESPACE=app;K8S_POD_NAME=web-1', lookups: [], enrolled: false },
  { name: 'pod labelled ambient', args: 'K8S_POD_NAMESPACE=app;K8S_POD_NAME=web-1', lookups: ['app/web-1'], enrolled: true },
  { name: 'namespace labelled ambient', args: 'K8S_POD_NAMESPACE=labelled;K8S_POD_NAME=web-1', lookups: ['labelled/web-1'], enrolled: true },
  { name: 'pod opts out in an ambient namespace', args: 'K8S_POD_NAMESPACE=labelled;K8S_POD_NAME=opt-out', lookups: ['labelled/opt-out'], enrolled: false },
  { name: 'unlabelled pod and namespace', args: 'K8S_POD_NAMESPACE=plain;K8S_POD_NAME=web-1', lookups: ['plain/web-1'], enrolled: false },
  { name: 'host-network pod', args: 'K8S_POD_NAMESPACE=app;K8S_POD_NAME=host', lookups: ['app/host'], enrolled: false },
  { name: 'pod not found passes through', args: 'K8S_POD_NAMESPACE=app;K8S_POD_NAME=gone', lookups: ['app/gone'], enrolled: false },
  { name: 'no enablement_selectors: nothing is ambient', conf: { enablement_selectors: undefined }, args: 'K8S_POD_NAMESPACE=app;K8S_POD_NAME=web-1', lookups: ['app/web-1'], enrolled: false },
  { name: 'unknown CNI_ARGS keys are ignored', args: 'FOO=bar;K8S_POD_NAMESPACE=app;;K8S_POD_NAME=web-1;', lookups: ['app/web-1'], enrolled: true },
];

for (const c of decisionCases) {
  test(`decision: ${c.name}`, async (t) => {
    const r = recorder();
    const out = await handleCniInvocation(inv(config({ prevResult: PREV_100, ...c.conf }), { CNI_ARGS: c.args }), r.deps);
    t.deepEqual(stdoutJson(t, out), PREV_100);
    t.deepEqual(r.lookups, c.lookups);
    t.is(r.events.length, c.enrolled ? 1 : 0);
  });
}

test('isAmbient dep receives the enrollment config built from the plugin config', async (t) => {
  const r = recorder();
  const seen: unknown[] = [];
  const deps: PluginDeps = {
    ...r.deps,
    isAmbient: (p, n, cfg) => {
      seen.push({ pod: p.name, ns: n.name, cfg });
      return { enroll: true, reason: 'an enablement selector matches the pod and its namespace' };
    },
  };
  await handleCniInvocation(inv(config({ exclude_namespaces: ['x'], pod_namespace: 'mesh', enablement_selectors: [] }), { CNI_ARGS: 'K8S_POD_NAMESPACE=plain;K8S_POD_NAME=web-1' }), deps);
  t.deepEqual(seen, [{ pod: 'web-1', ns: 'plain', cfg: { enablementSelectors: [], excludeNamespaces: ['x'], systemNamespace: 'mesh' } }]);
  t.is(r.events.length, 1);
});

// ---------------------------------------------------------------------------------------------
// The event body and agent failures

test('event body is exactly the §1.4 shape (Mask base64, Interface, Gateway)', async (t) => {
  const r = recorder();
  await handleCniInvocation(inv(config({ prevResult: PREV_031 })), r.deps);
  t.is(
    JSON.stringify(r.events),
    JSON.stringify([
      {
        Netns: '/var/run/netns/cni-1234',
        PodName: 'web-1',
        PodNamespace: 'app',
        IPs: [
          { Interface: 0, Address: { IP: '10.0.0.5', Mask: '////AA==' }, Gateway: '10.0.0.1' },
          { Interface: 0, Address: { IP: 'fd00::5', Mask: '//////////8AAAAAAAAAAA==' }, Gateway: '' },
        ],
      },
    ]),
  );
});

test('event body without prevResult has no IPs and Interface null when absent', async (t) => {
  const r = recorder();
  await handleCniInvocation(inv(config()), r.deps);
  t.deepEqual(r.events, [{ Netns: '/var/run/netns/cni-1234', PodName: 'web-1', PodNamespace: 'app', IPs: [] }]);
  const r2 = recorder();
  await handleCniInvocation(inv(config({ prevResult: { ips: [{ address: '10.1.2.3/32' }] } })), r2.deps);
  t.deepEqual(r2.events[0]?.IPs, [{ Interface: null, Address: { IP: '10.1.2.3', Mask: '/////w==' }, Gateway: '' }]);
});

test('agent failure → code 11 with istio-cni message, in the config version', async (t) => {
  const r = recorder({ addFails: 'ztunnel did not ack' });
  const out = await handleCniInvocation(inv(config({ cniVersion: '0.3.1', prevResult: PREV_031 })), r.deps);
  t.deepEqual(out, {
    status: 'error',
    error: { cniVersion: '0.3.1', code: 11, msg: 'istio-cni cmdAdd failed to contact node Istio CNI agent', details: 'ztunnel did not ack' },
    reason: 'CNI_ENROLL_FAILED',
  });
});

test('lookup failure passes through without retry mode', async (t) => {
  const r = recorder({ lookupFails: 'connection refused' });
  const out = await handleCniInvocation(inv(config()), r.deps);
  t.deepEqual(stdoutJson(t, out), { cniVersion: '1.0.0' });
  t.deepEqual(r.lookups, ['app/web-1']);
});

test('lookup failure in retry mode: 30 attempts, then code 11', async (t) => {
  const r = recorder({ lookupFails: 'connection refused' });
  const out = await handleCniInvocation(inv(config({ enable_ambient_detection_retry: true })), r.deps);
  t.is(r.lookups.length, 30);
  if (out.status !== 'error') return t.fail('expected an error');
  t.is(out.error.code, 11);
  t.is(out.error.details, 'app/web-1: connection refused');
});

// ---------------------------------------------------------------------------------------------
// Helpers

const maskCases: [4 | 6, number, string][] = [
  [4, 0, 'AAAAAA=='],
  [4, 24, '////AA=='],
  [4, 25, '////gA=='],
  [4, 32, '/////w=='],
  [6, 64, '//////////8AAAAAAAAAAA=='],
  [6, 128, '/////////////////////w=='],
];
for (const [family, prefix, want] of maskCases) {
  test(`maskBase64 IPv${family} /${prefix}`, (t) => t.is(maskBase64(family, prefix), want));
}

test('parseCniArgs reads the four Kubernetes keys', (t) => {
  const r = parseCniArgs('K8S_POD_NAME=a;K8S_POD_NAMESPACE=b;K8S_POD_UID=c;K8S_POD_INFRA_CONTAINER_ID=d;X=a=b');
  t.deepEqual(r, { ok: true, value: { podName: 'a', podNamespace: 'b', podUid: 'c', infraContainerId: 'd' } });
});

test('convertPrevResult keeps unknown fields and drops the input cniVersion', (t) => {
  const r = convertPrevResult({ cniVersion: '0.4.0', custom: { a: 1 } }, '1.0.0');
  t.deepEqual(r.ok && r.value.result, { cniVersion: '1.0.0', custom: { a: 1 } });
});
