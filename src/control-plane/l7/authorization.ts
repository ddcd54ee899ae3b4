import type { L7AuthorizationPolicy, L7Condition, L7Operation, L7Rule, L7Source } from '../../workload-api/l7-types.ts';
import { DRY_RUN_ANNOTATION } from '../authorization.ts';
import type { KubeAuthorizationPolicy, KubeService, PolicyRule, TargetRef } from '../kube-objects.ts';
import type { ClusterView } from '../view.ts';
import { WAYPOINT_CLASS, waypointReference } from '../waypoint.ts';

/**
 * AuthorizationPolicy → the waypoint's L7 AuthorizationPolicy (reference istio-ambient.md §2.6): only policies
 * with `targetRefs` (or the older `targetRef`) apply at a waypoint, selector policies never do.
 * - Targets: a Gateway (the waypoint, same namespace) → every Service bound to it; the GatewayClass
 *   `istio-waypoint` (policy in the root namespace) → every service of every waypoint (empty target list); a
 *   Service (same namespace) → that service. Other kinds are problems.
 * - ALLOW and DENY; CUSTOM and AUDIT are not supported (problem, not sent).
 * - `istio.io/dry-run: "true"` → `dry_run`.
 * - Rules map field for field; `serviceAccounts` become principals `<trust domain>/ns/<ns>/sa/<sa>`. A field the
 *   waypoint cannot evaluate (`remoteIpBlocks`) fails closed: an ALLOW rule that has one is dropped (it then
 *   allows less), a DENY rule keeps everything else (it then denies more); both are reported.
 */

export interface L7PolicyTranslation {
  /** By `namespace/name` (the xDS resource name). */
  readonly policies: ReadonlyMap<string, L7AuthorizationPolicy>;
  readonly problems: ReadonlyArray<{ readonly policy: string; readonly message: string }>;
}

const UNSUPPORTED_SOURCE_FIELDS = ['remoteIpBlocks', 'notRemoteIpBlocks'] as const;

export function targetsOf(policy: { readonly spec?: { readonly targetRef?: TargetRef | null; readonly targetRefs?: readonly TargetRef[] | null } }): readonly TargetRef[] {
  return [...(policy.spec?.targetRefs ?? []), ...(policy.spec?.targetRef ? [policy.spec.targetRef] : [])];
}

function principalOf(trustDomain: string, namespace: string, serviceAccount: string): string {
  const [ns, sa] = serviceAccount.includes('/') ? serviceAccount.split('/', 2) : [namespace, serviceAccount];
  return `${trustDomain}/ns/${ns}/sa/${sa}`;
}

function translateRule(rule: PolicyRule, policy: KubeAuthorizationPolicy, view: ClusterView, where: string, problems: string[]): L7Rule | undefined {
  const namespace = policy.metadata?.namespace ?? '';
  const deny = policy.spec?.action === 'DENY';
  let unsupported = false;
  const from = (rule.from ?? []).map((f, i): L7Source => {
    const s = f.source ?? {};
    for (const field of UNSUPPORTED_SOURCE_FIELDS) {
      if ((s[field]?.length ?? 0) > 0) {
        unsupported = true;
        problems.push(`${where}.from[${i}].source.${field}: not supported at the waypoint; ${deny ? 'the rule denies without it' : 'the rule is dropped'}`);
      }
    }
    const td = view.settings.trustDomain;
    return {
      principals: [...(s.principals ?? []), ...(s.serviceAccounts ?? []).map((sa) => principalOf(td, namespace, sa))],
      notPrincipals: [...(s.notPrincipals ?? []), ...(s.notServiceAccounts ?? []).map((sa) => principalOf(td, namespace, sa))],
      requestPrincipals: [...(s.requestPrincipals ?? [])],
      notRequestPrincipals: [...(s.notRequestPrincipals ?? [])],
      namespaces: [...(s.namespaces ?? [])],
      notNamespaces: [...(s.notNamespaces ?? [])],
      ipBlocks: [...(s.ipBlocks ?? [])],
      notIpBlocks: [...(s.notIpBlocks ?? [])],
    };
  });
  const to = (rule.to ?? []).map((t, i): L7Operation => {
    const o = t.operation ?? {};
    const ports = (list: readonly string[] | undefined, field: string) =>
      (list ?? []).flatMap((p, j) => {
        const n = /^\d+$/.test(p) ? Number(p) : NaN;
        if (n >= 1 && n <= 65_535) return [n];
        problems.push(`${where}.to[${i}].operation.${field}[${j}]: ${JSON.stringify(p)} is not a port`);
        unsupported = true;
        return [];
      });
    return {
      hosts: [...(o.hosts ?? [])], notHosts: [...(o.notHosts ?? [])],
      ports: ports(o.ports, 'ports'), notPorts: ports(o.notPorts, 'notPorts'),
      methods: [...(o.methods ?? [])], notMethods: [...(o.notMethods ?? [])],
      paths: [...(o.paths ?? [])], notPaths: [...(o.notPaths ?? [])],
    };
  });
  const when = (rule.when ?? []).map((c): L7Condition => ({ key: c.key ?? '', values: [...(c.values ?? [])], notValues: [...(c.notValues ?? [])] }));
  if (unsupported && !deny) return undefined;
  return { from, to, when };
}

