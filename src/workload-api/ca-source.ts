import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ErrorCode } from '../core/error-codes.ts';
import { MeshError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { CaFiles, CertificateAuthority } from '../identity/ca.ts';
import type { CaClient } from '../identity/cert-manager.ts';
import { LocalCaClient } from '../identity/local-ca-client.ts';
import { GrpcCaClient } from './ca-client.ts';
import type { RootCa, WorkloadApiEnv } from './env.ts';

/**
 * Where a proxy (ztunnel, waypoint) gets its certificates, from the parts of its config they share: `FAKE_CA` (an
 * in-process CA, loaded from or saved to `FAKE_CA_DIR`, its root written to `FAKE_CA_ROOT_PATH`) or the CA at
 * `CA_ADDRESS` (istiod or our control plane).
 */
export interface CaSourceConfig {
  readonly fakeCa: boolean;
  readonly fakeCaDir: string | undefined;
  readonly fakeCaRootPath: string | undefined;
  readonly trustDomain: string;
  readonly workloadApi: WorkloadApiEnv;
}

export async function caClientFor(config: CaSourceConfig, log: Logger): Promise<CaClient> {
  if (config.fakeCa) {
    const ca = await fakeAuthority(config);
    if (config.fakeCaRootPath) {
      await mkdir(dirname(config.fakeCaRootPath), { recursive: true });
      await writeFile(config.fakeCaRootPath, ca.rootsPem.join(''));
    }
    log.warn({ rootPath: config.fakeCaRootPath }, 'FAKE_CA: certificates come from an in-process CA; for local runs and tests only');
    return new LocalCaClient(ca);
  }
  const api = config.workloadApi;
  return new GrpcCaClient({
    address: api.caAddress,
    ...rootPem(api.caRootCa, 'CA_ROOT_CA'),
    auth: { token: api.token, clusterId: api.clusterId, headers: api.caHeaders },
    ...(api.altCaHostname ? { alternateHostname: api.altCaHostname } : {}),
  });
}

/** FAKE_CA's authority: loaded from FAKE_CA_DIR when it holds one, else generated (and saved there). */
async function fakeAuthority(config: CaSourceConfig): Promise<CertificateAuthority> {
  const dir = config.fakeCaDir;
  if (dir && existsSync(join(dir, CaFiles.cert))) return CertificateAuthority.load(dir);
  const ca = CertificateAuthority.generate(config.trustDomain);
  if (dir) await ca.save(dir);
  return ca;
}

/** The roots to verify istiod with: a PEM, or the system roots; a missing file is a config error. */
export function rootPem(root: RootCa, variable: string): { rootCaPem?: string } {
  if (root.kind === 'system') return {};
  if (root.kind === 'pem') return { rootCaPem: root.pem };
  throw new MeshError(ErrorCode.CONFIG_INVALID, `${variable}: root certificate file ${root.path} does not exist`);
}
