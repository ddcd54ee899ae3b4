import { EventEmitter } from 'node:events';
import type { DestinationPolicy, L7AuthorizationPolicy, RequestAuthentication, RouteConfiguration } from './l7-types.ts';
import { policyKey, serviceKey } from './types.ts';

/** What the waypoint reads of the L7 configuration. */
export interface L7Reader {
  /** The routes of a service host (`namespace`, FQDN), if any were configured. */
  routeConfiguration(namespace: string, hostname: string): RouteConfiguration | undefined;
  destinationPolicy(namespace: string, hostname: string): DestinationPolicy | undefined;
  /** The L7 authorization policies that apply to a service: those targeting it and those targeting the whole waypoint. */
  authorizationPoliciesFor(namespace: string, hostname: string): readonly L7AuthorizationPolicy[];
  /** The RequestAuthentications that apply to a service (targeting it, or the whole waypoint). */
  requestAuthenticationsFor(namespace: string, hostname: string): readonly RequestAuthentication[];
  /** Increases on every change (caches key on it). */
  readonly version: number;
}

export interface L7StoreEvents {
  change: [];
}

/**
 * The one owner of the waypoint's L7 state: routes and destination policies keyed `namespace/hostname`,
 * L7 authorization policies keyed `namespace/name`. Pure and synchronous; written by the xDS handlers
 * and the local file source.
 */
export class L7Store extends EventEmitter<L7StoreEvents> implements L7Reader {
  readonly #routes = new Map<string, RouteConfiguration>();
  readonly #destinations = new Map<string, DestinationPolicy>();
  readonly #policies = new Map<string, L7AuthorizationPolicy>();
  readonly #authentications = new Map<string, RequestAuthentication>();
  #version = 0;

  get version(): number {
    return this.#version;
  }

  routeConfiguration(namespace: string, hostname: string): RouteConfiguration | undefined {
    return this.#routes.get(serviceKey(namespace, hostname));
  }

  destinationPolicy(namespace: string, hostname: string): DestinationPolicy | undefined {
    return this.#destinations.get(serviceKey(namespace, hostname));
  }

  authorizationPoliciesFor(namespace: string, hostname: string): readonly L7AuthorizationPolicy[] {
    const key = serviceKey(namespace, hostname);
    return [...this.#policies.values()].filter((p) => p.targetServices.length === 0 || p.targetServices.includes(key));
  }

  requestAuthenticationsFor(namespace: string, hostname: string): readonly RequestAuthentication[] {
    const key = serviceKey(namespace, hostname);
    return [...this.#authentications.values()].filter((a) => a.targetServices.length === 0 || a.targetServices.includes(key));
  }

  upsertRequestAuthentication(a: RequestAuthentication): void {
    this.#authentications.set(policyKey(a.namespace, a.name), a);
    this.#changed();
  }

  removeRequestAuthentication(name: string): void {
    if (this.#authentications.delete(name)) this.#changed();
  }

  allRouteConfigurations(): readonly RouteConfiguration[] {
    return [...this.#routes.values()];
  }

  allDestinationPolicies(): readonly DestinationPolicy[] {
    return [...this.#destinations.values()];
  }

  allAuthorizationPolicies(): readonly L7AuthorizationPolicy[] {
    return [...this.#policies.values()];
  }

  upsertRouteConfiguration(r: RouteConfiguration): void {
    this.#routes.set(serviceKey(r.namespace, r.hostname), r);
    this.#changed();
  }

  removeRouteConfiguration(name: string): void {
    if (this.#routes.delete(name)) this.#changed();
  }

  upsertDestinationPolicy(d: DestinationPolicy): void {
    this.#destinations.set(serviceKey(d.namespace, d.hostname), d);
    this.#changed();
  }

  removeDestinationPolicy(name: string): void {
    if (this.#destinations.delete(name)) this.#changed();
  }

  upsertAuthorizationPolicy(p: L7AuthorizationPolicy): void {
    this.#policies.set(policyKey(p.namespace, p.name), p);
    this.#changed();
  }

  removeAuthorizationPolicy(name: string): void {
    if (this.#policies.delete(name)) this.#changed();
  }

  /** Replaces everything at once (the local file source). */
  replaceAll(config: { routes: readonly RouteConfiguration[]; destinations: readonly DestinationPolicy[]; policies: readonly L7AuthorizationPolicy[]; authentications?: readonly RequestAuthentication[] }): void {
    this.#routes.clear();
    this.#destinations.clear();
    this.#policies.clear();
    this.#authentications.clear();
    for (const a of config.authentications ?? []) this.#authentications.set(policyKey(a.namespace, a.name), a);
    for (const r of config.routes) this.#routes.set(serviceKey(r.namespace, r.hostname), r);
    for (const d of config.destinations) this.#destinations.set(serviceKey(d.namespace, d.hostname), d);
    for (const p of config.policies) this.#policies.set(policyKey(p.namespace, p.name), p);
    this.#changed();
  }

  #changed(): void {
    this.#version++;
    this.emit('change');
  }
}
