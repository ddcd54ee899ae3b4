import { X509Certificate } from 'node:crypto';
import type { WorkloadCertificate } from '../identity/workload-certificate.ts';

/**
 * Pure builders for ztunnel's `/config_dump` (reference ztunnel.md §7): domain objects made
 * JSON-able (maps become objects), and certificates in ztunnel's shape.
 */

/** A domain value as plain JSON: Maps become objects (keys as strings), Sets arrays; the rest unchanged. */
export function toJson(value: unknown): unknown {
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [String(k), toJson(v)]));
  if (value instanceof Set) return [...value].map(toJson);
  if (Array.isArray(value)) return value.map(toJson);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJson(v)]));
  return value;
}

export interface CertificateDump {
  readonly pem: string;
  /** Decimal, as ztunnel writes it (istioctl parses it base 10 and prints it in hex). */
  readonly serialNumber: string;
  readonly validFrom: string;
  readonly expirationTime: string;
}

export interface IdentityCertificateDump {
  readonly identity: string;
  /** `Initializing` (no certificate yet), `Available`, or `Unavailable: <why>`. */
  readonly state: string;
  readonly certChain: readonly CertificateDump[];
  readonly rootCerts: readonly CertificateDump[];
}

/** RFC 3339 in UTC without a zero fraction (`2033-03-22T13:04:57Z`), as ztunnel (chrono) writes certificate times. */
function rfc3339(date: string): string {
  return new Date(date).toISOString().replace(/\.000Z$/, 'Z');
}

function certificateDump(pem: string): CertificateDump {
  const x509 = new X509Certificate(pem);
  return {
    pem: Buffer.from(pem).toString('base64'),
    serialNumber: BigInt(`0x${x509.serialNumber}`).toString(10),
    validFrom: rfc3339(x509.validFrom),
    expirationTime: rfc3339(x509.validTo),
  };
}

/** One identity's entry: its chain and roots when a certificate is held, else its state only. */
export function identityCertificateDump(identity: string, certificate: WorkloadCertificate | undefined, now: number = Date.now()): IdentityCertificateDump {
  if (!certificate) return { identity, state: 'Initializing', certChain: [], rootCerts: [] };
  const state = certificate.notAfter <= now ? 'Unavailable: certificate expired' : 'Available';
  return { identity, state, certChain: certificate.chainPem.map(certificateDump), rootCerts: certificate.rootsPem.map(certificateDump) };
}
