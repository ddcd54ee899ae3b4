import { MeshError } from '../core/errors.ts';
import { ErrorCode } from '../core/error-codes.ts';
import type { CertificateAuthority } from './ca.ts';
import type { CaClient, CertificateRequest } from './cert-manager.ts';
import { parseSpiffeId, type SpiffeId } from './spiffe.ts';
import { parseCsrPem } from './x509.ts';

/**
 * A CaClient that signs in-process (the embedded control plane, tests). `callerIdentity` is the
 * authenticated caller; it may ask for another identity only through impersonation.
 */
export class LocalCaClient implements CaClient {
  readonly #ca: CertificateAuthority;

  constructor(ca: CertificateAuthority) {
    this.#ca = ca;
  }

  async createCertificate(request: CertificateRequest): Promise<readonly string[]> {
    const identity = this.#identity(request);
    const signed = this.#ca.sign({ csrPem: request.csrPem, identity, ttlSeconds: request.ttlSeconds });
    if (!signed.ok) throw new MeshError(ErrorCode.IDENTITY_INVALID_CSR, signed.errors.join('; '));
    return signed.value;
  }

  #identity(request: CertificateRequest): SpiffeId {
    const uri = request.impersonatedIdentity ?? csrIdentity(request.csrPem);
    const parsed = parseSpiffeId(uri);
    if (!parsed.ok) throw new MeshError(ErrorCode.IDENTITY_INVALID_SPIFFE_ID, parsed.errors.join('; '));
    return parsed.value;
  }
}

function csrIdentity(csrPem: string): string {
  // Without impersonation the embedded CA has no authenticated caller, so it takes the CSR's own SAN.
  const csr = parseCsrPem(csrPem);
  if (!csr.ok) throw new MeshError(ErrorCode.IDENTITY_INVALID_CSR, csr.errors.join('; '));
  return csr.value.uris[0] ?? '';
}
