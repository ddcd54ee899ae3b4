import { fail, ok, type Result } from '../core/result.ts';
import { parseYaml } from '../core/yaml.ts';

/**
 * "Is this pod ambient?" (reference istio-ambient.md §1.5) and the redirection annotation it drives
 * (§1.6), as pure functions of plain data. The CNI plugin and the node agent call the same
 * `isAmbientPod`; the IO code around them (API GETs, informers, patches) never recomputes it.
 *
 * Decisions beyond the reference text:
 * - An absent `podSelector` / `namespaceSelector` (or one given as `null`) is the empty selector and
 *   matches everything, as Istio's `EnablementSelector` holds them by value.
 * - `namespaceChangeMatters` skips empty namespaceSelectors, as Istio's `MatchesNamespace` does:
 *   with the Helm default the first entry has none, and counting it would make every namespace
 *   "match" and no label flip ever matter.
 * - The selector YAML is parsed strictly: unknown fields are refused (a misspelt `podselector`
 *   would otherwise leave an empty selector that enrols every pod), label values must be YAML
 *   strings (`a: true` is refused; quote it), and keys, values and operators are validated as
 *   Kubernetes' `LabelSelectorAsSelector` does.
 * - Rule 5 (ztunnel pods in the system namespace) is applied by `isAmbientPod` itself, after the
 *   excluded namespaces; the reference only names snapshots and namespace re-queues, where the same
 *   function is used.
 */

// ---------------------------------------------------------------------------------------------
// Names (§0.2)

export const DATAPLANE_MODE_LABEL = 'istio.io/dataplane-mode';
export const DataplaneMode = { Ambient: 'ambient', None: 'none' } as const;
export const SIDECAR_STATUS_ANNOTATION = 'sidecar.istio.io/status';
export const REDIRECTION_ANNOTATION = 'ambient.istio.io/redirection';
/** Values the CNI agent writes into `ambient.istio.io/redirection`; absent = not captured. */
export const Redirection = { Enabled: 'enabled', Pending: 'pending' } as const;
export type RedirectionValue = (typeof Redirection)[keyof typeof Redirection];
/** The label that, with the system namespace, marks a ztunnel pod (§1.5 rule 5). */
export const ZTUNNEL_APP_LABEL = 'app';
export const ZTUNNEL_APP_VALUE = 'ztunnel';
export const DEFAULT_SYSTEM_NAMESPACE = 'istio-system';
export const DEFAULT_EXCLUDE_NAMESPACES: readonly string[] = Object.freeze(['kube-system']);

// ---------------------------------------------------------------------------------------------
// Views of the Kubernetes objects (only what the decision reads)

export type Labels = Readonly<Record<string, string>>;

export interface PodView {
  readonly name: string;
  readonly namespace: string;
  readonly uid: string;
  readonly labels?: Labels | undefined;
  readonly annotations?: Labels | undefined;
  /** `spec.hostNetwork`. */
  readonly hostNetwork?: boolean | undefined;
  /** `status.phase`: Pending, Running, Succeeded, Failed, Unknown. */
  readonly phase?: string | undefined;
}

export interface NamespaceView {
  readonly name: string;
  readonly labels?: Labels | undefined;
}

/** Succeeded or Failed: such pods are left out of snapshots and removed from the mesh (§1.10). */
export function isPodTerminal(pod: Pick<PodView, 'phase'>): boolean {
  return pod.phase === 'Succeeded' || pod.phase === 'Failed';
}

// ---------------------------------------------------------------------------------------------
// Label selectors (Kubernetes metav1.LabelSelector)

export const SelectorOperators = ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const;
export type SelectorOperator = (typeof SelectorOperators)[number];

export interface LabelSelectorRequirement {
  readonly key: string;
  readonly operator: SelectorOperator;
  /** Non-empty for In/NotIn, empty for Exists/DoesNotExist. */
  readonly values: readonly string[];
}

export interface LabelSelector {
  readonly matchLabels?: Labels | undefined;
  readonly matchExpressions?: readonly LabelSelectorRequirement[] | undefined;
}

/** True when the selector has no requirement at all (it then matches every label set). */
export function selectorIsEmpty(selector: LabelSelector | undefined): boolean {
  return (
    selector === undefined ||
    (Object.keys(selector.matchLabels ?? {}).length === 0 && (selector.matchExpressions ?? []).length === 0)
  );
}

/** Kubernetes semantics: every matchLabels pair and every expression must hold; empty matches all. */
export function selectorMatches(selector: LabelSelector | undefined, labels: Labels | undefined): boolean {
  if (selector === undefined) return true;
  const set = labels ?? {};
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (!Object.hasOwn(set, key) || set[key] !== value) return false;
  }
  for (const req of selector.matchExpressions ?? []) {
    if (!requirementMatches(req, set)) return false;
  }
  return true;
}

