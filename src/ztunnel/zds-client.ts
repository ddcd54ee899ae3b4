import { setTimeout as sleep } from 'node:timers/promises';
import { Backoff } from '../core/backoff.ts';
import { ErrorCode } from '../core/error-codes.ts';
import { errorCode, errorMessage } from '../core/errors.ts';
import type { Handle } from '../core/lifecycle.ts';
import type { Logger } from '../core/logger.ts';
import { SeqpacketConnection } from '../sys/seqpacket.ts';
import { decodeWorkloadRequest, encodeAck, encodeZdsHello, type ZdsRequest, type ZdsWorkloadInfo } from '../workload-api/zds.ts';

/**
 * ztunnel's side of ZDS (reference ztunnel.md §1.3): connects to the node agent's SOCK_SEQPACKET socket
 * (`INPOD_UDS`), says ZdsHello{V1}, then answers each WorkloadRequest with one WorkloadResponse{ack}
 * after handing it to the proxy manager. The socket failing or closing means reconnect (10 ms doubling,
 * at most 15 s) and a new snapshot. A protocol violation stops the client for good, with a
 * `ZDS_PROTOCOL_ERROR` log: the node agent and ztunnel disagree and retrying would not fix it.
 */

/** ZDS's receive buffer. */
export const ZDS_RECV_BYTES = 1024;
const RECONNECT = { initialMs: 10, maxMs: 15_000, multiplier: 2 } as const;

/** What the client drives (the ProxyManager). Each call resolves with undefined (ACK) or the NACK text. */
export interface ZdsHandler {
  connectionStarted(): void;
  connectionLost(): void;
  add(uid: string, info: ZdsWorkloadInfo, netnsFd: number): Promise<string | undefined>;
  keep(uid: string): Promise<string | undefined>;
  del(uid: string): Promise<string | undefined>;
  snapshotSent(): Promise<string | undefined>;
}

/**
 * The protocol rule a request breaks, given whether SnapshotSent was already received on this
 * connection and whether the packet carried an fd; undefined when it is legal.
 */
export function zdsViolation(snapshotSent: boolean, request: ZdsRequest, carriesFd: boolean): string | undefined {
  if (request.kind === 'add' && !carriesFd) return `AddWorkload ${request.uid} carries no network namespace fd`;
  if (request.kind !== 'add' && carriesFd) return `${request.kind} must not carry a file descriptor`;
  if (request.kind === 'keep' && snapshotSent) return `KeepWorkload ${request.uid} after SnapshotSent`;
  if (request.kind === 'snapshotSent' && snapshotSent) return 'duplicate SnapshotSent';
  return undefined;
}

export interface ZdsClientOptions {
  /** The node agent's socket (`INPOD_UDS`). */
  readonly path: string;
  readonly handler: ZdsHandler;
  readonly logger: Logger;
  /** Closes a received fd the handler will not own (injected for tests; the sys closeFd in production). */
  readonly closeFd: (fd: number) => void;
}

export interface ZdsClient extends Handle {
  /** Resolves when the client has stopped: closed, or a protocol error (then with that error's text). */
  readonly stopped: Promise<string | undefined>;
}

class ProtocolError extends Error {}

export function startZdsClient(options: ZdsClientOptions): ZdsClient {
  const log = options.logger.child({ component: 'zds' });
  const backoff = new Backoff(RECONNECT);
  const abort = new AbortController();
  let connection: SeqpacketConnection | undefined;
  let closing = false;

  const closeFd = (fd: number) => {
    if (fd < 0) return;
    try {
      options.closeFd(fd);
    } catch (err) {
      log.warn({ fd, err: errorMessage(err) }, 'closing a received fd failed');
    }
  };

  /** One connection's life; resolves when it ends (peer closed, IO error, or close()), throws ProtocolError. */
  const serve = async (conn: SeqpacketConnection): Promise<void> => {
    await conn.send(encodeZdsHello());
    options.handler.connectionStarted();
    backoff.reset();
    log.info({ path: options.path }, 'connected to the node agent');
    let snapshotSent = false;
    for (;;) {
      const message = await conn.recv(ZDS_RECV_BYTES);
      if (message === null) {
        log.info('the node agent closed the ZDS connection');
        return;
      }
      if (message.truncated) throw new Error(`a ZDS message did not fit in ${ZDS_RECV_BYTES} bytes (or its control data was truncated)`);
      const decoded = decodeWorkloadRequest(message.data);
      if (!decoded.ok) {
        closeFd(message.fd);
        throw new ProtocolError(decoded.errors.join('; '));
      }
      const request = decoded.value;
      const violation = zdsViolation(snapshotSent, request, message.fd >= 0);
      if (violation) {
        closeFd(message.fd);
        await conn.send(encodeAck(violation)).catch(() => {});
        throw new ProtocolError(violation);
      }
      log.debug({ request: request.kind, uid: 'uid' in request ? request.uid : undefined }, 'ZDS request');
      let error: string | undefined;
      switch (request.kind) {
        case 'add':
          error = await options.handler.add(request.uid, request.workloadInfo, message.fd);
          break;
        case 'keep':
          error = await options.handler.keep(request.uid);
          break;
        case 'del':
          error = await options.handler.del(request.uid);
          break;
        case 'snapshotSent':
          snapshotSent = true;
          error = await options.handler.snapshotSent();
          break;
      }
      if (error) log.warn({ code: ErrorCode.PROXY_START_FAILED, request: request.kind, err: error }, 'ZDS request NACKed');
      await conn.send(encodeAck(error));
    }
  };

  const run = async (): Promise<string | undefined> => {
    while (!closing) {
      let conn: SeqpacketConnection;
      try {
        conn = SeqpacketConnection.connect(options.path);
      } catch (err) {
        const delay = backoff.next();
        log.warn({ code: ErrorCode.ZDS_CONNECTION_FAILED, path: options.path, err: errorMessage(err), retryMs: delay }, 'cannot connect to the node agent');
        await sleep(delay, undefined, { signal: abort.signal }).catch(() => {});
        continue;
      }
      connection = conn;
      let protocolError: string | undefined;
      try {
        await serve(conn);
      } catch (err) {
        if (err instanceof ProtocolError) {
          protocolError = err.message;
          log.error({ code: ErrorCode.ZDS_PROTOCOL_ERROR, err: err.message }, 'ZDS protocol error: the ZDS client stops');
        } else if (!closing) {
          log.warn({ code: ErrorCode.ZDS_CONNECTION_FAILED, errCode: errorCode(err), err: errorMessage(err) }, 'ZDS connection failed');
        }
      }
      await conn.close().catch(() => {});
      connection = undefined;
      options.handler.connectionLost();
      if (protocolError !== undefined) return protocolError;
      if (closing) break;
      await sleep(backoff.next(), undefined, { signal: abort.signal }).catch(() => {});
    }
    return undefined;
  };

  const stopped = run();
  let closed: Promise<void> | undefined;
  return {
    stopped,
    close: () =>
      (closed ??= (async () => {
        closing = true;
        abort.abort();
        await connection?.close().catch(() => {});
        await stopped;
      })()),
  };
}
