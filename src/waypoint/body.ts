import { Readable } from 'node:stream';

/**
 * The request body as the waypoint forwards it. Up to `limit` bytes are buffered, so the request can be
 * retried and mirrored with the same bytes; a longer body is streamed (Envoy's retry/shadow buffer limit:
 * the retry is abandoned, mirrors get the body streamed to them as it arrives).
 */

export type RequestBody =
  | { readonly kind: 'buffered'; readonly body: Buffer }
  | { readonly kind: 'streamed'; readonly head: readonly Buffer[]; readonly rest: AsyncIterator<Buffer> };

/** Reads `source` up to `limit` bytes; `count` sees every chunk, including those streamed later. */
export async function readRequestBody(source: Readable, limit: number, count: (n: number) => void): Promise<RequestBody> {
  const head: Buffer[] = [];
  let bytes = 0;
  const iterator = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  for (;;) {
    const next = await iterator.next();
    if (next.done) return { kind: 'buffered', body: head.length === 1 ? (head[0] as Buffer) : Buffer.concat(head) };
    const chunk = next.value;
    head.push(chunk);
    bytes += chunk.length;
    count(chunk.length);
    if (bytes > limit) break;
  }
  const rest: AsyncIterator<Buffer> = {
    async next() {
      const n = await iterator.next();
      if (!n.done) count(n.value.length);
      return n;
    },
    async return(value?: unknown) {
      await iterator.return?.(value);
      return { done: true, value: undefined };
    },
  };
  return { kind: 'streamed', head, rest };
}

export interface StreamedCopies {
  /** The primary's copy: it paces the reading (its back-pressure is the downstream's). */
  readonly main: Readable;
  /** One copy per mirror, fed as the primary reads; never waited on. */
  readonly branches: readonly Readable[];
}

/**
 * Splits a streamed body into the primary's copy and `branches` mirror copies. The primary alone decides how
 * fast the body is read; a mirror copy that falls more than `maxLagBytes` behind is destroyed (its mirror
 * request aborts) instead of slowing the primary. When the primary's copy fails or is abandoned before the
 * end, the mirror copies are destroyed too, so no mirror receives a truncated body as if it were whole.
 */
export function streamCopies(body: Extract<RequestBody, { kind: 'streamed' }>, branches: number, options: { maxLagBytes: number; onDrop: (index: number, reason: string) => void }): StreamedCopies {
  const copies = Array.from({ length: branches }, () => new Readable({ read() {} }));
  const live = new Set(copies.keys());
  for (const [i, c] of copies.entries()) {
    c.on('error', () => {});
    c.once('close', () => live.delete(i));
  }
  const feed = (chunk: Buffer) => {
    for (const i of [...live]) {
      const c = copies[i] as Readable;
      if (c.readableLength > options.maxLagBytes) {
        live.delete(i);
        options.onDrop(i, `mirror fell more than ${options.maxLagBytes} bytes behind the primary`);
        c.destroy(new Error('mirror too slow'));
        continue;
      }
      c.push(chunk);
    }
  };
  async function* all(): AsyncGenerator<Buffer> {
    let complete = false;
    try {
      for (const chunk of body.head) {
        feed(chunk);
        yield chunk;
      }
      for (;;) {
        const next = await body.rest.next();
        if (next.done) break;
        feed(next.value);
        yield next.value;
      }
      complete = true;
      for (const i of live) (copies[i] as Readable).push(null);
    } finally {
      if (!complete) {
        for (const i of live) (copies[i] as Readable).destroy(new Error('request body did not complete'));
        await body.rest.return?.();
      }
    }
  }
  return { main: Readable.from(all(), { objectMode: false }), branches: copies };
}
