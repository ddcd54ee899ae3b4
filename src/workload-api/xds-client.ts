/**
 * The delta ADS client, as ztunnel's (reference ztunnel.md §1.6): one bidi stream
 * `DeltaAggregatedResources`, wildcard subscriptions per handler type (Address, then Authorization),
 * per-resource NACKs with partial apply, capped exponential reconnect, readiness once every type has
 * been answered once.
 */
import { channel } from 'node:diagnostics_channel';
import { EventEmitter } from 'node:events';
import { Client, credentials, Metadata, status as GrpcStatus, type ClientDuplexStream, type ServiceDefinition, type StatusObject } from '@grpc/grpc-js';
import { Backoff, type BackoffOptions } from '../core/backoff.ts';
import { ErrorCode } from '../core/error-codes.ts';
import { errorMessage, MeshError } from '../core/errors.ts';
import { onceClose, type Handle, type Readiness } from '../core/lifecycle.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import type { DeltaDiscoveryRequest } from './generated/envoy/service/discovery/v3/DeltaDiscoveryRequest.ts';
import type { DeltaDiscoveryResponse__Output } from './generated/envoy/service/discovery/v3/DeltaDiscoveryResponse.ts';
import type { Struct } from './generated/google/protobuf/Struct.ts';
import type { Value } from './generated/google/protobuf/Value.ts';
import { callMetadata, channelCredentials, grpcTarget, type CallAuthOptions, type GrpcTarget } from './grpc-auth.ts';
import { GrpcMethod, grpcPackageDefinition } from './proto.ts';
import { anyPayloadBytes, type XdsMetrics, type XdsTerminationReason } from './xds-metrics.ts';
import type { Rejection, XdsHandler, XdsResource } from './xds-types.ts';

const ADS_SERVICE = 'envoy.service.discovery.v3.AggregatedDiscoveryService';
/** ztunnel decodes xDS messages up to 200 MiB. */
const MAX_MESSAGE_BYTES = 200 * 1024 * 1024;
const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 10, maxMs: 15_000 };

const ackChannel = channel('mesh:xds:ack');
const nackChannel = channel('mesh:xds:nack');

/** What the client says about itself: ztunnel's node id and its metadata (plain JSON values; sent as a Struct). */
export interface XdsNode {
  readonly id: string;
  readonly metadata: Readonly<Record<string, unknown>>;
}

export interface XdsClientOptions {
  /** `https://host:port`, `host:port` (https implied), or `http://host:port` (plaintext, tests only). */
  readonly address: string;
  /** Roots that verify istiod's certificate; the system roots when absent. */
  readonly rootCaPem?: string;
  /** A second accepted server name (`ALT_XDS_HOSTNAME`), besides the host of `address`. */
  readonly alternateHostname?: string;
  readonly auth: CallAuthOptions;
  readonly node: XdsNode;
  /** One per type, in the order the initial requests go out (Address first, then Authorization). */
  readonly handlers: readonly XdsHandler[];
  /** On-demand Address (`XDS_ON_DEMAND`) is not supported yet: wildcard only. */
  readonly onDemand?: false;
  readonly backoff?: BackoffOptions;
  readonly logger?: Logger;
  /** When given, an `xds` task is registered and cleared once every type has been ACKed or NACKed. */
  readonly readiness?: Readiness;
  /** ztunnel's `istio_xds_*` metrics (see `createXdsMetrics`); none are recorded when absent. */
  readonly metrics?: XdsMetrics;
}

export interface XdsClientStats {
  readonly acks: number;
  readonly nacks: number;
  /** Streams opened after the first one. */
  readonly reconnects: number;
  /** A stream is open and the server has answered on it (headers or a response). */
  readonly connected: boolean;
}

export interface XdsAckEvent {
  readonly typeUrl: string;
  readonly nonce: string;
}

export interface XdsNackEvent extends XdsAckEvent {
  /** The `error_detail.message` sent: `<name>: <reason>; …`, or a handler's failure. */
  readonly message: string;
}

