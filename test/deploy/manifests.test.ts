import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type {
  V1ClusterRole, V1ClusterRoleBinding, V1Container, V1CustomResourceDefinition, V1DaemonSet, V1Deployment, V1JSONSchemaProps, V1PodSpec, V1Service,
} from '@kubernetes/client-node';
import { parseFlags } from '../../src/cli/flags.ts';
import { CniAgentEnv, parseCniAgentConfig } from '../../src/cni/agent-config.ts';
import { ControlPlaneEnv, parseControlPlaneConfig } from '../../src/control-plane/config.ts';
import { COLLECTION_PATHS } from '../../src/control-plane/kube-objects.ts';
import { KubePath } from '../../src/control-plane/kube-rest.ts';
import { L7_COLLECTIONS } from '../../src/control-plane/l7/extension.ts';
import { DEFAULT_CNI_AGENT_RUN_DIR, pluginEntry } from '../../src/cni/installer.ts';
import { Env } from '../../src/workload-api/env.ts';
import { parseZtunnelConfig, ZtunnelEnv } from '../../src/ztunnel/config.ts';
import { createCniAgentMetrics, startAgentMonitoring } from '../../src/cni/agent-monitoring.ts';
import { READINESS_PATH } from '../../src/core/readiness-server.ts';
import { STATS_PATHS } from '../../src/core/stats-server.ts';
import { captureLog } from '../helpers/log.ts';
import { parseYaml } from '../../src/core/yaml.ts';
import { DEPLOY_DIR, describe, KUSTOMIZATION, loadManifests, REPO, structuralErrors, validateManifest, type KubeObject, type Manifest, type StructuralSchema } from '../helpers/manifests.ts';

/**
 * Every manifest under deploy/ is validated offline against the Kubernetes API schemas (kubernetes-models'
 * validators for types/required/enums, client-node's models for unknown fields, as `--validate=strict`), and the
 * node DaemonSets are checked against the code they run: every variable set is one our parsers read and the whole
 * environment parses, ports and probes are the servers' own, the sockets ztunnel and the agent share are one host
 * path, and the agent's RBAC covers the API calls it makes.
 */

const manifests = loadManifests();
const byKind = (kind: string): Manifest[] => manifests.filter((m) => m.object.kind === kind);
const named = <T>(kind: string, name: string): T => {
  const found = manifests.find((m) => m.object.kind === kind && m.object.metadata.name === name);
  if (found === undefined) throw new Error(`no ${kind}/${name} in deploy/`);
  return found.object as unknown as T;
};

/** What the downward API would give each fieldRef. */
const FIELD_VALUES: Record<string, string> = {
  'metadata.name': 'pod-abcde',
  'metadata.namespace': 'istio-system',
  'spec.nodeName': 'node-1',
  'status.podIP': '10.244.0.5',
};

function containerEnv(container: V1Container): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of container.env ?? []) {
    const field = e.valueFrom?.fieldRef?.fieldPath;
    env[e.name] = e.value ?? (field !== undefined ? (FIELD_VALUES[field] ?? `<${field}>`) : '<ref>');
  }
  return env;
}

/** The host path behind `path` in `container` (longest mount wins), or undefined when it is not on a hostPath volume. */
function hostPathOf(pod: V1PodSpec, container: V1Container, path: string): string | undefined {
  const mounts = [...(container.volumeMounts ?? [])].sort((a, b) => b.mountPath.length - a.mountPath.length);
  for (const mount of mounts) {
    const at = mount.mountPath.replace(/\/+$/, '');
    if (path !== at && !path.startsWith(`${at}/`)) continue;
    const host = pod.volumes?.find((v) => v.name === mount.name)?.hostPath?.path;
    return host === undefined ? undefined : `${host.replace(/\/+$/, '')}${path.slice(at.length)}`;
  }
  return undefined;
}

function single<T>(items: readonly T[] | undefined, what: string): T {
  if (items?.length !== 1) throw new Error(`expected exactly one ${what}, got ${items?.length ?? 0}`);
  return items[0] as T;
}

const ztunnelDs = named<V1DaemonSet>('DaemonSet', 'ztunnel');
const agentDs = named<V1DaemonSet>('DaemonSet', 'istio-cni-node');
const ztunnelPod = ztunnelDs.spec!.template.spec!;
const agentPod = agentDs.spec!.template.spec!;
const ztunnelContainer = single(ztunnelPod.containers, 'ztunnel container');
const agentContainer = single(agentPod.containers, 'agent container');

function ztunnelConfig() {
  const [component, ...args] = ztunnelContainer.args ?? [];
  const { flags, errors } = parseFlags(args);
  const parsed = parseZtunnelConfig(flags, containerEnv(ztunnelContainer));
  return { component, errors: [...errors, ...(parsed.ok ? [] : parsed.errors)], config: parsed.ok ? parsed.value : undefined };
}

function agentConfig() {
  const [component, ...args] = agentContainer.args ?? [];
  const { flags, errors } = parseFlags(args);
  const parsed = parseCniAgentConfig(flags, containerEnv(agentContainer));
  return { component, errors: [...errors, ...(parsed.ok ? [] : parsed.errors)], config: parsed.ok ? parsed.value : undefined };
}

test('deploy/ holds the namespace, RBAC, the node DaemonSets, the control plane and the Gateway API CRDs', (t) => {
  const files = [...new Set(manifests.map((m) => m.file))];
  t.true(['control-plane.yaml', 'daemonset.yaml', 'gateway-api-crds.yaml', 'namespace.yaml', 'rbac.yaml'].every((f) => files.includes(f)), files.join(', '));
  t.deepEqual(byKind('DaemonSet').map((m) => m.object.metadata.name).sort(), ['istio-cni-node', 'ztunnel']);
  t.deepEqual(byKind('CustomResourceDefinition').map((m) => (m.object as unknown as V1CustomResourceDefinition).spec.names.kind).sort(), [
    'AuthorizationPolicy', 'DestinationRule', 'GRPCRoute', 'Gateway', 'GatewayClass', 'HTTPRoute', 'PeerAuthentication', 'RequestAuthentication', 'ServiceEntry', 'VirtualService', 'WorkloadEntry',
  ]);
  t.true(files.includes('istio-crds.yaml'));
});

