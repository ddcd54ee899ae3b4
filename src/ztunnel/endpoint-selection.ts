import { isIP } from 'node:net';
import type { StateReader } from '../workload-api/store.ts';
import type { LoadBalancing, LoadBalancingScope, Port, Service, Workload } from '../workload-api/types.ts';

/**
 * Service → endpoint selection (reference ztunnel.md §4.4), pure: the state, the caller and a
 * random source in, one endpoint (workload, IP, target port) or the reason there is none out.
 */

/** Standard: the service must list the port. Waypoint: an application tunnel may stand in for it (§4.5). */
export type ResolutionMode = 'standard' | 'waypoint';

export interface SelectionInput {
  readonly service: Service;
  readonly servicePort: number;
  /** The caller, for locality ranking. */
  readonly source: Workload;
  /** The IP the client dialled: kept when it is the endpoint's own; otherwise its family is preferred. */
  readonly originalIp: string;
  readonly mode: ResolutionMode;
}

export interface SelectedEndpoint {
  readonly workload: Workload;
  /** Undefined when the workload has no usable IP (hostname-only, or reachable only through a network gateway). */
  readonly ip: string | undefined;
  readonly targetPort: number;
}

export type SelectionFailure =
  | { readonly kind: 'no-port'; readonly reason: string }
  | { readonly kind: 'no-endpoint'; readonly reason: string }
  | { readonly kind: 'no-target-port'; readonly reason: string; readonly workload: Workload };

export type SelectionResult = { readonly ok: true; readonly endpoint: SelectedEndpoint } | { readonly ok: false; readonly failure: SelectionFailure };

interface Candidate {
  readonly workload: Workload;
  readonly ports: readonly Port[];
}

export function selectEndpoint(state: StateReader, input: SelectionInput, random: () => number): SelectionResult {
  const { service, servicePort, source, mode } = input;
  const port = service.ports.find((p) => p.servicePort === servicePort);
  if (mode === 'standard' && !port) {
    return { ok: false, failure: { kind: 'no-port', reason: `service ${service.namespace}/${service.hostname} has no port ${servicePort}` } };
  }
  const allowAll = service.loadBalancing?.healthPolicy === 'ALLOW_ALL';
  const candidates = state.endpoints(service.namespace, service.hostname).filter(({ workload, ports }) => {
    if (workload.status === 'UNHEALTHY' && !allowAll) return false;
    const hasAddress = workload.addresses.length > 0 || workload.hostname !== '';
    if (!hasAddress && (workload.network === source.network || !workload.networkGateway)) return false;
    if (mode === 'standard') return (port?.targetPort ?? 0) !== 0 || ports.some((p) => p.servicePort === servicePort);
    return port !== undefined || workload.applicationTunnel !== undefined;
  });
  const options = rankByLocality(candidates, service.loadBalancing, source);
  const chosen = chooseWeighted(options, random);
  if (!chosen) {
    return { ok: false, failure: { kind: 'no-endpoint', reason: `service ${service.namespace}/${service.hostname} has no usable endpoint for port ${servicePort}` } };
  }
  const targetPort = resolveTargetPort(chosen, port, servicePort);
  if (targetPort === undefined) {
    return {
      ok: false,
      failure: { kind: 'no-target-port', workload: chosen.workload, reason: `endpoint ${chosen.workload.uid} of service ${service.namespace}/${service.hostname} has no target port for ${servicePort}` },
    };
  }
  return { ok: true, endpoint: { workload: chosen.workload, ip: chooseIp(chosen.workload, service.ipFamilies, input.originalIp), targetPort } };
}

/**
 * Locality ranking. No LB / UNSPECIFIED: every candidate. STRICT keeps endpoints matching every scope;
 * FAILOVER keeps the best rank. With NETWORK first, a network mismatch skips the scope instead of
 * stopping the count and a match is worth the whole list, so same-network endpoints always win.
 */
