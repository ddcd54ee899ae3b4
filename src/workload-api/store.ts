import { networkAddressKey, policyKey, serviceKey, type Address, type AuthorizationPolicy, type Port, type Service, type Workload } from './types.ts';

/** What proxies may ask of the mesh state: lookups only, never the maps themselves. */
export interface StateReader {
  workloadByUid(uid: string): Workload | undefined;
  /** The workload owning (network, ip); host-network workloads are never found by IP. */
  workloadByAddress(network: string, ip: string): Workload | undefined;
  service(namespace: string, hostname: string): Service | undefined;
  /** The service behind a VIP; when several share it, the canonical one, else the first to arrive. */
  serviceByVip(network: string, ip: string): Service | undefined;
  /** Every service on a VIP, in arrival order (for callers applying their own preference, ztunnel.md §4.4). */
  servicesByVip(network: string, ip: string): readonly Service[];
  /** Every service with this hostname, across namespaces. */
  servicesByHostname(hostname: string): readonly Service[];
  /** The workloads that are endpoints of a service, with the ports each serves for it. */
  endpoints(namespace: string, hostname: string): ReadonlyArray<{ readonly workload: Workload; readonly ports: readonly Port[] }>;
  policy(namespace: string, name: string): AuthorizationPolicy | undefined;
  /**
   * Policies that apply to a workload (reference ztunnel.md §5): every GLOBAL policy, the NAMESPACE
   * policies of its namespace, and those it names in `authorizationPolicies` (unknown names skipped).
   */
  policiesFor(workload: Workload): readonly AuthorizationPolicy[];
  counts(): { readonly workloads: number; readonly services: number; readonly policies: number };
}

/**
 * The one owner of the mesh state: workloads, services and policies, indexed for the proxies'
 * lookups. Pure and synchronous: the xDS client and the local file source write to it; nothing here
 * does IO. Validation happens before (convert.ts); the store trusts what it is given.
 */
export class WorkloadStore implements StateReader {
  readonly #workloads = new Map<string, Workload>();
  /** network/ip → uids holding it, most recent last (so a removal can fall back to an older owner). */
  readonly #byAddress = new Map<string, string[]>();
  readonly #services = new Map<string, Service>();
  readonly #byVip = new Map<string, string[]>();
  readonly #byHostname = new Map<string, Set<string>>();
  /** service key → uids of its endpoints (kept even before the service arrives). */
  readonly #endpoints = new Map<string, Set<string>>();
  readonly #policies = new Map<string, AuthorizationPolicy>();
  readonly #policiesByNamespace = new Map<string, Set<string>>();
  readonly #globalPolicies = new Set<string>();

  /** Inserts or replaces an address resource. */
  upsertAddress(address: Address): void {
    if (address.kind === 'workload') this.upsertWorkload(address.workload);
    else this.upsertService(address.service);
  }

