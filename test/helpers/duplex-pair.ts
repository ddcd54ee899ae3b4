import { duplexPair, type Duplex } from 'node:stream';
import { relay } from '../../src/hbone/relay.ts';

/**
 * A duplex pair whose first end copies what is written to it. Node's HTTP/2 implementation over a
 * stream that is not a net.Socket (JSStreamSocket) writes buffers that stay valid only until the write
 * completes, and a pair completes it at once while the bytes travel on: without the copy they are
 * overwritten under way.
 */
export function copyingDuplexPair(): [Duplex, Duplex] {
  const [a, b] = duplexPair();
  const write = a.write.bind(a) as (chunk: unknown, ...rest: unknown[]) => boolean;
  a.write = ((chunk: unknown, ...rest: unknown[]) => write(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array), ...rest)) as Duplex['write'];
  return [a, b];
}

/**
 * A plain duplex relayed to an HBONE tunnel stream, for a test's HTTP client: a way to the waypoint
 * other than the TunnelSocket the waypoint itself uses, so the tests do not lean on the code they test.
 * Writing node's HTTP clients straight to an Http2Stream is not safe (a corked latin1 header string with
 * the body corrupts bytes on Node 24); through the pair the tunnel only ever gets plain buffers.
 */
export function socketOver(stream: Duplex): Duplex {
  const [socket, inner] = copyingDuplexPair();
  socket.on('error', () => {});
  inner.on('error', () => {});
  void relay(inner, stream);
  return socket;
}