/**
 * The services a waypoint policy (AuthorizationPolicy or RequestAuthentication) attaches to through its targetRefs,
 * as `namespace/hostname` keys: a Gateway → the Services bound to it; the `istio-waypoint` GatewayClass (policy in
 * the root namespace) → `[]`, every service of every waypoint; a Service → that one. Undefined when it attaches to
 * nothing (yet). Bad targets are reported.
 */
export function waypointTargets(
  targets: readonly TargetRef[], namespace: string, services: readonly KubeService[], view: ClusterView, report: (message: string) => void,
): string[] | undefined {
  const mine: string[] = [];
  let everyService = false;
  const hostOf = (svc: KubeService) => `${svc.metadata?.namespace ?? ''}/${svc.metadata?.name ?? ''}.${svc.metadata?.namespace ?? ''}.svc.${view.settings.domainSuffix}`;
  targets.forEach((target, i): void => {
    const at = `spec.targetRefs[${i}]`;
    const group = target.group ?? '';
    if (target.kind === 'Gateway' && group === 'gateway.networking.k8s.io') {
      const gw = view.gateway(target.namespace ?? namespace, target.name ?? '');
      if (gw === undefined) {
        report(`${at}: Gateway ${namespace}/${target.name ?? ''} does not exist`);
        return;
      }
      for (const svc of services) {
        const ref = waypointReference(view, svc);
        if (ref !== undefined && ref !== 'none' && ref.namespace === namespace && ref.name === target.name) mine.push(hostOf(svc));
      }
      return;
    }
    if (target.kind === 'GatewayClass' && group === 'gateway.networking.k8s.io') {
      if (target.name !== WAYPOINT_CLASS) {
        report(`${at}: GatewayClass ${target.name ?? ''} is not ${WAYPOINT_CLASS}`);
        return;
      }
      if (namespace !== view.settings.rootNamespace) {
        report(`${at}: a GatewayClass target needs the policy in the root namespace ${view.settings.rootNamespace}`);
        return;
      }
      everyService = true;
      return;
    }
    if (target.kind === 'Service' && (group === '' || group === 'core')) {
      const svc = view.service(namespace, target.name ?? '');
      if (svc === undefined) {
        report(`${at}: Service ${namespace}/${target.name ?? ''} does not exist`);
        return;
      }
      mine.push(hostOf(svc));
      return;
    }
    report(`${at}: ${group}/${target.kind ?? ''} is not a supported target (Gateway, GatewayClass, Service)`);
  });
  if (everyService) return [];
  return mine.length === 0 ? undefined : [...new Set(mine)].sort();
}

export function translateL7Policies(policies: Iterable<KubeAuthorizationPolicy>, services: Iterable<KubeService>, view: ClusterView): L7PolicyTranslation {
  const out = new Map<string, L7AuthorizationPolicy>();
  const problems: Array<{ policy: string; message: string }> = [];
  const serviceList = [...services];
  for (const policy of policies) {
    const targets = targetsOf(policy);
    if (targets.length === 0) continue; // selector or namespace policies are ztunnel's
    const namespace = policy.metadata?.namespace ?? '';
    const name = policy.metadata?.name ?? '';
    const key = `${namespace}/${name}`;
    const report = (message: string) => problems.push({ policy: key, message });
    const action = policy.spec?.action ?? 'ALLOW';
    if (action !== 'ALLOW' && action !== 'DENY') {
      report(`spec.action: ${action} is not supported at the waypoint; the policy is not sent`);
      continue;
    }
    if (policy.spec?.selector) report('spec.selector: ignored, a policy with targetRefs applies by its targets');
    const attached = waypointTargets(targets, namespace, serviceList, view, report);
    if (attached === undefined) continue; // attached to nothing (yet)
    const ruleProblems: string[] = [];
    const rules = (policy.spec?.rules ?? []).flatMap((rule, i) => {
      const r = translateRule(rule, policy, view, `spec.rules[${i}]`, ruleProblems);
      return r === undefined ? [] : [r];
    });
    for (const message of ruleProblems) report(message);
    out.set(key, {
      name, namespace,
      action,
      targetServices: attached,
      rules,
      dryRun: policy.metadata?.annotations?.[DRY_RUN_ANNOTATION] === 'true',
    });
  }
  return { policies: out, problems };
}
