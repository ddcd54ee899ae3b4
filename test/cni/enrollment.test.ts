import test from 'ava';
import {
  AddOutcome, DEFAULT_ENABLEMENT_SELECTOR_YAML, DEFAULT_ENABLEMENT_SELECTORS, DEFAULT_ENROLLMENT_CONFIG, EnrollReason, isAmbientPod,
  isPodTerminal, namespaceChangeMatters, nextRedirection, parseEnablementSelectors, Redirection, redirectionPatch, selectorMatches,
  type EnrollmentConfig, type EnrollmentDecision, type LabelSelector, type Labels, type NamespaceView, type PodView,
} from '../../src/cni/enrollment.ts';

const MODE = 'istio.io/dataplane-mode';
const AMBIENT: Labels = { [MODE]: 'ambient' };
const NONE: Labels = { [MODE]: 'none' };

function pod(over: Partial<PodView> = {}): PodView {
  return { name: 'p', namespace: 'app', uid: 'uid-1', ...over };
}
function ns(name: string, labels?: Labels): NamespaceView {
  return labels === undefined ? { name } : { name, labels };
}
const yes = (reason: EnrollReason): EnrollmentDecision => ({ enroll: true, reason });
const no = (reason: EnrollReason): EnrollmentDecision => ({ enroll: false, reason });

// ---------------------------------------------------------------------------------------------
// selectorMatches

const selectorCases: { name: string; selector: LabelSelector | undefined; labels: Labels | undefined; want: boolean }[] = [
  { name: 'undefined selector matches anything', selector: undefined, labels: { a: '1' }, want: true },
  { name: 'empty selector matches no labels', selector: {}, labels: undefined, want: true },
  { name: 'empty selector matches labels', selector: { matchLabels: {}, matchExpressions: [] }, labels: { a: '1' }, want: true },
  { name: 'matchLabels equal', selector: { matchLabels: { a: '1' } }, labels: { a: '1', b: '2' }, want: true },
  { name: 'matchLabels different value', selector: { matchLabels: { a: '1' } }, labels: { a: '2' }, want: false },
  { name: 'matchLabels missing key', selector: { matchLabels: { a: '1' } }, labels: { b: '1' }, want: false },
  { name: 'matchLabels empty value needs the key', selector: { matchLabels: { a: '' } }, labels: {}, want: false },
  { name: 'matchLabels empty value matches empty', selector: { matchLabels: { a: '' } }, labels: { a: '' }, want: true },
  { name: 'matchLabels all must hold', selector: { matchLabels: { a: '1', b: '2' } }, labels: { a: '1', b: '3' }, want: false },
  { name: 'matchLabels does not see prototype keys', selector: { matchLabels: { toString: 'x' } }, labels: {}, want: false },
  { name: 'In: value listed', selector: { matchExpressions: [{ key: 'a', operator: 'In', values: ['1', '2'] }] }, labels: { a: '2' }, want: true },
  { name: 'In: value not listed', selector: { matchExpressions: [{ key: 'a', operator: 'In', values: ['1', '2'] }] }, labels: { a: '3' }, want: false },
  { name: 'In: key absent', selector: { matchExpressions: [{ key: 'a', operator: 'In', values: [''] }] }, labels: {}, want: false },
  { name: 'NotIn: value listed', selector: { matchExpressions: [{ key: 'a', operator: 'NotIn', values: ['1'] }] }, labels: { a: '1' }, want: false },
  { name: 'NotIn: other value', selector: { matchExpressions: [{ key: 'a', operator: 'NotIn', values: ['1'] }] }, labels: { a: '2' }, want: true },
  { name: 'NotIn: key absent matches', selector: { matchExpressions: [{ key: 'a', operator: 'NotIn', values: ['1'] }] }, labels: {}, want: true },
  { name: 'Exists: present (empty value)', selector: { matchExpressions: [{ key: 'a', operator: 'Exists', values: [] }] }, labels: { a: '' }, want: true },
  { name: 'Exists: absent', selector: { matchExpressions: [{ key: 'a', operator: 'Exists', values: [] }] }, labels: { b: '1' }, want: false },
  { name: 'DoesNotExist: absent', selector: { matchExpressions: [{ key: 'a', operator: 'DoesNotExist', values: [] }] }, labels: { b: '1' }, want: true },
  { name: 'DoesNotExist: present', selector: { matchExpressions: [{ key: 'a', operator: 'DoesNotExist', values: [] }] }, labels: { a: 'x' }, want: false },
  {
    name: 'labels and expressions are ANDed (both hold)',
    selector: { matchLabels: { a: '1' }, matchExpressions: [{ key: 'b', operator: 'Exists', values: [] }] },
    labels: { a: '1', b: '' },
    want: true,
  },
  {
    name: 'labels and expressions are ANDed (expression fails)',
    selector: { matchLabels: { a: '1' }, matchExpressions: [{ key: 'b', operator: 'Exists', values: [] }] },
    labels: { a: '1' },
    want: false,
  },
  {
    name: 'expressions are ANDed',
    selector: {
      matchExpressions: [
        { key: 'a', operator: 'In', values: ['1'] },
        { key: 'b', operator: 'DoesNotExist', values: [] },
      ],
    },
    labels: { a: '1', b: '1' },
    want: false,
  },
];

