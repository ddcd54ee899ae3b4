import { credentials, Metadata, type CallCredentials, type ChannelCredentials } from '@grpc/grpc-js';
import { existsSync, readFileSync } from 'node:fs';

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
      callback(err as Error);
    }
  });
}

/**
 * Channel credentials for talking to istiod: TLS verified against `rootCaPem` (server-only TLS),
 * with the call credentials attached. `insecure` is for loopback tests without TLS; it carries the
 * same metadata on each call instead (grpc-js refuses call credentials on insecure channels).
 */
export function channelCredentials(rootCaPem: string | undefined, auth: CallAuthOptions, overrideHostname?: string): ChannelCredentials {
  const ssl = credentials.createSsl(rootCaPem ? Buffer.from(rootCaPem) : null, null, null, overrideHostname ? { checkServerIdentity: () => undefined } : {});
  return credentials.combineChannelCredentials(ssl, callCredentials(auth));
}
