import { createTcpSocketIn } from '../../src/sys/netns.ts';

/** What the in-pod tests share: a one-pod mesh and probes of the pod's capture listeners. */

/** The listeners ztunnel opens in each pod's namespace (outbound, inbound plaintext, HBONE). */
export const INPOD_PORTS = [15001, 15006, 15008] as const;

/** A local mesh file with one HBONE pod, default/web (service account web), at `podIp` on node-a. */
export function webPodMesh(podIp: string): string {
  return `
workloads:
- uid: cluster1//v1/Pod/default/web
  name: web
  namespace: default
  serviceAccount: web
  trustDomain: cluster.local
  workloadIps: ["${podIp}"]
  protocol: HBONE
  node: node-a
  workloadName: web
`;
}

/** The ZDS WorkloadInfo of that pod. */
export const WEB_POD_INFO = { name: 'web', namespace: 'default', serviceAccount: 'web' };

/** Whether something listens on TCP 127.0.0.1:port inside the namespace `netnsFd`. */
export function acceptsIn(netnsFd: number, port: number): Promise<boolean> {
  const socket = createTcpSocketIn(netnsFd, 4);
  return new Promise((resolve) => {
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    // The capture listeners reset a connection to their own port at once (a self-call), which can beat
    // the connect completion: only a refusal means nothing listens.
    socket.once('error', (err: NodeJS.ErrnoException) => {
      socket.destroy();
      resolve(err.code !== 'ECONNREFUSED');
    });
    socket.connect({ host: '127.0.0.1', port });
  });
}

/** Whether each of the in-pod ports is listened on inside `netnsFd`, in INPOD_PORTS order. */
export function inpodListening(netnsFd: number): Promise<boolean[]> {
  return Promise.all(INPOD_PORTS.map((port) => acceptsIn(netnsFd, port)));
}