test('kustomization.yaml lists every manifest but the CRDs, namespace first', (t) => {
  const kustomization = parseYaml(readFileSync(join(DEPLOY_DIR, KUSTOMIZATION), 'utf8'));
  if (!kustomization.ok) throw new Error(kustomization.errors.join('\n'));
  const k = kustomization.value as { apiVersion: string; kind: string; resources: string[] };
  t.is(k.apiVersion, 'kustomize.config.k8s.io/v1beta1');
  t.is(k.kind, 'Kustomization');
  const files = [...new Set(manifests.map((m) => m.file))].filter((f) => f !== 'gateway-api-crds.yaml' && f !== 'istio-crds.yaml');
  t.deepEqual([...k.resources].sort(), files.sort());
  t.is(k.resources[0], 'namespace.yaml', 'plain kubectl apply -f in this order works too');
});

for (const m of manifests) {
  test(`valid against the Kubernetes schemas, strictly: ${describe(m)}`, async (t) => {
    t.deepEqual(await validateManifest(m.object), []);
  });
}

test('the validator refuses what the API server would: a misspelt field, a wrong type, a missing required field, an unknown kind', async (t) => {
  const broken = structuredClone(ztunnelDs) as unknown as { spec: { template: { spec: { containers: Array<Record<string, unknown>> } } } };
  const container = broken.spec.template.spec.containers[0]!;
  container['imagePullPolcy'] = 'Always';
  (container['ports'] as Array<Record<string, unknown>>)[0]!['containerPort'] = '15020';
  delete container['name'];
  const problems = await validateManifest(broken as unknown as KubeObject);
  t.true(problems.some((p) => /spec\.template\.spec\.containers\[0\]\.imagePullPolcy: unknown field/.test(p)), problems.join('\n'));
  t.true(problems.some((p) => /containers\/0\/ports\/0\/containerPort: must be integer/.test(p)), problems.join('\n'));
  t.true(problems.some((p) => /containers\/0: must have required property name/.test(p)), problems.join('\n'));
  const crd = structuredClone(byKind('CustomResourceDefinition')[0]!.object) as unknown as V1CustomResourceDefinition;
  (crd.spec.versions[0]!.schema!.openAPIV3Schema!.properties!['spec'] as unknown as Record<string, unknown>)['x-kubernetes-preserve-unknown-field'] = true;
  t.deepEqual(await validateManifest(crd as unknown as KubeObject), [
    '.spec.versions[0].schema.openAPIV3Schema.properties.spec.x-kubernetes-preserve-unknown-field: unknown field of V1JSONSchemaProps',
  ]);
  t.deepEqual(await validateManifest({ apiVersion: 'apps/v1', kind: 'DaemonSett', metadata: { name: 'x' } }), [
    'kind DaemonSett: not a kind of apps/v1',
    'apps/v1 DaemonSett: no API model V1DaemonSett',
  ]);
});

test('every namespaced object lives in a namespace that deploy/namespace.yaml creates, and names are unique', (t) => {
  const namespaces = new Set(byKind('Namespace').map((m) => m.object.metadata.name));
  const cluster = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition']);
  for (const m of manifests) {
    if (cluster.has(m.object.kind)) t.is(m.object.metadata.namespace, undefined, describe(m));
    else t.true(namespaces.has(m.object.metadata.namespace ?? ''), `${describe(m)} in ${m.object.metadata.namespace}`);
  }
  const keys = manifests.map((m) => `${m.object.apiVersion}/${m.object.kind}/${m.object.metadata.namespace ?? ''}/${m.object.metadata.name}`);
  t.is(new Set(keys).size, keys.length);
});

