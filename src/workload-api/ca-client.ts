import { Client, credentials, Metadata, status, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import { MeshError, errorMessage } from '../core/errors.ts';
import { ErrorCode } from '../core/error-codes.ts';
import type { CaClient, CertificateRequest } from '../identity/cert-manager.ts';
import type { IstioCertificateRequest, IstioCertificateRequest__Output } from './generated/istio/v1/auth/IstioCertificateRequest.ts';
import type { IstioCertificateResponse, IstioCertificateResponse__Output } from './generated/istio/v1/auth/IstioCertificateResponse.ts';
import { callMetadata, channelCredentials, grpcTarget, type CallAuthOptions } from './grpc-auth.ts';
import { GrpcMethod, grpcPackageDefinition } from './proto.ts';
import { IMPERSONATED_IDENTITY } from './ca-service.ts';

export interface GrpcCaClientOptions {
  /** `https://host:port` or `host:port` (https); `http://host:port` is plaintext, for tests only. */
  readonly address: string;
  /** Roots that verify the CA's serving certificate; the system roots when absent (https). */
  readonly rootCaPem?: string;
  readonly auth: CallAuthOptions;
  /** Another name the CA's serving certificate may carry (Istio's ALT_CA_HOSTNAME). */
  readonly alternateHostname?: string;
  /** Deadline of each call (default 10 s). */
  readonly timeoutMs?: number;
}

type CreateCertificateMethod = MethodDefinition<IstioCertificateRequest, IstioCertificateResponse, IstioCertificateRequest__Output, IstioCertificateResponse__Output>;

/** Istio's CreateCertificate over gRPC: what the cert manager uses against istiod or our control plane. */
export class GrpcCaClient implements CaClient {
  readonly #client: Client;
  readonly #method: CreateCertificateMethod;
  readonly #auth: CallAuthOptions;
  /** Plaintext channels carry the auth metadata per call; TLS channels through call credentials. */
  readonly #metadataPerCall: boolean;
  readonly #timeoutMs: number;
  readonly #address: string;

  constructor(options: GrpcCaClientOptions) {
    const service = grpcPackageDefinition()['istio.v1.auth.IstioCertificateService'] as Record<string, CreateCertificateMethod>;
    const method = service['CreateCertificate'];
    if (!method) throw new Error('istio.v1.auth.IstioCertificateService/CreateCertificate missing from the loaded protos');
    let target;
    try {
      target = grpcTarget(options.address);
    } catch (err) {
      throw new MeshError(ErrorCode.CONFIG_INVALID, `CA address: ${errorMessage(err)}`, { cause: err });
    }
    if (!target.secure && options.rootCaPem !== undefined) {
      throw new MeshError(ErrorCode.CONFIG_INVALID, `CA address ${options.address} is plaintext (http://) but a root CA for TLS was given`);
    }
    let channel: ChannelCredentials;
    if (target.secure) channel = channelCredentials(options.rootCaPem, options.auth, options.alternateHostname);
    else channel = credentials.createInsecure();
    this.#client = new Client(target.target, channel, {
      // reference ztunnel.md §2.1: HTTP/2 PING every 30 s, 10 s timeout.
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
    });
    this.#method = method;
    this.#auth = options.auth;
    this.#metadataPerCall = !target.secure;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#address = options.address;
  }

  async createCertificate(request: CertificateRequest): Promise<readonly string[]> {
    const message: IstioCertificateRequest = {
      csr: request.csrPem,
      validityDuration: request.ttlSeconds,
      ...(request.impersonatedIdentity !== undefined ? { metadata: { fields: { [IMPERSONATED_IDENTITY]: { stringValue: request.impersonatedIdentity } } } } : {}),
    };
    let metadata: Metadata;
    try {
      metadata = this.#metadataPerCall ? callMetadata(this.#auth) : new Metadata();
    } catch (err) {
      throw new MeshError(ErrorCode.IDENTITY_CERT_FETCH_FAILED, `CreateCertificate to ${this.#address}: cannot build call metadata: ${errorMessage(err)}`, { cause: err });
    }
    const response = await new Promise<IstioCertificateResponse__Output>((resolve, reject) => {
      this.#client.makeUnaryRequest(
        GrpcMethod.createCertificate,
        this.#method.requestSerialize,
        this.#method.responseDeserialize,
        message,
        metadata,
        { deadline: Date.now() + this.#timeoutMs },
        (err: ServiceError | null, value?: IstioCertificateResponse__Output) => {
          if (err) reject(this.#failure(err));
          else if (!value) reject(new MeshError(ErrorCode.IDENTITY_CERT_FETCH_FAILED, `CreateCertificate to ${this.#address}: empty response`));
          else resolve(value);
        },
      );
    });
    if (response.certChain.length === 0) {
      throw new MeshError(ErrorCode.IDENTITY_CERT_FETCH_FAILED, `CreateCertificate to ${this.#address}: the CA returned an empty certificate chain`);
    }
    return response.certChain;
  }

  close(): void {
    this.#client.close();
  }

  #failure(err: ServiceError): CaCallError {
    const name = status[err.code] ?? String(err.code);
    return new CaCallError(err.code, `CreateCertificate to ${this.#address} failed: ${name}: ${err.details || err.message}`, { cause: err });
  }
}

/** A CreateCertificate call the CA (or the channel) answered with a gRPC error status. */
export class CaCallError extends MeshError {
  readonly grpcStatus: status;

  constructor(grpcStatus: status, message: string, options?: { cause?: unknown }) {
    super(ErrorCode.IDENTITY_CERT_FETCH_FAILED, message, options);
    this.grpcStatus = grpcStatus;
  }
}