function requirementMatches(req: LabelSelectorRequirement, labels: Labels): boolean {
  const has = Object.hasOwn(labels, req.key);
  switch (req.operator) {
    case 'In':
      return has && req.values.includes(labels[req.key] ?? '');
    case 'NotIn':
      return !has || !req.values.includes(labels[req.key] ?? '');
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
  }
}

// ---------------------------------------------------------------------------------------------
// Enablement selectors (§1.2, §1.5 rule 3)

/** One entry: the pod matches `podSelector` AND its namespace matches `namespaceSelector`. */
export interface EnablementSelector {
  readonly podSelector?: LabelSelector | undefined;
  readonly namespaceSelector?: LabelSelector | undefined;
}

/** The Helm default: pod labelled ambient anywhere, or namespace labelled ambient unless the pod says none. */
export const DEFAULT_ENABLEMENT_SELECTORS: readonly EnablementSelector[] = deepFreeze([
  { podSelector: { matchLabels: { [DATAPLANE_MODE_LABEL]: DataplaneMode.Ambient } } },
  {
    podSelector: { matchExpressions: [{ key: DATAPLANE_MODE_LABEL, operator: 'NotIn', values: [DataplaneMode.None] }] },
    namespaceSelector: { matchLabels: { [DATAPLANE_MODE_LABEL]: DataplaneMode.Ambient } },
  },
]);

/** The same default as the YAML text the Helm chart puts in `AMBIENT_ENABLEMENT_SELECTOR`. */
export const DEFAULT_ENABLEMENT_SELECTOR_YAML = `- podSelector:
    matchLabels:
      istio.io/dataplane-mode: ambient
- podSelector:
    matchExpressions:
      - key: istio.io/dataplane-mode
        operator: NotIn
        values: [none]
  namespaceSelector:
    matchLabels:
      istio.io/dataplane-mode: ambient
`;

/** Index of the first entry matching the pod and its namespace, or -1. */
export function matchingSelector(selectors: readonly EnablementSelector[], podLabels: Labels | undefined, nsLabels: Labels | undefined): number {
  return selectors.findIndex((s) => selectorMatches(s.podSelector, podLabels) && selectorMatches(s.namespaceSelector, nsLabels));
}

/** Whether any non-empty namespaceSelector matches (Istio `MatchesNamespace`). */
export function namespaceSelected(selectors: readonly EnablementSelector[], nsLabels: Labels | undefined): boolean {
  return selectors.some((s) => !selectorIsEmpty(s.namespaceSelector) && selectorMatches(s.namespaceSelector, nsLabels));
}

/**
 * Parses `AMBIENT_ENABLEMENT_SELECTOR`: a YAML (or JSON) list of `{podSelector, namespaceSelector}`.
 * Errors carry the field path: `[1].podSelector.matchExpressions[0].operator: …`; YAML syntax errors
 * come back as `line L, column C: …`.
 */
export function parseEnablementSelectors(text: string): Result<readonly EnablementSelector[]> {
  const parsed = parseYaml(text);
  if (!parsed.ok) return parsed;
  const root = parsed.value;
  if (!Array.isArray(root)) return fail(`<root>: must be a list of {podSelector, namespaceSelector} entries; got ${describe(root)}`);
  const problems: string[] = [];
  const entries = root.map((value: unknown, i) => enablementEntry(problems, `[${i}]`, value));
  if (problems.length > 0) return fail(...problems);
  return ok(deepFreeze(entries));
}

function enablementEntry(problems: string[], path: string, value: unknown): EnablementSelector {
  const m = mapping(problems, path, value, ['podSelector', 'namespaceSelector']);
  const podSelector = labelSelector(problems, `${path}.podSelector`, m.podSelector);
  const namespaceSelector = labelSelector(problems, `${path}.namespaceSelector`, m.namespaceSelector);
  return { ...(podSelector && { podSelector }), ...(namespaceSelector && { namespaceSelector }) };
}

