export * from './spiffe.ts';
export * from './pem.ts';
export * from './x509.ts';
export * from './ca.ts';
export * from './workload-certificate.ts';
export * from './cert-manager.ts';
export * from './local-ca-client.ts';