export function rankByLocality<C extends { readonly workload: Workload }>(candidates: readonly C[], lb: LoadBalancing | undefined, source: Workload): readonly C[] {
  if (!lb || (lb.mode !== 'STRICT' && lb.mode !== 'FAILOVER')) return candidates;
  const prefs = lb.routingPreference;
  const networkFirst = prefs[0] === 'NETWORK';
  const ranked: Array<{ rank: number; candidate: C }> = [];
  for (const candidate of candidates) {
    let rank = 0;
    let full = true;
    for (const [i, scope] of prefs.entries()) {
      const matches = scopeMatches(scope, source, candidate.workload);
      if (networkFirst && i === 0) {
        if (matches) rank += prefs.length;
        else full = false;
        continue;
      }
      if (!matches) {
        full = false;
        break;
      }
      rank += 1;
    }
    if (lb.mode === 'STRICT' && !full) continue;
    ranked.push({ rank, candidate });
  }
  const best = Math.max(...ranked.map((r) => r.rank));
  return ranked.filter((r) => r.rank === best).map((r) => r.candidate);
}

function scopeMatches(scope: LoadBalancingScope, a: Workload, b: Workload): boolean {
  switch (scope) {
    case 'REGION':
      return (a.locality?.region ?? '') === (b.locality?.region ?? '');
    case 'ZONE':
      return (a.locality?.zone ?? '') === (b.locality?.zone ?? '');
    case 'SUBZONE':
      return (a.locality?.subzone ?? '') === (b.locality?.subzone ?? '');
    case 'NODE':
      return a.node === b.node;
    case 'CLUSTER':
      return a.clusterId === b.clusterId;
    case 'NETWORK':
      return a.network === b.network;
  }
}

/** Random choice weighted by capacity; capacity 0 is never chosen (as ztunnel's `choose_weighted`). */
export function chooseWeighted<C extends { readonly workload: Workload }>(options: readonly C[], random: () => number): C | undefined {
  return weightedPick(options, (o) => o.workload.capacity, random);
}

/** Picks an item with probability weight/total; undefined when nothing has a positive weight. */
export function weightedPick<T>(items: readonly T[], weight: (item: T) => number, random: () => number): T | undefined {
  const weights = items.map((item) => Math.max(0, weight(item)));
  const total = weights.reduce((a, b) => a + b, 0);
  if (!(total > 0)) return undefined;
  let point = random() * total;
  for (const [i, item] of items.entries()) {
    const w = weights[i] ?? 0;
    if (w > 0 && point < w) return item;
    point -= w;
  }
  // Only reachable through rounding (random() close to 1): the last item with weight.
  for (let i = items.length - 1; i >= 0; i--) if ((weights[i] ?? 0) > 0) return items[i];
  return undefined;
}

/** Endpoint mapping → service target port → application tunnel (service port) → none. */
function resolveTargetPort(candidate: Candidate, port: Port | undefined, servicePort: number): number | undefined {
  const mapped = candidate.ports.find((p) => p.servicePort === servicePort);
  if (mapped && mapped.targetPort > 0) return mapped.targetPort;
  if (port && port.targetPort > 0) return port.targetPort;
  const tunnel = candidate.workload.applicationTunnel;
  if (tunnel && tunnel.port > 0) return servicePort;
  return undefined;
}

/** The dialled IP if it is the workload's; else the first IP the service's families allow, the request's family first. */
export function chooseIp(workload: Workload, families: Service['ipFamilies'], originalIp: string): string | undefined {
  if (workload.addresses.includes(originalIp)) return originalIp;
  const allowed = workload.addresses.filter((ip) => (families === 'IPV4_ONLY' ? isIP(ip) === 4 : families === 'IPV6_ONLY' ? isIP(ip) === 6 : true));
  const family = isIP(originalIp);
  return allowed.find((ip) => isIP(ip) === family) ?? allowed[0];
}

/**
 * The service a client means by a VIP shared by several (§4.4): services of other namespaces with
 * NAMESPACE visibility are invisible; then the client's namespace, then `canonical`, then the first.
 */
export function pickVipService(services: readonly Service[], clientNamespace: string): Service | undefined {
  const visible = services.filter((s) => s.visibility !== 'NAMESPACE' || s.namespace === clientNamespace);
  let best: Service | undefined;
  let bestScore = -1;
  for (const s of visible) {
    const score = (s.namespace === clientNamespace ? 2 : 0) + (s.canonical ? 1 : 0);
    if (score > bestScore) {
      best = s;
      bestScore = score;
    }
  }
  return best;
}
