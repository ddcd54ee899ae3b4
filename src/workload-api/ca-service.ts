import { createHash } from 'node:crypto';
import { status, type Metadata, type sendUnaryData, type ServerUnaryCall, type ServiceDefinition } from '@grpc/grpc-js';
import { errorMessage } from '../core/errors.ts';
import { ErrorCode } from '../core/error-codes.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import { fail, ok, type Result } from '../core/result.ts';
import type { CertificateAuthority } from '../identity/ca.ts';
import { formatSpiffeId, parseSpiffeId, spiffeIdEquals, type SpiffeId } from '../identity/spiffe.ts';
import type { IstioCertificateRequest__Output } from './generated/istio/v1/auth/IstioCertificateRequest.ts';
import type { IstioCertificateResponse } from './generated/istio/v1/auth/IstioCertificateResponse.ts';
import type { GrpcService } from './grpc-server.ts';
import { grpcPackageDefinition } from './proto.ts';

/** The request metadata key a node proxy uses to ask for a workload's identity (Istio's `ImpersonatedIdentity`). */
export const IMPERSONATED_IDENTITY = 'ImpersonatedIdentity';

/** What an authenticator learned about the caller beyond its identity (e.g. the node its pod runs on). */
export interface CallerContext {
  /** The node of the caller's pod, when the credential says (a bound token's node-name / pod-name). */
  readonly node?: string;
}

/** Who is calling: from the call's metadata (a static bearer token, or a Kubernetes TokenReview). */
export interface CaAuthenticator {
  authenticate(metadata: Metadata): Promise<Result<{ readonly identity: SpiffeId } & CallerContext>>;
}

/** Whether an authenticated caller may obtain a certificate for another identity. */
export interface ImpersonationAuthorizer {
  mayImpersonate(caller: SpiffeId, requested: SpiffeId, context: CallerContext): boolean;
}

/** The default: nobody may impersonate. */
export const denyImpersonation: ImpersonationAuthorizer = { mayImpersonate: () => false };

export interface CaServiceOptions {
  readonly ca: CertificateAuthority;
  readonly authenticator: CaAuthenticator;
  /** Deny-all when absent. */
  readonly authorizer?: ImpersonationAuthorizer;
  readonly logger?: Logger;
  /** Refuse longer requested lifetimes before reaching the CA (which has its own maximum too). */
  readonly maxTtlSeconds?: number;
}

/** The bearer token of `authorization: Bearer <token>`, if the metadata has one. */
export function bearerToken(metadata: Metadata): string | undefined {
  for (const value of metadata.get('authorization')) {
    const match = /^bearer\s+(\S+)\s*$/i.exec(String(value));
    if (match?.[1]) return match[1];
  }
  return undefined;
}

const digest = (token: string): string => createHash('sha256').update(token).digest('hex');

/**
 * Maps static bearer tokens to caller identities. Tokens are kept only as SHA-256 digests, and
 * failures never echo the presented token.
 */
export function bearerTokenAuthenticator(tokens: ReadonlyMap<string, SpiffeId>): CaAuthenticator {
  const byDigest = new Map([...tokens].map(([token, identity]) => [digest(token), identity] as const));
  return {
    async authenticate(metadata) {
      const token = bearerToken(metadata);
      if (token === undefined) return fail('authorization: no bearer token (expected "authorization: Bearer <token>")');
      const identity = byDigest.get(digest(token));
      return identity ? ok({ identity }) : fail('authorization: the bearer token is not recognized');
    },
  };
}

export interface ImpersonationRule {
  readonly caller: SpiffeId;
  readonly mayRequest: (id: SpiffeId) => boolean;
}

/** Allows a caller to impersonate the identities its rule accepts; everything else is refused. */
export function allowListAuthorizer(rules: readonly ImpersonationRule[]): ImpersonationAuthorizer {
  return {
    mayImpersonate: (caller, requested) => rules.some((rule) => spiffeIdEquals(rule.caller, caller) && rule.mayRequest(requested)),
  };
}

/** A refusal: the gRPC status to answer with, the message for the caller, and the project error code if one applies. */
export interface Refusal {
  readonly status: status;
  readonly message: string;
  readonly code?: ErrorCode;
}

export type SigningDecision = { readonly ok: true; readonly identity: SpiffeId; readonly impersonated: boolean } | ({ readonly ok: false } & Refusal);

/**
 * Which identity a call may be signed for: the impersonated one when the request asks for it and
 * the caller may, else the caller's own. Pure; the handler does the IO around it.
 */