for (const c of selectorCases) {
  test(`selectorMatches: ${c.name}`, (t) => {
    t.is(selectorMatches(c.selector, c.labels), c.want);
  });
}

// ---------------------------------------------------------------------------------------------
// isAmbientPod, default config

const decisionCases: { name: string; pod: PodView; ns: NamespaceView; want: EnrollmentDecision; config?: EnrollmentConfig }[] = [
  { name: 'unlabelled pod in unlabelled namespace', pod: pod(), ns: ns('app'), want: no(EnrollReason.NoSelectorMatch) },
  { name: 'pod label alone', pod: pod({ labels: AMBIENT }), ns: ns('app'), want: yes(EnrollReason.Selected) },
  { name: 'namespace label alone', pod: pod(), ns: ns('app', AMBIENT), want: yes(EnrollReason.Selected) },
  { name: 'both labelled', pod: pod({ labels: AMBIENT }), ns: ns('app', AMBIENT), want: yes(EnrollReason.Selected) },
  { name: 'pod none overrides the namespace label', pod: pod({ labels: NONE }), ns: ns('app', AMBIENT), want: no(EnrollReason.NoSelectorMatch) },
  { name: 'pod with another mode in ambient namespace', pod: pod({ labels: { [MODE]: 'sidecar' } }), ns: ns('app', AMBIENT), want: yes(EnrollReason.Selected) },
  { name: 'namespace none, pod ambient', pod: pod({ labels: AMBIENT }), ns: ns('app', NONE), want: yes(EnrollReason.Selected) },
  { name: 'namespace other value', pod: pod(), ns: ns('app', { [MODE]: 'Ambient' }), want: no(EnrollReason.NoSelectorMatch) },
  { name: 'other labels do not count', pod: pod({ labels: { app: 'ambient' } }), ns: ns('app', { mode: 'ambient' }), want: no(EnrollReason.NoSelectorMatch) },
  // Rule 1: host network, before everything.
  { name: 'hostNetwork pod labelled ambient', pod: pod({ labels: AMBIENT, hostNetwork: true }), ns: ns('app', AMBIENT), want: no(EnrollReason.HostNetwork) },
  {
    name: 'hostNetwork beats sidecar annotation',
    pod: pod({ hostNetwork: true, annotations: { 'sidecar.istio.io/status': '{}' } }),
    ns: ns('app'),
    want: no(EnrollReason.HostNetwork),
  },
  { name: 'hostNetwork beats excluded namespace', pod: pod({ namespace: 'kube-system', hostNetwork: true }), ns: ns('kube-system'), want: no(EnrollReason.HostNetwork) },
  { name: 'hostNetwork false is ordinary', pod: pod({ labels: AMBIENT, hostNetwork: false }), ns: ns('app'), want: yes(EnrollReason.Selected) },
  // Rule 2: sidecar status annotation (presence, any value).
  {
    name: 'sidecar-injected pod labelled ambient',
    pod: pod({ labels: AMBIENT, annotations: { 'sidecar.istio.io/status': '{"containers":["istio-proxy"]}' } }),
    ns: ns('app', AMBIENT),
    want: no(EnrollReason.SidecarInjected),
  },
  { name: 'empty sidecar status still counts', pod: pod({ labels: AMBIENT, annotations: { 'sidecar.istio.io/status': '' } }), ns: ns('app'), want: no(EnrollReason.SidecarInjected) },
  {
    name: 'sidecar beats the selector miss',
    pod: pod({ annotations: { 'sidecar.istio.io/status': '{}' } }),
    ns: ns('app'),
    want: no(EnrollReason.SidecarInjected),
  },
  {
    name: 'other sidecar annotations do not count',
    pod: pod({ labels: AMBIENT, annotations: { 'sidecar.istio.io/inject': 'false' } }),
    ns: ns('app'),
    want: yes(EnrollReason.Selected),
  },
  // Rule 4: excluded namespaces, only reached when a selector matched.
  { name: 'kube-system pod labelled ambient', pod: pod({ namespace: 'kube-system', labels: AMBIENT }), ns: ns('kube-system'), want: no(EnrollReason.ExcludedNamespace) },
  { name: 'kube-system namespace labelled ambient', pod: pod({ namespace: 'kube-system' }), ns: ns('kube-system', AMBIENT), want: no(EnrollReason.ExcludedNamespace) },
  { name: 'kube-system unlabelled is a selector miss', pod: pod({ namespace: 'kube-system' }), ns: ns('kube-system'), want: no(EnrollReason.NoSelectorMatch) },
  {
    name: 'custom exclude list replaces the default',
    pod: pod({ namespace: 'kube-system', labels: AMBIENT }),
    ns: ns('kube-system'),
    config: { ...DEFAULT_ENROLLMENT_CONFIG, excludeNamespaces: ['legacy'] },
    want: yes(EnrollReason.Selected),
  },
  {
    name: 'custom exclude list applies',
    pod: pod({ namespace: 'legacy', labels: AMBIENT }),
    ns: ns('legacy'),
    config: { ...DEFAULT_ENROLLMENT_CONFIG, excludeNamespaces: ['kube-system', 'legacy'] },
    want: no(EnrollReason.ExcludedNamespace),
  },
  // Rule 5: ztunnel in the system namespace.
  {
    name: 'ztunnel labelled none is a selector miss first',
    pod: pod({ namespace: 'istio-system', labels: { app: 'ztunnel', [MODE]: 'none' } }),
    ns: ns('istio-system', AMBIENT),
    want: no(EnrollReason.NoSelectorMatch),
  },
  {
    name: 'ztunnel without none in an ambient system namespace',
    pod: pod({ namespace: 'istio-system', labels: { app: 'ztunnel' } }),
    ns: ns('istio-system', AMBIENT),
    want: no(EnrollReason.Ztunnel),
  },
  {
    name: 'app=ztunnel outside the system namespace is ordinary',
    pod: pod({ namespace: 'app', labels: { app: 'ztunnel' } }),
    ns: ns('app', AMBIENT),
    want: yes(EnrollReason.Selected),
  },
  {
    name: 'other app in the system namespace is ordinary',
    pod: pod({ namespace: 'istio-system', labels: { app: 'istiod', ...AMBIENT } }),
    ns: ns('istio-system'),
    want: yes(EnrollReason.Selected),
  },
  {
    name: 'system namespace is configurable',
    pod: pod({ namespace: 'mesh', labels: { app: 'ztunnel', ...AMBIENT } }),
    ns: ns('mesh'),
    config: { ...DEFAULT_ENROLLMENT_CONFIG, systemNamespace: 'mesh' },
    want: no(EnrollReason.Ztunnel),
  },
  {
    name: 'excluded namespace beats ztunnel',
    pod: pod({ namespace: 'istio-system', labels: { app: 'ztunnel', ...AMBIENT } }),
    ns: ns('istio-system'),
    config: { ...DEFAULT_ENROLLMENT_CONFIG, excludeNamespaces: ['istio-system'] },
    want: no(EnrollReason.ExcludedNamespace),
  },
  // Custom selectors.
  {
    name: 'no selectors enrol nothing',
    pod: pod({ labels: AMBIENT }),
    ns: ns('app', AMBIENT),
    config: { ...DEFAULT_ENROLLMENT_CONFIG, enablementSelectors: [] },
    want: no(EnrollReason.NoSelectorMatch),
  },
  {
    name: 'an empty entry enrols everything',
    pod: pod({ labels: NONE }),
    ns: ns('app'),
    config: { ...DEFAULT_ENROLLMENT_CONFIG, enablementSelectors: [{}] },
    want: yes(EnrollReason.Selected),
  },
  {
    name: 'an entry needs both halves',
    pod: pod({ labels: { tier: 'web' } }),
    ns: ns('app', { team: 'x' }),
    config: { ...DEFAULT_ENROLLMENT_CONFIG, enablementSelectors: [{ podSelector: { matchLabels: { tier: 'web' } }, namespaceSelector: { matchLabels: { team: 'y' } } }] },
    want: no(EnrollReason.NoSelectorMatch),
  },
  {
    name: 'entries are ORed',
    pod: pod({ labels: { tier: 'web' } }),
    ns: ns('app', { team: 'x' }),
    config: {
      ...DEFAULT_ENROLLMENT_CONFIG,
      enablementSelectors: [
        { podSelector: { matchLabels: { tier: 'db' } } },
        { podSelector: { matchLabels: { tier: 'web' } }, namespaceSelector: { matchLabels: { team: 'x' } } },
      ],
    },
    want: yes(EnrollReason.Selected),
  },
];