test('DaemonSets: the selector matches the pod labels, node-critical, on every node, pods opted out of the mesh', (t) => {
  for (const ds of [ztunnelDs, agentDs]) {
    const labels = ds.spec!.template.metadata!.labels ?? {};
    for (const [k, v] of Object.entries(ds.spec!.selector.matchLabels ?? {})) t.is(labels[k], v, `${ds.metadata!.name}: selector ${k}`);
    const pod = ds.spec!.template.spec!;
    t.is(pod.priorityClassName, 'system-node-critical');
    t.deepEqual(pod.nodeSelector, { 'kubernetes.io/os': 'linux' });
    t.deepEqual(pod.tolerations?.map((x) => `${x.key ?? ''}:${x.effect ?? ''}:${x.operator}`).sort(), [':NoExecute:Exists', ':NoSchedule:Exists', 'CriticalAddonsOnly::Exists']);
    t.is(labels['istio.io/dataplane-mode'], 'none', 'never captured itself');
    t.not(pod.hostNetwork, true);
  }
  // The agent pods must not be mistaken for workloads; ztunnel pods are recognised by app=ztunnel in SYSTEM_NAMESPACE.
  t.is(ztunnelDs.spec!.template.metadata!.labels?.['app'], 'ztunnel');
  t.deepEqual(ztunnelDs.spec!.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
  t.deepEqual(agentDs.spec!.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
});

test('ztunnel container: every variable is one ztunnel reads, and the whole environment parses', async (t) => {
  const reads = new Set<string>([...Object.values(ZtunnelEnv), ...Object.values(Env)]);
  const prefixes = [Env.xdsHeaderPrefix, Env.caHeaderPrefix, 'ISTIO_META_', 'ISTIO_METAJSON_'];
  // The xDS node's identity comes straight from the environment in ztunnel.ts (not config.ts): keep that true.
  const ztunnelSource = readFileSync(join(REPO, 'src', 'ztunnel', 'ztunnel.ts'), 'utf8');
  for (const name of ['POD_NAME', 'POD_NAMESPACE', 'INSTANCE_IP']) {
    t.true(ztunnelSource.includes(`['${name}']`), `ztunnel.ts reads ${name}`);
    reads.add(name);
  }
  for (const e of ztunnelContainer.env ?? []) {
    t.true(reads.has(e.name) || prefixes.some((p) => e.name.startsWith(p) && !reads.has(p)), `${e.name} is read by ztunnel`);
  }
  const { component, errors, config } = ztunnelConfig();
  t.is(component, 'ztunnel');
  t.deepEqual(errors, []);
  t.is(config?.proxyMode, 'shared');
  t.is(config?.nodeName, 'node-1');
  t.is(config?.workloadApi.xdsAddress, 'https://istiod.istio-system.svc:15012');
  t.is(config?.workloadApi.caAddress, 'https://istiod.istio-system.svc:15012');
  t.like(config?.workloadApi.xdsRootCa, { path: '/var/run/secrets/istio/root-cert.pem' });
  // The drain finishes before the kubelet's SIGKILL.
  t.true(config!.terminationDeadlineMs < (ztunnelPod.terminationGracePeriodSeconds ?? 30) * 1000);
});

test('ztunnel container: ports, the readiness probe and the scrape annotations are the servers\' own', (t) => {
  const { config } = ztunnelConfig();
  const ports = new Map((ztunnelContainer.ports ?? []).map((p) => [p.containerPort, p.name]));
  t.is(ports.get(config!.statsPort), 'ztunnel-stats');
  t.true(ports.has(config!.readinessPort));
  t.false(ports.has(config!.adminPort), 'admin is loopback only, never a container port');
  t.deepEqual(ztunnelContainer.readinessProbe?.httpGet, { path: READINESS_PATH, port: config!.readinessPort });
  t.is(ztunnelContainer.livenessProbe, undefined, 'ztunnel has no liveness probe, as upstream');
  const annotations = ztunnelDs.spec!.template.metadata!.annotations ?? {};
  t.is(annotations['prometheus.io/scrape'], 'true');
  t.is(annotations['prometheus.io/port'], String(config!.statsPort));
  t.true(STATS_PATHS.includes(annotations['prometheus.io/path'] ?? '/metrics'));
});

test('ztunnel container: the token, root certificate and ZDS socket are mounted where the config looks', (t) => {
  const { config } = ztunnelConfig();
  const mountOf = (path: string) => (ztunnelContainer.volumeMounts ?? []).find((m) => path.startsWith(`${m.mountPath}/`));
  const token = ztunnelPod.volumes?.find((v) => v.name === mountOf('/var/run/secrets/tokens/istio-token')?.name);
  t.deepEqual(token?.projected?.sources?.[0]?.serviceAccountToken, { audience: 'istio-ca', expirationSeconds: 43200, path: 'istio-token' });
  t.is(ztunnelPod.volumes?.find((v) => v.name === mountOf('/var/run/secrets/istio/root-cert.pem')?.name)?.configMap?.name, 'istio-ca-root-cert');
  t.is(hostPathOf(ztunnelPod, ztunnelContainer, config!.inpodUds), '/var/run/ztunnel/ztunnel.sock');
  t.is(ztunnelContainer.securityContext?.readOnlyRootFilesystem, true);
  t.is(hostPathOf(ztunnelPod, ztunnelContainer, '/tmp'), undefined, '/tmp is an emptyDir');
  t.true((ztunnelContainer.volumeMounts ?? []).some((m) => m.mountPath === '/tmp'));
  t.deepEqual(ztunnelContainer.securityContext?.capabilities, { drop: ['ALL'], add: ['NET_ADMIN', 'SYS_ADMIN', 'NET_RAW'] });
});

test('CNI agent container: every variable is one the agent reads, and the whole environment parses', (t) => {
  const reads = new Set<string>(Object.values(CniAgentEnv));
  for (const e of agentContainer.env ?? []) t.true(reads.has(e.name), `${e.name} is read by the agent`);
  const { component, errors, config } = agentConfig();
  t.is(component, 'cni-agent');
  t.deepEqual(errors, []);
  t.is(config?.nodeName, 'node-1');
  t.is(config?.enrollment.systemNamespace, 'istio-system');
  t.false(config?.rules.dnsCapture, 'no DNS capture while ztunnel has no DNS proxy');
});

test('CNI agent and ztunnel meet on one host socket; the shim on the host finds the agent; the installer writes the host\'s CNI dirs', (t) => {
  const { config: agent } = agentConfig();
  const { config: zt } = ztunnelConfig();
  t.is(hostPathOf(agentPod, agentContainer, agent!.ztunnelSocket), hostPathOf(ztunnelPod, ztunnelContainer, zt!.inpodUds));
  // The installer writes cni_agent_run_dir into the plugin entry, and the shim dials <dir>/pluginevent.sock on the
  // host: the directory must be the same path inside the agent and on the host.
  t.is(pluginEntry({ cniAgentRunDir: agent!.cniAgentRunDir }).cni_agent_run_dir, agent!.cniAgentRunDir);
  t.is(hostPathOf(agentPod, agentContainer, agent!.cniAgentRunDir), agent!.cniAgentRunDir);
  t.is(hostPathOf(agentPod, agentContainer, agent!.pluginSocket), `${agent!.cniAgentRunDir}/pluginevent.sock`);
  t.is(agent!.cniAgentRunDir, DEFAULT_CNI_AGENT_RUN_DIR);
  t.is(hostPathOf(agentPod, agentContainer, agent!.procRoot), '/proc');
  t.deepEqual(agent!.hostNetns, { kind: 'path', path: '/host/proc/1/ns/net' });
  t.is(hostPathOf(agentPod, agentContainer, (agent!.hostNetns as { path: string }).path), '/proc/1/ns/net', 'the host\'s init netns');
  // CNI_NETNS is a host path the agent opens as given: the netns dir is mounted at its host path, propagating mounts.
  const netns = (agentContainer.volumeMounts ?? []).find((m) => hostPathOf(agentPod, agentContainer, m.mountPath) === '/var/run/netns');
  t.is(netns?.mountPath, '/var/run/netns');
  t.is(netns?.mountPropagation, 'HostToContainer');
  // The installer's dirs are the node's CNI dirs (istio-cni's mounts); the binary it copies is in the image (dockerfiles.test.ts).
  t.truthy(agent!.install, 'the agent installs the plugin');
  t.is(hostPathOf(agentPod, agentContainer, agent!.install!.binDir), '/opt/cni/bin');
  t.is(hostPathOf(agentPod, agentContainer, agent!.install!.confDir), '/etc/cni/net.d');
  t.is(hostPathOf(agentPod, agentContainer, agent!.install!.binSource), undefined, 'the shim comes from the image, not the host');
  t.is(agent!.daemonSetName, agentDs.metadata!.name!, 'upgrade detection looks for this DaemonSet');
  t.is(agent!.podNamespace, agentDs.metadata!.namespace!);
  t.deepEqual(agentContainer.securityContext?.capabilities, { drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW', 'SYS_PTRACE', 'SYS_ADMIN', 'DAC_OVERRIDE'] });
});

test('CNI agent container: ports, probes and scrape annotations are the ones the real monitoring servers answer', async (t) => {
  const { config } = agentConfig();
  const ports = new Map((agentContainer.ports ?? []).map((p) => [p.containerPort, p.name]));
  t.is(ports.get(config!.monitoringPort), 'metrics');
  t.true(ports.has(config!.readinessPort));
  t.is(agentContainer.readinessProbe?.httpGet?.port, config!.readinessPort);
  t.is(agentContainer.livenessProbe?.httpGet?.port, config!.readinessPort);
  const annotations = agentDs.spec!.template.metadata!.annotations ?? {};
  t.is(annotations['prometheus.io/scrape'], 'true');
  t.is(annotations['prometheus.io/port'], String(config!.monitoringPort));

  // The agent's own monitoring servers, on ports 0: the probe paths and the scrape path answer as the kubelet
  // and Prometheus expect (readiness 503 until ready, then 200).
  let pending = ['node agent'];
  const monitoring = await startAgentMonitoring({
    metrics: createCniAgentMetrics(), pending: () => pending, monitoringPort: 0, readinessPort: 0, host: '127.0.0.1', logger: captureLog().logger,
  });
  t.teardown(() => monitoring.close());
  const get = async (port: number, path: string) => (await fetch(`http://127.0.0.1:${port}${path}`)).status;
  t.is(await get(monitoring.ports.readiness, agentContainer.readinessProbe!.httpGet!.path!), 503);
  pending = [];
  t.is(await get(monitoring.ports.readiness, agentContainer.readinessProbe!.httpGet!.path!), 200);
  t.is(await get(monitoring.ports.readiness, agentContainer.livenessProbe!.httpGet!.path!), 200);
  t.is(await get(monitoring.ports.metrics, annotations['prometheus.io/path'] ?? '/metrics'), 200);
});

test('RBAC: the agent\'s service account may make every API call the agent makes; ztunnel has no role', (t) => {
  const agentSource = readFileSync(join(REPO, 'src', 'cni', 'agent.ts'), 'utf8');
  // The calls in agent.ts: two informers (list + watch) and a merge patch of pods/status.
  t.true(agentSource.includes("path: '/api/v1/pods'"));
  t.true(agentSource.includes("path: '/api/v1/namespaces'"));
  t.regex(agentSource, /kubeRequest\(HttpMethod\.PATCH, `\/api\/v1\/namespaces\/\$\{[^}]+\}\/pods\/\$\{[^}]+\}\/status`/);
  // And a GET of its own DaemonSet at shutdown.
  t.regex(agentSource, /`\/apis\/apps\/v1\/namespaces\/\$\{[^}]+\}\/daemonsets\/\$\{encodeURIComponent\(config\.daemonSetName\)\}`/);
  const needed: Array<[string, string, string]> = [
    ['', 'pods', 'list'], ['', 'pods', 'watch'], ['', 'namespaces', 'list'], ['', 'namespaces', 'watch'], ['', 'pods/status', 'patch'],
  ];

  const bindings = byKind('ClusterRoleBinding').map((m) => m.object as unknown as V1ClusterRoleBinding);
  const roles = new Map(byKind('ClusterRole').map((m) => [m.object.metadata.name, m.object as unknown as V1ClusterRole]));
  const rolesOf = (sa: string, ns: string) => bindings
    .filter((b) => b.subjects?.some((s) => s.kind === 'ServiceAccount' && s.name === sa && s.namespace === ns))
    .map((b) => {
      t.is(b.roleRef.kind, 'ClusterRole');
      const role = roles.get(b.roleRef.name);
      t.truthy(role, `ClusterRole ${b.roleRef.name} exists`);
      return role;
    });
  const agentRules = rolesOf(agentPod.serviceAccountName!, agentDs.metadata!.namespace!).flatMap((r) => r?.rules ?? []);
  for (const [group, resource, verb] of needed) {
    const grants = agentRules.some((r) => (r.apiGroups ?? []).includes(group) && (r.resources ?? []).includes(resource) && r.verbs.includes(verb) && r.resourceNames === undefined);
    t.true(grants, `${verb} ${resource}`);
  }
  const dsName = agentConfig().config!.daemonSetName;
  t.true(agentRules.some((r) => (r.apiGroups ?? []).includes('apps') && (r.resources ?? []).includes('daemonsets') && r.verbs.includes('get') && (r.resourceNames ?? [dsName]).includes(dsName)), `get daemonsets/${dsName}`);
  t.true(agentRules.every((r) => !(r.resources ?? []).includes('daemonsets') || (r.resourceNames ?? []).length > 0), 'only its own DaemonSet');
  t.false(agentRules.some((r) => r.verbs.includes('*') || (r.resources ?? []).includes('*') || (r.resources ?? []).includes('secrets')), 'least privilege');
  t.deepEqual(rolesOf(ztunnelPod.serviceAccountName!, ztunnelDs.metadata!.namespace!), []);
  t.is(ztunnelPod.automountServiceAccountToken, false, 'ztunnel gets no API token at all');
  t.not(agentPod.automountServiceAccountToken, false, 'the agent uses the in-cluster service account');
  const accounts = byKind('ServiceAccount').map((m) => `${m.object.metadata.namespace}/${m.object.metadata.name}`).sort();
  t.deepEqual(accounts, ['istio-system/istio-cni', 'istio-system/istiod', 'istio-system/ztunnel']);
});

function structuralProblems(schema: V1JSONSchemaProps, path: string): string[] {
  const s = schema as V1JSONSchemaProps & Record<string, unknown>;
  const out: string[] = [];
  const preserve = s['x-kubernetes-preserve-unknown-fields'] === true;
  if (s.type === undefined && !preserve && s['x-kubernetes-int-or-string'] !== true) out.push(`${path}: no type`);
  for (const [name, child] of Object.entries(s.properties ?? {})) out.push(...structuralProblems(child, `${path}.${name}`));
  if (s.items !== undefined) out.push(...structuralProblems(s.items as V1JSONSchemaProps, `${path}[]`));
  if (s.type === 'array' && s.items === undefined) out.push(`${path}: an array needs items`);
  for (const keyword of ['$ref', 'definitions', 'dependencies', 'additionalItems', 'patternProperties']) if (keyword in s) out.push(`${path}: ${keyword} is not allowed`);
  return out;
}

test('Gateway API CRDs: real names, group, scope and versions, a status subresource, structural schemas', (t) => {
  const expected: Record<string, { scope: string; versions: string[] }> = {
    GatewayClass: { scope: 'Cluster', versions: ['v1', 'v1beta1'] },
    Gateway: { scope: 'Namespaced', versions: ['v1', 'v1beta1'] },
    HTTPRoute: { scope: 'Namespaced', versions: ['v1', 'v1beta1'] },
    GRPCRoute: { scope: 'Namespaced', versions: ['v1'] },
  };
  for (const m of byKind('CustomResourceDefinition').filter((x) => x.file === 'gateway-api-crds.yaml')) {
    const crd = m.object as unknown as V1CustomResourceDefinition;
    const want = expected[crd.spec.names.kind]!;
    t.is(crd.spec.group, 'gateway.networking.k8s.io');
    t.is(crd.metadata!.name, `${crd.spec.names.plural}.${crd.spec.group}`);
    t.is(crd.spec.names.plural, `${crd.spec.names.kind.toLowerCase()}${crd.spec.names.kind.endsWith('s') ? 'es' : 's'}`);
    t.is(crd.spec.names.listKind, `${crd.spec.names.kind}List`);
    t.is(crd.spec.scope, want.scope);
    t.deepEqual(crd.spec.versions.map((v) => v.name), want.versions);
    t.deepEqual(crd.spec.versions.filter((v) => v.storage).map((v) => v.name), ['v1'], 'v1 is the one storage version');
    for (const v of crd.spec.versions) {
      t.true(v.served);
      t.deepEqual(v.subresources?.status, {});
      const schema = v.schema!.openAPIV3Schema!;
      t.deepEqual(structuralProblems(schema, `${crd.spec.names.kind}.${v.name}`), []);
      t.is(schema.properties?.['metadata']?.type, 'object');
      t.true(schema.required?.includes('spec'));
    }
  }
});

test('Gateway API CRDs accept what the waypoint flow creates and refuse what the upstream schema refuses on the typed fields', (t) => {
  const schemaOf = (kind: string, version = 'v1') => {
    const crd = byKind('CustomResourceDefinition').map((m) => m.object as unknown as V1CustomResourceDefinition).find((c) => c.spec.names.kind === kind)!;
    return crd.spec.versions.find((v) => v.name === version)!.schema!.openAPIV3Schema as unknown as StructuralSchema;
  };
  const gatewayClass = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'istio-waypoint' }, spec: { controllerName: 'istio.io/mesh-controller', description: 'The default Istio waypoint GatewayClass' } };
  // `istioctl waypoint generate --for service` (reference istio-ambient.md §2.1), with a cross-namespace listener.
  const waypoint = {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway',
    metadata: { name: 'waypoint', namespace: 'prod', labels: { 'istio.io/waypoint-for': 'service' } },
    spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE', allowedRoutes: { namespaces: { from: 'All' } } }] },
    status: { conditions: [{ type: 'Programmed', status: 'True', reason: 'Programmed', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' }] },
  };
  // A 90/10 canary split bound to a Service, as the waypoint routes it.
  const route = {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'reviews', namespace: 'prod' },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'reviews', port: 9080 }],
      rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/' } }], backendRefs: [{ name: 'reviews-v1', port: 9080, weight: 90 }, { name: 'reviews-v2', port: 9080, weight: 10 }] }],
    },
  };
  const grpc = {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute', metadata: { name: 'echo', namespace: 'prod' },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'echo' }], hostnames: ['echo.prod.svc.cluster.local'], rules: [{ matches: [{ method: { service: 'echo.Echo', method: 'Say' } }], backendRefs: [{ name: 'echo', port: 7070 }] }] },
  };
  t.deepEqual(structuralErrors(gatewayClass, schemaOf('GatewayClass')), []);
  t.deepEqual(structuralErrors(waypoint, schemaOf('Gateway')), []);
  t.deepEqual(structuralErrors(waypoint, schemaOf('Gateway', 'v1beta1')), []);
  t.deepEqual(structuralErrors(route, schemaOf('HTTPRoute')), []);
  t.deepEqual(structuralErrors(grpc, schemaOf('GRPCRoute')), []);

  const broken = structuredClone(waypoint) as unknown as { spec: { listeners: Array<Record<string, unknown>>; gatewayClassName?: string }; specs?: unknown };
  broken.spec.listeners[0]!['port'] = 70000;
  delete broken.spec.listeners[0]!['protocol'];
  delete broken.spec.gatewayClassName;
  broken.specs = {};
  t.deepEqual(structuralErrors(broken, schemaOf('Gateway')), [
    '.spec: gatewayClassName is required',
    '.spec.listeners[0]: protocol is required',
    '.spec.listeners[0].port: must be <= 65535',
    '.specs: unknown field, would be pruned',
  ]);
  t.deepEqual(structuralErrors({ ...waypoint, spec: { ...waypoint.spec, listeners: [] } }, schemaOf('Gateway')), ['.spec.listeners: fewer than 1 items']);
  t.deepEqual(structuralErrors({ ...route, spec: { parentRefs: [{ kind: 'Service' }] } }, schemaOf('HTTPRoute')), ['.spec.parentRefs[0]: name is required']);
  t.deepEqual(structuralErrors({ ...gatewayClass, spec: {} }, schemaOf('GatewayClass')), ['.spec: controllerName is required']);
});

test('control plane: the Service ztunnel dials is this Deployment\'s, its ports and probe are the container\'s, the CA trusts ztunnel\'s account', (t) => {
  const deployment = named<V1Deployment>('Deployment', 'istiod');
  const service = named<V1Service>('Service', 'istiod');
  const pod = deployment.spec!.template;
  const container = single(pod.spec!.containers, 'control-plane container');
  t.is(container.args?.[0], 'control-plane');
  for (const [k, v] of Object.entries(service.spec!.selector ?? {})) t.is(pod.metadata!.labels?.[k], v, `the Service selects the pods: ${k}`);
  for (const [k, v] of Object.entries(deployment.spec!.selector.matchLabels ?? {})) t.is(pod.metadata!.labels?.[k], v);
  const containerPorts = new Map((container.ports ?? []).map((p) => [p.containerPort, p.name]));
  for (const port of service.spec!.ports ?? []) t.is(containerPorts.get(Number(port.targetPort ?? port.port)), port.name, `Service port ${port.name}`);

  // ztunnel's XDS_ADDRESS and CA_ADDRESS name this Service and its gRPC port.
  const { config } = ztunnelConfig();
  for (const address of [config!.workloadApi.xdsAddress!, config!.workloadApi.caAddress]) {
    const url = new URL(address);
    t.is(url.hostname, `${service.metadata!.name}.${service.metadata!.namespace}.svc`);
    t.is((service.spec!.ports ?? []).find((p) => p.port === Number(url.port))?.name, 'grpc-xds');
  }
  const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value]));
  // The CA lets ztunnel's service account ask for the certificates of the pods on its node.
  t.true((env['CA_TRUSTED_NODE_ACCOUNTS'] ?? '').split(',').includes(`${ztunnelDs.metadata!.namespace}/${ztunnelPod.serviceAccountName}`));
  // Waypoint Deployments run our image (its entrypoint is on PATH for their `command: [ambientd]`).
  t.is(env['WAYPOINT_IMAGE'], container.image);
  t.is(container.image, ztunnelContainer.image);
  // The CA directory is the plug-in CA Secret, so the root survives a restart.
  const caMount = (container.volumeMounts ?? []).find((m) => m.mountPath === env['CA_DIR']);
  t.is(pod.spec!.volumes?.find((v) => v.name === caMount?.name)?.secret?.secretName, 'cacerts');
  t.true(containerPorts.has(container.readinessProbe!.httpGet!.port as number));
  t.is(container.readinessProbe!.httpGet!.path, '/healthz/ready');
  t.true(containerPorts.has(Number(pod.metadata!.annotations?.['prometheus.io/port'])));
  t.is(container.securityContext?.runAsNonRoot, true);
});

