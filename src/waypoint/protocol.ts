import type { AppProtocol } from '../workload-api/types.ts';

/**
 * Which protocol the waypoint speaks on a port, as Istio decides it: Kubernetes `appProtocol` first,
 * then the port name's prefix (`http`, `http-web`, `grpc-api`, `tcp-db`; Istio's "<protocol>[-<suffix>]"),
 * then the workload API's `app_protocol` (which istiod fills from the same two). What is still unknown
 * is sniffed from the first bytes of the stream (Envoy's HTTP inspector).
 */
export type PortProtocol = 'http1' | 'http2' | 'grpc' | 'tcp' | 'sniff';

const BY_NAME: Readonly<Record<string, PortProtocol>> = {
  http: 'http1',
  'http-web': 'http1',
  http2: 'http2',
  h2c: 'http2',
  'kubernetes.io/h2c': 'http2',
  grpc: 'grpc',
  'grpc-web': 'http1',
  'kubernetes.io/ws': 'http1',
  tcp: 'tcp',
  tls: 'tcp',
  https: 'tcp',
  mongo: 'tcp',
  mysql: 'tcp',
  redis: 'tcp',
};

export interface PortDescription {
  /** Kubernetes `ServicePort.appProtocol`. */
  readonly appProtocol?: string | undefined;
  /** Kubernetes `ServicePort.name`. */
  readonly name?: string | undefined;
  /** The workload API's `Port.app_protocol`. */
  readonly workloadApi?: AppProtocol | undefined;
}

export function portProtocol(port: PortDescription): PortProtocol {
  const app = port.appProtocol?.toLowerCase();
  if (app && BY_NAME[app]) return BY_NAME[app];
  const name = port.name?.toLowerCase();
  if (name) {
    if (BY_NAME[name]) return BY_NAME[name];
    const prefix = name.split('-')[0] ?? '';
    if (BY_NAME[prefix]) return BY_NAME[prefix];
  }
  switch (port.workloadApi) {
    case 'HTTP11':
      return 'http1';
    case 'HTTP2':
      return 'http2';
    case 'GRPC':
      return 'grpc';
    case 'TCP':
    case 'TLS':
      return 'tcp';
    default:
      return 'sniff';
  }
}

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];

/** The HTTP inspector: `more` until the first bytes decide between HTTP/2, HTTP/1.x and anything else (TCP). */
export function sniffProtocol(bytes: Uint8Array): 'http1' | 'http2' | 'tcp' | 'more' {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Math.min(buf.length, H2_PREFACE.length);
  if (buf.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return n === H2_PREFACE.length ? 'http2' : 'more';
  const space = buf.indexOf(0x20);
  const head = buf.subarray(0, space < 0 ? Math.min(buf.length, 8) : space).toString('latin1');
  if (space < 0) return METHODS.some((m) => m.startsWith(head)) && head.length < 8 ? 'more' : 'tcp';
  if (!METHODS.includes(head)) return 'tcp';
  const eol = buf.indexOf('\r\n');
  if (eol < 0) return buf.length < 8192 ? 'more' : 'tcp';
  return /^[A-Z]+ \S+ HTTP\/1\.[01]$/.test(buf.subarray(0, eol).toString('latin1')) ? 'http1' : 'tcp';
}
