import type { ControlPlane } from '../../src/control-plane/control-plane.ts';
import { parseZtunnelConfig } from '../../src/ztunnel/config.ts';
import { startZtunnel, type Ztunnel } from '../../src/ztunnel/ztunnel.ts';
import { captureLog } from './log.ts';

/**
 * A dedicated-mode ztunnel (one workload's own proxy) fed over xDS and its CA by `controlPlane`, as a pod's
 * sidecar-less ztunnel would be: `workloadInfo` is `namespace/pod/serviceAccount`, `token` the bearer token
 * the control plane's TokenReview knows; every port is 0 (read back with `ports()`).
 */
export async function startDedicatedZtunnel(controlPlane: ControlPlane, o: { readonly workloadInfo: string; readonly token: string; readonly nodeName: string }): Promise<Ztunnel> {
  const grpc = `https://localhost:${controlPlane.ports().grpc}`;
  const config = parseZtunnelConfig(
    { 'admin-port': '0', 'stats-port': '0', 'readiness-port': '0', 'outbound-port': '0', 'inbound-port': '0', 'inbound-plaintext-port': '0' },
    {
      PROXY_MODE: 'dedicated',
      PROXY_WORKLOAD_INFO: o.workloadInfo,
      XDS_ADDRESS: grpc,
      CA_ADDRESS: grpc,
      XDS_ROOT_CA: controlPlane.rootCertPem(),
      CA_ROOT_CA: controlPlane.rootCertPem(),
      ALT_XDS_HOSTNAME: 'istiod.istio-system.svc',
      ALT_CA_HOSTNAME: 'istiod.istio-system.svc',
      AUTH_TOKEN: o.token,
      NODE_NAME: o.nodeName,
      CONNECTION_TERMINATION_DEADLINE: '1s',
    },
  );
  if (!config.ok) throw new Error(config.errors.join('; '));
  return startZtunnel(config.value, { logger: captureLog().logger });
}
