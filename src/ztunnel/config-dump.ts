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

function certificateDump(pem: string): CertificateDump {
  const x509 = new X509Certificate(pem);
  return {
    pem: Buffer.from(pem).toString('base64'),
    serialNumber: x509.serialNumber,
    validFrom: new Date(x509.validFrom).toISOString(),
    expirationTime: new Date(x509.validTo).toISOString(),
  };
}

/** One identity's entry: its chain and roots when a certificate is held, else its state only. */
export function identityCertificateDump(identity: string, certificate: WorkloadCertificate | undefined, now: number = Date.now()): IdentityCertificateDump {
  if (!certificate) return { identity, state: 'Initializing', certChain: [], rootCerts: [] };
  const state = certificate.notAfter <= now ? 'Unavailable: certificate expired' : 'Available';
  return { identity, state, certChain: certificate.chainPem.map(certificateDump), rootCerts: certificate.rootsPem.map(certificateDump) };
}
