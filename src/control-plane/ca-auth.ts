import { createHash } from 'node:crypto';
import { AuthenticationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { ErrorCode } from '../core/error-codes.ts';
import { errorMessage, MeshError } from '../core/errors.ts';
import { fail, ok, type Result } from '../core/result.ts';
import { spiffeId, type SpiffeId } from '../identity/spiffe.ts';
import { bearerToken, type CaAuthenticator, type CallerContext, type ImpersonationAuthorizer } from '../workload-api/ca-service.ts';
import type { Pod } from './kube-objects.ts';

/**
 * Who may get which certificate from the control plane's CA (reference istio-ambient.md §3.11):
 * - in a cluster, the bearer token is checked with a Kubernetes TokenReview (audience `istio-ca`); a service
 *   account user `system:serviceaccount:<ns>:<sa>` is the identity `spiffe://<td>/ns/<ns>/sa/<sa>`;
 * - locally, a static token list (`<token> <ns>/<sa> [node]` per line);
 * - a node agent (an account of `CA_TRUSTED_NODE_ACCOUNTS`, `istio-system/ztunnel` by default) may impersonate only
 *   the service accounts of pods scheduled on its own node; the node comes from the bound token (the TokenReview's
 *   `authentication.kubernetes.io/node-name`, else the node of its `pod-name`) or the static entry.
 */

export const NODE_NAME_EXTRA = 'authentication.kubernetes.io/node-name';
export const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
export const CA_AUDIENCE = 'istio-ca';

export interface ServiceAccountRef {
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** The part of a TokenReview's status the decision reads. */
export interface TokenReviewStatus {
  readonly authenticated?: boolean;
  readonly error?: string;
  readonly user?: { readonly username?: string; readonly extra?: Readonly<Record<string, readonly string[]>> };
}

/** A TokenReview outcome → the caller's identity and node (pure). */
export function identityFromReview(
  status: TokenReviewStatus,
  trustDomain: string,
  podNode: (namespace: string, pod: string) => string | undefined,
): Result<{ readonly identity: SpiffeId } & CallerContext> {
  if (status.authenticated !== true) return fail(`authorization: the token was not accepted by the Kubernetes API server${status.error ? ` (${status.error})` : ''}`);
  const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(status.user?.username ?? '');
  if (!m) return fail(`authorization: ${JSON.stringify(status.user?.username ?? '')} is not a service account`);
  const [, namespace = '', serviceAccount = ''] = m;
  const extra = status.user?.extra ?? {};
  let node = extra[NODE_NAME_EXTRA]?.[0];
  const pod = extra[POD_NAME_EXTRA]?.[0];
  if (!node && pod) node = podNode(namespace, pod);
  return ok({ identity: spiffeId(trustDomain, namespace, serviceAccount), ...(node ? { node } : {}) });
}

const digest = (token: string): string => createHash('sha256').update(token).digest('hex');

export interface TokenReviewOptions {
  readonly kubeConfig: KubeConfig;
  readonly trustDomain: string;
  readonly podNode: (namespace: string, pod: string) => string | undefined;
  /** How long an accepted token is remembered (by digest); 60 s by default. */
  readonly cacheMs?: number;
  readonly now?: () => number;
}

/** CA authentication through the Kubernetes API server's TokenReview. */
export function tokenReviewAuthenticator(options: TokenReviewOptions): CaAuthenticator {
  const api = options.kubeConfig.makeApiClient(AuthenticationV1Api);
  const cacheMs = options.cacheMs ?? 60_000;
  const now = options.now ?? Date.now;
  const cache = new Map<string, { readonly status: TokenReviewStatus; readonly until: number }>();
  return {
    async authenticate(metadata) {
      const token = bearerToken(metadata);
      if (token === undefined) return fail('authorization: no bearer token (expected "authorization: Bearer <token>")');
      const key = digest(token);
      const cached = cache.get(key);
      let status: TokenReviewStatus;
      if (cached && cached.until > now()) status = cached.status;
      else {
        let review;
        try {
          review = await api.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [CA_AUDIENCE] } } });
        } catch (err) {
          // An API server failure is not the caller's fault: the CA answers UNAVAILABLE (see caService).
          throw new MeshError(ErrorCode.CP_TOKEN_REVIEW_FAILED, `TokenReview failed: ${errorMessage(err)}`, { cause: err });
        }
        status = (review.status ?? {}) as TokenReviewStatus;
        if (status.authenticated === true) {
          if (cache.size > 10_000) cache.clear();
          cache.set(key, { status, until: now() + cacheMs });
        }
      }
      return identityFromReview(status, options.trustDomain, options.podNode);
    },
  };
}