  upsertWorkload(workload: Workload): void {
    this.removeWorkload(workload.uid);
    this.#workloads.set(workload.uid, workload);
    if (workload.networkMode !== 'HOST_NETWORK') {
      for (const ip of workload.addresses) push(this.#byAddress, networkAddressKey(workload.network, ip), workload.uid);
    }
    for (const key of workload.services.keys()) addTo(this.#endpoints, key, workload.uid);
  }

  upsertService(service: Service): void {
    const key = serviceKey(service.namespace, service.hostname);
    this.removeService(key);
    this.#services.set(key, service);
    for (const vip of service.addresses) push(this.#byVip, networkAddressKey(vip.network, vip.ip), key);
    addTo(this.#byHostname, service.hostname, key);
  }

  /** Removes by xDS name: a workload uid first, else a service key `ns/hostname`. True when something went. */
  removeAddress(name: string): boolean {
    return this.removeWorkload(name) || this.removeService(name);
  }

  removeWorkload(uid: string): boolean {
    const old = this.#workloads.get(uid);
    if (!old) return false;
    this.#workloads.delete(uid);
    if (old.networkMode !== 'HOST_NETWORK') {
      for (const ip of old.addresses) pull(this.#byAddress, networkAddressKey(old.network, ip), uid);
    }
    for (const key of old.services.keys()) removeFrom(this.#endpoints, key, uid);
    return true;
  }

  removeService(key: string): boolean {
    const old = this.#services.get(key);
    if (!old) return false;
    this.#services.delete(key);
    for (const vip of old.addresses) pull(this.#byVip, networkAddressKey(vip.network, vip.ip), key);
    removeFrom(this.#byHostname, old.hostname, key);
    return true;
  }

  upsertPolicy(policy: AuthorizationPolicy): void {
    const key = policyKey(policy.namespace, policy.name);
    this.removePolicy(key);
    this.#policies.set(key, policy);
    addTo(this.#policiesByNamespace, policy.namespace, key);
    if (policy.scope === 'GLOBAL') this.#globalPolicies.add(key);
  }

  removePolicy(key: string): boolean {
    const old = this.#policies.get(key);
    if (!old) return false;
    this.#policies.delete(key);
    removeFrom(this.#policiesByNamespace, old.namespace, key);
    this.#globalPolicies.delete(key);
    return true;
  }

  /** Drops everything (a local config reload replaces the whole state). */
  clear(): void {
    for (const map of [this.#workloads, this.#byAddress, this.#services, this.#byVip, this.#byHostname, this.#endpoints, this.#policies, this.#policiesByNamespace]) map.clear();
    this.#globalPolicies.clear();
  }

  workloadByUid(uid: string): Workload | undefined {
    return this.#workloads.get(uid);
  }

  workloadByAddress(network: string, ip: string): Workload | undefined {
    const uids = this.#byAddress.get(networkAddressKey(network, ip));
    const uid = uids?.[uids.length - 1];
    return uid === undefined ? undefined : this.#workloads.get(uid);
  }

  service(namespace: string, hostname: string): Service | undefined {
    return this.#services.get(serviceKey(namespace, hostname));
  }

  serviceByVip(network: string, ip: string): Service | undefined {
    const services = this.servicesByVip(network, ip);
    return services.find((s) => s.canonical) ?? services[0];
  }

  servicesByVip(network: string, ip: string): readonly Service[] {
    const keys = this.#byVip.get(networkAddressKey(network, ip)) ?? [];
    return keys.map((k) => this.#services.get(k)).filter((s): s is Service => !!s);
  }

  servicesByHostname(hostname: string): readonly Service[] {
    return [...(this.#byHostname.get(hostname) ?? [])].map((k) => this.#services.get(k)).filter((s): s is Service => !!s);
  }

  endpoints(namespace: string, hostname: string): ReadonlyArray<{ readonly workload: Workload; readonly ports: readonly Port[] }> {
    const key = serviceKey(namespace, hostname);
    return [...(this.#endpoints.get(key) ?? [])].flatMap((uid) => {
      const workload = this.#workloads.get(uid);
      const ports = workload?.services.get(key);
      return workload && ports ? [{ workload, ports }] : [];
    });
  }

  policy(namespace: string, name: string): AuthorizationPolicy | undefined {
    return this.#policies.get(policyKey(namespace, name));
  }

  policiesFor(workload: Workload): readonly AuthorizationPolicy[] {
    const found = new Map<string, AuthorizationPolicy>();
    for (const key of this.#globalPolicies) {
      const p = this.#policies.get(key);
      if (p) found.set(key, p);
    }
    for (const key of this.#policiesByNamespace.get(workload.namespace) ?? []) {
      const p = this.#policies.get(key);
      if (p?.scope === 'NAMESPACE') found.set(key, p);
    }
    for (const key of workload.authorizationPolicies) {
      const p = this.#policies.get(key);
      if (p) found.set(key, p);
    }
    return [...found.values()];
  }

  /** The workload with this pod name in this namespace (a scan: for startup and the admin, not per connection). */
  workloadByName(namespace: string, name: string): Workload | undefined {
    for (const w of this.#workloads.values()) if (w.namespace === namespace && w.name === name) return w;
    return undefined;
  }

  /** Every workload, service and policy, in arrival order (admin dump, node-local scans). */
  allWorkloads(): readonly Workload[] {
    return [...this.#workloads.values()];
  }

  allServices(): readonly Service[] {
    return [...this.#services.values()];
  }

  allPolicies(): readonly AuthorizationPolicy[] {
    return [...this.#policies.values()];
  }

  counts() {
    return { workloads: this.#workloads.size, services: this.#services.size, policies: this.#policies.size };
  }
}

function push(map: Map<string, string[]>, key: string, value: string): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

function pull(map: Map<string, string[]>, key: string, value: string): void {
  const list = map.get(key);
  if (!list) return;
  const at = list.lastIndexOf(value);
  if (at >= 0) list.splice(at, 1);
  if (list.length === 0) map.delete(key);
}

function addTo(map: Map<string, Set<string>>, key: string, value: string): void {
  const set = map.get(key);
  if (set) set.add(value);
  else map.set(key, new Set([value]));
}

function removeFrom(map: Map<string, Set<string>>, key: string, value: string): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(value);
  if (set.size === 0) map.delete(key);
}
