/**
 * The waypoint's L7 configuration as the proxy sees it (readonly domain types of proto/l7.proto,
 * converted in `l7-convert.ts`). Durations are milliseconds; absent optional values keep Istio's
 * defaults where the comments say so.
 */

export type L7StringMatch =
  | { readonly kind: 'exact' | 'prefix'; readonly value: string }
  | { readonly kind: 'regex'; readonly value: string; readonly regex: RegExp };

export interface HeaderMatch {
  readonly name: string;
  /** Absent: presence. */
  readonly value?: L7StringMatch;
  readonly invert: boolean;
}

export interface QueryParamMatch {
  readonly name: string;
  readonly value?: L7StringMatch;
}

export interface RouteMatch {
  readonly path?: L7StringMatch;
  readonly headers: readonly HeaderMatch[];
  readonly queryParams: readonly QueryParamMatch[];
  /** Upper case; absent matches any method. */
  readonly method?: string;
}

export interface HeaderMutation {
  readonly set: ReadonlyArray<readonly [string, string]>;
  readonly add: ReadonlyArray<readonly [string, string]>;
  readonly remove: readonly string[];
}

export interface BackendRef {
  readonly namespace: string;
  readonly hostname: string;
  /** 0: the port the request came in on. */
  readonly port: number;
  /** '' for every endpoint. */
  readonly subset: string;
}

export interface WeightedBackend extends BackendRef {
  readonly weight: number;
  readonly requestHeaders?: HeaderMutation;
  readonly responseHeaders?: HeaderMutation;
}

export interface Redirect {
  readonly scheme?: string;
  readonly host?: string;
  readonly port?: number;
  readonly path?: { readonly kind: 'full' | 'prefix'; readonly value: string };
  readonly statusCode: 301 | 302 | 303 | 307 | 308;
}

export interface Rewrite {
  readonly path?: { readonly kind: 'full' | 'prefix'; readonly value: string };
  readonly host?: string;
}

export const RETRY_ON = [
  '5xx', 'gateway-error', 'reset', 'connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'deadline-exceeded',
  'resource-exhausted', 'retriable-4xx', 'retriable-status-codes',
] as const;
export type RetryOn = (typeof RETRY_ON)[number];

export interface RetryPolicy {
  /** Retries after the first try. */
  readonly attempts: number;
  readonly perTryTimeoutMs?: number;
  readonly retryOn: readonly RetryOn[];
  readonly retriableStatusCodes: readonly number[];
}

/**
 * Istio's retry policy for a route that sets none (pilot's default: 2 retries on connection trouble and 503).
 * The control plane writes it into translated routes without `retries`; the waypoint uses it for its implicit
 * route.
 */
export const DEFAULT_RETRY_POLICY: RetryPolicy = Object.freeze({
  attempts: 2,
  retryOn: Object.freeze(['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'] as const),
  retriableStatusCodes: Object.freeze([503]),
});

export interface FaultInjection {
  readonly delay?: { readonly fixedDelayMs: number; readonly percentage: number };
  readonly abort?: { readonly kind: 'http' | 'grpc'; readonly status: number; readonly percentage: number };
}

export interface Mirror extends BackendRef {
  readonly percentage: number;
}

/** Envoy's route CORS policy (Istio's VirtualService `corsPolicy`, Gateway API's CORS filter). */
export interface CorsPolicy {
  /** An origin matching any is allowed; a matcher matching "*" allows every origin. */
  readonly allowOrigins: readonly L7StringMatch[];
  readonly allowMethods: readonly string[];
  readonly allowHeaders: readonly string[];
  readonly exposeHeaders: readonly string[];
  readonly maxAgeSeconds?: number;
  readonly allowCredentials: boolean;
  /** A preflight from an origin not allowed goes upstream (Envoy's default) rather than answered locally. */
  readonly forwardNotMatchingPreflights: boolean;
}

export interface HttpRoute {
  readonly name: string;
  /** Empty: every request. */
  readonly matches: readonly RouteMatch[];
  /** Empty: the addressed service, on its own port. */
  readonly backends: readonly WeightedBackend[];
  readonly requestHeaders?: HeaderMutation;
  readonly responseHeaders?: HeaderMutation;
  readonly redirect?: Redirect;
  readonly rewrite?: Rewrite;
  readonly timeoutMs?: number;
  readonly retries?: RetryPolicy;
  readonly fault?: FaultInjection;
  readonly mirrors: readonly Mirror[];
  readonly cors?: CorsPolicy;
}

