import { status as GrpcStatus, type ServerDuplexStream, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { ErrorCode } from '../core/error-codes.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import type { DeltaDiscoveryRequest__Output } from './generated/envoy/service/discovery/v3/DeltaDiscoveryRequest.ts';
import type { DeltaDiscoveryResponse } from './generated/envoy/service/discovery/v3/DeltaDiscoveryResponse.ts';
import type { Resource } from './generated/envoy/service/discovery/v3/Resource.ts';
import type { GrpcService } from './grpc-server.ts';
import { grpcPackageDefinition, TypeUrl } from './proto.ts';
import type { ResourceSnapshot, SnapshotChange } from './snapshot.ts';

/** What an ACK or NACK acknowledged. */
export interface XdsAckEvent {
  readonly streamId: number;
  /** `node.id` of the stream's first request ('' when the client sent none). */
  readonly nodeId: string;
  readonly typeUrl: string;
  readonly nonce: string;
  /** Names carried by the acknowledged response (resources and removals). */
  readonly resourceNames: readonly string[];
}

export interface XdsNackEvent extends XdsAckEvent {
  /** `error_detail.message` (Istio: `"<name>: <reason>; …"`). */
  readonly message: string;
  /** `error_detail.code` (Istio's clients leave it 0). */
  readonly statusCode: number;
}

export interface XdsServerOptions {
  readonly snapshot: ResourceSnapshot;
  readonly logger?: Logger;
  /**
   * Type URLs this server answers (default: the workload API's Address and Authorization). A request
   * for any other type is logged and ignored: no state, no response (counted as `ignoredRequests`).
   */
  readonly typeUrls?: readonly string[];
  readonly onAck?: (event: XdsAckEvent) => void;
  readonly onNack?: (event: XdsNackEvent) => void;
}

export interface XdsServerStats {
  /** Open streams. */
  readonly streams: number;
  readonly acks: number;
  readonly nacks: number;
  /** Responses written. */
  readonly pushes: number;
  /** Requests dropped: unserved type URL, or an ACK/NACK-less error detail. */
  readonly ignoredRequests: number;
}

export interface XdsService extends GrpcService {
  stats(): XdsServerStats;
  /**
   * Stops watching the snapshot and ends every open stream with status OK (Istio's clients treat a
   * clean end as benign and reconnect at once). Idempotent. The gRPC server's own shutdown finishes
   * the transport.
   */
  close(): Promise<void>;
}

type Call = ServerDuplexStream<DeltaDiscoveryRequest__Output, DeltaDiscoveryResponse>;

/** Responses remembered per type until ACKed/NACKed; older ones are forgotten past this many. */
const MAX_OUTSTANDING = 64;

/** One type URL on one stream: what the client subscribed to and what it has. */
class Subscription {
  wildcard: boolean;
  /** Explicitly subscribed names. */
  readonly names = new Set<string>();
  /** name → version the client has: listed in `initial_resource_versions`, or sent by us (NACKed or not). */
  readonly known = new Map<string, string>();
  /** Names to reconsider at the next flush. */
  readonly dirty = new Set<string>();
  /** Names the next response must mention even if the client has them (on-demand subscriptions). */
  readonly mention = new Set<string>();
  /** Reconsider every name in scope (initial request, wildcard toggled). */
  fullSync = true;
  /** Answer even with nothing in it (the initial request: Istio's readiness waits for one ACK per type). */
  respond = true;
  /** nonce → names in that response, until ACKed or NACKed. */
  readonly outstanding = new Map<string, readonly string[]>();

  constructor(wildcard: boolean) {
    this.wildcard = wildcard;
  }

  inScope(name: string): boolean {
    return this.wildcard || this.names.has(name);
  }

  get pending(): boolean {
    return this.fullSync || this.respond || this.dirty.size > 0 || this.mention.size > 0;
  }
}

class StreamState {
  readonly id: number;
  readonly call: Call;
  log: Logger;
  nodeId = '';
  readonly types = new Map<string, Subscription>();
  /** Unserved type URLs already warned about (one warning per stream and type, not per request). */
  readonly unserved = new Set<string>();
  /** `call.write` returned false: wait for 'drain' before writing more. */
  blocked = false;
  closed = false;

  constructor(id: number, call: Call, log: Logger) {
    this.id = id;
    this.call = call;
    this.log = log;
  }
}

/**
 * The delta ADS server (`DeltaAggregatedResources`) over a {@link ResourceSnapshot}.
 *
 * Per stream and type: the first request sets wildcard or explicit names and what the client already
 * has; the server answers it (always, even empty) and from then on pushes only changed names in scope.
 * ACK/NACK are counted; a NACKed version stays "sent" and is not pushed again until it changes.
 * Pushes are pipelined (no waiting for ACKs) but coalesced: changes mark names dirty per stream and
 * one flush per event-loop turn computes each response from the snapshot as it is then, so a stream
 * blocked by backpressure accumulates at most one pending entry per name, never a queue of responses.
 */
export function xdsService(options: XdsServerOptions): XdsService {
  return new XdsServer(options).service();
}

class XdsServer {
  readonly #snapshot: ResourceSnapshot;
  readonly #log: Logger;
  readonly #served: ReadonlySet<string>;
  readonly #onAck: ((event: XdsAckEvent) => void) | undefined;
  readonly #onNack: ((event: XdsNackEvent) => void) | undefined;
  readonly #streams = new Set<StreamState>();
  readonly #dirty = new Set<StreamState>();
  readonly #nonceBase = randomBytes(4).toString('hex');
  #nonces = 0;
  #streamIds = 0;
  #flushScheduled = false;
  #closed = false;
  #acks = 0;
  #nacks = 0;
  #pushes = 0;
  #ignored = 0;
  readonly #onChange = (change: SnapshotChange): void => this.#changed(change);

  constructor(options: XdsServerOptions) {
    this.#snapshot = options.snapshot;
    this.#log = (options.logger ?? silentLogger()).child({ component: 'xds-server' });
    this.#served = new Set(options.typeUrls ?? [TypeUrl.address, TypeUrl.authorization]);
    this.#onAck = options.onAck;
    this.#onNack = options.onNack;
    this.#snapshot.on('change', this.#onChange);
  }

  service(): XdsService {
    const definition = grpcPackageDefinition()['envoy.service.discovery.v3.AggregatedDiscoveryService'];
    if (!definition || !('DeltaAggregatedResources' in definition)) throw new Error('AggregatedDiscoveryService missing from the loaded protos');
    const implementation: UntypedServiceImplementation = {
      DeltaAggregatedResources: (call: Call) => this.#accept(call),
    };
    return {
      definition: definition as unknown as ServiceDefinition,
      implementation,
      stats: () => ({ streams: this.#streams.size, acks: this.#acks, nacks: this.#nacks, pushes: this.#pushes, ignoredRequests: this.#ignored }),
      close: async () => this.#close(),
    };
  }

  #accept(call: Call): void {
    const id = ++this.#streamIds;
    const stream = new StreamState(id, call, this.#log.child({ stream: id, peer: safePeer(call) }));
    if (this.#closed) {
      call.emit('error', { code: GrpcStatus.UNAVAILABLE, details: 'xDS server is shutting down' });
      return;
    }
    this.#streams.add(stream);
    stream.log.debug('xDS stream opened');
    const cleanup = (reason: string): void => {
      if (stream.closed) return;
      stream.closed = true;
      this.#streams.delete(stream);
      this.#dirty.delete(stream);
      stream.log.debug({ reason }, 'xDS stream closed');
    };
    call.on('data', (request: DeltaDiscoveryRequest__Output) => {
      if (stream.closed) return;
      try {
        this.#request(stream, request);
      } catch (err) {
        stream.log.error({ code: ErrorCode.XDS_BAD_REQUEST, err }, 'xDS request handling failed; ending the stream');
        this.#fail(stream, GrpcStatus.INTERNAL, 'internal error handling the request');
      }
    });
    call.on('end', () => {
      // The client half-closed: finish our side with OK.
      cleanup('client ended the stream');
      if (!call.destroyed && !call.writableEnded) call.end();
    });
    call.on('error', (err: Error) => {
      stream.log.debug({ err: err.message }, 'xDS stream error');
      cleanup('error');
    });
    call.on('cancelled', () => cleanup('cancelled'));
    call.on('close', () => cleanup('closed'));
  }

  #request(stream: StreamState, request: DeltaDiscoveryRequest__Output): void {
    const { typeUrl } = request;
    if (request.node?.id && !stream.nodeId) {
      stream.nodeId = request.node.id;
      stream.log = stream.log.child({ node: stream.nodeId });
    }
    if (!this.#served.has(typeUrl)) {
      this.#ignored++;
      const first = !stream.unserved.has(typeUrl);
      if (first && stream.unserved.size < 16) stream.unserved.add(typeUrl);
      stream.log[first ? 'warn' : 'debug']({ typeUrl }, 'xDS request for a type this server does not serve; ignored');
      return;
    }
    let sub = stream.types.get(typeUrl);
    if (!sub) {
      sub = this.#subscribe(request);
      stream.types.set(typeUrl, sub);
      stream.log.debug({ typeUrl, wildcard: sub.wildcard, names: sub.names.size, known: sub.known.size }, 'xDS subscription');
      this.#schedule(stream);
      return;
    }
    if (request.responseNonce) this.#acknowledged(stream, sub, request);
    else if (request.errorDetail) {
      this.#ignored++;
      stream.log.warn({ typeUrl, errorMessage: request.errorDetail.message }, 'xDS error detail without a response nonce; ignored');
    }
    if (this.#resubscribe(sub, request.resourceNamesSubscribe, request.resourceNamesUnsubscribe)) this.#schedule(stream);
  }

  /** The first request of a type on a stream. */
  #subscribe(request: DeltaDiscoveryRequest__Output): Subscription {
    // Empty subscribe list = (legacy) wildcard; "*" in both lists = subscribe to nothing (Istio on-demand).
    const sub = new Subscription(request.resourceNamesSubscribe.length === 0);
    for (const [name, version] of Object.entries(request.initialResourceVersions)) sub.known.set(name, version);
    for (const name of request.resourceNamesSubscribe) {
      if (name === '*') sub.wildcard = true;
      else {
        sub.names.add(name);
        // A name the client does not hold must be mentioned (as a resource or a removal): it waits for one.
        if (!sub.known.has(name)) sub.mention.add(name);
      }
    }
    for (const name of request.resourceNamesUnsubscribe) {
      if (name === '*') sub.wildcard = false;
      else {
        sub.names.delete(name);
        sub.mention.delete(name);
      }
    }
    return sub;
  }

  /** Subscribe/unsubscribe deltas of a later request; true when something needs a flush. */
  #resubscribe(sub: Subscription, subscribe: readonly string[], unsubscribe: readonly string[]): boolean {
    let changed = false;
    for (const name of subscribe) {
      if (name === '*') {
        if (!sub.wildcard) sub.wildcard = sub.fullSync = true;
      } else {
        sub.names.add(name);
        sub.mention.add(name);
      }
      changed = true;
    }
    for (const name of unsubscribe) {
      if (name === '*') {
        if (sub.wildcard) {
          sub.wildcard = false;
          sub.fullSync = true; // forgets what falls out of scope
        }
      } else {
        sub.names.delete(name);
        sub.mention.delete(name);
        if (!sub.wildcard) sub.known.delete(name);
      }
      changed = true;
    }
    return changed;
  }

  #acknowledged(stream: StreamState, sub: Subscription, request: DeltaDiscoveryRequest__Output): void {
    const { typeUrl, responseNonce: nonce, errorDetail } = request;
    const names = sub.outstanding.get(nonce);
    if (!names) {
      stream.log.debug({ typeUrl, nonce, nack: Boolean(errorDetail) }, 'xDS ACK/NACK for an unknown or expired nonce; ignored');
      return;
    }
    sub.outstanding.delete(nonce);
    const base = { streamId: stream.id, nodeId: stream.nodeId, typeUrl, nonce, resourceNames: names };
    if (errorDetail) {
      this.#nacks++;
      // The NACKed versions stay recorded as sent: they go out again only when they change.
      stream.log.warn({ code: ErrorCode.XDS_NACK_RECEIVED, typeUrl, nonce, statusCode: errorDetail.code, errorMessage: errorDetail.message, resources: names.length }, `xDS client rejected a response (NACK): ${errorDetail.message}`);
      this.#notify(stream, () => this.#onNack?.({ ...base, message: errorDetail.message, statusCode: errorDetail.code }));
    } else {
      this.#acks++;
      stream.log.debug({ typeUrl, nonce }, 'xDS ACK');
      this.#notify(stream, () => this.#onAck?.(base));
    }
  }

  #notify(stream: StreamState, callback: () => void): void {
    try {
      callback();
    } catch (err) {
      stream.log.error({ err }, 'xDS ACK/NACK callback threw');
    }
  }

  #changed(change: SnapshotChange): void {
    for (const stream of this.#streams) {
      const sub = stream.types.get(change.typeUrl);
      if (!sub) continue;
      let touched = false;
      for (const name of change.names) {
        if (sub.inScope(name) || sub.known.has(name)) {
          sub.dirty.add(name);
          touched = true;
        }
      }
      if (touched) this.#schedule(stream);
    }
  }

  #schedule(stream: StreamState): void {
    this.#dirty.add(stream);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      const streams = [...this.#dirty];
      this.#dirty.clear();
      for (const s of streams) {
        try {
          this.#flush(s);
        } catch (err) {
          s.log.error({ code: ErrorCode.XDS_STREAM_FAILED, err }, 'xDS push failed; ending the stream');
          this.#fail(s, GrpcStatus.INTERNAL, 'internal error building a response');
        }
      }
    });
  }

  /** Writes one response per type with something pending, until backpressure says stop. */
  #flush(stream: StreamState): void {
    if (stream.closed || stream.blocked) return;
    const { call } = stream;
    for (const [typeUrl, sub] of stream.types) {
      if (!sub.pending) continue;
      if (call.destroyed || call.writableEnded) return;
      const response = this.#build(typeUrl, sub);
      if (!response) continue;
      this.#pushes++;
      stream.log.debug({ typeUrl, nonce: response.nonce, resources: response.resources?.length ?? 0, removed: response.removedResources?.length ?? 0 }, 'xDS push');
      if (!call.write(response)) {
        stream.blocked = true;
        call.once('drain', () => {
          stream.blocked = false;
          this.#schedule(stream);
        });
        return;
      }
    }
  }

  /** The response `sub` needs now (recording what the client will have), or undefined when there is nothing to say. */
  #build(typeUrl: string, sub: Subscription): DeltaDiscoveryResponse | undefined {
    const entries = this.#snapshot.get(typeUrl);
    let candidates: Iterable<string>;
    if (sub.fullSync) {
      const all = new Set<string>([...sub.names, ...sub.known.keys(), ...sub.mention]);
      if (sub.wildcard) for (const name of entries.keys()) all.add(name);
      candidates = all;
    } else {
      candidates = new Set<string>([...sub.dirty, ...sub.mention]);
    }
    const resources: Resource[] = [];
    const removed: string[] = [];
    for (const name of candidates) {
      if (!sub.inScope(name)) {
        sub.known.delete(name); // unsubscribed: the client forgets it, so do we
        continue;
      }
      const entry = entries.get(name);
      const mention = sub.mention.has(name);
      if (entry) {
        if (mention || sub.known.get(name) !== entry.version) {
          // proto-loader keeps google.protobuf.Any's fields as `type_url` (camelCase `typeUrl` would be dropped).
          resources.push({ name, version: entry.version, resource: { type_url: typeUrl, value: entry.value } });
          sub.known.set(name, entry.version);
        }
      } else if (mention || sub.known.has(name)) {
        removed.push(name);
        sub.known.delete(name);
      }
    }
    const respond = sub.respond;
    sub.fullSync = sub.respond = false;
    sub.dirty.clear();
    sub.mention.clear();
    if (!respond && resources.length === 0 && removed.length === 0) return undefined;
    const nonce = `${this.#nonceBase}-${++this.#nonces}`;
    sub.outstanding.set(nonce, [...resources.map((r) => r.name as string), ...removed]);
    if (sub.outstanding.size > MAX_OUTSTANDING) {
      const oldest = sub.outstanding.keys().next().value;
      if (oldest !== undefined) sub.outstanding.delete(oldest);
    }
    return { systemVersionInfo: String(this.#snapshot.version), typeUrl, nonce, resources, removedResources: removed };
  }

  #fail(stream: StreamState, code: GrpcStatus, details: string): void {
    const { call } = stream;
    stream.closed = true;
    this.#streams.delete(stream);
    this.#dirty.delete(stream);
    if (!call.destroyed && !call.writableEnded) call.emit('error', { code, details, name: 'XdsServerError', message: details });
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#snapshot.off('change', this.#onChange);
    for (const stream of [...this.#streams]) {
      stream.closed = true;
      this.#streams.delete(stream);
      if (!stream.call.destroyed && !stream.call.writableEnded) stream.call.end();
    }
    this.#dirty.clear();
  }
}

function safePeer(call: Call): string {
  try {
    return call.getPeer();
  } catch {
    return 'unknown';
  }
}
