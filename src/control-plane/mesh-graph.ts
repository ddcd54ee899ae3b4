import { formatSpiffeId } from '../identity/spiffe.ts';
import type { GatewayAddress, Service, Workload } from '../workload-api/types.ts';
import type { PromSample } from '../core/prometheus-text.ts';

/**
 * The mesh as a graph, for the control plane's live page (`/mesh`, `/mesh.json`; docs/mesh-page.md): the workloads
 * the control plane serves, grouped by node, its services and waypoints, and the connections the data plane
 * observed, read from the proxies' Istio metrics. Pure: the caller decodes the snapshot and scrapes the targets.
 *
 * Edges come from two families:
 * - ztunnel's `istio_tcp_connections_opened_total` / `_closed_total`. A connection between two ztunnels is counted
 *   by both (`reporter="source"` and `"destination"`); an edge uses the destination's count when it has one, else
 *   the source's, so nothing is counted twice. Denials are the closed series with `response_flags="DENY"`.
 * - the waypoint's `istio_requests_total` (`reporter="waypoint"`): an edge source → waypoint for every request,
 *   and waypoint → destination for those that reached one, with their response codes and destination versions;
 *   403s are the waypoint's denials. The waypoint of a request is its service's (else its destination's, else the
 *   only waypoint there is).
 *
 * Metrics name a workload by namespace and workload name (a Deployment's name, not a pod's): an edge to a workload
 * with several pods is drawn to the first of them. What metrics name but the mesh does not know (a caller outside
 * the mesh, a service the control plane does not serve) becomes an `external` node.
 */

export interface WaypointInput {
  readonly name: string;
  readonly namespace: string;
  /** The Gateway's status addresses (IPs or hostnames). */
  readonly addresses: readonly string[];
}

export interface ScrapeInput {
  readonly url: string;
  readonly up: boolean;
  /** Why it is down (refused, timeout, HTTP status). */
  readonly error?: string | undefined;
  readonly samples: readonly PromSample[];
  /** Lines of its answer that could not be read. */
  readonly problems: readonly string[];
}

export interface MeshGraphInput {
  readonly workloads: readonly Workload[];
  readonly services: readonly Service[];
  readonly waypoints: readonly WaypointInput[];
  readonly scrapes: readonly ScrapeInput[];
  /** `DOMAIN_SUFFIX`, to recognise a waypoint named by hostname (`<name>.<ns>.svc.<suffix>`). */
  readonly domainSuffix: string;
  readonly trustDomain: string;
}

export interface MeshNode {
  /** The Kubernetes node's name; '' for workloads without one. */
  readonly name: string;
  /** Ids of its workloads and waypoints, sorted. */
  readonly workloads: readonly string[];
  readonly waypoints: readonly string[];
}

export interface MeshWorkload {
  /** `wl:<namespace>/<pod name>` */
  readonly id: string;
  readonly name: string;
  readonly namespace: string;
  /** The workload name metrics use (a Deployment's name). */
  readonly workload: string;
  readonly app: string;
  readonly version: string;
  readonly node: string;
  /** SPIFFE id. */
  readonly identity: string;
  readonly ips: readonly string[];
  /** In the mesh: its traffic is captured and carried over HBONE (mTLS). */
  readonly captured: boolean;
  readonly waypoint?: string;
  /** Ids of the services it is an endpoint of. */
  readonly services: readonly string[];
}

export interface MeshService {
  /** `svc:<namespace>/<hostname>` */
  readonly id: string;
  readonly name: string;
  readonly namespace: string;
  readonly hostname: string;
  readonly vips: readonly string[];
  readonly waypoint?: string;
  readonly endpoints: readonly string[];
}

export interface VersionShare {
  readonly version: string;
  readonly requests: number;
  /** Share of the service's requests through the waypoint that reached a known version, 0-100, one decimal. */
  readonly percent: number;
}

export interface MeshWaypoint {
  /** `wp:<namespace>/<name>` */
  readonly id: string;
  readonly name: string;
  readonly namespace: string;
  readonly addresses: readonly string[];
  /** The node of its instance, when the control plane knows it as a workload; else ''. */
  readonly node: string;
  readonly identity: string;
  /** Ids of the services and workloads bound to it. */
  readonly services: readonly string[];
  readonly workloads: readonly string[];
  /** Per service, how its requests split over destination versions. */
  readonly splits: ReadonlyArray<{ readonly service: string; readonly requests: number; readonly versions: readonly VersionShare[] }>;
}