for (const c of decisionCases) {
  test(`isAmbientPod: ${c.name}`, (t) => {
    t.deepEqual(isAmbientPod(c.pod, c.ns, c.config ?? DEFAULT_ENROLLMENT_CONFIG), c.want);
  });
}

test('reasons are distinct, stable strings', (t) => {
  const values = Object.values(EnrollReason);
  t.is(new Set(values).size, values.length);
  t.is(EnrollReason.HostNetwork, 'pod uses the host network');
  t.is(EnrollReason.Selected, 'an enablement selector matches the pod and its namespace');
});

test('the default config matches the reference and is frozen', (t) => {
  t.deepEqual(DEFAULT_ENROLLMENT_CONFIG, {
    enablementSelectors: [
      { podSelector: { matchLabels: { [MODE]: 'ambient' } } },
      {
        podSelector: { matchExpressions: [{ key: MODE, operator: 'NotIn', values: ['none'] }] },
        namespaceSelector: { matchLabels: { [MODE]: 'ambient' } },
      },
    ],
    excludeNamespaces: ['kube-system'],
    systemNamespace: 'istio-system',
  });
  t.true(Object.isFrozen(DEFAULT_ENROLLMENT_CONFIG.excludeNamespaces));
  t.true(Object.isFrozen(DEFAULT_ENABLEMENT_SELECTORS[1]?.podSelector?.matchExpressions?.[0]?.values));
});

