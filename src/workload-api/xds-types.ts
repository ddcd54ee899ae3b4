/** One resource of a delta xDS response, as the client hands it to a handler. */
export interface XdsResource {
  readonly name: string;
  readonly version: string;
  /** `Resource.resource.type_url`. */
  readonly typeUrl: string;
  /** `Resource.resource.value`: the encoded message. */
  readonly value: Buffer;
}

/** A resource a handler refused, with a field-path reason (`workload.addresses[0]: …`). */
export interface Rejection {
  readonly name: string;
  readonly reason: string;
}

/**
 * Applies the resources of one xDS type. One response is one call: upserts and removals together;
 * the returned rejections are NACKed by name and left out, everything else is applied.
 */
export interface XdsHandler {
  readonly typeUrl: string;
  handle(resources: readonly XdsResource[], removed: readonly string[]): readonly Rejection[];
}