export interface MeshExternal {
  /** `ext:<namespace>/<workload>`, `ext:svc/<hostname>` or `ext:unknown` */
  readonly id: string;
  readonly label: string;
}

export interface TcpCounts {
  /** Which side's counts these are: the destination's when it reported, else the source's. */
  readonly reporter: 'destination' | 'source';
  readonly opened: number;
  readonly closed: number;
  /** Opened with `connection_security_policy="mutual_tls"`. */
  readonly mtls: number;
  readonly plaintext: number;
  /** Closed with `response_flags="DENY"`. */
  readonly denied: number;
  /** Closed with any other failure flag. */
  readonly failed: number;
}

export interface HttpCounts {
  readonly requests: number;
  /** Response code → requests. */
  readonly codes: Readonly<Record<string, number>>;
  /** 403s. */
  readonly denied: number;
  /** Waypoint → destination edges: per service and destination version. */
  readonly split: ReadonlyArray<{ readonly service: string } & VersionShare>;
}

export interface MeshEdge {
  /** `<from>-><to>` */
  readonly id: string;
  readonly from: string;
  readonly to: string;
  /** Ids of the services the traffic was addressed to. */
  readonly services: readonly string[];
  readonly tcp?: TcpCounts;
  readonly http?: HttpCounts;
}

export interface MeshTarget {
  readonly url: string;
  readonly up: boolean;
  readonly error?: string;
  readonly samples: number;
  readonly problems: readonly string[];
}

export interface MeshGraph {
  readonly nodes: readonly MeshNode[];
  readonly workloads: readonly MeshWorkload[];
  readonly services: readonly MeshService[];
  readonly waypoints: readonly MeshWaypoint[];
  readonly external: readonly MeshExternal[];
  readonly edges: readonly MeshEdge[];
  readonly targets: readonly MeshTarget[];
}

export const TCP_OPENED = 'istio_tcp_connections_opened_total';
export const TCP_CLOSED = 'istio_tcp_connections_closed_total';
export const HTTP_REQUESTS = 'istio_requests_total';

const UNKNOWN = 'unknown';
const known = (v: string | undefined): v is string => v !== undefined && v !== '' && v !== UNKNOWN;
const byString = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const sorted = (values: Iterable<string>): string[] => [...new Set(values)].sort(byString);
const pct = (part: number, whole: number): number => (whole > 0 ? Math.round((part / whole) * 1000) / 10 : 0);

export const workloadId = (w: Pick<Workload, 'namespace' | 'name'>): string => `wl:${w.namespace}/${w.name}`;
export const serviceId = (s: Pick<Service, 'namespace' | 'hostname'>): string => `svc:${s.namespace}/${s.hostname}`;
export const waypointId = (w: Pick<WaypointInput, 'namespace' | 'name'>): string => `wp:${w.namespace}/${w.name}`;

interface MutableTcp {
  opened: number;
  closed: number;
  mtls: number;
  plaintext: number;
  denied: number;
  failed: number;
}

interface MutableEdge {
  readonly from: string;
  readonly to: string;
  readonly services: Set<string>;
  readonly tcp: { destination?: MutableTcp; source?: MutableTcp };
  http?: { requests: number; codes: Map<string, number>; denied: number; split: Map<string, { service: string; version: string; requests: number; waypoint: string }> };
}