export interface StaticToken {
  readonly token: string;
  readonly account: ServiceAccountRef;
  readonly node?: string;
}

/** `<token> <namespace>/<serviceAccount> [node]` per line; `#` comments and blank lines skipped. */
export function parseStaticTokens(text: string): Result<StaticToken[]> {
  const errors: string[] = [];
  const out: StaticToken[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const [token = '', account = '', node, extra] = line.split(/\s+/);
    const m = /^([^/\s]+)\/([^/\s]+)$/.exec(account);
    if (!m || extra !== undefined) {
      errors.push(`line ${i + 1}: expected "<token> <namespace>/<serviceAccount> [node]"`);
      return;
    }
    out.push({ token, account: { namespace: m[1]!, serviceAccount: m[2]! }, ...(node ? { node } : {}) });
  });
  return errors.length > 0 ? fail(...errors) : ok(out);
}

/** CA authentication against a static token list (local mode). Tokens are kept as digests only. */
export function staticTokenAuthenticator(tokens: readonly StaticToken[], trustDomain: string): CaAuthenticator {
  const byDigest = new Map(tokens.map((t) => [digest(t.token), t] as const));
  return {
    async authenticate(metadata) {
      const token = bearerToken(metadata);
      if (token === undefined) return fail('authorization: no bearer token (expected "authorization: Bearer <token>")');
      const entry = byDigest.get(digest(token));
      if (!entry) return fail('authorization: the bearer token is not recognized');
      return ok({ identity: spiffeId(trustDomain, entry.account.namespace, entry.account.serviceAccount), ...(entry.node ? { node: entry.node } : {}) });
    },
  };
}

/** `ns/sa,ns/sa` (CA_TRUSTED_NODE_ACCOUNTS). */
export function parseServiceAccounts(text: string): Result<ServiceAccountRef[]> {
  const out: ServiceAccountRef[] = [];
  const errors: string[] = [];
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([^/\s]+)\/([^/\s]+)$/.exec(part);
    if (m) out.push({ namespace: m[1]!, serviceAccount: m[2]! });
    else errors.push(`"${part}" must be <namespace>/<serviceAccount>`);
  }
  return errors.length > 0 ? fail(...errors) : ok(out);
}

export interface NodeAuthorizerOptions {
  readonly trustDomain: string;
  readonly trustedNodeAccounts: readonly ServiceAccountRef[];
  /** The pods scheduled on a node (the translator's index). */
  readonly podsOnNode: (node: string) => Iterable<Pod>;
}

/** The impersonation decision (pure over the pod index). */
export function nodeAuthorizer(options: NodeAuthorizerOptions): ImpersonationAuthorizer {
  return {
    mayImpersonate(caller, requested, context) {
      const trusted = options.trustedNodeAccounts.some((a) => a.namespace === caller.namespace && a.serviceAccount === caller.serviceAccount);
      if (!trusted || caller.trustDomain !== options.trustDomain || requested.trustDomain !== options.trustDomain) return false;
      if (!context.node) return false;
      for (const pod of options.podsOnNode(context.node)) {
        if (pod.metadata?.namespace === requested.namespace && (pod.spec?.serviceAccountName || 'default') === requested.serviceAccount) return true;
      }
      return false;
    },
  };
}