test('control plane RBAC: bound to its service account; every Gateway API and Istio resource it may read has a CRD here, the status subresources it writes', (t) => {
  const deployment = named<V1Deployment>('Deployment', 'istiod');
  const binding = named<V1ClusterRoleBinding>('ClusterRoleBinding', 'istiod');
  t.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: deployment.spec!.template.spec!.serviceAccountName, namespace: deployment.metadata!.namespace }]);
  t.truthy(manifests.find((m) => m.object.kind === 'ServiceAccount' && m.object.metadata.name === deployment.spec!.template.spec!.serviceAccountName));
  const role = named<V1ClusterRole>('ClusterRole', binding.roleRef.name);
  const crds = byKind('CustomResourceDefinition').map((m) => m.object as unknown as V1CustomResourceDefinition);
  const crdGroups = ['gateway.networking.k8s.io', 'networking.istio.io', 'security.istio.io'];
  const read = (role.rules ?? []).flatMap((r) => (r.apiGroups ?? []).filter((g) => crdGroups.includes(g)).flatMap((g) => (r.resources ?? []).map((res) => [g, res] as const)));
  for (const [group, resource] of read) {
    const [plural, sub] = resource.split('/');
    const crd = crds.find((c) => c.spec.group === group && c.spec.names.plural === plural);
    t.truthy(crd, `a CRD for ${plural}.${group}`);
    if (sub === 'status') t.true(crd!.spec.versions.every((v) => v.subresources?.status !== undefined), `${plural} has a status subresource`);
  }
  t.deepEqual([...new Set(read.map(([g, r]) => `${r}.${g}`))].sort(), [
    'authorizationpolicies.security.istio.io', 'authorizationpolicies/status.security.istio.io', 'destinationrules.networking.istio.io', 'gatewayclasses.gateway.networking.k8s.io',
    'gatewayclasses/status.gateway.networking.k8s.io', 'gateways.gateway.networking.k8s.io', 'gateways/status.gateway.networking.k8s.io',
    'grpcroutes.gateway.networking.k8s.io', 'httproutes.gateway.networking.k8s.io', 'peerauthentications.security.istio.io', 'requestauthentications.security.istio.io',
    'serviceentries.networking.istio.io', 'serviceentries/status.networking.istio.io', 'virtualservices.networking.istio.io', 'workloadentries.networking.istio.io',
    'workloadentries/status.networking.istio.io',
  ]);
  t.true((role.rules ?? []).some((r) => (r.apiGroups ?? []).includes('authentication.k8s.io') && (r.resources ?? []).includes('tokenreviews') && r.verbs.includes('create')));
  t.false((role.rules ?? []).some((r) => r.verbs.includes('*') || (r.resources ?? []).includes('*') || (r.resources ?? []).includes('secrets')), 'least privilege');
});