export function buildMeshGraph(input: MeshGraphInput): MeshGraph {
  const waypoints = [...input.waypoints].sort((a, b) => byString(waypointId(a), waypointId(b)));
  const waypointIds = new Set(waypoints.map(waypointId));
  const waypointAddresses = new Map<string, string>();
  for (const wp of waypoints) for (const a of wp.addresses) waypointAddresses.set(a, waypointId(wp));

  // A workload that is a waypoint's instance (same namespace, its name, or one of its addresses) is drawn as the waypoint.
  const instanceOf = (w: Workload): string | undefined => {
    for (const wp of waypoints) {
      if (w.namespace !== wp.namespace) continue;
      if (w.workloadName === wp.name || w.addresses.some((ip) => wp.addresses.includes(ip))) return waypointId(wp);
    }
    return undefined;
  };
  const allWorkloads = [...input.workloads].sort((a, b) => byString(workloadId(a), workloadId(b)));
  const instances = new Map<string, Workload[]>();
  const workloads: Workload[] = [];
  for (const w of allWorkloads) {
    const wp = instanceOf(w);
    if (wp) instances.set(wp, [...(instances.get(wp) ?? []), w]);
    else workloads.push(w);
  }
  const services = [...input.services].sort((a, b) => byString(serviceId(a), serviceId(b)));
  const serviceByHost = new Map<string, Service>();
  for (const s of services) {
    serviceByHost.set(`${s.namespace}/${s.hostname}`, s);
    if (!serviceByHost.has(s.hostname)) serviceByHost.set(s.hostname, s);
  }
  const serviceByVip = new Map<string, Service>();
  for (const s of services) for (const a of s.addresses) serviceByVip.set(a.ip, s);

  /** The waypoint node a GatewayAddress names, if it is one we know. */
  const resolveGateway = (g: GatewayAddress | undefined): string | undefined => {
    if (!g) return undefined;
    const d = g.destination;
    if (d.kind === 'hostname') {
      for (const wp of waypoints) {
        if (d.hostname === `${wp.name}.${wp.namespace}.svc.${input.domainSuffix}` || wp.addresses.includes(d.hostname)) return waypointId(wp);
      }
      return undefined;
    }
    const direct = waypointAddresses.get(d.ip);
    if (direct) return direct;
    for (const [wp, list] of instances) if (list.some((w) => w.addresses.includes(d.ip))) return wp;
    // The waypoint's own Service VIP.
    const svc = serviceByVip.get(d.ip);
    if (svc) {
      const wp = waypoints.find((x) => x.namespace === svc.namespace && x.name === svc.name);
      if (wp) return waypointId(wp);
    }
    return undefined;
  };

  const identityOf = (w: Workload): string => formatSpiffeId({ trustDomain: w.trustDomain || input.trustDomain, namespace: w.namespace, serviceAccount: w.serviceAccount });
  const meshWorkloads: MeshWorkload[] = workloads.map((w) => {
    const wp = resolveGateway(w.waypoint);
    return {
      id: workloadId(w),
      name: w.name,
      namespace: w.namespace,
      workload: w.workloadName || w.name,
      app: w.canonicalName,
      version: w.canonicalRevision,
      node: w.node,
      identity: identityOf(w),
      ips: [...w.addresses],
      captured: w.tunnelProtocol === 'HBONE',
      ...(wp ? { waypoint: wp } : {}),
      services: sorted([...w.services.keys()].map((key) => serviceByHost.get(key)).filter((s): s is Service => s !== undefined).map(serviceId)),
    };
  });
  const meshServices: MeshService[] = services.map((s) => {
    const wp = resolveGateway(s.waypoint);
    const key = `${s.namespace}/${s.hostname}`;
    return {
      id: serviceId(s),
      name: s.name,
      namespace: s.namespace,
      hostname: s.hostname,
      vips: s.addresses.map((a) => a.ip),
      ...(wp ? { waypoint: wp } : {}),
      endpoints: workloads.filter((w) => w.services.has(key)).map(workloadId),
    };
  });
  const serviceWaypoint = new Map(meshServices.map((s) => [s.id, s.waypoint]));

  // ---- resolving metric labels to graph nodes ----
  const external = new Map<string, string>();
  const byWorkloadName = new Map<string, string>();
  for (const w of workloads) {
    const key = `${w.namespace}/${w.workloadName || w.name}`;
    if (!byWorkloadName.has(key)) byWorkloadName.set(key, workloadId(w));
    const podKey = `${w.namespace}/${w.name}`;
    if (!byWorkloadName.has(podKey)) byWorkloadName.set(podKey, workloadId(w));
  }
  const byIdentity = new Map<string, string>();
  for (const wp of waypoints) {
    byIdentity.set(formatSpiffeId({ trustDomain: input.trustDomain, namespace: wp.namespace, serviceAccount: wp.name }), waypointId(wp));
    for (const w of instances.get(waypointId(wp)) ?? []) byIdentity.set(identityOf(w), waypointId(wp));
  }
  for (const w of workloads) if (!byIdentity.has(identityOf(w))) byIdentity.set(identityOf(w), workloadId(w));

  const serviceOf = (labels: Readonly<Record<string, string>>): Service | undefined => {
    const host = labels['destination_service'];
    if (!known(host)) return undefined;
    const ns = labels['destination_service_namespace'];
    return (known(ns) ? serviceByHost.get(`${ns}/${host}`) : undefined) ?? serviceByHost.get(host);
  };
  const addExternal = (id: string, label: string): string => {
    external.set(id, label);
    return id;
  };
  /** A source or destination: by workload name, then by principal; undefined when neither is known. */
  const endpoint = (side: 'source' | 'destination', labels: Readonly<Record<string, string>>): string | undefined => {
    const name = labels[`${side}_workload`];
    const ns = labels[`${side}_workload_namespace`];
    if (known(name) && known(ns)) {
      const w = byWorkloadName.get(`${ns}/${name}`);
      if (w) return w;
      const wp = waypointId({ namespace: ns, name });
      if (waypointIds.has(wp)) return wp;
    }
    const principal = labels[`${side}_principal`];
    if (known(principal)) {
      const id = byIdentity.get(principal);
      if (id) return id;
    }
    if (known(name)) return addExternal(`ext:${known(ns) ? ns : UNKNOWN}/${name}`, known(ns) ? `${ns}/${name}` : name);
    return undefined;
  };
  const destinationOf = (labels: Readonly<Record<string, string>>, svc: Service | undefined): string => {
    const found = endpoint('destination', labels);
    if (found) return found;
    if (svc) return serviceWaypoint.get(serviceId(svc)) ?? serviceId(svc);
    const host = labels['destination_service'];
    if (known(host)) return addExternal(`ext:svc/${host}`, host);
    return addExternal('ext:unknown', 'unknown');
  };
  const sourceOf = (labels: Readonly<Record<string, string>>): string => endpoint('source', labels) ?? addExternal('ext:unknown', 'unknown');

  const edges = new Map<string, MutableEdge>();
  const edge = (from: string, to: string): MutableEdge => {
    const id = `${from}->${to}`;
    let e = edges.get(id);
    if (!e) edges.set(id, (e = { from, to, services: new Set(), tcp: {} }));
    return e;
  };

  for (const scrape of input.scrapes) {
    for (const s of scrape.samples) {
      if (!Number.isFinite(s.value) || s.value < 0) continue;
      if (s.name === TCP_OPENED || s.name === TCP_CLOSED) {
        const reporter = s.labels['reporter'];
        if (reporter !== 'source' && reporter !== 'destination') continue;
        const svc = serviceOf(s.labels);
        const from = sourceOf(s.labels);
        const to = destinationOf(s.labels, svc);
        if (from === to) continue;
        const e = edge(from, to);
        if (svc) e.services.add(serviceId(svc));
        const c = (e.tcp[reporter] ??= { opened: 0, closed: 0, mtls: 0, plaintext: 0, denied: 0, failed: 0 });
        if (s.name === TCP_OPENED) {
          c.opened += s.value;
          if (s.labels['connection_security_policy'] === 'mutual_tls') c.mtls += s.value;
          else c.plaintext += s.value;
        } else {
          c.closed += s.value;
          const flags = s.labels['response_flags'] ?? '-';
          if (flags === 'DENY') c.denied += s.value;
          else if (flags !== '-' && flags !== '') c.failed += s.value;
        }
      } else if (s.name === HTTP_REQUESTS && s.labels['reporter'] === 'waypoint') {
        const svc = serviceOf(s.labels);
        const from = sourceOf(s.labels);
        const dest = endpoint('destination', s.labels);
        const wp =
          (svc ? serviceWaypoint.get(serviceId(svc)) : undefined) ??
          meshWorkloads.find((w) => w.id === dest)?.waypoint ??
          (waypoints.length === 1 ? waypointId(waypoints[0]!) : addExternal('ext:waypoint', 'waypoint (unknown)'));
        const code = s.labels['response_code'] ?? UNKNOWN;
        const denied = code === '403' ? s.value : 0;
        const count = (e: MutableEdge): NonNullable<MutableEdge['http']> => {
          if (svc) e.services.add(serviceId(svc));
          const h = (e.http ??= { requests: 0, codes: new Map(), denied: 0, split: new Map() });
          h.requests += s.value;
          h.codes.set(code, (h.codes.get(code) ?? 0) + s.value);
          h.denied += denied;
          return h;
        };
        if (from !== wp) count(edge(from, wp));
        if (dest && dest !== wp) {
          const h = count(edge(wp, dest));
          const version = s.labels['destination_version'];
          if (svc && known(version)) {
            const key = `${serviceId(svc)}\u0000${version}`;
            const entry = h.split.get(key) ?? { service: serviceId(svc), version, requests: 0, waypoint: wp };
            entry.requests += s.value;
            h.split.set(key, entry);
          }
        }
      }
    }
  }

  // Splits: per waypoint and service, the share of each destination version.
  const splitTotals = new Map<string, Map<string, number>>();
  for (const e of edges.values()) {
    for (const entry of e.http?.split.values() ?? []) {
      const key = `${entry.waypoint}\u0000${entry.service}`;
      const versions = splitTotals.get(key) ?? new Map<string, number>();
      versions.set(entry.version, (versions.get(entry.version) ?? 0) + entry.requests);
      splitTotals.set(key, versions);
    }
  }
  const serviceTotal = (wp: string, service: string): number => [...(splitTotals.get(`${wp}\u0000${service}`)?.values() ?? [])].reduce((a, b) => a + b, 0);

  const meshEdges: MeshEdge[] = [...edges.entries()]
    .sort(([a], [b]) => byString(a, b))
    .map(([id, e]) => {
      const tcpReporter: TcpCounts['reporter'] | undefined = e.tcp.destination ? 'destination' : e.tcp.source ? 'source' : undefined;
      const tcp: TcpCounts | undefined = tcpReporter ? { reporter: tcpReporter, ...e.tcp[tcpReporter]! } : undefined;
      const http = e.http
        ? {
            requests: e.http.requests,
            codes: Object.fromEntries([...e.http.codes].sort(([a], [b]) => byString(a, b))),
            denied: e.http.denied,
            split: [...e.http.split.values()]
              .sort((a, b) => byString(a.service, b.service) || byString(a.version, b.version))
              .map((x) => ({ service: x.service, version: x.version, requests: x.requests, percent: pct(x.requests, serviceTotal(x.waypoint, x.service)) })),
          }
        : undefined;
      return { id, from: e.from, to: e.to, services: sorted(e.services), ...(tcp ? { tcp } : {}), ...(http ? { http } : {}) };
    });

  const meshWaypoints: MeshWaypoint[] = waypoints.map((wp) => {
    const id = waypointId(wp);
    const inst = instances.get(id) ?? [];
    const splits = [...splitTotals]
      .filter(([key]) => key.startsWith(`${id}\u0000`))
      .map(([key, versions]) => {
        const service = key.slice(id.length + 1);
        const requests = [...versions.values()].reduce((a, b) => a + b, 0);
        return {
          service,
          requests,
          versions: [...versions].sort(([a], [b]) => byString(a, b)).map(([version, n]) => ({ version, requests: n, percent: pct(n, requests) })),
        };
      })
      .sort((a, b) => byString(a.service, b.service));
    return {
      id,
      name: wp.name,
      namespace: wp.namespace,
      addresses: sorted([...wp.addresses, ...inst.flatMap((w) => w.addresses)]),
      node: inst[0]?.node ?? '',
      identity: inst[0] ? identityOf(inst[0]) : formatSpiffeId({ trustDomain: input.trustDomain, namespace: wp.namespace, serviceAccount: wp.name }),
      services: meshServices.filter((s) => s.waypoint === id).map((s) => s.id),
      workloads: meshWorkloads.filter((w) => w.waypoint === id).map((w) => w.id),
      splits,
    };
  });

  const nodeNames = sorted([...meshWorkloads.map((w) => w.node), ...meshWaypoints.filter((w) => w.node !== '').map((w) => w.node)]);
  const nodes: MeshNode[] = nodeNames.map((name) => ({
    name,
    workloads: meshWorkloads.filter((w) => w.node === name).map((w) => w.id),
    waypoints: meshWaypoints.filter((w) => w.node === name && name !== '').map((w) => w.id),
  }));

  const targets: MeshTarget[] = input.scrapes.map((s) => ({
    url: s.url,
    up: s.up,
    ...(s.error !== undefined ? { error: s.error } : {}),
    samples: s.samples.length,
    problems: [...s.problems],
  }));

  return {
    nodes,
    workloads: meshWorkloads,
    services: meshServices,
    waypoints: meshWaypoints,
    external: [...external].sort(([a], [b]) => byString(a, b)).map(([id, label]) => ({ id, label })),
    edges: meshEdges,
    targets,
  };
}