// ---------------------------------------------------------------------------------------------
// parseEnablementSelectors

test('the default YAML parses to the default selectors', (t) => {
  t.deepEqual(parseEnablementSelectors(DEFAULT_ENABLEMENT_SELECTOR_YAML), { ok: true, value: DEFAULT_ENABLEMENT_SELECTORS });
});

const parseOk: { name: string; text: string; want: unknown }[] = [
  { name: 'empty list', text: '[]', want: [] },
  { name: 'JSON form', text: '[{"podSelector":{"matchLabels":{"a":"b"}}}]', want: [{ podSelector: { matchLabels: { a: 'b' } } }] },
  { name: 'empty entry', text: '- {}', want: [{}] },
  { name: 'null selectors count as absent', text: '- podSelector:\n  namespaceSelector: ~', want: [{}] },
  { name: 'empty label value', text: '- podSelector: {matchLabels: {a: ""}}', want: [{ podSelector: { matchLabels: { a: '' } } }] },
  {
    name: 'every operator',
    text: `- namespaceSelector:
    matchExpressions:
      - {key: a, operator: In, values: [x, y]}
      - {key: example.com/b, operator: NotIn, values: ["1"]}
      - {key: c, operator: Exists}
      - {key: d, operator: DoesNotExist, values: []}
`,
    want: [
      {
        namespaceSelector: {
          matchExpressions: [
            { key: 'a', operator: 'In', values: ['x', 'y'] },
            { key: 'example.com/b', operator: 'NotIn', values: ['1'] },
            { key: 'c', operator: 'Exists', values: [] },
            { key: 'd', operator: 'DoesNotExist', values: [] },
          ],
        },
      },
    ],
  },
];

