/**
 * The waypoint's Kubernetes objects as pure functions (reference istio-ambient.md §2.1–§2.3):
 * - the Gateway `istioctl waypoint generate|apply` produces;
 * - for a Gateway of class `istio-waypoint`, the ServiceAccount, Deployment and Service the controller
 *   applies (named after the Gateway, owned by it, running `ambientd waypoint`);
 * - the Gateway status the controller writes (Accepted, Programmed, addresses once the Service has an IP).
 * No IO: the controller and the CLI call these and do the writing.
 */

export const GATEWAY_API_VERSION = 'gateway.networking.k8s.io/v1';
export const WAYPOINT_CLASS = 'istio-waypoint';
export const WAYPOINT_CONTROLLER_NAME = 'istio.io/mesh-controller';
/** The field manager of the objects the controller applies (Istio's deployment controller's). */
export const CONTROLLER_FIELD_MANAGER = 'istio.io/gateway-controller';
/** The field manager `istioctl waypoint apply` uses, and so do we. */
export const ISTIOCTL_FIELD_MANAGER = 'istioctl';
/** Written on each Gateway we manage; a Gateway carrying a higher version belongs to a newer controller and is left alone. */
export const CONTROLLER_VERSION = '1';

export const Label = {
  waypointFor: 'istio.io/waypoint-for',
  rev: 'istio.io/rev',
  useWaypoint: 'istio.io/use-waypoint',
  dataplaneMode: 'istio.io/dataplane-mode',
  gatewayName: 'gateway.networking.k8s.io/gateway-name',
  gatewayClassName: 'gateway.networking.k8s.io/gateway-class-name',
  managed: 'gateway.istio.io/managed',
  sidecarInject: 'sidecar.istio.io/inject',
  canonicalName: 'service.istio.io/canonical-name',
  canonicalRevision: 'service.istio.io/canonical-revision',
  network: 'topology.istio.io/network',
} as const;

export const Annotation = {
  nameOverride: 'gateway.istio.io/name-override',
  serviceAccount: 'gateway.istio.io/service-account',
  serviceType: 'networking.istio.io/service-type',
  controllerVersion: 'gateway.istio.io/controller-version',
  trafficDistribution: 'networking.istio.io/traffic-distribution',
} as const;

export const MESH_CONTROLLER_MANAGED = 'istio.io-mesh-controller';
export const HBONE_PORT = 15008;
export const WAYPOINT_FOR_VALUES = ['service', 'workload', 'all', 'none'] as const;
export type WaypointFor = (typeof WAYPOINT_FOR_VALUES)[number];

export type Labels = Readonly<Record<string, string>>;

export interface ObjectMeta {
  readonly name: string;
  readonly namespace?: string;
  readonly uid?: string;
  readonly generation?: number;
  readonly resourceVersion?: string;
  readonly labels?: Labels;
  readonly annotations?: Labels;
  readonly ownerReferences?: readonly OwnerReference[];
}

export interface OwnerReference {
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  readonly uid: string;
  readonly controller?: boolean;
  readonly blockOwnerDeletion?: boolean;
}

export interface GatewayListener {
  readonly name: string;
  readonly port: number;
  readonly protocol: string;
  readonly hostname?: string;
  readonly allowedRoutes?: unknown;
  readonly tls?: unknown;
}

export interface Condition {
  readonly type: string;
  readonly status: 'True' | 'False' | 'Unknown';
  readonly reason: string;
  readonly message: string;
  readonly observedGeneration?: number;
  readonly lastTransitionTime: string;
}

export interface GatewayAddress {
  readonly type: 'Hostname' | 'IPAddress';
  readonly value: string;
}

export interface ListenerStatus {
  readonly name: string;
  readonly supportedKinds: readonly unknown[];
  readonly attachedRoutes: number;
  readonly conditions: readonly Condition[];
}

export interface GatewayStatus {
  readonly addresses?: readonly GatewayAddress[];
  readonly conditions?: readonly Condition[];
  readonly listeners?: readonly ListenerStatus[];
}