export interface XdsStreamEndEvent {
  readonly code: number;
  readonly details: string;
  /** Whether ztunnel counts it as a benign close (backoff reset) rather than an error. */
  readonly benign: boolean;
  /** Milliseconds until the next stream. */
  readonly retryInMs: number;
}

export interface XdsClientEvents {
  /** A stream was opened and its initial requests written. */
  stream: [];
  ack: [XdsAckEvent];
  nack: [XdsNackEvent];
  /** Every type has been answered once. */
  synced: [];
  /** The stream ended and a new one is scheduled (not emitted after `close()`). */
  disconnected: [XdsStreamEndEvent];
}

export interface XdsClient extends EventEmitter<XdsClientEvents>, Handle {
  /** Resolves once every handler's type has been ACKed or NACKed once; rejects if closed before. */
  readonly synced: Promise<void>;
  stats(): XdsClientStats;
  /** Cancels the stream and stops reconnecting; idempotent. */
  close(): Promise<void>;
}

/** Parses an xDS address the way ztunnel does (a missing scheme means https); a bad one is a config error. */
export function parseXdsAddress(address: string): GrpcTarget {
  try {
    return grpcTarget(address);
  } catch (err) {
    throw new MeshError(ErrorCode.CONFIG_INVALID, `xDS address: ${errorMessage(err)}`, { cause: err });
  }
}

export interface XdsNodeInput {
  readonly podName?: string | undefined;
  readonly podNamespace?: string | undefined;
  readonly instanceIp?: string | undefined;
  readonly nodeName?: string | undefined;
  /** The environment to read `ISTIO_META_*` / `ISTIO_METAJSON_*` from (main.ts passes process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

const DEFAULT_INSTANCE_IP = '1.1.1.1';
const META_PREFIX = 'ISTIO_META_';
const METAJSON_PREFIX = 'ISTIO_METAJSON_';

/**
 * ztunnel's xDS node (reference §2.3): id `ztunnel~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`; metadata
 * NAME, NAMESPACE, INSTANCE_IPS, NODE_NAME, then every `ISTIO_META_<K>` (string) and
 * `ISTIO_METAJSON_<K>` (parsed JSON), which override the base keys. Pure.
 */
export function xdsNode(input: XdsNodeInput): XdsNode {
  const ip = input.instanceIp || DEFAULT_INSTANCE_IP;
  const name = input.podName ?? '';
  const namespace = input.podNamespace ?? '';
  const metadata: Record<string, unknown> = { NAME: name, NAMESPACE: namespace, INSTANCE_IPS: ip, NODE_NAME: input.nodeName ?? '' };
  const env = input.env ?? {};
  const keys = Object.keys(env).sort();
  for (const key of keys) {
    const value = env[key];
    if (value === undefined || !key.startsWith(META_PREFIX) || key.length === META_PREFIX.length) continue;
    metadata[key.slice(META_PREFIX.length)] = value;
  }
  for (const key of keys) {
    const value = env[key];
    if (value === undefined || !key.startsWith(METAJSON_PREFIX) || key.length === METAJSON_PREFIX.length) continue;
    try {
      metadata[key.slice(METAJSON_PREFIX.length)] = JSON.parse(value) as unknown;
    } catch (err) {
      throw new MeshError(ErrorCode.CONFIG_INVALID, `${key}=${JSON.stringify(value)}: not valid JSON (${errorMessage(err)})`, { cause: err });
    }
  }
  return { id: `ztunnel~${ip}~${name}.${namespace}~${namespace}.svc.cluster.local`, metadata };
}

/** A JSON value as a `google.protobuf.Value`, in the object form protobufjs' `fromObject` takes. */
export function toProtoValue(value: unknown): Value {
  if (value === null || value === undefined) return { nullValue: 'NULL_VALUE' };
  switch (typeof value) {
    case 'string':
      return { stringValue: value };
    case 'number':
      return { numberValue: value };
    case 'boolean':
      return { boolValue: value };
    case 'bigint':
      return { numberValue: Number(value) };
    case 'object':
      if (Array.isArray(value)) return { listValue: { values: value.map(toProtoValue) } };
      return { structValue: toProtoStruct(value as Record<string, unknown>) };
    default:
      return { stringValue: String(value) };
  }
}

/** A JSON object as a `google.protobuf.Struct`: `{fields: {K: {stringValue: v}}}`. */
export function toProtoStruct(object: Readonly<Record<string, unknown>>): Struct {
  const fields: Record<string, Value> = {};
  for (const [key, value] of Object.entries(object)) fields[key] = toProtoValue(value);
  return { fields };
}

/**
 * ztunnel's benign closes: Unknown, Cancelled, DeadlineExceeded, Unavailable because the transport
 * closed or a GOAWAY arrived, and a clean end (OK). They reset the backoff instead of doubling it.
 */
export function isBenignClose(status: Pick<StatusObject, 'code' | 'details'>): boolean {
  switch (status.code) {
    case GrpcStatus.OK:
    case GrpcStatus.UNKNOWN:
    case GrpcStatus.CANCELLED:
    case GrpcStatus.DEADLINE_EXCEEDED:
      return true;
    case GrpcStatus.UNAVAILABLE:
      return /transport is closing|received prior goaway/i.test(status.details);
    default:
      return false;
  }
}

/**
 * How ztunnel labels a stream's end: before the server answered it is a `ConnectionError`; after,
 * a benign close is a `Reconnect` and anything else an `Error`. (`Complete` is `close()`.)
 */
export function terminationReason(status: Pick<StatusObject, 'code' | 'details'>, connected: boolean): XdsTerminationReason {
  if (!connected) return 'ConnectionError';
  return isBenignClose(status) ? 'Reconnect' : 'Error';
}

/** `<name>: <reason>; <name>: <reason>` — the NACK message. */
export function nackMessage(rejections: readonly Rejection[]): string {
  return rejections.map((r) => `${r.name}: ${r.reason}`).join('; ');
}

type AdsCall = ClientDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse__Output>;

interface AdsMethod {
  readonly requestSerialize: (value: DeltaDiscoveryRequest) => Buffer;
  readonly responseDeserialize: (bytes: Buffer) => DeltaDiscoveryResponse__Output;
}

function adsMethod(): AdsMethod {
  const service = grpcPackageDefinition()[ADS_SERVICE] as unknown as ServiceDefinition;
  const method = service['DeltaAggregatedResources'];
  if (!method) throw new Error(`${ADS_SERVICE} has no DeltaAggregatedResources method`);
  return method as unknown as AdsMethod;
}

class DeltaAdsClient extends EventEmitter<XdsClientEvents> implements XdsClient {
  readonly synced: Promise<void>;
  readonly close: () => Promise<void>;

