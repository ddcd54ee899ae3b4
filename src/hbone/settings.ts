/** The numbers of HBONE, as Istio uses them (reference ztunnel.md §3). */
export const HBONE_PORT = 15008;

const KiB = 1024;
const MiB = 1024 * KiB;

export const Http2Settings = {
  streamWindow: 4 * MiB,
  connectionWindow: 16 * MiB,
  maxFrameSize: 1 * MiB,
  clientMaxHeaderList: 16 * KiB,
  serverMaxHeaderList: 64 * KiB,
  serverMaxConcurrentStreams: 200,
  /** Streams per pooled connection before the pool opens another (POOL_MAX_STREAMS_PER_CONNECTION). */
  poolMaxStreamsPerConnection: 100,
  /** Node's per-session buffer budget, in MiB: room for a full connection window in each direction. */
  maxSessionMemoryMiB: 64,
} as const;

export const Timeouts = {
  keepaliveIntervalMs: 10_000,
  keepaliveTimeoutMs: 20_000,
  /** POOL_UNUSED_RELEASE_TIMEOUT */
  poolIdleReleaseMs: 5 * 60_000,
  dialMs: 10_000,
  upstreamConnectMs: 10_000,
  drainMs: 5_000,
} as const;

/** TLS 1.3 suites HBONE allows. */
export const TLS_CIPHERS = 'TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256';
export const ALPN_H2 = 'h2';