for (const c of parseOk) {
  test(`parseEnablementSelectors accepts: ${c.name}`, (t) => {
    t.deepEqual(parseEnablementSelectors(c.text), { ok: true, value: c.want });
  });
}

const parseBad: { name: string; text: string; errors: string[] }[] = [
  { name: 'empty document', text: '', errors: ['<root>: must be a list of {podSelector, namespaceSelector} entries; got null'] },
  { name: 'a mapping at the root', text: 'podSelector: {}', errors: ['<root>: must be a list of {podSelector, namespaceSelector} entries; got a mapping'] },
  { name: 'entry not a mapping', text: '- ambient', errors: ['[0]: must be a mapping; got "ambient"'] },
  { name: 'misspelt field', text: '- {}\n- podselector: {}', errors: ['[1].podselector: unknown field (expected podSelector, namespaceSelector)'] },
  { name: 'selector not a mapping', text: '- podSelector: [a]', errors: ['[0].podSelector: must be a mapping; got a list'] },
  {
    name: 'unknown selector field',
    text: '- namespaceSelector: {matchLabel: {a: b}}',
    errors: ['[0].namespaceSelector.matchLabel: unknown field (expected matchLabels, matchExpressions)'],
  },
  { name: 'matchLabels not a mapping', text: '- podSelector: {matchLabels: [a]}', errors: ['[0].podSelector.matchLabels: must be a mapping; got a list'] },
  {
    name: 'unquoted boolean label value',
    text: '- podSelector: {matchLabels: {istio.io/enabled: true}}',
    errors: ['[0].podSelector.matchLabels["istio.io/enabled"]: must be a string (quote it); got the boolean true'],
  },
  {
    name: 'invalid label key',
    text: '- podSelector: {matchLabels: {"Bad_/x": y}}',
    errors: ['[0].podSelector.matchLabels["Bad_/x"]: label key "Bad_/x": prefix must be a lowercase DNS subdomain of at most 253 characters'],
  },
  {
    name: 'invalid label value',
    text: '- podSelector: {matchLabels: {a: "-x"}}',
    errors: [`[0].podSelector.matchLabels.a: label value "-x": must be at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric`],
  },
  { name: 'matchExpressions not a list', text: '- podSelector: {matchExpressions: {key: a}}', errors: ['[0].podSelector.matchExpressions: must be a list; got a mapping'] },
  {
    name: 'unknown operator',
    text: '- podSelector: {matchExpressions: [{key: a, operator: Gt, values: ["1"]}]}',
    errors: ['[0].podSelector.matchExpressions[0].operator: must be one of In, NotIn, Exists, DoesNotExist; got "Gt"'],
  },
  {
    name: 'operator is case-sensitive',
    text: '- podSelector: {matchExpressions: [{key: a, operator: in, values: [x]}]}',
    errors: ['[0].podSelector.matchExpressions[0].operator: must be one of In, NotIn, Exists, DoesNotExist; got "in"'],
  },
  {
    name: 'missing key and operator',
    text: '- podSelector: {matchExpressions: [{values: [x]}]}',
    errors: [
      '[0].podSelector.matchExpressions[0].key: must be a string; got null',
      '[0].podSelector.matchExpressions[0].operator: must be one of In, NotIn, Exists, DoesNotExist; got null',
    ],
  },
  {
    name: 'In without values',
    text: '- podSelector: {matchExpressions: [{key: a, operator: In}]}',
    errors: ['[0].podSelector.matchExpressions[0].values: must be non-empty for operator In'],
  },
  {
    name: 'NotIn with an empty list',
    text: '- podSelector: {matchExpressions: [{key: a, operator: NotIn, values: []}]}',
    errors: ['[0].podSelector.matchExpressions[0].values: must be non-empty for operator NotIn'],
  },
  {
    name: 'Exists with values',
    text: '- namespaceSelector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}',
    errors: ['[0].namespaceSelector.matchExpressions[0].values: must be empty for operator Exists'],
  },
  {
    name: 'DoesNotExist with values',
    text: '- namespaceSelector: {matchExpressions: [{key: a, operator: DoesNotExist, values: [x]}]}',
    errors: ['[0].namespaceSelector.matchExpressions[0].values: must be empty for operator DoesNotExist'],
  },
  {
    name: 'non-string value in values',
    text: '- podSelector: {matchExpressions: [{key: a, operator: In, values: [1]}]}',
    errors: ['[0].podSelector.matchExpressions[0].values[0]: must be a string (quote it); got the number 1'],
  },
  { name: 'values not a list', text: '- podSelector: {matchExpressions: [{key: a, operator: In, values: x}]}', errors: ['[0].podSelector.matchExpressions[0].values: must be a list of strings; got "x"'] },
  {
    name: 'unknown requirement field',
    text: '- podSelector: {matchExpressions: [{key: a, operator: Exists, value: x}]}',
    errors: ['[0].podSelector.matchExpressions[0].value: unknown field (expected key, operator, values)'],
  },
  {
    name: 'every problem is reported, with its entry index',
    text: `- podSelector: {matchLabels: {a: 1}}
- namespaceSelector:
    matchExpressions:
      - {key: ok, operator: Exists}
      - {key: "", operator: Exists}
`,
    errors: [
      '[0].podSelector.matchLabels.a: must be a string (quote it); got the number 1',
      `[1].namespaceSelector.matchExpressions[1].key: label key "": name must be 1-63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric`,
    ],
  },
];

