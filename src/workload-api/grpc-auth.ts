import { credentials, Metadata, status, type CallCredentials, type ChannelCredentials } from '@grpc/grpc-js';
import { existsSync, readFileSync } from 'node:fs';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';

/** Where the bearer token comes from: a file re-read on every call (projected tokens rotate), or a literal. */
export type TokenSource = { readonly kind: 'file'; readonly path: string } | { readonly kind: 'literal'; readonly token: string } | { readonly kind: 'none' };

/**
 * Istio's AUTH_TOKEN rule: a path if such a file exists, else the value itself; unset falls back
 * to the default projected-token path when that exists, else no token.
 */
export function tokenSourceFrom(value: string | undefined, defaultPath = './var/run/secrets/tokens/istio-token'): TokenSource {
  if (value !== undefined && value !== '') return existsSync(value) ? { kind: 'file', path: value } : { kind: 'literal', token: value };
  return existsSync(defaultPath) ? { kind: 'file', path: defaultPath } : { kind: 'none' };
}

export function readToken(source: TokenSource): string | undefined {
  switch (source.kind) {
    case 'none':
      return undefined;
    case 'literal':
      return source.token;
    case 'file': {
      const token = readFileSync(source.path, 'utf8').trim();
      if (!token) throw new Error(`token file ${source.path} is empty`);
      return token;
    }
  }
}

export interface CallAuthOptions {
  readonly token: TokenSource;
  /** Sent as `clusterid` (Istio: ISTIO_META_CLUSTER_ID → CLUSTER_ID → "Kubernetes"). */
  readonly clusterId: string;
  /** Extra metadata (XDS_HEADER_<name> / CA_HEADER_<name>). */
  readonly headers?: Readonly<Record<string, string>>;
}

/** The metadata every xDS and CA call carries: `authorization: Bearer <token>` (re-read per call), `clusterid`, extras. */
export function callMetadata(options: CallAuthOptions): Metadata {
  const metadata = new Metadata();
  const token = readToken(options.token);
  if (token) metadata.set('authorization', `Bearer ${token}`);
  metadata.set('clusterid', options.clusterId);
  for (const [key, value] of Object.entries(options.headers ?? {})) metadata.set(key.toLowerCase(), value);
  return metadata;
}

export function callCredentials(options: CallAuthOptions): CallCredentials {
  return credentials.createFromMetadataGenerator((_params, callback) => {
    try {
      callback(null, callMetadata(options));
    } catch (err) {
      // gRFC A54: a credentials plugin failure is UNAVAILABLE (grpc-js says UNKNOWN unless told).
      callback(Object.assign(new Error(err instanceof Error ? err.message : String(err), { cause: err }), { code: status.UNAVAILABLE }));
    }
  });
}

/**
 * Channel credentials for talking to istiod: server-only TLS verified against `rootCaPem` (the
 * system roots when absent), with the call credentials attached. The server certificate must name
 * the host of the address or, when given, `alternateHostname` (Istio's ALT_XDS_HOSTNAME /
 * ALT_CA_HOSTNAME: accepted as well, not instead). Plaintext channels cannot carry call credentials
 * in grpc-js; their callers pass `callMetadata(auth)` on each call instead.
 */
export function channelCredentials(rootCaPem: string | undefined, auth: CallAuthOptions, alternateHostname?: string): ChannelCredentials {
  const verifyOptions = alternateHostname
    ? {
        checkServerIdentity: (host: string, cert: PeerCertificate): Error | undefined => {
          const mismatch = checkServerIdentity(host, cert);
          return mismatch && checkServerIdentity(alternateHostname, cert) ? mismatch : undefined;
        },
      }
    : {};
  const ssl = credentials.createSsl(rootCaPem ? Buffer.from(rootCaPem) : null, null, null, verifyOptions);
  return credentials.combineChannelCredentials(ssl, callCredentials(auth));
}

/** A control-plane address resolved as Istio reads XDS_ADDRESS / CA_ADDRESS. */
export interface GrpcTarget {
  /** `host:port` for grpc-js (IPv6 in brackets). */
  readonly target: string;
  /** The host name (or IP) the server certificate is checked against. */
  readonly host: string;
  /** False only for an explicit `http://` address (loopback tests). */
  readonly secure: boolean;
}

/** `https://` is prepended when the scheme is missing, as ztunnel does. */
export function withScheme(address: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(address) ? address : `https://${address}`;
}

/** `https://host:port`, `http://host:port` or `host:port` (a missing scheme means https, as in Istio). */
export function grpcTarget(address: string): GrpcTarget {
  let url: URL;
  try {
    url = new URL(withScheme(address));
  } catch {
    throw new TypeError(`"${address}" is not a valid address (expected https://host:port or host:port)`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TypeError(`"${address}": scheme must be https or http, got ${url.protocol}`);
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.username) throw new TypeError(`"${address}": only scheme, host and port are allowed`);
  const secure = url.protocol === 'https:';
  // URL drops the default port of the scheme; put it back.
  const port = url.port || (secure ? '443' : '80');
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return { target: `${url.hostname}:${port}`, host, secure };
}
