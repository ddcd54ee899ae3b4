import { EventEmitter } from 'node:events';
import { Backoff } from '../core/backoff.ts';
import { MeshError, errorMessage } from '../core/errors.ts';
import { ErrorCode } from '../core/error-codes.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import { formatSpiffeId, type SpiffeId } from './spiffe.ts';
import { workloadCertificateFromChain, type WorkloadCertificate } from './workload-certificate.ts';
import { buildCsrPem, generateKeyPair, privateKeyPem } from './x509.ts';

/** What the cert manager needs of a CA: Istio's CreateCertificate, in or out of process. */
export interface CaClient {
  /** Returns the cert chain as Istio's CA does: [leaf, …intermediates, roots]. */
  createCertificate(request: CertificateRequest): Promise<readonly string[]>;
}

export interface CertificateRequest {
  readonly csrPem: string;
  readonly ttlSeconds: number;
  /** Set in shared (node proxy) mode: the identity the proxy asks for on a workload's behalf. */
  readonly impersonatedIdentity?: string;
}

/** The narrow view proxies get: certificates by identity, nothing else. */
export interface CertificateProvider {
  fetch(identity: SpiffeId): Promise<WorkloadCertificate>;
}

export interface CertManagerOptions {
  readonly ca: CaClient;
  /** Requested lifetime (Istio's SECRET_TTL, default 24 h). */
  readonly ttlSeconds?: number;
  /** Ask for other identities through impersonation metadata (node proxy mode). */
  readonly impersonate?: boolean;
  /** At most this many CSR calls in flight (Istio: 8). */
  readonly maxConcurrentRequests?: number;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  readonly now?: () => number;
  /** Injected timers (tests record the delays); unref'd node timers by default. */
  readonly timers?: Timers;
  readonly logger?: Logger;
}

export interface Timers {
  set(callback: () => void, delayMs: number): unknown;
  clear(handle: unknown): void;
}

