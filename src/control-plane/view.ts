import type {
  EndpointSlice, Gateway, GatewayClass, KubeAuthorizationPolicy, KubeService, Namespace, Node, PeerAuthentication, Pod, ServiceEntry,
  WorkloadEntry,
} from './kube-objects.ts';

/** The settings every translation reads (from the control plane's config). */
export interface TranslatorSettings {
  /** `CLUSTER_ID`: prefix of workload uids and `cluster_id`. */
  readonly clusterId: string;
  /** The service domain suffix (`cluster.local`): `<svc>.<ns>.svc.<suffix>`. */
  readonly domainSuffix: string;
  /** `TRUST_DOMAIN` of the mesh. */
  readonly trustDomain: string;
  /** Istio's root namespace (mesh-wide policies): `istio-system`. */
  readonly rootNamespace: string;
  /** The system namespace whose `topology.istio.io/network` label names the network: `istio-system`. */
  readonly systemNamespace: string;
  /** `AMBIENT_ENABLE_DRY_RUN_AUTHORIZATION_POLICY`. */
  readonly enableDryRun: boolean;
  /** `PILOT_AUTO_ALLOW_WAYPOINT_POLICY`: an ALLOW policy per waypoint for the workloads bound to it. */
  readonly autoAllowWaypointPolicy: boolean;
}

export const DEFAULT_SETTINGS: TranslatorSettings = Object.freeze({
  clusterId: 'Kubernetes',
  domainSuffix: 'cluster.local',
  trustDomain: 'cluster.local',
  rootNamespace: 'istio-system',
  systemNamespace: 'istio-system',
  enableDryRun: false,
  autoAllowWaypointPolicy: false,
});

/**
 * The read-only view of the cluster the pure translation functions take: the translator's indexed state in the
 * control plane, a few literal maps in tests.
 */
export interface ClusterView {
  readonly settings: TranslatorSettings;
  /** The network of this cluster (the system namespace's `topology.istio.io/network`), '' by default. */
  network(): string;
  namespace(name: string): Namespace | undefined;
  node(name: string): Node | undefined;
  pods(namespace: string): Iterable<Pod>;
  services(namespace: string): Iterable<KubeService>;
  service(namespace: string, name: string): KubeService | undefined;
  /** EndpointSlices with an endpoint whose targetRef is this pod. */
  endpointSlicesOfPod(namespace: string, podName: string): Iterable<EndpointSlice>;
  serviceEntries(namespace: string): Iterable<ServiceEntry>;
  workloadEntries(namespace: string): Iterable<WorkloadEntry>;
  gateway(namespace: string, name: string): Gateway | undefined;
  gatewayClass(name: string): GatewayClass | undefined;
  authorizationPolicies(namespace: string): Iterable<KubeAuthorizationPolicy>;
  peerAuthentications(namespace: string): Iterable<PeerAuthentication>;
  /**
   * The names (`ns/name`) and selectors of the WORKLOAD_SELECTOR policies that are sent, in `namespace`. The
   * translator answers from its cache of converted policies.
   */
  selectorPolicies(namespace: string): Iterable<{ readonly key: string; readonly selector: Readonly<Record<string, string>> }>;
  /** A stable auto-allocated VIP (240.240.0.0/16) for a ServiceEntry host without addresses. */
  allocateVip(namespace: string, host: string): string;
  /** The service accounts of a waypoint's instance pods (label `gateway.networking.k8s.io/gateway-name`), sorted. */
  waypointServiceAccounts(namespace: string, name: string): readonly string[];
}
