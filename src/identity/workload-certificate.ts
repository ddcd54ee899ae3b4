import { X509Certificate } from 'node:crypto';
import { MeshError } from '../core/errors.ts';
import { ErrorCode } from '../core/error-codes.ts';
import { splitPem } from './pem.ts';
import { formatSpiffeId, parseSpiffeId, spiffeIdEquals, type SpiffeId } from './spiffe.ts';

/** A workload's key and certificates as the CA returned them; the private key never leaves this object's holders. */
export interface WorkloadCertificate {
  readonly identity: SpiffeId;
  readonly privateKeyPem: string;
  /** Leaf first, then intermediates: what this workload presents in TLS. */
  readonly chainPem: readonly string[];
  /** Trust anchors for peers (the CA-returned roots, reference ztunnel.md §2.4). */
  readonly rootsPem: readonly string[];
  readonly notBefore: number;
  readonly notAfter: number;
}

/** URI SANs of a certificate that parse as SPIFFE ids, in order. */
export function certificateSpiffeIds(cert: X509Certificate): SpiffeId[] {
  return spiffeIdsFromSubjectAltName(cert.subjectAltName ?? '');
}

/** Parses Node's `subjectaltname` string (`URI:spiffe://…, DNS:…`) into the SPIFFE ids it holds. */
export function spiffeIdsFromSubjectAltName(subjectAltName: string): SpiffeId[] {
  const ids: SpiffeId[] = [];
  for (const entry of subjectAltName.split(', ')) {
    if (!entry.startsWith('URI:')) continue;
    const uri = entry.slice(4).replace(/^"(.*)"$/, '$1');
    const parsed = parseSpiffeId(uri);
    if (parsed.ok) ids.push(parsed.value);
  }
  return ids;
}

/**
 * Assembles a WorkloadCertificate from a CA response (leaf, intermediates…, roots last; the last entry
 * may hold several roots) and checks that the leaf names the identity that was asked for.
 */
export function workloadCertificateFromChain(identity: SpiffeId, privateKeyPem: string, certChain: readonly string[]): WorkloadCertificate {
  const blocks = certChain.map((entry) => splitPem(entry));
  const leafPem = blocks[0]?.[0];
  if (!leafPem || blocks.length < 2) {
    throw new MeshError(ErrorCode.IDENTITY_INVALID_PEM, `certificate chain for ${formatSpiffeId(identity)} must hold a leaf and a root`);
  }
  const intermediates = blocks.slice(1, -1).flat();
  const rootsPem = blocks[blocks.length - 1] ?? [];
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(leafPem);
  } catch (err) {
    throw new MeshError(ErrorCode.IDENTITY_INVALID_PEM, `leaf certificate for ${formatSpiffeId(identity)} does not parse`, { cause: err });
  }
  if (!certificateSpiffeIds(leaf).some((id) => spiffeIdEquals(id, identity))) {
    throw new MeshError(
      ErrorCode.IDENTITY_CERT_MISMATCH,
      `CA returned a certificate for ${leaf.subjectAltName ?? 'no SAN'}, expected ${formatSpiffeId(identity)}`,
    );
  }
  return {
    identity,
    privateKeyPem,
    chainPem: [leafPem, ...intermediates],
    rootsPem,
    notBefore: Date.parse(leaf.validFrom),
    notAfter: Date.parse(leaf.validTo),
  };
}