function labelSelector(problems: string[], path: string, value: unknown): LabelSelector | undefined {
  if (value === null || value === undefined) return undefined;
  const m = mapping(problems, path, value, ['matchLabels', 'matchExpressions']);
  const out: { matchLabels?: Labels; matchExpressions?: readonly LabelSelectorRequirement[] } = {};
  if (m.matchLabels !== null && m.matchLabels !== undefined) {
    const labels: Record<string, string> = {};
    const ml = mapping(problems, `${path}.matchLabels`, m.matchLabels, undefined);
    for (const [key, v] of Object.entries(ml)) {
      const at = `${path}.matchLabels${keyPath(key)}`;
      const keyError = labelKeyError(key);
      if (keyError !== undefined) problems.push(`${at}: ${keyError}`);
      if (typeof v !== 'string') {
        problems.push(`${at}: must be a string (quote it); got ${describe(v)}`);
        continue;
      }
      const valueError = labelValueError(v);
      if (valueError !== undefined) problems.push(`${at}: ${valueError}`);
      labels[key] = v;
    }
    out.matchLabels = labels;
  }
  if (m.matchExpressions !== null && m.matchExpressions !== undefined) {
    if (!Array.isArray(m.matchExpressions)) {
      problems.push(`${path}.matchExpressions: must be a list; got ${describe(m.matchExpressions)}`);
    } else {
      out.matchExpressions = m.matchExpressions.flatMap((e: unknown, i) => {
        const r = requirement(problems, `${path}.matchExpressions[${i}]`, e);
        return r === undefined ? [] : [r];
      });
    }
  }
  return out;
}

function requirement(problems: string[], path: string, value: unknown): LabelSelectorRequirement | undefined {
  const before = problems.length;
  const m = mapping(problems, path, value, ['key', 'operator', 'values']);
  let key = '';
  if (typeof m.key !== 'string') problems.push(`${path}.key: must be a string; got ${describe(m.key)}`);
  else {
    key = m.key;
    const keyError = labelKeyError(key);
    if (keyError !== undefined) problems.push(`${path}.key: ${keyError}`);
  }
  const operator = SelectorOperators.find((o) => o === m.operator);
  if (operator === undefined) {
    problems.push(`${path}.operator: must be one of ${SelectorOperators.join(', ')}; got ${describe(m.operator)}`);
  }
  const values: string[] = [];
  if (m.values !== null && m.values !== undefined) {
    if (!Array.isArray(m.values)) problems.push(`${path}.values: must be a list of strings; got ${describe(m.values)}`);
    else {
      m.values.forEach((v: unknown, i) => {
        if (typeof v !== 'string') problems.push(`${path}.values[${i}]: must be a string (quote it); got ${describe(v)}`);
        else {
          const valueError = labelValueError(v);
          if (valueError !== undefined) problems.push(`${path}.values[${i}]: ${valueError}`);
          values.push(v);
        }
      });
    }
  }
  if ((operator === 'In' || operator === 'NotIn') && values.length === 0 && !problems.some((p) => p.startsWith(`${path}.values`))) {
    problems.push(`${path}.values: must be non-empty for operator ${operator}`);
  }
  if ((operator === 'Exists' || operator === 'DoesNotExist') && values.length > 0) {
    problems.push(`${path}.values: must be empty for operator ${operator}`);
  }
  if (problems.length > before || operator === undefined) return undefined;
  return { key, operator, values };
}

// Kubernetes qualified names (label keys) and label values.
const NAME = /^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)$/;
const DNS_SUBDOMAIN = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$/;

function labelKeyError(key: string): string | undefined {
  const slash = key.indexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length === 0 || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) {
    return `label key ${JSON.stringify(key)}: prefix must be a lowercase DNS subdomain of at most 253 characters`;
  }
  if (name.length === 0 || name.length > 63 || !NAME.test(name)) {
    return `label key ${JSON.stringify(key)}: name must be 1-63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric`;
  }
  return undefined;
}

function labelValueError(value: string): string | undefined {
  if (value === '') return undefined;
  if (value.length > 63 || !NAME.test(value)) {
    return `label value ${JSON.stringify(value)}: must be at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric`;
  }
  return undefined;
}

type Mapping = Record<string, unknown>;

/** The value as a mapping (reporting it when it is not one), with keys outside `known` reported. */
function mapping(problems: string[], path: string, value: unknown, known: readonly string[] | undefined): Mapping {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    problems.push(`${path}: must be a mapping; got ${describe(value)}`);
    return {};
  }
  const m = value as Mapping;
  if (known !== undefined) {
    for (const key of Object.keys(m)) {
      if (!known.includes(key)) problems.push(`${path}${keyPath(key)}: unknown field (expected ${known.join(', ')})`);
    }
  }
  return m;
}