const nodeTimers: Timers = {
  set: (callback, delayMs) => setTimeout(callback, delayMs).unref(),
  clear: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

interface Entry {
  certificate?: WorkloadCertificate;
  inflight?: Promise<WorkloadCertificate>;
  timer?: unknown;
  readonly backoff: Backoff;
}

/**
 * Per-identity certificate cache. One fetch at a time per identity; refresh at half the lifetime;
 * on a failed refresh, capped exponential backoff while the unexpired certificate keeps being served.
 * Emits `'certificate'` (WorkloadCertificate) whenever a new certificate is stored.
 */
export class CertManager extends EventEmitter<{ certificate: [WorkloadCertificate] }> implements CertificateProvider {
  readonly #options: Required<Omit<CertManagerOptions, 'logger'>>;
  readonly #log: Logger;
  readonly #entries = new Map<string, Entry>();
  readonly #waiting: Array<() => void> = [];
  #active = 0;
  #closed = false;

  constructor(options: CertManagerOptions) {
    super();
    this.#options = {
      ttlSeconds: 86_400,
      impersonate: false,
      maxConcurrentRequests: 8,
      backoff: { initialMs: 500, maxMs: 150_000 },
      now: Date.now,
      timers: nodeTimers,
      ...options,
    };
    this.#log = (options.logger ?? silentLogger()).child({ component: 'cert-manager' });
  }

  /** The cached certificate if it is still valid, without fetching. */
  peek(identity: SpiffeId): WorkloadCertificate | undefined {
    const certificate = this.#entries.get(formatSpiffeId(identity))?.certificate;
    return certificate && this.#valid(certificate) ? certificate : undefined;
  }

  async fetch(identity: SpiffeId): Promise<WorkloadCertificate> {
    if (this.#closed) throw new MeshError(ErrorCode.CORE_CLOSED, 'certificate manager is closed');
    const entry = this.#entry(identity);
    if (entry.certificate && this.#valid(entry.certificate)) return entry.certificate;
    return (entry.inflight ??= this.#refresh(identity, entry));
  }

  /** Drops an identity: no more refreshes, the next fetch starts anew. */
  forget(identity: SpiffeId): void {
    const key = formatSpiffeId(identity);
    const entry = this.#entries.get(key);
    if (entry?.timer) this.#options.timers.clear(entry.timer);
    this.#entries.delete(key);
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const entry of this.#entries.values()) if (entry.timer) this.#options.timers.clear(entry.timer);
    this.#entries.clear();
  }

  #entry(identity: SpiffeId): Entry {
    const key = formatSpiffeId(identity);
    let entry = this.#entries.get(key);
    if (!entry) {
      const { initialMs, maxMs } = this.#options.backoff;
      entry = { backoff: new Backoff({ initialMs, maxMs, multiplier: 2, jitter: 0.2 }) };
      this.#entries.set(key, entry);
    }
    return entry;
  }

  #valid(certificate: WorkloadCertificate): boolean {
    return this.#options.now() < certificate.notAfter;
  }

  async #refresh(identity: SpiffeId, entry: Entry): Promise<WorkloadCertificate> {
    const id = formatSpiffeId(identity);
    try {
      const certificate = await this.#request(identity);
      if (this.#entries.get(id) !== entry) return certificate; // forgotten or closed meanwhile
      entry.certificate = certificate;
      entry.backoff.reset();
      const lifetime = certificate.notAfter - certificate.notBefore;
      this.#schedule(identity, entry, certificate.notBefore + lifetime / 2 - this.#options.now());
      this.#log.info({ identity: id, notAfter: new Date(certificate.notAfter).toISOString() }, 'certificate issued');
      this.emit('certificate', certificate);
      return certificate;
    } catch (err) {
      const cause = err instanceof MeshError ? err : new MeshError(ErrorCode.IDENTITY_CERT_FETCH_FAILED, `certificate request for ${id} failed: ${errorMessage(err)}`, { cause: err });
      const kept = entry.certificate && this.#valid(entry.certificate) ? entry.certificate : undefined;
      if (this.#entries.get(id) === entry) {
        const delay = entry.backoff.next();
        const untilExpiry = kept ? kept.notAfter - this.#options.now() : delay;
        this.#schedule(identity, entry, Math.min(delay, untilExpiry));
      }
      this.#log.warn({ identity: id, code: cause.code, err: cause.message, keptUntil: kept?.notAfter }, 'certificate refresh failed');
      if (kept) return kept;
      throw cause;
    } finally {
      delete entry.inflight;
    }
  }

  #schedule(identity: SpiffeId, entry: Entry, delayMs: number): void {
    if (entry.timer) this.#options.timers.clear(entry.timer);
    if (this.#closed) return;
    entry.timer = this.#options.timers.set(() => {
      delete entry.timer;
      if (!entry.inflight) entry.inflight = this.#refresh(identity, entry);
      entry.inflight.catch(() => {}); // logged in #refresh; a background refresh has no caller to tell
    }, Math.max(0, delayMs));
  }

  async #request(identity: SpiffeId): Promise<WorkloadCertificate> {
    await this.#acquire();
    try {
      const id = formatSpiffeId(identity);
      const { privateKey } = generateKeyPair();
      const chain = await this.#options.ca.createCertificate({
        csrPem: buildCsrPem(privateKey, [id]),
        ttlSeconds: this.#options.ttlSeconds,
        ...(this.#options.impersonate ? { impersonatedIdentity: id } : {}),
      });
      return workloadCertificateFromChain(identity, privateKeyPem(privateKey), chain);
    } finally {
      this.#release();
    }
  }

  async #acquire(): Promise<void> {
    if (this.#active < this.#options.maxConcurrentRequests) {
      this.#active++;
      return;
    }
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) next(); // hand the slot over
    else this.#active--;
  }
}
