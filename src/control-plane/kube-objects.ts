/**
 * The Kubernetes objects the control plane reads, as loose shapes: every field optional, since input comes from the
 * API server or from hand-written YAML and is checked where it is used. Only the fields the translation reads.
 */

export interface ObjectMeta {
  readonly name?: string;
  readonly namespace?: string;
  readonly uid?: string;
  readonly resourceVersion?: string;
  readonly creationTimestamp?: string;
  readonly deletionTimestamp?: string | null;
  readonly generateName?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly ownerReferences?: ReadonlyArray<{ readonly apiVersion?: string; readonly kind?: string; readonly name?: string; readonly controller?: boolean }>;
}

export interface KubeObject {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly metadata?: ObjectMeta;
}

export interface ContainerPort {
  readonly name?: string;
  readonly containerPort?: number;
  readonly protocol?: string;
}

export interface Container {
  readonly name?: string;
  readonly ports?: readonly ContainerPort[];
  readonly restartPolicy?: string;
}

export interface Pod extends KubeObject {
  readonly spec?: {
    readonly nodeName?: string;
    readonly serviceAccountName?: string;
    readonly hostNetwork?: boolean;
    readonly containers?: readonly Container[];
    readonly initContainers?: readonly Container[];
  };
  readonly status?: {
    readonly phase?: string;
    readonly podIP?: string;
    readonly podIPs?: ReadonlyArray<{ readonly ip?: string }>;
    readonly conditions?: ReadonlyArray<{ readonly type?: string; readonly status?: string }>;
  };
}

export interface Namespace extends KubeObject {}

export interface Node extends KubeObject {}

export interface ServicePort {
  readonly name?: string;
  readonly port?: number;
  readonly targetPort?: number | string;
  readonly protocol?: string;
  readonly appProtocol?: string;
}

export interface KubeService extends KubeObject {
  readonly spec?: {
    readonly type?: string;
    readonly selector?: Readonly<Record<string, string>> | null;
    readonly clusterIP?: string;
    readonly clusterIPs?: readonly string[];
    readonly ports?: readonly ServicePort[];
    readonly ipFamilies?: readonly string[];
    readonly internalTrafficPolicy?: string;
    readonly trafficDistribution?: string;
    readonly publishNotReadyAddresses?: boolean;
  };
}

export interface EndpointSlice extends KubeObject {
  readonly addressType?: string;
  readonly endpoints?: ReadonlyArray<{
    readonly addresses?: readonly string[];
    readonly conditions?: { readonly ready?: boolean | null };
    readonly targetRef?: { readonly kind?: string; readonly name?: string; readonly namespace?: string };
    readonly nodeName?: string;
  }>;
  readonly ports?: ReadonlyArray<{ readonly name?: string; readonly port?: number; readonly protocol?: string }>;
}

export interface ServiceEntryPort {
  readonly number?: number;
  readonly protocol?: string;
  readonly name?: string;
  readonly targetPort?: number;
}

export interface WorkloadEntrySpec {
  readonly address?: string;
  readonly ports?: Readonly<Record<string, number>>;
  readonly labels?: Readonly<Record<string, string>>;
  readonly network?: string;
  readonly locality?: string;
  readonly weight?: number;
  readonly serviceAccount?: string;
}

export interface ServiceEntry extends KubeObject {
  readonly spec?: {
    readonly hosts?: readonly string[];
    readonly addresses?: readonly string[];
    readonly ports?: readonly ServiceEntryPort[];
    readonly location?: string;
    readonly resolution?: string;
    readonly endpoints?: readonly WorkloadEntrySpec[];
    readonly workloadSelector?: { readonly labels?: Readonly<Record<string, string>> } | null;
    readonly subjectAltNames?: readonly string[];
    readonly exportTo?: readonly string[];
  };
  readonly status?: { readonly addresses?: ReadonlyArray<{ readonly host?: string; readonly value?: string }> };
}

export interface WorkloadEntry extends KubeObject {
  readonly spec?: WorkloadEntrySpec;
}

export interface PolicySource {
  readonly principals?: readonly string[];
  readonly notPrincipals?: readonly string[];
  readonly requestPrincipals?: readonly string[];
  readonly notRequestPrincipals?: readonly string[];
  readonly namespaces?: readonly string[];
  readonly notNamespaces?: readonly string[];
  readonly serviceAccounts?: readonly string[];
  readonly notServiceAccounts?: readonly string[];
  readonly ipBlocks?: readonly string[];
  readonly notIpBlocks?: readonly string[];
  readonly remoteIpBlocks?: readonly string[];
  readonly notRemoteIpBlocks?: readonly string[];
}

export interface PolicyOperation {
  readonly hosts?: readonly string[];
  readonly notHosts?: readonly string[];
  readonly ports?: readonly string[];
  readonly notPorts?: readonly string[];
  readonly methods?: readonly string[];
  readonly notMethods?: readonly string[];
  readonly paths?: readonly string[];
  readonly notPaths?: readonly string[];
}

export interface PolicyRule {
  readonly from?: ReadonlyArray<{ readonly source?: PolicySource }>;
  readonly to?: ReadonlyArray<{ readonly operation?: PolicyOperation }>;
  readonly when?: ReadonlyArray<{ readonly key?: string; readonly values?: readonly string[]; readonly notValues?: readonly string[] }>;
}

export interface TargetRef {
  readonly group?: string;
  readonly kind?: string;
  readonly name?: string;
  readonly namespace?: string;
}

