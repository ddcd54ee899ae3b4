import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MeshError } from '../core/errors.ts';
import { ErrorCode } from '../core/error-codes.ts';
import { fail, ok, type Result } from '../core/result.ts';
import { splitPem } from './pem.ts';
import { formatSpiffeId, parseSpiffeId, spiffeIdEquals, type SpiffeId } from './spiffe.ts';
import { sequenceElements } from './der.ts';
import { buildCertificatePem, generateKeyPair, parseCsrPem, privateKeyPem } from './x509.ts';

/** File names of a CA directory, as Istio's `cacerts` secret lays them out. */
export const CaFiles = {
  cert: 'ca-cert.pem',
  key: 'ca-key.pem',
  chain: 'cert-chain.pem',
  root: 'root-cert.pem',
} as const;

export interface SignRequest {
  readonly csrPem: string;
  /** The identity the caller is entitled to (its own, or the one it impersonates); the CSR must ask for exactly it. */
  readonly identity: SpiffeId;
  /** Requested lifetime in seconds; 0 or less takes the CA's default. */
  readonly ttlSeconds: number;
}

export interface CaOptions {
  /** Default leaf lifetime, seconds (Istio: 24 h). */
  readonly defaultTtlSeconds?: number;
  /** Longest leaf lifetime granted; longer requests are refused (Istio: 90 days). */
  readonly maxTtlSeconds?: number;
  /** Injected clock, ms since the epoch. */
  readonly now?: () => number;
}

interface CaMaterial {
  readonly certPem: string;
  readonly key: KeyObject;
  /** Certificates between the signing cert and the root (empty when the signing cert is the root). */
  readonly intermediatesPem: readonly string[];
  readonly rootsPem: readonly string[];
}

/** A certificate authority that signs workload CSRs and answers as Istio's CA does: [leaf, …chain, roots]. */
export class CertificateAuthority {
  readonly #material: CaMaterial;
  readonly #cert: X509Certificate;
  readonly #subject: Buffer;
  readonly #defaultTtl: number;
  readonly #maxTtl: number;
  readonly #now: () => number;

  constructor(material: CaMaterial, options: CaOptions = {}) {
    this.#material = material;
    this.#cert = new X509Certificate(material.certPem);
    this.#subject = subjectDer(material.certPem);
    this.#defaultTtl = options.defaultTtlSeconds ?? 86_400;
    this.#maxTtl = options.maxTtlSeconds ?? 90 * 86_400;
    this.#now = options.now ?? Date.now;
    if (!this.#cert.checkPrivateKey(material.key)) {
      throw new MeshError(ErrorCode.IDENTITY_CA_LOAD_FAILED, 'CA private key does not match the CA certificate');
    }
  }