export interface Gateway {
  readonly apiVersion: string;
  readonly kind: 'Gateway';
  readonly metadata: ObjectMeta;
  readonly spec: {
    readonly gatewayClassName: string;
    readonly listeners: readonly GatewayListener[];
    readonly infrastructure?: { readonly labels?: Labels; readonly annotations?: Labels; readonly parametersRef?: unknown };
    readonly addresses?: readonly unknown[];
  };
  readonly status?: GatewayStatus;
}

/** A Service as far as the controller reads it back (for its ClusterIP). */
export interface ServiceView {
  readonly metadata: ObjectMeta;
  readonly spec?: { readonly clusterIP?: string; readonly clusterIPs?: readonly string[]; readonly type?: string };
}

/**
 * A Gateway as the controller may use it, from any source (the API, a hand-written YAML file):
 * a name, a class and a listener list of the right shapes; listeners without a numeric port or a
 * string protocol are kept with placeholder values so they are refused by `listenerVerdicts`.
 * Anything else is undefined (the controller skips it and says why).
 */
export function normalizeGateway(value: unknown): Gateway | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const obj = value as { metadata?: unknown; spec?: unknown; status?: unknown; apiVersion?: unknown };
  const meta = obj.metadata as ObjectMeta | undefined;
  if (!meta || typeof meta !== 'object' || typeof meta.name !== 'string' || meta.name === '') return undefined;
  const spec = (obj.spec !== null && typeof obj.spec === 'object' ? obj.spec : {}) as Record<string, unknown>;
  const listeners = (Array.isArray(spec['listeners']) ? spec['listeners'] : []).map((l: unknown, i: number): GatewayListener => {
    const o = (l !== null && typeof l === 'object' ? l : {}) as Record<string, unknown>;
    return {
      ...o,
      name: typeof o['name'] === 'string' ? o['name'] : `listener-${i}`,
      port: typeof o['port'] === 'number' ? o['port'] : -1,
      protocol: typeof o['protocol'] === 'string' ? o['protocol'] : '',
    };
  });
  return {
    apiVersion: typeof obj.apiVersion === 'string' ? obj.apiVersion : GATEWAY_API_VERSION,
    kind: 'Gateway',
    metadata: meta,
    spec: { ...spec, gatewayClassName: typeof spec['gatewayClassName'] === 'string' ? spec['gatewayClassName'] : '', listeners } as Gateway['spec'],
    ...(obj.status !== null && typeof obj.status === 'object' ? { status: obj.status as GatewayStatus } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// istioctl waypoint generate / apply

export interface WaypointGatewayOptions {
  readonly name: string;
  readonly namespace: string;
  /** `--for`: set as the `istio.io/waypoint-for` label only when given. */
  readonly for?: WaypointFor;
  /** `--revision`: set as the `istio.io/rev` label only when given. */
  readonly revision?: string;
}

/** The Gateway istioctl produces: one `mesh` listener on 15008/HBONE, labels only for the flags given. */
export function waypointGateway(options: WaypointGatewayOptions): Gateway {
  const labels: Record<string, string> = {};
  if (options.for !== undefined) labels[Label.waypointFor] = options.for;
  if (options.revision !== undefined && options.revision !== '') labels[Label.rev] = options.revision;
  return {
    apiVersion: GATEWAY_API_VERSION,
    kind: 'Gateway',
    metadata: { name: options.name, namespace: options.namespace, ...(Object.keys(labels).length > 0 ? { labels } : {}) },
    spec: { gatewayClassName: WAYPOINT_CLASS, listeners: [{ name: 'mesh', port: HBONE_PORT, protocol: 'HBONE' }] },
  };
}

// ---------------------------------------------------------------------------------------------
// The GatewayClass (reference §2.2): created when missing, and accepted by its controller

export interface GatewayClass {
  readonly apiVersion: string;
  readonly kind: 'GatewayClass';
  readonly metadata: ObjectMeta;
  readonly spec: { readonly controllerName: string; readonly description?: string };
  readonly status?: { readonly conditions?: readonly Condition[] };
}

/** The built-in `istio-waypoint` class, as istiod creates it when it is missing. */
export function waypointGatewayClass(): GatewayClass {
  return {
    apiVersion: GATEWAY_API_VERSION,
    kind: 'GatewayClass',
    metadata: { name: WAYPOINT_CLASS },
    spec: { controllerName: WAYPOINT_CONTROLLER_NAME, description: 'The default Istio waypoint GatewayClass' },
  };
}

/** The class status our controller writes (Accepted), or undefined when the class is not ours or already says so. */
export function gatewayClassStatus(gatewayClass: GatewayClass, now: Date): { readonly conditions: readonly Condition[] } | undefined {
  if (gatewayClass.spec?.controllerName !== WAYPOINT_CONTROLLER_NAME) return undefined;
  const generation = gatewayClass.metadata.generation;
  const next = { type: 'Accepted', status: 'True' as const, reason: 'Accepted', message: 'Handled by the ambient-node waypoint controller', ...(generation !== undefined ? { observedGeneration: generation } : {}) };
  const current = gatewayClass.status?.conditions?.find((c) => c.type === 'Accepted');
  if (current && current.status === next.status && current.reason === next.reason && current.message === next.message && current.observedGeneration === next.observedGeneration) return undefined;
  return { conditions: [condition(gatewayClass.status?.conditions, next, now.toISOString().replace(/\.\d{3}Z$/, 'Z'))] };
}

// ---------------------------------------------------------------------------------------------
// The controller's objects

export interface WaypointRenderOptions {
  /** `cluster.local`: the Service hostname `<name>.<ns>.svc.<clusterDomain>`. */
  readonly clusterDomain: string;
  readonly trustDomain: string;
  /** `Kubernetes` by default in Istio. */
  readonly clusterId: string;
  /** The network of this cluster; the Gateway's infrastructure label `topology.istio.io/network` wins. */
  readonly network?: string;
  readonly meshId?: string;
  /** The control plane's xDS and CA address, `istiod.istio-system.svc:15012`. */
  readonly xdsAddress: string;
  readonly caAddress: string;
  /** The image that holds `ambientd`. */
  readonly image: string;
  readonly imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  /** The command that starts the daemon in that image; `['ambientd']` by default. */
  readonly command?: readonly string[];
  /** This control plane's revision; '' or undefined is the default revision. */
  readonly revision?: string;
}

export interface WaypointObjects {
  readonly serviceAccount: Manifest;
  readonly deployment: Manifest;
  readonly service: Manifest;
}

/** A Kubernetes object as JSON, ready for server-side apply. */
export interface Manifest {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: ObjectMeta;
  readonly [field: string]: unknown;
}

export interface ListenerVerdict {
  readonly name: string;
  readonly accepted: boolean;
  readonly reason: string;
  readonly message: string;
}

/** What the controller makes of a Gateway: not ours, refused (with why), or the objects to apply. */
export type WaypointDecision =
  | { readonly kind: 'ignore'; readonly why: string }
  | { readonly kind: 'refuse'; readonly reason: string; readonly message: string; readonly listeners: readonly ListenerVerdict[] }
  | {
      readonly kind: 'deploy';
      /** The Deployment/Service name. */
      readonly name: string;
      readonly serviceAccountName: string;
      readonly hostname: string;
      readonly objects: WaypointObjects;
      readonly listeners: readonly ListenerVerdict[];
    };

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function isDefaultRevision(rev: string | undefined): boolean {
  return rev === undefined || rev === '' || rev === 'default';
}

/** Whether a Gateway's `istio.io/rev` label selects this control plane's revision. */
export function revisionMatches(gateway: Gateway, revision: string | undefined): boolean {
  const label = gateway.metadata.labels?.[Label.rev];
  return isDefaultRevision(label) ? isDefaultRevision(revision) : label === revision;
}

/** Keys prefixed `gateway.networking.k8s.io/` are the API's own and are not copied onto the objects. */
function infraMap(own: Labels | undefined, infra: Labels | undefined): Record<string, string> {
  const source = infra ?? own ?? {};
  return Object.fromEntries(Object.entries(source).filter(([k]) => !k.startsWith('gateway.networking.k8s.io/')));
}

/** A listener name as a Service port name: lower case, [a-z0-9-], at most 63 characters. */
export function sanitizePortName(name: string): string {
  const cleaned = name
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/g, '');
  return cleaned || 'port';
}

/** A waypoint listener is a single 15008/HBONE (`mesh`), plus `istio.io/PROXY` listeners for sandwich mode. */
export function listenerVerdicts(gateway: Gateway): ListenerVerdict[] {
  let hbone = 0;
  return gateway.spec.listeners.map((l) => {
    if (l.protocol === 'HBONE' && l.port === HBONE_PORT && hbone++ === 0) return { name: l.name, accepted: true, reason: 'Accepted', message: 'No errors found' };
    if (l.protocol === 'istio.io/PROXY') return { name: l.name, accepted: true, reason: 'Accepted', message: 'No errors found' };
    return { name: l.name, accepted: false, reason: 'UnsupportedProtocol', message: `protocol "${l.protocol}" on port ${l.port} is not supported on a waypoint: it has one listener, ${HBONE_PORT}/HBONE` };
  });
}

function ownerReference(gateway: Gateway): OwnerReference {
  return { apiVersion: GATEWAY_API_VERSION, kind: 'Gateway', name: gateway.metadata.name, uid: gateway.metadata.uid ?? '' };
}

const fieldEnv = (name: string, fieldPath: string) => ({ name, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } } });

/**
 * The controller's decision for one Gateway: `ignore` when it is not an `istio-waypoint` Gateway of
 * this revision (or a newer controller owns it), `refuse` when nothing can be deployed (no HBONE
 * listener, a bad name), else the three objects.
 */
export function decideWaypoint(gateway: Gateway, options: WaypointRenderOptions): WaypointDecision {
  const meta = gateway.metadata;
  if (gateway.spec.gatewayClassName !== WAYPOINT_CLASS) return { kind: 'ignore', why: `class ${gateway.spec.gatewayClassName} is not ${WAYPOINT_CLASS}` };
  if (!revisionMatches(gateway, options.revision)) return { kind: 'ignore', why: `revision ${meta.labels?.[Label.rev]} is not ours (${options.revision || 'default'})` };
  const version = Number(meta.annotations?.[Annotation.controllerVersion] ?? '0');
  if (Number.isFinite(version) && version > Number(CONTROLLER_VERSION)) return { kind: 'ignore', why: `managed by a newer controller (version ${version})` };
  const listeners = listenerVerdicts(gateway);
  const namespace = meta.namespace ?? 'default';
  const name = meta.annotations?.[Annotation.nameOverride] ?? meta.name;
  const serviceAccountName = meta.annotations?.[Annotation.serviceAccount] ?? name;
  if (!DNS_LABEL.test(name) || name.length > 63) return { kind: 'refuse', reason: 'Invalid', message: `"${name}" is not a valid Deployment and Service name (a DNS-1035 label)`, listeners };
  if (!listeners.some((l, i) => l.accepted && gateway.spec.listeners[i]?.protocol === 'HBONE')) {
    return { kind: 'refuse', reason: 'ListenersNotValid', message: `a waypoint needs a listener on ${HBONE_PORT}/HBONE`, listeners };
  }
  const infraLabels = infraMap(meta.labels, gateway.spec.infrastructure?.labels);
  const infraAnnotations = infraMap(meta.annotations, gateway.spec.infrastructure?.annotations);
  // The Gateway's own bookkeeping annotations stay on the Gateway.
  for (const key of Object.values(Annotation)) delete infraAnnotations[key];
  delete infraAnnotations['kubectl.kubernetes.io/last-applied-configuration'];
  const identity = { [Label.gatewayName]: meta.name, [Label.gatewayClassName]: WAYPOINT_CLASS };
  const owner = [ownerReference(gateway)];
  const revision = isDefaultRevision(options.revision) ? 'default' : (options.revision as string);
  const network = infraLabels[Label.network] ?? options.network;
  const hostname = `${name}.${namespace}.svc.${options.clusterDomain}`;

  const serviceAccount: Manifest = {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: { name: serviceAccountName, namespace, labels: identity, ownerReferences: owner },
  };

  const podLabels = {
    [Label.sidecarInject]: 'false',
    [Label.dataplaneMode]: 'none',
    [Label.canonicalName]: name,
    [Label.canonicalRevision]: 'latest',
    ...infraLabels,
    ...identity,
    [Label.managed]: MESH_CONTROLLER_MANAGED,
  };
  const podAnnotations = {
    ...infraAnnotations,
    [Label.rev]: revision,
    'prometheus.io/path': '/stats/prometheus',
    'prometheus.io/port': '15020',
    'prometheus.io/scrape': 'true',
  };
  const probe = (periodSeconds: number, failureThreshold: number) => ({
    httpGet: { path: '/healthz/ready', port: 15021, scheme: 'HTTP' },
    periodSeconds,
    failureThreshold,
    successThreshold: 1,
    timeoutSeconds: 1,
  });
  const env = [
    { name: 'XDS_ADDRESS', value: options.xdsAddress },
    { name: 'CA_ADDRESS', value: options.caAddress },
    { name: 'XDS_ROOT_CA', value: '/var/run/secrets/istio/root-cert.pem' },
    { name: 'CA_ROOT_CA', value: '/var/run/secrets/istio/root-cert.pem' },
    { name: 'AUTH_TOKEN', value: '/var/run/secrets/tokens/istio-token' },
    { name: 'TRUST_DOMAIN', value: options.trustDomain },
    { name: 'CLUSTER_ID', value: options.clusterId },
    { name: 'CLUSTER_DOMAIN', value: options.clusterDomain },
    ...(network ? [{ name: 'NETWORK', value: network }] : []),
    { name: 'GATEWAY_NAME', value: meta.name },
    fieldEnv('POD_NAME', 'metadata.name'),
    fieldEnv('POD_NAMESPACE', 'metadata.namespace'),
    fieldEnv('INSTANCE_IP', 'status.podIP'),
    fieldEnv('SERVICE_ACCOUNT', 'spec.serviceAccountName'),
    fieldEnv('NODE_NAME', 'spec.nodeName'),
    fieldEnv('HOST_IP', 'status.hostIP'),
    fieldEnv('ISTIO_META_SERVICE_ACCOUNT', 'spec.serviceAccountName'),
    fieldEnv('ISTIO_META_NODE_NAME', 'spec.nodeName'),
    { name: 'ISTIO_META_CLUSTER_ID', value: options.clusterId },
    ...(network ? [{ name: 'ISTIO_META_NETWORK', value: network }] : []),
    { name: 'ISTIO_META_INTERCEPTION_MODE', value: 'REDIRECT' },
    { name: 'ISTIO_META_WORKLOAD_NAME', value: name },
    { name: 'ISTIO_META_OWNER', value: `kubernetes://apis/apps/v1/namespaces/${namespace}/deployments/${name}` },
    ...(options.meshId ? [{ name: 'ISTIO_META_MESH_ID', value: options.meshId }] : []),
  ];
  const deployment: Manifest = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace, labels: { ...infraLabels, ...identity, [Label.managed]: MESH_CONTROLLER_MANAGED }, ...(Object.keys(infraAnnotations).length > 0 ? { annotations: infraAnnotations } : {}), ownerReferences: owner },
    spec: {
      selector: { matchLabels: { [Label.gatewayName]: meta.name } },
      template: {
        metadata: { labels: podLabels, annotations: podAnnotations },
        spec: {
          serviceAccountName,
          containers: [
            {
              name: 'istio-proxy',
              image: options.image,
              ...(options.imagePullPolicy ? { imagePullPolicy: options.imagePullPolicy } : {}),
              command: [...(options.command ?? ['ambientd'])],
              args: ['waypoint'],
              env,
              ports: [
                { containerPort: 15020, name: 'metrics', protocol: 'TCP' },
                { containerPort: 15021, name: 'status-port', protocol: 'TCP' },
              ],
              startupProbe: probe(1, 30),
              readinessProbe: probe(15, 4),
              securityContext: {
                allowPrivilegeEscalation: false,
                privileged: false,
                readOnlyRootFilesystem: true,
                runAsNonRoot: true,
                runAsUser: 1337,
                runAsGroup: 1337,
                capabilities: { drop: ['ALL'] },
              },
              volumeMounts: [
                { name: 'istio-token', mountPath: '/var/run/secrets/tokens' },
                { name: 'istiod-ca-cert', mountPath: '/var/run/secrets/istio' },
                { name: 'workload-socket', mountPath: '/var/run/secrets/workload-spiffe-uds' },
                { name: 'istio-data', mountPath: '/var/lib/istio/data' },
                { name: 'istio-podinfo', mountPath: '/etc/istio/pod' },
              ],
            },
          ],
          volumes: [
            { name: 'istio-token', projected: { sources: [{ serviceAccountToken: { audience: 'istio-ca', expirationSeconds: 43200, path: 'istio-token' } }] } },
            { name: 'istiod-ca-cert', configMap: { name: 'istio-ca-root-cert' } },
            { name: 'workload-socket', emptyDir: {} },
            { name: 'istio-data', emptyDir: {} },
            {
              name: 'istio-podinfo',
              downwardAPI: {
                items: [
                  { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } },
                  { path: 'annotations', fieldRef: { fieldPath: 'metadata.annotations' } },
                ],
              },
            },
          ],
        },
      },
    },
  };

  // status-port first, then one port per distinct listener port of an accepted listener.
  const ports: Array<Record<string, unknown>> = [{ name: 'status-port', port: 15021, protocol: 'TCP', appProtocol: 'tcp' }];
  const seen = new Set<number>([15021]);
  gateway.spec.listeners.forEach((l, i) => {
    if (!listeners[i]?.accepted || seen.has(l.port)) return;
    seen.add(l.port);
    ports.push({ name: sanitizePortName(l.name), port: l.port, protocol: 'TCP', appProtocol: l.protocol.toLowerCase() });
  });
  const serviceType = meta.annotations?.[Annotation.serviceType] ?? 'ClusterIP';
  const service: Manifest = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name,
      namespace,
      labels: { ...infraLabels, ...identity },
      annotations: { ...infraAnnotations, [Annotation.trafficDistribution]: 'PreferClose' },
      ownerReferences: owner,
    },
    spec: { ipFamilyPolicy: 'PreferDualStack', type: serviceType, selector: { [Label.gatewayName]: meta.name }, ports },
  };

  return { kind: 'deploy', name, serviceAccountName, hostname, objects: { serviceAccount, deployment, service }, listeners };
}

