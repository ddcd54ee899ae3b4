import { finished, type Duplex } from 'node:stream';
import { constants as http2Constants, type Http2Stream } from 'node:http2';
import { Socket } from 'node:net';
import { MeshError } from '../core/errors.ts';
import { ErrorCode } from '../core/error-codes.ts';

export interface RelayResult {
  /** Bytes read from `downstream` and written to `upstream`. */
  readonly bytesDownstreamToUpstream: number;
  readonly bytesUpstreamToDownstream: number;
  /** Set when the relay ended on an error or reset rather than a clean close in both directions. */
  readonly error?: MeshError;
}

/**
 * Copies both directions between two duplex streams with backpressure. An end in one direction is
 * passed on as an end (TCP FIN / HTTP/2 END_STREAM) while the other direction keeps flowing; an
 * error or reset on one side resets the other (RST / RST_STREAM CONNECT_ERROR, RFC 9113 §8.5).
 * TCP sockets must be created with `allowHalfOpen: true`. Resolves once both sides are done.
 */
export function relay(downstream: Duplex, upstream: Duplex): Promise<RelayResult> {
  return new Promise((resolve) => {
    let down = 0;
    let up = 0;
    let error: MeshError | undefined;
    let pending = 2;

    const fail = (err: unknown, other: Duplex) => {
      if (error) return;
      error = relayError(err);
      reset(other);
    };
    const done = (other: Duplex) => (err?: Error | null) => {
      if (err) fail(err, other);
      if (--pending > 0) return;
      if (!downstream.destroyed) downstream.destroy();
      if (!upstream.destroyed) upstream.destroy();
      resolve({ bytesDownstreamToUpstream: down, bytesUpstreamToDownstream: up, ...(error ? { error } : {}) });
    };

    pump(downstream, upstream, (n) => (down += n));
    pump(upstream, downstream, (n) => (up += n));
    finished(downstream, done(upstream));
    finished(upstream, done(downstream));
  });
}

/**
 * Copies `src` into `dst` with backpressure. Chunks arriving in the same event-loop turn after the
 * first are corked and flushed together (one writev instead of a syscall per HTTP/2 DATA frame).
 * A clean end is passed on as an end; a reset stream's end is not (the reset is, by `relay`).
 */
function pump(src: Duplex, dst: Duplex, count: (bytes: number) => void): void {
  let turnOpen = false;
  let corked = false;
  const flush = () => {
    turnOpen = false;
    if (corked) {
      corked = false;
      dst.uncork();
    }
  };
  src.on('data', (chunk: Buffer) => {
    count(chunk.length);
    if (!turnOpen) {
      turnOpen = true;
      setImmediate(flush);
    } else if (!corked) {
      corked = true;
      dst.cork();
    }
    if (!dst.write(chunk)) src.pause();
  });
  dst.on('drain', () => src.resume());
  src.once('end', () => {
    flush();
    if (!wasReset(src) && !dst.destroyed) dst.end();
  });
}

function wasReset(stream: Duplex): boolean {
  return isHttp2Stream(stream) && stream.rstCode !== undefined && stream.rstCode !== http2Constants.NGHTTP2_NO_ERROR;
}

/** Aborts a stream the way its protocol signals failure. */
export function reset(stream: Duplex): void {
  if (stream.destroyed) return;
  if (stream instanceof Socket) {
    stream.resetAndDestroy();
  } else if (isHttp2Stream(stream)) {
    // Node's close() ends the writable side first, so the peer would read END_STREAM (a clean end)
    // just before RST_STREAM. Marking the side as ending makes close() send only the reset.
    (stream as unknown as { _writableState: { ending: boolean } })._writableState.ending = true;
    stream.close(http2Constants.NGHTTP2_CONNECT_ERROR);
  } else {
    stream.destroy();
  }
}

function isHttp2Stream(stream: Duplex): stream is Http2Stream {
  return 'rstCode' in stream && 'session' in stream;
}

function relayError(err: unknown): MeshError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'ECONNRESET' || code === 'EPIPE') return new MeshError(ErrorCode.RELAY_CONNECTION_RESET, `connection reset: ${message}`, { cause: err });
  if (code === 'ERR_HTTP2_STREAM_ERROR' || code === 'ERR_HTTP2_STREAM_CANCEL') return new MeshError(ErrorCode.HBONE_STREAM_RESET, `tunnel stream reset: ${message}`, { cause: err });
  if (code === 'ERR_STREAM_PREMATURE_CLOSE') return new MeshError(ErrorCode.RELAY_CONNECTION_RESET, 'peer closed before finishing', { cause: err });
  return new MeshError(ErrorCode.RELAY_IO_ERROR, message, { cause: err });
}