export interface KubeAuthorizationPolicy extends KubeObject {
  readonly spec?: {
    readonly selector?: { readonly matchLabels?: Readonly<Record<string, string>> } | null;
    readonly targetRef?: TargetRef | null;
    readonly targetRefs?: readonly TargetRef[] | null;
    readonly action?: string;
    readonly provider?: unknown;
    readonly rules?: readonly PolicyRule[] | null;
  };
}

export interface PeerAuthentication extends KubeObject {
  readonly spec?: {
    readonly selector?: { readonly matchLabels?: Readonly<Record<string, string>> } | null;
    readonly mtls?: { readonly mode?: string } | null;
    readonly portLevelMtls?: Readonly<Record<string, { readonly mode?: string }>> | null;
  };
}

export interface LabelSelector {
  readonly matchLabels?: Readonly<Record<string, string>>;
  readonly matchExpressions?: ReadonlyArray<{ readonly key?: string; readonly operator?: string; readonly values?: readonly string[] }>;
}

export interface Gateway extends KubeObject {
  readonly spec?: {
    readonly gatewayClassName?: string;
    readonly listeners?: ReadonlyArray<{
      readonly name?: string;
      readonly port?: number;
      readonly protocol?: string;
      readonly allowedRoutes?: { readonly namespaces?: { readonly from?: string; readonly selector?: LabelSelector } };
    }>;
  };
  readonly status?: {
    readonly addresses?: ReadonlyArray<{ readonly type?: string; readonly value?: string }>;
  };
}

export interface GatewayClass extends KubeObject {
  readonly spec?: { readonly controllerName?: string };
}

/** HTTPRoute / GRPCRoute: collected for the waypoint's L7 translation, which lives elsewhere. */
export interface Route extends KubeObject {
  readonly spec?: { readonly parentRefs?: ReadonlyArray<TargetRef & { readonly port?: number; readonly sectionName?: string }> };
}

/** The kinds the control plane watches. */
export const KINDS = [
  'Namespace', 'Pod', 'Service', 'EndpointSlice', 'Node', 'ServiceEntry', 'WorkloadEntry', 'AuthorizationPolicy', 'PeerAuthentication',
  'Gateway', 'GatewayClass', 'HTTPRoute', 'GRPCRoute',
] as const;
export type Kind = (typeof KINDS)[number];

/** Which kinds are cluster-scoped. */
export const CLUSTER_SCOPED: ReadonlySet<Kind> = new Set<Kind>(['Namespace', 'Node', 'GatewayClass']);

/** apiVersion (group/version) per kind, as served and as expected in `--config-dir` files. */
export const API_VERSIONS: Readonly<Record<Kind, readonly string[]>> = {
  Namespace: ['v1'],
  Pod: ['v1'],
  Service: ['v1'],
  Node: ['v1'],
  EndpointSlice: ['discovery.k8s.io/v1'],
  ServiceEntry: ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'],
  WorkloadEntry: ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'],
  AuthorizationPolicy: ['security.istio.io/v1', 'security.istio.io/v1beta1'],
  PeerAuthentication: ['security.istio.io/v1', 'security.istio.io/v1beta1'],
  Gateway: ['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'],
  GatewayClass: ['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'],
  HTTPRoute: ['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'],
  GRPCRoute: ['gateway.networking.k8s.io/v1'],
};

/** The informer path of each kind (cluster-wide list + watch). */
export const COLLECTION_PATHS: Readonly<Record<Kind, string>> = {
  Namespace: '/api/v1/namespaces',
  Pod: '/api/v1/pods',
  Service: '/api/v1/services',
  Node: '/api/v1/nodes',
  EndpointSlice: '/apis/discovery.k8s.io/v1/endpointslices',
  ServiceEntry: '/apis/networking.istio.io/v1/serviceentries',
  WorkloadEntry: '/apis/networking.istio.io/v1/workloadentries',
  AuthorizationPolicy: '/apis/security.istio.io/v1/authorizationpolicies',
  PeerAuthentication: '/apis/security.istio.io/v1/peerauthentications',
  Gateway: '/apis/gateway.networking.k8s.io/v1/gateways',
  GatewayClass: '/apis/gateway.networking.k8s.io/v1/gatewayclasses',
  HTTPRoute: '/apis/gateway.networking.k8s.io/v1/httproutes',
  GRPCRoute: '/apis/gateway.networking.k8s.io/v1/grpcroutes',
};

/** `ns/name` (or `name` for cluster-scoped objects): the key of an object within its kind. */
export function objectKey(obj: KubeObject): string {
  const m = obj.metadata ?? {};
  return m.namespace ? `${m.namespace}/${m.name ?? ''}` : (m.name ?? '');
}

export const labelsOf = (obj: KubeObject | undefined): Readonly<Record<string, string>> => obj?.metadata?.labels ?? {};
export const annotationsOf = (obj: KubeObject | undefined): Readonly<Record<string, string>> => obj?.metadata?.annotations ?? {};

/** Every label of `selector` is on `labels` (an empty selector selects everything). */
export function selectorMatches(selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

/** A metav1.LabelSelector (matchLabels AND matchExpressions); unknown operators match nothing. */
export function labelSelectorMatches(selector: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  if (!selectorMatches(selector.matchLabels ?? {}, labels)) return false;
  for (const e of selector.matchExpressions ?? []) {
    const key = e.key ?? '';
    const has = Object.hasOwn(labels, key);
    const values = e.values ?? [];
    switch (e.operator) {
      case 'In':
        if (!has || !values.includes(labels[key]!)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(labels[key]!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}