for (const c of parseBad) {
  test(`parseEnablementSelectors refuses: ${c.name}`, (t) => {
    t.deepEqual(parseEnablementSelectors(c.text), { ok: false, errors: c.errors });
  });
}

test('parseEnablementSelectors reports YAML syntax errors with line and column', (t) => {
  const r = parseEnablementSelectors('- podSelector: {matchLabels: {a: b}\n- x');
  t.false(r.ok);
  if (!r.ok) t.regex(r.errors[0] ?? '', /^line \d+, column \d+: /);
  const dup = parseEnablementSelectors('- podSelector: {}\n  podSelector: {}');
  t.false(dup.ok);
  if (!dup.ok) t.regex(dup.errors[0] ?? '', /^line 2, column 3: .*[Mm]ap keys must be unique/);
});

test('a parsed config drives isAmbientPod', (t) => {
  const r = parseEnablementSelectors('- podSelector: {matchExpressions: [{key: tier, operator: In, values: [web]}]}\n  namespaceSelector: {matchLabels: {team: x}}');
  if (!r.ok) return t.fail(r.errors.join('; '));
  t.true(Object.isFrozen(r.value[0]));
  const config = { ...DEFAULT_ENROLLMENT_CONFIG, enablementSelectors: r.value };
  t.deepEqual(isAmbientPod(pod({ labels: { tier: 'web' } }), ns('app', { team: 'x' }), config), yes(EnrollReason.Selected));
  t.deepEqual(isAmbientPod(pod({ labels: { tier: 'db' } }), ns('app', { team: 'x' }), config), no(EnrollReason.NoSelectorMatch));
  return undefined;
});

// ---------------------------------------------------------------------------------------------
// namespaceChangeMatters

