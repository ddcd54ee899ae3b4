import { ErrorCode } from '../core/error-codes.ts';
import { Drain } from '../core/lifecycle.ts';
import { formatSpiffeId } from '../identity/spiffe.ts';
import type { StateReader } from '../workload-api/store.ts';
import type { Workload } from '../workload-api/types.ts';
import { authorize, type ConnectionAttributes } from './rbac.ts';

/** The error code for a connection torn down because a policy change now denies it (ztunnel.md §5). */
export const POLICY_CHANGED_CODE = ErrorCode.PROXY_POLICY_CHANGED;

/** The message prefix ztunnel uses when a policy update closes a live connection. */
export const POLICY_CHANGED_REASON = 'connection closed due to policy change';

/** One live inbound connection, as the manager sees it: what RBAC needs, and how to tear it down. */
export interface TrackedConnection {
  readonly id: string;
  /** The destination workload, whose policies apply. */
  readonly workload: Workload;
  readonly attributes: ConnectionAttributes;
  /** Tears the connection down; must not throw, and may be called once at most by the manager. */
  close(reason: string): void;
}

/** A connection that must be closed, and why (the full operator-facing reason). */
export interface CloseDecision<C extends TrackedConnection = TrackedConnection> {
  readonly connection: C;
  readonly reason: string;
}

/** One live connection in `/config_dump` form. */
export interface ConnectionDump {
  readonly id: string;
  readonly workload: string;
  readonly sourceIp: string;
  readonly destinationIp: string;
  readonly destinationPort: number;
  /** The mTLS peer as a SPIFFE URI; absent for plaintext. */
  readonly peer?: string;
}

export interface RecheckResult {
  readonly checked: number;
  readonly closed: ReadonlyArray<{ readonly id: string; readonly reason: string }>;
}

/** The reason a live connection is closed when its destination workload left the mesh state. */
export const WORKLOAD_REMOVED_REASON = 'connection closed: the destination workload was removed';

/**
 * The pure half of a policy re-check: which of `connections` the current state now denies, with
 * ztunnel's reason. Each is judged against its workload as the state has it now (a policy may have
 * been attached to it), and a connection whose workload is gone is closed. No side effects;
 * `ConnectionManager.recheck` acts on the result.
 */
export function connectionsToClose<C extends TrackedConnection>(connections: Iterable<C>, state: Pick<StateReader, 'policiesFor' | 'workloadByUid'>): Array<CloseDecision<C>> {
  const out: Array<CloseDecision<C>> = [];
  for (const connection of connections) {
    const workload = state.workloadByUid(connection.workload.uid);
    if (!workload) {
      out.push({ connection, reason: WORKLOAD_REMOVED_REASON });
      continue;
    }
    const { decision } = authorize(state.policiesFor(workload), connection.attributes);
    if (!decision.allowed) out.push({ connection, reason: `${POLICY_CHANGED_REASON}: ${decision.reason}` });
  }
  return out;
}

/** The `/config_dump` view of one connection. */
export function dumpConnection(connection: TrackedConnection): ConnectionDump {
  const { sourceIp, destinationIp, destinationPort, peer } = connection.attributes;
  return {
    id: connection.id,
    workload: connection.workload.uid,
    sourceIp,
    destinationIp,
    destinationPort,
    ...(peer ? { peer: formatSpiffeId(peer) } : {}),
  };
}

/**
 * The one owner of the set of live inbound connections. Proxies `register` each accepted connection
 * and call the returned function when it ends; on every policy change `recheck` closes those now
 * denied (ztunnel.md §5); shutdown uses `drain` then `closeAll` (ztunnel.md §7).
 */
export class ConnectionManager {
  /** Live connection → its untrack function in the drain. */
  readonly #live = new Map<TrackedConnection, () => void>();
  readonly #drain = new Drain();

  /** Tracks `connection` until the returned (idempotent) function is called. */
  register(connection: TrackedConnection): () => void {
    if (!this.#live.has(connection)) this.#live.set(connection, this.#drain.track(connection));
    return () => this.#unregister(connection);
  }

  /** Live connections, all or those to one workload (by uid). */
  count(workloadUid?: string): number {
    if (workloadUid === undefined) return this.#live.size;
    let n = 0;
    for (const c of this.#live.keys()) if (c.workload.uid === workloadUid) n++;
    return n;
  }

  /** JSON-able list of the live connections, in registration order. */
  dump(): ConnectionDump[] {
    return [...this.#live.keys()].map(dumpConnection);
  }

  /** True once `drain` has been called. */
  get draining(): boolean {
    return this.#drain.draining;
  }

  /**
   * Re-evaluates every live connection against the current policies and closes (and unregisters)
   * those now denied, with reason `connection closed due to policy change: <why>`.
   */
  recheck(state: Pick<StateReader, 'policiesFor' | 'workloadByUid'>): RecheckResult {
    const snapshot = [...this.#live.keys()];
    const decisions = connectionsToClose(snapshot, state);
    for (const { connection, reason } of decisions) this.#close(connection, reason);
    return { checked: snapshot.length, closed: decisions.map(({ connection, reason }) => ({ id: connection.id, reason })) };
  }

  /**
   * Waits for every live connection to unregister, up to `deadlineMs`. Resolves true when none is
   * left, false when the deadline passed first (the caller then uses `closeAll`).
   */
  drain(deadlineMs: number): Promise<boolean> {
    return this.#drain.drain(deadlineMs);
  }

  /** Closes and unregisters every live connection; returns how many there were. */
  closeAll(reason: string): number {
    const snapshot = [...this.#live.keys()];
    for (const connection of snapshot) this.#close(connection, reason);
    return snapshot.length;
  }

  #close(connection: TrackedConnection, reason: string): void {
    if (!this.#live.has(connection)) return; // closed meanwhile by an earlier close's side effects
    try {
      connection.close(reason);
    } catch {
      // a connection's failure to close never stops the others being closed
    } finally {
      this.#unregister(connection);
    }
  }

  #unregister(connection: TrackedConnection): void {
    const untrack = this.#live.get(connection);
    if (!untrack) return;
    this.#live.delete(connection);
    untrack();
  }
}

/** Why a live connection ended badly: the manager's policy close, else the relay's error. */
export interface ConnectionFailure {
  readonly code: ErrorCode;
  readonly message: string;
}

/**
 * Registers a proxied connection whose teardown resets `upstream` (the relay then resets the
 * client side too). `closedBy()` is the manager's reason once it closed the connection; `untrack`
 * ends the registration when the relay is done.
 */
export function trackProxied(
  manager: ConnectionManager,
  connection: Omit<TrackedConnection, 'close'>,
  upstream: { resetAndDestroy(): unknown },
  onClosed: (reason: string) => void,
): { readonly untrack: () => void; closedBy(): ConnectionFailure | undefined } {
  let closedBy: ConnectionFailure | undefined;
  const untrack = manager.register({
    ...connection,
    close(reason) {
      closedBy = { code: POLICY_CHANGED_CODE, message: reason };
      onClosed(reason);
      upstream.resetAndDestroy();
    },
  });
  return { untrack, closedBy: () => closedBy };
}