test('Istio CRDs: real names, groups, versions and storage versions, a status subresource, structural schemas that accept real policies', (t) => {
  const expected: Record<string, { group: string; short: string; versions: string[]; storage: string }> = {
    AuthorizationPolicy: { group: 'security.istio.io', short: 'ap', versions: ['v1', 'v1beta1'], storage: 'v1beta1' },
    PeerAuthentication: { group: 'security.istio.io', short: 'pa', versions: ['v1', 'v1beta1'], storage: 'v1beta1' },
    RequestAuthentication: { group: 'security.istio.io', short: 'ra', versions: ['v1', 'v1beta1'], storage: 'v1beta1' },
    ServiceEntry: { group: 'networking.istio.io', short: 'se', versions: ['v1', 'v1alpha3', 'v1beta1'], storage: 'v1alpha3' },
    WorkloadEntry: { group: 'networking.istio.io', short: 'we', versions: ['v1', 'v1alpha3', 'v1beta1'], storage: 'v1alpha3' },
    VirtualService: { group: 'networking.istio.io', short: 'vs', versions: ['v1', 'v1alpha3', 'v1beta1'], storage: 'v1alpha3' },
    DestinationRule: { group: 'networking.istio.io', short: 'dr', versions: ['v1', 'v1alpha3', 'v1beta1'], storage: 'v1alpha3' },
  };
  const crds = byKind('CustomResourceDefinition').filter((m) => m.file === 'istio-crds.yaml').map((m) => m.object as unknown as V1CustomResourceDefinition);
  t.is(crds.length, 7);
  for (const crd of crds) {
    const want = expected[crd.spec.names.kind]!;
    t.is(crd.spec.group, want.group);
    t.is(crd.metadata!.name, `${crd.spec.names.plural}.${crd.spec.group}`);
    t.is(crd.spec.scope, 'Namespaced');
    t.deepEqual(crd.spec.names.shortNames, [want.short]);
    t.deepEqual(crd.spec.versions.map((v) => v.name), want.versions);
    t.deepEqual(crd.spec.versions.filter((v) => v.storage).map((v) => v.name), [want.storage]);
    for (const v of crd.spec.versions) {
      t.true(v.served);
      t.deepEqual(v.subresources?.status, {});
      t.deepEqual(structuralProblems(v.schema!.openAPIV3Schema!, `${crd.spec.names.kind}.${v.name}`), []);
    }
  }
  const schemaOf = (kind: string) => crds.find((c) => c.spec.names.kind === kind)!.spec.versions[0]!.schema!.openAPIV3Schema as unknown as StructuralSchema;
  const deny = {
    apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny-sleep', namespace: 'prod' },
    spec: { action: 'DENY', selector: { matchLabels: { app: 'reviews' } }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/prod/sa/sleep'] } }], to: [{ operation: { ports: ['9080'] } }] }] },
  };
  const allowNothing = { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'allow-nothing', namespace: 'prod' }, spec: {} };
  const strict = { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'istio-system' }, spec: { mtls: { mode: 'STRICT' } } };
  const external = {
    apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name: 'example', namespace: 'prod' },
    spec: { hosts: ['example.com'], ports: [{ number: 443, name: 'https', protocol: 'TLS' }], location: 'MESH_EXTERNAL', resolution: 'DNS' },
  };
  const vm = { apiVersion: 'networking.istio.io/v1', kind: 'WorkloadEntry', metadata: { name: 'vm-1', namespace: 'prod' }, spec: { address: '10.0.0.9', labels: { app: 'legacy' }, serviceAccount: 'legacy', weight: 1 } };
  t.deepEqual(structuralErrors(deny, schemaOf('AuthorizationPolicy')), []);
  t.deepEqual(structuralErrors(allowNothing, schemaOf('AuthorizationPolicy')), []);
  t.deepEqual(structuralErrors(strict, schemaOf('PeerAuthentication')), []);
  t.deepEqual(structuralErrors(external, schemaOf('ServiceEntry')), []);
  t.deepEqual(structuralErrors(vm, schemaOf('WorkloadEntry')), []);
  const vs = {
    apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'reviews', namespace: 'prod' },
    spec: { hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews', subset: 'v1' }, weight: 90 }, { destination: { host: 'reviews', subset: 'v2' }, weight: 10 }] }] },
  };
  const dr = {
    apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'reviews', namespace: 'prod' },
    spec: { host: 'reviews', trafficPolicy: { loadBalancer: { simple: 'LEAST_REQUEST' } }, subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
  };
  t.deepEqual(structuralErrors(vs, schemaOf('VirtualService')), []);
  t.deepEqual(structuralErrors(dr, schemaOf('DestinationRule')), []);
  t.deepEqual(structuralErrors({ ...dr, spec: { subsets: [{ labels: {} }] } }, schemaOf('DestinationRule')), ['.spec: host is required', '.spec.subsets[0]: name is required']);
  t.deepEqual(structuralErrors({ ...deny, spec: { ...deny.spec, action: 'REJECT' } }, schemaOf('AuthorizationPolicy')), ['.spec.action: must be one of ALLOW, DENY, AUDIT, CUSTOM']);
  t.deepEqual(structuralErrors({ ...strict, spec: { mtls: { mode: 'strict' } } }, schemaOf('PeerAuthentication')), ['.spec.mtls.mode: must be one of UNSET, DISABLE, PERMISSIVE, STRICT']);
  t.deepEqual(structuralErrors({ ...external, spec: { ports: [{ number: 0, name: 'x' }] } }, schemaOf('ServiceEntry')), ['.spec: hosts is required', '.spec.ports[0].number: must be >= 1']);
});