const nsCases: { name: string; before: Labels | undefined; after: Labels | undefined; want: boolean; config?: EnrollmentConfig }[] = [
  { name: 'labelled ambient', before: undefined, after: AMBIENT, want: true },
  { name: 'label removed', before: AMBIENT, after: {}, want: true },
  { name: 'ambient → none', before: AMBIENT, after: NONE, want: true },
  { name: 'unrelated label added', before: AMBIENT, after: { ...AMBIENT, team: 'x' }, want: false },
  { name: 'unrelated change while unlabelled', before: { team: 'x' }, after: { team: 'y' }, want: false },
  { name: 'none → unset (neither selected)', before: NONE, after: {}, want: false },
  {
    name: 'empty namespaceSelectors never count',
    before: undefined,
    after: AMBIENT,
    config: { ...DEFAULT_ENROLLMENT_CONFIG, enablementSelectors: [{ podSelector: { matchLabels: { [MODE]: 'ambient' } } }, { namespaceSelector: {} }] },
    want: false,
  },
  {
    name: 'custom namespaceSelector with expressions',
    before: { env: 'dev' },
    after: { env: 'prod' },
    config: { ...DEFAULT_ENROLLMENT_CONFIG, enablementSelectors: [{ namespaceSelector: { matchExpressions: [{ key: 'env', operator: 'In', values: ['prod'] }] } }] },
    want: true,
  },
];

for (const c of nsCases) {
  test(`namespaceChangeMatters: ${c.name}`, (t) => {
    t.is(namespaceChangeMatters(ns('app', c.before), ns('app', c.after), c.config ?? DEFAULT_ENROLLMENT_CONFIG), c.want);
  });
}

// ---------------------------------------------------------------------------------------------
// The redirection annotation

const ENROL = yes(EnrollReason.Selected);
const DROP = no(EnrollReason.NoSelectorMatch);
const annotationCases: { current: string | undefined; decision: EnrollmentDecision; outcome: AddOutcome | undefined; want: string | undefined }[] = [
  { current: undefined, decision: ENROL, outcome: AddOutcome.Acked, want: 'enabled' },
  { current: 'pending', decision: ENROL, outcome: AddOutcome.Acked, want: 'enabled' },
  { current: undefined, decision: ENROL, outcome: AddOutcome.NoAck, want: 'pending' },
  { current: 'enabled', decision: ENROL, outcome: AddOutcome.NoAck, want: 'pending' },
  { current: undefined, decision: ENROL, outcome: AddOutcome.SetupFailed, want: undefined },
  { current: 'pending', decision: ENROL, outcome: AddOutcome.SetupFailed, want: 'pending' },
  { current: 'enabled', decision: DROP, outcome: undefined, want: undefined },
  { current: 'pending', decision: DROP, outcome: undefined, want: undefined },
  { current: 'enabled', decision: DROP, outcome: AddOutcome.Acked, want: undefined },
];

for (const c of annotationCases) {
  test(`nextRedirection: ${String(c.current)} + ${c.decision.enroll ? 'enrol' : 'remove'} + ${String(c.outcome)} → ${String(c.want)}`, (t) => {
    t.is(nextRedirection(c.current, c.decision, c.outcome), c.want);
  });
}

test('nextRedirection refuses an enrol decision without an outcome', (t) => {
  t.throws(() => nextRedirection(undefined, ENROL, undefined), { instanceOf: TypeError });
});

test('redirection constants and merge patches match the reference', (t) => {
  t.deepEqual(Redirection, { Enabled: 'enabled', Pending: 'pending' });
  t.is(JSON.stringify(redirectionPatch('enabled')), '{"metadata":{"annotations":{"ambient.istio.io/redirection":"enabled"}}}');
  t.is(JSON.stringify(redirectionPatch(null)), '{"metadata":{"annotations":{"ambient.istio.io/redirection":null}}}');
});

test('isPodTerminal: Succeeded and Failed only', (t) => {
  t.deepEqual(
    ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown', undefined].map((phase) => isPodTerminal({ phase })),
    [false, false, true, true, false, false],
  );
});