// ---------------------------------------------------------------------------------------------
// Gateway status

/** The IPs of a Service once allocated (`None` and empty are not addresses). */
export function serviceIps(service: ServiceView | undefined): string[] {
  if (!service?.spec) return [];
  const ips = service.spec.clusterIPs && service.spec.clusterIPs.length > 0 ? [...service.spec.clusterIPs] : service.spec.clusterIP ? [service.spec.clusterIP] : [];
  return ips.filter((ip) => ip !== '' && ip !== 'None');
}

function condition(previous: readonly Condition[] | undefined, next: Omit<Condition, 'lastTransitionTime'>, now: string): Condition {
  const before = previous?.find((c) => c.type === next.type);
  // The transition time moves only when the status does, so an unchanged status writes the same bytes.
  const lastTransitionTime = before && before.status === next.status ? before.lastTransitionTime : now;
  return { ...next, lastTransitionTime };
}

/**
 * The Gateway status for a decision and the Service as it is now. Programmed turns True, and the
 * addresses (the Service hostname, then its IPs) appear, only once the Service has a ClusterIP: the
 * control plane treats a waypoint as usable from the moment `status.addresses` is non-empty.
 * `hostname: false` leaves the hostname out (local mode, where no Service carries that name).
 */
export function waypointStatus(gateway: Gateway, decision: WaypointDecision, service: ServiceView | undefined, now: Date, options: { readonly hostname?: boolean } = {}): GatewayStatus {
  const previous = gateway.status?.conditions;
  const at = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  const generation = gateway.metadata.generation;
  const gen = generation !== undefined ? { observedGeneration: generation } : {};
  const listenerStatus = (verdicts: readonly ListenerVerdict[], programmed: boolean): ListenerStatus[] =>
    verdicts.map((v) => {
      const before = gateway.status?.listeners?.find((l) => l.name === v.name)?.conditions;
      return {
        name: v.name,
        supportedKinds: [],
        attachedRoutes: 0,
        conditions: [
          condition(before, { type: 'Accepted', status: v.accepted ? 'True' : 'False', reason: v.reason, message: v.message, ...gen }, at),
          condition(before, { type: 'Programmed', status: v.accepted && programmed ? 'True' : 'False', reason: v.accepted ? (programmed ? 'Programmed' : 'Pending') : 'Invalid', message: v.accepted ? (programmed ? 'No errors found' : 'waiting for the Service address') : v.message, ...gen }, at),
          condition(before, { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'No errors found', ...gen }, at),
        ],
      };
    });
  if (decision.kind === 'ignore') return gateway.status ?? {};
  if (decision.kind === 'refuse') {
    return {
      conditions: [
        condition(previous, { type: 'Accepted', status: 'False', reason: decision.reason, message: decision.message, ...gen }, at),
        condition(previous, { type: 'Programmed', status: 'False', reason: 'Invalid', message: decision.message, ...gen }, at),
      ],
      listeners: listenerStatus(decision.listeners, false),
    };
  }
  const ips = serviceIps(service);
  const programmed = ips.length > 0;
  return {
    ...(programmed ? { addresses: [...(options.hostname === false ? [] : [{ type: 'Hostname' as const, value: decision.hostname }]), ...ips.map((value) => ({ type: 'IPAddress' as const, value }))] } : {}),
    conditions: [
      condition(previous, { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'Resource accepted', ...gen }, at),
      condition(
        previous,
        programmed
          ? { type: 'Programmed', status: 'True', reason: 'Programmed', message: `Resource programmed, assigned to service(s) ${decision.hostname}:${HBONE_PORT}`, ...gen }
          : { type: 'Programmed', status: 'False', reason: 'AddressNotUsable', message: `the Service ${decision.hostname} has no address yet`, ...gen },
        at,
      ),
      condition(previous, { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'Resource references resolved', ...gen }, at),
    ],
    listeners: listenerStatus(decision.listeners, programmed),
  };
}

/** Whether two statuses say the same (so nothing needs writing). */
export function sameStatus(a: GatewayStatus | undefined, b: GatewayStatus): boolean {
  return JSON.stringify(normalize(a ?? {})) === JSON.stringify(normalize(b));
}

function normalize(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(normalize);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>)
        .filter(([, v]) => v !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, v]) => [k, normalize(v)]),
    );
  }
  return value;
}

/** The `Programmed` condition of a Gateway, as `waypoint status` and `apply --wait` read it. */
export function programmedCondition(gateway: { readonly status?: GatewayStatus }): Condition | undefined {
  return gateway.status?.conditions?.find((c) => c.type === 'Programmed');
}
