import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * A small RFC 6455 WebSocket server for tests, on a node HTTP server's `upgrade` event: the handshake,
 * unmasking of client frames (fragments joined), and an echo of text and binary messages. A `close` from the
 * client is answered with the same code and the TCP side ended; the text message `close-me` makes the server
 * close first (1001 "going away"). `/ws/reject*` answers 400 instead of upgrading (`/ws/reject-503*`: 503),
 * `/ws/hang*` never answers.
 */

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export type WsEvent =
  | { readonly kind: 'open'; readonly url: string; readonly headers: IncomingMessage['headers'] }
  | { readonly kind: 'message'; readonly opcode: number; readonly bytes: number }
  | { readonly kind: 'close-received'; readonly code: number | undefined }
  | { readonly kind: 'close-sent'; readonly code: number }
  | { readonly kind: 'end' }
  | { readonly kind: 'hang' | 'rejected'; readonly url: string };

export function frame(opcode: number, payload: Buffer): Buffer {
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x80 | opcode, len]) : len < 65_536 ? Buffer.alloc(4) : Buffer.alloc(10);
  if (len >= 126) {
    head[0] = 0x80 | opcode;
    if (len < 65_536) {
      head[1] = 126;
      head.writeUInt16BE(len, 2);
    } else {
      head[1] = 127;
      head.writeBigUInt64BE(BigInt(len), 2);
    }
  }
  return Buffer.concat([head, payload]);
}

const closePayload = (code: number, reason = '') => {
  const b = Buffer.alloc(2 + Buffer.byteLength(reason));
  b.writeUInt16BE(code, 0);
  b.write(reason, 2);
  return b;
};

export function webSocketEcho(onEvent: (e: WsEvent) => void) {
  return (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', () => {});
    const url = req.url ?? '/';
    const key = req.headers['sec-websocket-key'];
    if (url.startsWith('/ws/hang')) {
      onEvent({ kind: 'hang', url });
      return; // never answers; the socket stays open until the caller gives up
    }
    if (url.startsWith('/ws/reject') || typeof key !== 'string' || String(req.headers.upgrade).toLowerCase() !== 'websocket') {
      const body = 'no upgrade here';
      const status = url.startsWith('/ws/reject-503') ? '503 Service Unavailable' : '400 Bad Request';
      onEvent({ kind: 'rejected', url });
      socket.end(`HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nx-rejected: yes\r\nconnection: close\r\n\r\n${body}`);
      return;
    }
    onEvent({ kind: 'open', url, headers: req.headers });
    const accept = createHash('sha1').update(key + GUID).digest('base64');
    const protocol = req.headers['sec-websocket-protocol'];
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n' +
        `sec-websocket-accept: ${accept}\r\nx-backend: ws-echo\r\n` +
        (typeof protocol === 'string' ? `sec-websocket-protocol: ${protocol.split(',')[0]?.trim()}\r\n` : '') +
        '\r\n',
    );
    let buffered = head;
    let fragments: Buffer[] = [];
    let fragmentOpcode = 0;
    let closed = false;
    const onData = (chunk: Buffer) => {
      buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
      for (;;) {
        if (buffered.length < 2) return;
        const b0 = buffered[0] as number;
        const b1 = buffered[1] as number;
        let len = b1 & 0x7f;
        let offset = 2;
        if (len === 126) {
          if (buffered.length < 4) return;
          len = buffered.readUInt16BE(2);
          offset = 4;
        } else if (len === 127) {
          if (buffered.length < 10) return;
          len = Number(buffered.readBigUInt64BE(2));
          offset = 10;
        }
        const masked = (b1 & 0x80) !== 0;
        const mask = masked ? buffered.subarray(offset, offset + 4) : undefined;
        if (masked) offset += 4;
        if (buffered.length < offset + len) return;
        const payload = Buffer.from(buffered.subarray(offset, offset + len));
        if (mask) for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] as number) ^ (mask[i % 4] as number);
        buffered = buffered.subarray(offset + len);
        const fin = (b0 & 0x80) !== 0;
        const opcode = b0 & 0x0f;
        if (opcode === 0x8) {
          const code = payload.length >= 2 ? payload.readUInt16BE(0) : undefined;
          onEvent({ kind: 'close-received', code });
          if (!closed) {
            closed = true;
            socket.write(frame(0x8, code === undefined ? Buffer.alloc(0) : closePayload(code)));
            onEvent({ kind: 'close-sent', code: code ?? 1005 });
          }
          socket.end();
          return;
        }
        if (opcode === 0x9) {
          socket.write(frame(0xa, payload));
          continue;
        }
        if (opcode === 0xa) continue;
        if (opcode !== 0) {
          fragmentOpcode = opcode;
          fragments = [];
        }
        fragments.push(payload);
        if (!fin) continue;
        const message = Buffer.concat(fragments);
        fragments = [];
        onEvent({ kind: 'message', opcode: fragmentOpcode, bytes: message.length });
        if (fragmentOpcode === 0x1 && message.toString() === 'close-me') {
          closed = true;
          socket.write(frame(0x8, closePayload(1001, 'going away')));
          onEvent({ kind: 'close-sent', code: 1001 });
          continue;
        }
        if (!closed) socket.write(frame(fragmentOpcode, message));
      }
    };
    socket.on('data', onData);
    socket.once('end', () => {
      onEvent({ kind: 'end' });
      socket.end();
    });
    if (head.length > 0) {
      buffered = Buffer.alloc(0);
      onData(head);
    }
  };
}

/** A client frame (masked, as RFC 6455 §5.3 requires of clients). */
export function clientFrame(opcode: number, payload: Buffer): Buffer {
  const unmasked = frame(opcode, payload);
  const headLength = unmasked.length - payload.length;
  const head = Buffer.from(unmasked.subarray(0, headLength));
  head[1] = (head[1] as number) | 0x80;
  const mask = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] = (body[i] as number) ^ (mask[i % 4] as number);
  return Buffer.concat([head, mask, body]);
}

/** Complete unmasked frames at the start of `buffer`, and what is left. */
export function parseFrames(buffer: Buffer): { frames: Array<{ opcode: number; payload: Buffer }>; rest: Buffer } {
  const frames: Array<{ opcode: number; payload: Buffer }> = [];
  let b = buffer;
  for (;;) {
    if (b.length < 2) break;
    let len = (b[1] as number) & 0x7f;
    let offset = 2;
    if (len === 126) {
      if (b.length < 4) break;
      len = b.readUInt16BE(2);
      offset = 4;
    } else if (len === 127) {
      if (b.length < 10) break;
      len = Number(b.readBigUInt64BE(2));
      offset = 10;
    }
    if (b.length < offset + len) break;
    frames.push({ opcode: (b[0] as number) & 0x0f, payload: Buffer.from(b.subarray(offset, offset + len)) });
    b = b.subarray(offset + len);
  }
  return { frames, rest: b };
}
