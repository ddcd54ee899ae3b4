import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';

/** One resource as the xDS server holds it: the encoded message and a version derived from its bytes. */
export interface SnapshotEntry {
  readonly version: string;
  readonly value: Buffer;
}

/** What one batch changed for one type URL (names upserted with new bytes, or deleted). */
export interface SnapshotChange {
  readonly typeUrl: string;
  readonly names: readonly string[];
  /** The snapshot's version after the batch (the xDS `system_version_info`). */
  readonly version: number;
}

export interface SnapshotEvents {
  change: [SnapshotChange];
}

/** A resource version: the first 16 hex digits of the SHA-256 of its bytes, so unchanged bytes keep their version. */
export function contentVersion(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16);
}

const EMPTY: ReadonlyMap<string, SnapshotEntry> = new Map();

/**
 * The xDS server's source of truth: per type URL, name → {version, encoded value}. It is the only
 * owner of that state; writers call `set` / `delete` / `replaceAll` (grouped in `update` to make
 * one change), readers get read-only views. Every batch that changes something emits one `'change'`
 * per type URL with exactly the names whose bytes changed, so servers push only those.
 */
export class ResourceSnapshot extends EventEmitter<SnapshotEvents> {
  readonly #types = new Map<string, Map<string, SnapshotEntry>>();
  /** Names changed in the open batch, per type URL. */
  readonly #changed = new Map<string, Set<string>>();
  #depth = 0;
  #version = 0;

  /** Increases by one for every batch that changed something. */
  get version(): number {
    return this.#version;
  }

  /** Runs `fn` as one batch: every change made inside it is announced once, after it returns (or throws). */
  update<T>(fn: () => T): T {
    this.#depth++;
    try {
      return fn();
    } finally {
      if (--this.#depth === 0) this.#emitChanges();
    }
  }

  /** Adds or replaces a resource; true when its bytes changed. The bytes are copied. */
  set(typeUrl: string, name: string, value: Uint8Array): boolean {
    return this.update(() => this.#put(typeUrl, name, value));
  }

  /** Removes a resource; true when it existed. */
  delete(typeUrl: string, name: string): boolean {
    return this.update(() => {
      const map = this.#types.get(typeUrl);
      if (!map?.delete(name)) return false;
      this.#mark(typeUrl, name);
      return true;
    });
  }

  /**
   * Makes `entries` the whole content of `typeUrl`: new and changed names are set, names absent from
   * `entries` are deleted, identical bytes are left alone. Returns the names that changed (one change event).
   */
  replaceAll(typeUrl: string, entries: Iterable<readonly [string, Uint8Array]>): readonly string[] {
    return this.update(() => {
      const changed: string[] = [];
      const seen = new Set<string>();
      for (const [name, value] of entries) {
        seen.add(name);
        if (this.#put(typeUrl, name, value)) changed.push(name);
      }
      const map = this.#types.get(typeUrl);
      for (const name of [...(map?.keys() ?? [])]) {
        if (seen.has(name)) continue;
        map?.delete(name);
        this.#mark(typeUrl, name);
        changed.push(name);
      }
      return changed;
    });
  }

  /** A read-only view of one type's resources (empty for a type never set). */
  get(typeUrl: string): ReadonlyMap<string, SnapshotEntry> {
    return this.#types.get(typeUrl) ?? EMPTY;
  }

  entry(typeUrl: string, name: string): SnapshotEntry | undefined {
    return this.#types.get(typeUrl)?.get(name);
  }

  /** Type URLs that hold (or held) resources. */
  typeUrls(): readonly string[] {
    return [...this.#types.keys()];
  }

  #put(typeUrl: string, name: string, value: Uint8Array): boolean {
    let map = this.#types.get(typeUrl);
    if (!map) this.#types.set(typeUrl, (map = new Map()));
    const version = contentVersion(value);
    const current = map.get(name);
    if (current?.version === version && current.value.equals(value)) return false;
    map.set(name, Object.freeze({ version, value: Buffer.from(value) }));
    this.#mark(typeUrl, name);
    return true;
  }

  #mark(typeUrl: string, name: string): void {
    let names = this.#changed.get(typeUrl);
    if (!names) this.#changed.set(typeUrl, (names = new Set()));
    names.add(name);
  }

  #emitChanges(): void {
    if (this.#changed.size === 0) return;
    const changes = [...this.#changed].map(([typeUrl, names]) => ({ typeUrl, names: [...names] }));
    this.#changed.clear();
    const version = ++this.#version;
    for (const change of changes) this.emit('change', Object.freeze({ ...change, version }));
  }
}