  readonly #options: XdsClientOptions;
  readonly #log: Logger;
  readonly #target: GrpcTarget;
  readonly #client: Client;
  readonly #method = adsMethod();
  readonly #handlers = new Map<string, XdsHandler>();
  /** Per type: resource name → the version the server sent, for accepted resources only. */
  readonly #versions = new Map<string, Map<string, string>>();
  readonly #unanswered = new Set<string>();
  readonly #backoff: Backoff;
  readonly #markReady: (() => void) | undefined;
  #resolveSynced!: () => void;
  #rejectSynced!: (err: Error) => void;
  #call: AdsCall | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #streams = 0;
  #acks = 0;
  #nacks = 0;
  #connected = false;

  constructor(options: XdsClientOptions) {
    super();
    this.#options = options;
    this.#log = (options.logger ?? silentLogger()).child({ component: 'xds' });
    this.#target = parseXdsAddress(options.address);
    for (const handler of options.handlers) {
      if (this.#handlers.has(handler.typeUrl)) throw new MeshError(ErrorCode.CONFIG_INVALID, `two xDS handlers for ${handler.typeUrl}`);
      this.#handlers.set(handler.typeUrl, handler);
      this.#versions.set(handler.typeUrl, new Map());
      this.#unanswered.add(handler.typeUrl);
    }
    this.#backoff = new Backoff(options.backoff ?? DEFAULT_BACKOFF);
    this.synced = new Promise<void>((resolve, reject) => {
      this.#resolveSynced = resolve;
      this.#rejectSynced = reject;
    });
    // Nobody has to await it; a rejection on close must not become an unhandled rejection.
    this.synced.catch(() => {});
    this.#markReady = options.readiness?.register('xds');
    const channelOptions = {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
    };
    // TLS carries the auth metadata as call credentials (re-read per call); plaintext gets it per stream in #connect.
    const channelCreds = this.#target.secure ? channelCredentials(options.rootCaPem, options.auth, options.alternateHostname) : credentials.createInsecure();
    this.#client = new Client(this.#target.target, channelCreds, channelOptions);
    this.close = onceClose(async () => this.#shutdown());
    if (this.#unanswered.size === 0) this.#markSynced();
    this.#connect();
  }

  stats(): XdsClientStats {
    return { acks: this.#acks, nacks: this.#nacks, reconnects: Math.max(0, this.#streams - 1), connected: this.#connected };
  }

  #connect(): void {
    this.#timer = undefined;
    if (this.#closed) return;
    let metadata: Metadata;
    try {
      // Insecure channels refuse call credentials: the same metadata goes on the call, read afresh per stream.
      metadata = this.#target.secure ? new Metadata() : callMetadata(this.#options.auth);
    } catch (err) {
      this.#log.warn({ err: errorMessage(err) }, 'xDS stream not opened: auth metadata unavailable');
      this.#scheduleReconnect({ code: GrpcStatus.UNAUTHENTICATED, details: errorMessage(err) }, 'ConnectionError');
      return;
    }
    const { requestSerialize, responseDeserialize } = this.#method;
    const call = this.#client.makeBidiStreamRequest(GrpcMethod.deltaAds, requestSerialize, responseDeserialize, metadata, {});
    this.#call = call;
    this.#streams += 1;
    call.on('error', () => {}); // the outcome arrives as 'status'
    call.on('metadata', () => {
      if (this.#call === call) this.#connected = true;
    });
    call.on('data', (response: DeltaDiscoveryResponse__Output) => this.#onResponse(call, response));
    call.on('status', (status: StatusObject) => this.#onStatus(call, status));
    const node = { id: this.#options.node.id, metadata: toProtoStruct(this.#options.node.metadata) };
    for (const typeUrl of this.#handlers.keys()) {
      const initialResourceVersions = Object.fromEntries(this.#versions.get(typeUrl) ?? []);
      call.write({ node, typeUrl, initialResourceVersions, resourceNamesSubscribe: [], resourceNamesUnsubscribe: [] });
    }
    this.#log.debug({ address: this.#options.address, stream: this.#streams }, 'xDS stream opened');
    this.emit('stream');
  }

  #onResponse(call: AdsCall, response: DeltaDiscoveryResponse__Output): void {
    if (this.#call !== call || this.#closed) return;
    this.#connected = true;
    this.#backoff.reset();
    const { typeUrl, nonce } = response;
    this.#options.metrics?.message(typeUrl, anyPayloadBytes(response.resources));
    const handler = this.#handlers.get(typeUrl);
    if (!handler) {
      this.#log.warn({ typeUrl, nonce }, 'xDS response of a type not subscribed; ACKing it');
      this.#ack(call, typeUrl, nonce);
      return;
    }
    const rejections: Rejection[] = [];
    const accepted: XdsResource[] = [];
    for (const resource of response.resources) {
      const any = resource.resource;
      if (!any || !any.type_url) {
        rejections.push({ name: resource.name, reason: 'resource: missing Any type_url' });
      } else if (any.type_url !== typeUrl) {
        rejections.push({ name: resource.name, reason: `resource.type_url: ${any.type_url} does not match response type ${typeUrl}` });
      } else {
        accepted.push({ name: resource.name, version: resource.version, typeUrl: any.type_url, value: any.value });
      }
    }
    let handlerRejections: readonly Rejection[];
    try {
      handlerRejections = handler.handle(accepted, response.removedResources);
    } catch (err) {
      const message = `handler failed: ${errorMessage(err)}`;
      this.#log.error({ code: ErrorCode.XDS_HANDLER_FAILED, typeUrl, nonce, err: errorMessage(err) }, 'xDS handler threw; NACKing the whole response');
      this.#nack(call, typeUrl, nonce, message);
      return;
    }
    rejections.push(...handlerRejections);
    const versions = this.#versions.get(typeUrl) ?? new Map<string, string>();
    const rejected = new Set(rejections.map((r) => r.name));
    for (const resource of accepted) {
      if (!rejected.has(resource.name)) versions.set(resource.name, resource.version);
    }
    // A rejected name is forgotten, so the next stream's initial versions omit it and the server resends it.
    for (const name of rejected) versions.delete(name);
    for (const name of response.removedResources) versions.delete(name);
    if (rejections.length === 0) {
      this.#ack(call, typeUrl, nonce);
    } else {
      const message = nackMessage(rejections);
      this.#log.warn({ code: ErrorCode.XDS_RESOURCE_REJECTED, typeUrl, nonce, rejected: rejections.length, message }, 'xDS resources rejected');
      this.#nack(call, typeUrl, nonce, message);
    }
  }

  #ack(call: AdsCall, typeUrl: string, nonce: string): void {
    call.write({ typeUrl, responseNonce: nonce });
    this.#acks += 1;
    const event: XdsAckEvent = { typeUrl, nonce };
    if (ackChannel.hasSubscribers) ackChannel.publish(event);
    this.emit('ack', event);
    this.#answered(typeUrl);
  }

  #nack(call: AdsCall, typeUrl: string, nonce: string, message: string): void {
    call.write({ typeUrl, responseNonce: nonce, errorDetail: { message } });
    this.#nacks += 1;
    const event: XdsNackEvent = { typeUrl, nonce, message };
    if (nackChannel.hasSubscribers) nackChannel.publish(event);
    this.emit('nack', event);
    this.#answered(typeUrl);
  }

  #answered(typeUrl: string): void {
    if (this.#unanswered.delete(typeUrl) && this.#unanswered.size === 0) this.#markSynced();
  }

  #markSynced(): void {
    this.#log.info('xDS synced: every type answered once');
    this.#markReady?.();
    this.#resolveSynced();
    this.emit('synced');
  }

  #onStatus(call: AdsCall, status: StatusObject): void {
    if (this.#call !== call) return;
    const reason = terminationReason(status, this.#connected);
    this.#call = undefined;
    this.#connected = false;
    if (this.#closed) return;
    this.#scheduleReconnect(status, reason);
  }

  #scheduleReconnect(status: Pick<StatusObject, 'code' | 'details'>, reason: XdsTerminationReason): void {
    this.#options.metrics?.terminated(reason);
    const benign = isBenignClose(status);
    if (benign) this.#backoff.reset();
    const retryInMs = this.#backoff.next();
    const fields = { grpcStatus: GrpcStatus[status.code] ?? status.code, details: status.details, retryInMs };
    if (benign) this.#log.info(fields, 'xDS stream closed; reconnecting');
    else this.#log.warn({ ...fields, code: ErrorCode.XDS_STREAM_FAILED }, 'xDS stream failed; reconnecting');
    // Not unref'd: reconnecting is this client's job until close() (a process awaiting `synced` must not exit).
    this.#timer = setTimeout(() => this.#connect(), retryInMs);
    this.emit('disconnected', { code: status.code, details: status.details, benign, retryInMs });
  }

  async #shutdown(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const call = this.#call;
    this.#call = undefined;
    this.#connected = false;
    call?.cancel();
    this.#client.close();
    this.#options.metrics?.terminated('Complete');
    if (this.#unanswered.size > 0) this.#rejectSynced(new MeshError(ErrorCode.CORE_CLOSED, 'xDS client closed before it synced'));
  }
}

/** Starts the delta ADS client; it connects at once and reconnects until `close()`. */
export function startXdsClient(options: XdsClientOptions): XdsClient {
  return new DeltaAdsClient(options);
}
