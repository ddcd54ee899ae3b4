import { errorMessage } from '../core/errors.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import type { CertificateProvider, CertManager } from '../identity/cert-manager.ts';
import { formatSpiffeId, parseSpiffeId, type SpiffeId } from '../identity/spiffe.ts';
import type { WorkloadCertificate } from '../identity/workload-certificate.ts';
import type { Workload } from '../workload-api/types.ts';

export interface IdentityChanges {
  /** uid → identity of every local workload that needs a certificate. */
  readonly next: Map<string, SpiffeId>;
  /** Identities that gained their first local workload, sorted by formatted id. */
  readonly prefetch: SpiffeId[];
  /** Identities whose last local workload went, sorted by formatted id. */
  readonly forget: SpiffeId[];
}

/** A workload needs a certificate here when it runs on this node and speaks HBONE (or tunnels natively). */
function localIdentity(workload: Workload, nodeName: string): SpiffeId | undefined {
  if (workload.node !== nodeName) return undefined;
  if (workload.tunnelProtocol !== 'HBONE' && !workload.nativeTunnel) return undefined;
  // An identity that is not a valid SPIFFE id could never be issued; leave it out rather than fail every sync.
  const parsed = parseSpiffeId(formatSpiffeId(workload));
  return parsed.ok ? parsed.value : undefined;
}

function distinctIdentities(ids: Iterable<SpiffeId>): Map<string, SpiffeId> {
  const byKey = new Map<string, SpiffeId>();
  for (const id of ids) byKey.set(formatSpiffeId(id), id);
  return byKey;
}

function sorted(byKey: Map<string, SpiffeId>, keep: (key: string) => boolean): SpiffeId[] {
  return [...byKey.keys()]
    .filter(keep)
    .sort()
    .map((key) => byKey.get(key)!);
}

/**
 * Pure: which certificates to prefetch and which to forget when the local workloads change from
 * `before` (uid → identity, as returned in `next` last time) to `workloads`.
 */
export function identityChanges(before: ReadonlyMap<string, SpiffeId>, workloads: readonly Workload[], nodeName: string): IdentityChanges {
  const next = new Map<string, SpiffeId>();
  for (const workload of workloads) {
    const id = localIdentity(workload, nodeName);
    if (id) next.set(workload.uid, id);
  }
  const had = distinctIdentities(before.values());
  const has = distinctIdentities(next.values());
  return {
    next,
    prefetch: sorted(has, (key) => !had.has(key)),
    forget: sorted(had, (key) => !has.has(key)),
  };
}

export interface IdentityManagerOptions {
  /** The cache the certificates live in (only fetch and forget are used). */
  readonly certificates: Pick<CertManager, 'fetch' | 'forget'>;
  /** This node's name (Istio's NODE_NAME). */
  readonly nodeName: string;
  readonly logger?: Logger;
}

/**
 * The certificates of this node's workloads: prefetched when a local workload with a new identity
 * appears, forgotten when the last local workload with that identity goes.
 */
export class IdentityManager implements CertificateProvider {
  readonly #certificates: Pick<CertManager, 'fetch' | 'forget'>;
  readonly #nodeName: string;
  readonly #log: Logger;
  #byUid: ReadonlyMap<string, SpiffeId> = new Map();
  readonly #pending = new Set<Promise<void>>();

  constructor(options: IdentityManagerOptions) {
    this.#certificates = options.certificates;
    this.#nodeName = options.nodeName;
    this.#log = (options.logger ?? silentLogger()).child({ component: 'identity-manager' });
  }

  /**
   * Applies the current set of workloads: forgets dropped identities at once and starts prefetches
   * in the background. The returned promise settles when those prefetches have; it never rejects.
   */
  sync(workloads: readonly Workload[]): Promise<void> {
    const changes = identityChanges(this.#byUid, workloads, this.#nodeName);
    this.#byUid = changes.next;
    for (const id of changes.forget) {
      this.#certificates.forget(id);
      this.#log.debug({ identity: formatSpiffeId(id) }, 'certificate forgotten: no local workload left');
    }
    return Promise.all(changes.prefetch.map((id) => this.#prefetch(id))).then(() => undefined);
  }

  /** Resolves once every prefetch started so far has settled (never rejects). */
  async settled(): Promise<void> {
    await Promise.all([...this.#pending]);
  }

  fetch(identity: SpiffeId): Promise<WorkloadCertificate> {
    return this.#certificates.fetch(identity);
  }

  /** The identities of this node's workloads, sorted, for the admin dump. */
  localIdentities(): string[] {
    return [...new Set([...this.#byUid.values()].map(formatSpiffeId))].sort();
  }

  #prefetch(id: SpiffeId): Promise<void> {
    const identity = formatSpiffeId(id);
    // A synchronous throw from the provider becomes a rejection too: a prefetch never throws into sync.
    const done: Promise<void> = new Promise<WorkloadCertificate>((resolve) => resolve(this.#certificates.fetch(id))).then(
      () => this.#log.debug({ identity }, 'certificate prefetched'),
      (err: unknown) => this.#log.warn({ identity, err: errorMessage(err) }, 'certificate prefetch failed'),
    );
    this.#pending.add(done);
    void done.finally(() => this.#pending.delete(done));
    return done;
  }
}