function keyPath(key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return JSON.stringify(value);
  return `${typeof value === 'number' ? 'the number' : `the ${typeof value}`} ${String(value)}`;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// The decision (§1.5)

export interface EnrollmentConfig {
  /** `AMBIENT_ENABLEMENT_SELECTOR`, parsed. */
  readonly enablementSelectors: readonly EnablementSelector[];
  /** `EXCLUDE_NAMESPACES`. */
  readonly excludeNamespaces: readonly string[];
  /** `SYSTEM_NAMESPACE`, where ztunnel runs. */
  readonly systemNamespace: string;
}

export const DEFAULT_ENROLLMENT_CONFIG: EnrollmentConfig = deepFreeze({
  enablementSelectors: DEFAULT_ENABLEMENT_SELECTORS,
  excludeNamespaces: DEFAULT_EXCLUDE_NAMESPACES,
  systemNamespace: DEFAULT_SYSTEM_NAMESPACE,
});

/** Why a pod is or is not enrolled, one per rule of §1.5 in order; stable strings for logs and tests. */
export const EnrollReason = {
  HostNetwork: 'pod uses the host network',
  SidecarInjected: 'pod has an injected sidecar (sidecar.istio.io/status)',
  NoSelectorMatch: 'no enablement selector matches the pod and its namespace',
  ExcludedNamespace: 'namespace is in EXCLUDE_NAMESPACES',
  Ztunnel: 'pod is a ztunnel in the system namespace',
  Selected: 'an enablement selector matches the pod and its namespace',
} as const;
export type EnrollReason = (typeof EnrollReason)[keyof typeof EnrollReason];

export interface EnrollmentDecision {
  readonly enroll: boolean;
  readonly reason: EnrollReason;
}

/**
 * §1.5, first hit decides: host network → never; sidecar status annotation → never; no enablement
 * selector entry matches → no; excluded namespace → no (a selected pod there is worth a warning);
 * ztunnel in the system namespace → no; otherwise enrol.
 */
export function isAmbientPod(pod: PodView, namespace: NamespaceView, config: EnrollmentConfig): EnrollmentDecision {
  if (pod.hostNetwork === true) return decision(false, EnrollReason.HostNetwork);
  if (pod.annotations !== undefined && Object.hasOwn(pod.annotations, SIDECAR_STATUS_ANNOTATION)) {
    return decision(false, EnrollReason.SidecarInjected);
  }
  if (matchingSelector(config.enablementSelectors, pod.labels, namespace.labels) < 0) return decision(false, EnrollReason.NoSelectorMatch);
  if (config.excludeNamespaces.includes(pod.namespace)) return decision(false, EnrollReason.ExcludedNamespace);
  if (pod.namespace === config.systemNamespace && pod.labels?.[ZTUNNEL_APP_LABEL] === ZTUNNEL_APP_VALUE) {
    return decision(false, EnrollReason.Ztunnel);
  }
  return decision(true, EnrollReason.Selected);
}

function decision(enroll: boolean, reason: EnrollReason): EnrollmentDecision {
  return { enroll, reason };
}

/**
 * Whether a namespace label change can change any of its pods' enrollment, so that the agent must
 * re-queue them (§1.5 last paragraph): only the namespaceSelector half is evaluated, before and after.
 */
export function namespaceChangeMatters(before: NamespaceView, after: NamespaceView, config: EnrollmentConfig): boolean {
  return namespaceSelected(config.enablementSelectors, before.labels) !== namespaceSelected(config.enablementSelectors, after.labels);
}

// ---------------------------------------------------------------------------------------------
// The redirection annotation (§1.6)

/** What AddPodToMesh reported. */
export const AddOutcome = {
  /** ztunnel acked AddWorkload (and the probe set was updated): fully captured. */
  Acked: 'acked',
  /** In-pod rules are in, but no ztunnel was connected, or its ack failed or timed out: retryable. */
  NoAck: 'no-ack',
  /** Netns or in-pod rules failed: non-retryable, the pod is dropped and no annotation is written. */
  SetupFailed: 'setup-failed',
} as const;
export type AddOutcome = (typeof AddOutcome)[keyof typeof AddOutcome];

/**
 * The annotation value after acting on `decision`: `undefined` means absent. A decision not to enrol
 * runs RemovePodFromMesh, which always removes the annotation (`outcome` is not consulted); a
 * decision to enrol needs the AddPodToMesh outcome. When the result differs from `current`, the
 * caller patches `pods/status` with `redirectionPatch(result ?? null)`.
 */
export function nextRedirection(current: string | undefined, decision: Pick<EnrollmentDecision, 'enroll'>, outcome: AddOutcome | undefined): string | undefined {
  if (!decision.enroll) return undefined;
  switch (outcome) {
    case AddOutcome.Acked:
      return Redirection.Enabled;
    case AddOutcome.NoAck:
      return Redirection.Pending;
    case AddOutcome.SetupFailed:
      return current;
    case undefined:
      throw new TypeError('nextRedirection: an enrol decision needs the AddPodToMesh outcome');
  }
}

/** The JSON merge patch for the `pods/status` subresource; `null` removes the annotation. */
export function redirectionPatch(value: RedirectionValue | null): { metadata: { annotations: Record<string, RedirectionValue | null> } } {
  return { metadata: { annotations: { [REDIRECTION_ANNOTATION]: value } } };
}