export interface RouteConfiguration {
  readonly namespace: string;
  readonly hostname: string;
  /** Empty: every port. */
  readonly ports: readonly number[];
  readonly routes: readonly HttpRoute[];
}

export type LoadBalancerPolicy =
  | { readonly kind: 'round-robin' | 'least-request' | 'random' }
  | { readonly kind: 'hash'; readonly key: { readonly kind: 'header' | 'cookie' | 'query'; readonly name: string } | { readonly kind: 'source-ip' } };

export interface ConnectionPool {
  readonly maxConnections?: number;
  readonly http1MaxPendingRequests?: number;
  readonly http2MaxRequests?: number;
  readonly maxRequestsPerConnection?: number;
  readonly maxRetries?: number;
  readonly connectTimeoutMs?: number;
}

export interface OutlierDetection {
  /** 0 disables (default 5). */
  readonly consecutive5xxErrors: number;
  /** 0 disables (the default). */
  readonly consecutiveGatewayErrors: number;
  readonly intervalMs: number;
  readonly baseEjectionTimeMs: number;
  readonly maxEjectionPercent: number;
  readonly minHealthPercent: number;
}

export interface TrafficPolicy {
  readonly loadBalancer?: LoadBalancerPolicy;
  readonly connectionPool?: ConnectionPool;
  readonly outlierDetection?: OutlierDetection;
}

export interface Subset {
  readonly name: string;
  readonly labels: ReadonlyMap<string, string>;
  readonly workloadUids: readonly string[];
  readonly trafficPolicy?: TrafficPolicy;
}

export interface DestinationPolicy {
  readonly namespace: string;
  readonly hostname: string;
  readonly trafficPolicy?: TrafficPolicy;
  readonly subsets: readonly Subset[];
}

export interface L7Source {
  readonly principals: readonly string[];
  readonly notPrincipals: readonly string[];
  readonly requestPrincipals: readonly string[];
  readonly notRequestPrincipals: readonly string[];
  readonly namespaces: readonly string[];
  readonly notNamespaces: readonly string[];
  readonly ipBlocks: readonly string[];
  readonly notIpBlocks: readonly string[];
}

export interface L7Operation {
  readonly hosts: readonly string[];
  readonly notHosts: readonly string[];
  readonly ports: readonly number[];
  readonly notPorts: readonly number[];
  readonly methods: readonly string[];
  readonly notMethods: readonly string[];
  readonly paths: readonly string[];
  readonly notPaths: readonly string[];
}

export interface L7Condition {
  readonly key: string;
  readonly values: readonly string[];
  readonly notValues: readonly string[];
}

export interface L7Rule {
  readonly from: readonly L7Source[];
  readonly to: readonly L7Operation[];
  readonly when: readonly L7Condition[];
}

export interface L7AuthorizationPolicy {
  readonly name: string;
  readonly namespace: string;
  readonly action: 'ALLOW' | 'DENY';
  /** `namespace/hostname` keys; empty: every service of the waypoint. */
  readonly targetServices: readonly string[];
  readonly rules: readonly L7Rule[];
  readonly dryRun: boolean;
}

export const OUTLIER_DEFAULTS = {
  consecutive5xxErrors: 5,
  consecutiveGatewayErrors: 0,
  intervalMs: 10_000,
  baseEjectionTimeMs: 30_000,
  maxEjectionPercent: 10,
  minHealthPercent: 0,
} as const;

export interface JwtRule {
  readonly issuer: string;
  readonly audiences: readonly string[];
  /** A JWKS given inline (parsed JSON), or a URI to fetch it from. */
  readonly jwks: { readonly kind: 'inline'; readonly keys: readonly Readonly<Record<string, unknown>>[] } | { readonly kind: 'uri'; readonly uri: string };
  /** Empty: `Authorization: Bearer`. */
  readonly fromHeaders: ReadonlyArray<{ readonly name: string; readonly prefix: string }>;
  readonly fromParams: readonly string[];
  readonly forwardOriginalToken: boolean;
}

export interface RequestAuthentication {
  readonly name: string;
  readonly namespace: string;
  readonly targetServices: readonly string[];
  readonly rules: readonly JwtRule[];
}