  /** Creates a new self-signed root for a trust domain (valid ten years). */
  static generate(trustDomain: string, options: CaOptions = {}): CertificateAuthority {
    const { privateKey, publicKey } = generateKeyPair();
    const now = (options.now ?? Date.now)();
    const subject = [['2.5.4.10', trustDomain]] as const;
    const certPem = buildCertificatePem({
      subject,
      issuer: subject,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 10 * 365 * 86_400_000),
      publicKey,
      signingKey: privateKey,
      issuerPublicKey: publicKey,
      isCa: true,
    });
    return new CertificateAuthority({ certPem, key: privateKey, intermediatesPem: [], rootsPem: [certPem] }, options);
  }

  /**
   * Loads `ca-cert.pem` + `ca-key.pem` from a directory, with `cert-chain.pem` (signing cert, then
   * intermediates) and `root-cert.pem` when the signing cert is not itself the root.
   */
  static async load(dir: string, options: CaOptions = {}): Promise<CertificateAuthority> {
    const read = (file: string) => readFile(join(dir, file), 'utf8');
    const optional = (file: string) => read(file).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
    try {
      const [certPem, keyPem, chainPem, rootPem] = await Promise.all([read(CaFiles.cert), read(CaFiles.key), optional(CaFiles.chain), optional(CaFiles.root)]);
      const chain = chainPem ? splitPem(chainPem) : [];
      const intermediatesPem = chain.length > 0 ? chain.slice(1) : [];
      const rootsPem = rootPem ? splitPem(rootPem) : splitPem(certPem);
      return new CertificateAuthority({ certPem: splitPem(certPem)[0] ?? certPem, key: createPrivateKey(keyPem), intermediatesPem, rootsPem }, options);
    } catch (err) {
      if (err instanceof MeshError) throw err;
      throw new MeshError(ErrorCode.IDENTITY_CA_LOAD_FAILED, `cannot load CA from ${dir}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Writes this CA in the layout `load` reads. */
  async save(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    const m = this.#material;
    await writeFile(join(dir, CaFiles.cert), m.certPem);
    await writeFile(join(dir, CaFiles.key), privateKeyPem(m.key), { mode: 0o600 });
    await writeFile(join(dir, CaFiles.chain), [m.certPem, ...m.intermediatesPem].join(''));
    await writeFile(join(dir, CaFiles.root), m.rootsPem.join(''));
  }

  get rootsPem(): readonly string[] {
    return this.#material.rootsPem;
  }

  /** The signing certificate and intermediates between a leaf and the root (none when the CA is the root). */
  #chainAboveLeaf(): string[] {
    const { certPem, intermediatesPem, rootsPem } = this.#material;
    return rootsPem.includes(certPem) ? [] : [certPem, ...intermediatesPem];
  }

  /**
   * A TLS serving certificate for DNS names (istiod's `istiod.istio-system.svc` on 15012), with a
   * fresh key; clients verify it against this CA's roots.
   */
  issueServingCertificate(dnsNames: readonly string[], ttlSeconds = this.#defaultTtl): ServingCertificate {
    const { privateKey, publicKey } = generateKeyPair();
    const now = this.#now();
    const leafPem = buildCertificatePem({
      subject: [],
      issuer: this.#subject,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + ttlSeconds * 1000),
      publicKey,
      signingKey: this.#material.key,
      issuerPublicKey: createPublicKey(this.#material.key),
      isCa: false,
      dnsNames,
    });
    return { certChainPem: [leafPem, ...this.#chainAboveLeaf()].join(''), privateKeyPem: privateKeyPem(privateKey) };
  }

  /** Signs a CSR. Data problems (bad CSR, wrong identity, TTL too long) come back as a failed result. */
  sign(request: SignRequest): Result<string[]> {
    const csr = parseCsrPem(request.csrPem);
    if (!csr.ok) return csr;
    const wanted = formatSpiffeId(request.identity);
    const asked = csr.value.uris;
    if (asked.length !== 1 || !asked.every((uri) => { const p = parseSpiffeId(uri); return p.ok && spiffeIdEquals(p.value, request.identity); })) {
      return fail(`csr: requests [${asked.join(', ')}], but the caller may only request ${wanted}`);
    }
    const ttl = request.ttlSeconds > 0 ? request.ttlSeconds : this.#defaultTtl;
    if (ttl > this.#maxTtl) return fail(`validity_duration: requested ${ttl}s exceeds the maximum of ${this.#maxTtl}s`);
    const now = this.#now();
    const leafPem = buildCertificatePem({
      subject: [],
      issuer: this.#subject,
      notBefore: new Date(now),
      notAfter: new Date(now + ttl * 1000),
      publicKey: csr.value.publicKey,
      signingKey: this.#material.key,
      issuerPublicKey: createPublicKey(this.#material.key),
      isCa: false,
      uris: [wanted],
    });
    return ok([leafPem, ...this.#chainAboveLeaf(), this.#material.rootsPem.join('')]);
  }
}

export interface ServingCertificate {
  /** Leaf, then the CA's chain up to (not including) the root. */
  readonly certChainPem: string;
  readonly privateKeyPem: string;
}

/** The CA certificate's subject Name exactly as encoded, to be each leaf's issuer. */
function subjectDer(certPem: string): Buffer {
  const der = new X509Certificate(certPem).raw;
  const [tbs] = sequenceElements(der);
  const fields = sequenceElements(tbs as Buffer);
  // version [0], serial, signature, issuer, validity, subject
  return fields[fields[0]?.[0] === 0xa0 ? 5 : 4] as Buffer;
}