export function signingIdentity(caller: SpiffeId, request: IstioCertificateRequest__Output, authorizer: ImpersonationAuthorizer, context: CallerContext = {}): SigningDecision {
  const value = request.metadata?.fields?.[IMPERSONATED_IDENTITY];
  if (value === undefined) return { ok: true, identity: caller, impersonated: false };
  if (value.kind !== 'stringValue' || typeof value.stringValue !== 'string') {
    return refuse(status.INVALID_ARGUMENT, `metadata.${IMPERSONATED_IDENTITY}: must be a string, got ${value.kind ?? 'no value'}`, ErrorCode.IDENTITY_INVALID_SPIFFE_ID);
  }
  // Istio treats an empty value as no impersonation.
  if (value.stringValue === '') return { ok: true, identity: caller, impersonated: false };
  const requested = parseSpiffeId(value.stringValue);
  if (!requested.ok) {
    return refuse(status.INVALID_ARGUMENT, `metadata.${IMPERSONATED_IDENTITY}: ${requested.errors.join('; ')}`, ErrorCode.IDENTITY_INVALID_SPIFFE_ID);
  }
  if (spiffeIdEquals(requested.value, caller)) return { ok: true, identity: caller, impersonated: false };
  if (!authorizer.mayImpersonate(caller, requested.value, context)) {
    return refuse(status.PERMISSION_DENIED, `${formatSpiffeId(caller)} may not request certificates for ${value.stringValue}`, ErrorCode.CA_PERMISSION_DENIED);
  }
  return { ok: true, identity: requested.value, impersonated: true };
}

function refuse(code: status, message: string, errorCode?: ErrorCode): SigningDecision {
  return { ok: false, status: code, message, ...(errorCode ? { code: errorCode } : {}) };
}

/** Istio's `/istio.v1.auth.IstioCertificateService/CreateCertificate`, signing with `options.ca`. */
export function caService(options: CaServiceOptions): GrpcService {
  const definition = grpcPackageDefinition()['istio.v1.auth.IstioCertificateService'] as ServiceDefinition;
  const authorizer = options.authorizer ?? denyImpersonation;
  const log = (options.logger ?? silentLogger()).child({ component: 'ca-service' });

  type Outcome = { readonly ok: true; readonly certChain: string[]; readonly identity: SpiffeId } | ({ readonly ok: false; readonly identity?: SpiffeId } & Refusal);

  async function handle(call: ServerUnaryCall<IstioCertificateRequest__Output, IstioCertificateResponse>, fields: Record<string, unknown>): Promise<Outcome> {
    let authenticated: Result<{ readonly identity: SpiffeId } & CallerContext>;
    try {
      authenticated = await options.authenticator.authenticate(call.metadata);
    } catch (err) {
      return { ok: false, status: status.UNAVAILABLE, message: `cannot authenticate the caller: ${errorMessage(err)}` };
    }
    if (!authenticated.ok) return { ok: false, status: status.UNAUTHENTICATED, message: authenticated.errors.join('; '), code: ErrorCode.CA_UNAUTHENTICATED };
    const caller = authenticated.value.identity;
    fields['caller'] = formatSpiffeId(caller);

    const request = call.request;
    const asked = request.metadata?.fields?.[IMPERSONATED_IDENTITY]?.stringValue;
    if (asked) fields['requested'] = asked.slice(0, 256);
    const decision = signingIdentity(caller, request, authorizer, authenticated.value.node !== undefined ? { node: authenticated.value.node } : {});
    if (authenticated.value.node !== undefined) fields['callerNode'] = authenticated.value.node;
    if (!decision.ok) return decision;
    fields['impersonated'] = decision.impersonated;
    const identity = decision.identity;

    const ttlSeconds = Number(request.validityDuration);
    if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 0) {
      return { ok: false, identity, status: status.INVALID_ARGUMENT, message: `validity_duration: must be a non-negative number of seconds, got ${request.validityDuration}` };
    }
    if (options.maxTtlSeconds !== undefined && ttlSeconds > options.maxTtlSeconds) {
      return { ok: false, identity, status: status.INVALID_ARGUMENT, message: `validity_duration: requested ${ttlSeconds}s exceeds the maximum of ${options.maxTtlSeconds}s` };
    }
    const signed = options.ca.sign({ csrPem: request.csr, identity, ttlSeconds });
    if (!signed.ok) return { ok: false, identity, status: status.INVALID_ARGUMENT, message: signed.errors.join('; '), code: ErrorCode.IDENTITY_INVALID_CSR };
    return { ok: true, identity, certChain: signed.value };
  }

  const implementation = {
    CreateCertificate(call: ServerUnaryCall<IstioCertificateRequest__Output, IstioCertificateResponse>, callback: sendUnaryData<IstioCertificateResponse>): void {
      // Never the CSR or the token: only who asked, for whom, for how long, and what came of it.
      const fields: Record<string, unknown> = { ttl: Number(call.request.validityDuration) };
      handle(call, fields)
        .catch((err: unknown): Outcome => {
          log.error({ ...fields, err: errorMessage(err) }, 'certificate signing failed unexpectedly');
          return { ok: false, status: status.INTERNAL, message: 'internal error while signing the certificate' };
        })
        .then((outcome) => {
          if (outcome.identity) fields['identity'] = formatSpiffeId(outcome.identity);
          if (outcome.ok) {
            log.info({ ...fields, outcome: 'issued' }, 'certificate issued');
            callback(null, { certChain: outcome.certChain });
          } else {
            const grpcStatus = status[outcome.status];
            log.warn({ ...fields, outcome: 'refused', status: grpcStatus, ...(outcome.code ? { code: outcome.code } : {}), reason: outcome.message }, 'certificate request refused');
            callback({ code: outcome.status, details: outcome.message });
          }
        })
        .catch(() => {}); // the callback itself threw (call already ended): nothing left to answer
    },
  };
  return { definition, implementation };
}