test('control plane container: every variable is one the control plane reads, the environment parses, ports and probe are its config\'s', (t) => {
  const deployment = named<V1Deployment>('Deployment', 'istiod');
  const container = single(deployment.spec!.template.spec!.containers, 'control-plane container');
  const reads = new Set<string>(Object.values(ControlPlaneEnv));
  for (const e of container.env ?? []) t.true(reads.has(e.name), `${e.name} is read by the control plane`);
  const [component, ...args] = container.args ?? [];
  t.is(component, 'control-plane');
  const { flags, errors } = parseFlags(args);
  t.deepEqual(errors, []);
  const parsed = parseControlPlaneConfig(flags, containerEnv(container));
  if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
  const config = parsed.value;
  t.is(config.mode, 'kubernetes');
  t.is(config.systemNamespace, deployment.metadata!.namespace!);
  t.is(config.caDir, '/etc/cacerts');
  t.deepEqual(config.trustedNodeAccounts.map((a) => `${a.namespace}/${a.serviceAccount}`), [`${ztunnelDs.metadata!.namespace}/${ztunnelPod.serviceAccountName}`]);
  // ztunnel verifies the serving certificate against the host it dials.
  t.true(config.servingDnsNames.includes(new URL(ztunnelConfig().config!.workloadApi.xdsAddress!).hostname));
  const ports = new Map((container.ports ?? []).map((p) => [p.containerPort, p.name]));
  t.is(ports.get(config.grpcPort), 'grpc-xds');
  t.is(ports.get(config.monitoringPort), 'http-monitoring');
  t.true(ports.has(config.readinessPort));
  t.is(container.readinessProbe?.httpGet?.port, config.readinessPort);
  t.is(deployment.spec!.template.metadata!.annotations?.['prometheus.io/port'], String(config.monitoringPort));
});

