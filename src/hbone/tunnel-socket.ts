import { constants as h2, type Http2Stream } from 'node:http2';
import { Duplex } from 'node:stream';
import { reset } from './relay.ts';

export interface TunnelSocketOptions {
  /**
   * Copy each written buffer before it goes to the tunnel. Needed under node's HTTP/2 implementation
   * (JSStreamSocket), whose write buffers stay valid only until the write's callback.
   */
  readonly copyWrites?: boolean;
  /**
   * What a destroy without an error, before the socket was ended, means: `end` (the default; node's
   * HTTP client drops idle connections that way) half-closes and lingers; `reset` resets the stream
   * (RST_STREAM CONNECT_ERROR), as the downstream end must when a response is cut short.
   */
  readonly destroyWithoutEnd?: 'end' | 'reset';
}

/**
 * A socket-like duplex straight over an HBONE tunnel stream (either end), for node's HTTP servers and
 * clients: one thin hop instead of a duplex pair and a relay, on every request. What node writes corked
 * (a response head and its body) goes to the stream as one Buffer, in one DATA frame; strings become
 * Buffers, so the HTTP/2 stream never gets the corked latin1-string writev that corrupts bytes on Node
 * 24. A clean close half-closes the tunnel (END_STREAM, the app sees FIN) and lets the peer finish; a
 * close on an error, or before the exchange is over, cancels the stream (RST_STREAM CANCEL).
 */
export class TunnelSocket extends Duplex {
  readonly #stream: Http2Stream;
  /** See TunnelSocketOptions.copyWrites; set it once the protocol on top is known (a sniffed port). */
  copyWrites: boolean;
  readonly #resetUnlessEnded: boolean;

  constructor(stream: Http2Stream, options: TunnelSocketOptions = {}) {
    super();
    this.#stream = stream;
    this.copyWrites = options.copyWrites ?? false;
    this.#resetUnlessEnded = options.destroyWithoutEnd === 'reset';
    stream.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) stream.pause();
    });
    stream.once('end', () => this.push(null));
    stream.on('error', (err) => this.destroy(err));
    stream.once('close', () => {
      if (this.destroyed) return;
      if (this.readableEnded) this.destroy();
      else this.destroy(Object.assign(new Error('the tunnel closed'), { code: 'ECONNRESET' }));
    });
  }

  override _read(): void {
    this.#stream.resume();
  }

  override _write(chunk: Buffer | string, encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#stream.write(typeof chunk === 'string' ? Buffer.from(chunk, encoding) : this.copyWrites ? Buffer.from(chunk) : chunk, callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer | string; encoding: BufferEncoding }>, callback: (err?: Error | null) => void): void {
    if (chunks.length === 1) {
      const [{ chunk, encoding }] = chunks as [{ chunk: Buffer | string; encoding: BufferEncoding }];
      return this._write(chunk, encoding, callback);
    }
    // Buffer.concat copies, so what node reuses after the callback is never read under way.
    const data = Buffer.concat(chunks.map(({ chunk, encoding }) => (typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk)));
    this.#stream.write(data, callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.#stream.end(callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const stream = this.#stream;
    if (!stream.destroyed && !stream.closed) {
      if (this.#resetUnlessEnded && (err || !this.writableEnded)) reset(stream);
      else if (err || !stream.writable) stream.close(h2.NGHTTP2_CANCEL);
      else {
        stream.end();
        stream.resume(); // what still arrives is dropped; the peer's END_STREAM closes the stream
        setTimeout(() => stream.close(h2.NGHTTP2_CANCEL), TUNNEL_LINGER_MS).unref();
      }
    }
    callback(err);
  }
}

/** How long a cleanly closed connection waits for the peer to close its side of the tunnel. */
const TUNNEL_LINGER_MS = 10_000;
