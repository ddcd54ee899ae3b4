import { CertificateAuthority, type CaOptions } from '../../src/identity/ca.ts';
import { CertManager } from '../../src/identity/cert-manager.ts';
import { LocalCaClient } from '../../src/identity/local-ca-client.ts';
import { spiffeId, type SpiffeId } from '../../src/identity/spiffe.ts';
import type { WorkloadCertificate } from '../../src/identity/workload-certificate.ts';

export interface TestPki {
  readonly ca: CertificateAuthority;
  readonly certificates: CertManager;
  readonly id: (namespace: string, serviceAccount: string) => SpiffeId;
  readonly cert: (namespace: string, serviceAccount: string) => Promise<WorkloadCertificate>;
  close(): Promise<void>;
}

/** A real CA and certificate manager for one trust domain. */
export function testPki(trustDomain = 'cluster.local', options: CaOptions & { ttlSeconds?: number } = {}): TestPki {
  const ca = CertificateAuthority.generate(trustDomain, options);
  const certificates = new CertManager({
    ca: new LocalCaClient(ca),
    ttlSeconds: options.ttlSeconds ?? 3600,
    ...(options.now ? { now: options.now } : {}),
  });
  const id = (ns: string, sa: string) => spiffeId(trustDomain, ns, sa);
  return {
    ca,
    certificates,
    id,
    cert: (ns, sa) => certificates.fetch(id(ns, sa)),
    close: () => certificates.close(),
  };
}