/** The API group and resource (with a subresource) of a REST path: `/apis/apps/v1/namespaces/ns/deployments/x` → apps, deployments. */
function resourceOf(path: string): { group: string; resource: string } {
  const parts = path.split('/').filter(Boolean);
  const [group, rest] = parts[0] === 'api' ? ['', parts.slice(2)] : [parts[1] ?? '', parts.slice(3)];
  const tail = rest[0] === 'namespaces' && rest.length > 2 ? rest.slice(2) : rest;
  const [resource = '', , sub] = tail;
  return { group, resource: sub === undefined ? resource : `${resource}/${sub}` };
}

test('control plane RBAC covers the code: list and watch of every collection the translator and its L7 extension watch, and every write of the waypoint controller', (t) => {
  t.deepEqual(resourceOf('/apis/apps/v1/namespaces/ns/deployments/x'), { group: 'apps', resource: 'deployments' });
  t.deepEqual(resourceOf('/apis/gateway.networking.k8s.io/v1/gatewayclasses/x/status'), { group: 'gateway.networking.k8s.io', resource: 'gatewayclasses/status' });
  t.deepEqual(resourceOf('/api/v1/pods'), { group: '', resource: 'pods' });
  const role = named<V1ClusterRole>('ClusterRole', named<V1ClusterRoleBinding>('ClusterRoleBinding', 'istiod').roleRef.name);
  const allows = (group: string, resource: string, verb: string) =>
    (role.rules ?? []).some((r) => (r.apiGroups ?? []).includes(group) && (r.resources ?? []).includes(resource) && r.verbs.includes(verb) && r.resourceNames === undefined);
  for (const path of [...Object.values(COLLECTION_PATHS), ...Object.values(L7_COLLECTIONS)]) {
    const { group, resource } = resourceOf(path);
    for (const verb of ['list', 'watch']) t.true(allows(group, resource, verb), `${verb} ${resource}.${group} (${path})`);
  }
  // The waypoint controller: server-side apply (PATCH) of each waypoint's objects and of the GatewayClass, status merge patches, GETs.
  const writes: Array<[string, string]> = [
    [KubePath.serviceAccount('ns', 'x'), 'patch'], [KubePath.deployment('ns', 'x'), 'patch'], [KubePath.service('ns', 'x'), 'patch'],
    [KubePath.gatewayStatus('ns', 'x'), 'patch'], [KubePath.gatewayClass('x'), 'patch'], [KubePath.gatewayClass('x'), 'get'], [KubePath.gatewayClassStatus('x'), 'patch'],
  ];
  for (const [path, verb] of writes) {
    const { group, resource } = resourceOf(path);
    t.true(allows(group, resource, verb), `${verb} ${resource}.${group} (${path})`);
  }
  // And the CA's TokenReviews.
  t.true(allows('authentication.k8s.io', 'tokenreviews', 'create'));
});
