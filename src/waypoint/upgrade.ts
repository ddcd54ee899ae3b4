import { request as h1request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { errorCode, errorMessage } from '../core/errors.ts';
import type { Endpoint } from './destinations.ts';
import { TunnelSocket } from '../hbone/tunnel-socket.ts';
import { TryFailure, type UpstreamOptions, type UpstreamResponse } from './upstream.ts';

/**
 * HTTP/1.1 upgrades through the waypoint, as Envoy does them with Istio's configuration (the connection
 * manager's `upgrade_configs` has `websocket` only):
 * - `Upgrade: websocket` (with `Connection: upgrade`) is routed like any request, then forwarded to the
 *   chosen endpoint over HBONE as an HTTP/1.1 upgrade; on 101 both sides are relayed as bytes until either
 *   closes, any other answer goes back as a normal response. Retries, mirrors and the route timeout after
 *   the 101 do not apply to the upgraded stream.
 * - `Upgrade: h2c` is not an upgrade at all: Envoy's HTTP/1.1 codec strips the upgrade (and
 *   `HTTP2-Settings`) and serves a plain HTTP/1.1 request.
 * - Any other token on a request that has a route is refused with 403, an empty body, response code details
 *   `upgrade_failed`, and the connection closed.
 */

export type UpgradeClass =
  | { readonly kind: 'none' }
  | { readonly kind: 'websocket' }
  | { readonly kind: 'h2c' }
  | { readonly kind: 'unsupported'; readonly token: string };

/** Pure: what an HTTP/1.1 request's `Connection` and `Upgrade` headers ask for. */
export function classifyUpgrade(headers: Readonly<Record<string, string | string[] | undefined>>): UpgradeClass {
  const connection = headers['connection'];
  const upgrade = headers['upgrade'];
  const tokens = (Array.isArray(connection) ? connection.join(',') : (connection ?? '')).split(',').map((t) => t.trim().toLowerCase());
  if (!tokens.includes('upgrade') || upgrade === undefined) return { kind: 'none' };
  const token = (Array.isArray(upgrade) ? upgrade.join(',') : upgrade).trim().toLowerCase();
  if (token === '') return { kind: 'none' };
  if (token === 'websocket') return { kind: 'websocket' };
  if (token === 'h2c') return { kind: 'h2c' };
  return { kind: 'unsupported', token };
}

/** Node's `shouldUpgradeCallback`: an h2c upgrade is served as a plain request (Envoy strips it). */
export function shouldUpgrade(req: IncomingMessage): boolean {
  const c = classifyUpgrade(req.headers);
  return c.kind === 'websocket' || c.kind === 'unsupported';
}

const UNSAFE = /[\r\n\0]/;

/**
 * Pure: the `101 Switching Protocols` head to write to the downstream, from the upstream's answer headers
 * (after the route's response header mutations). Values with CR, LF or NUL are dropped, never written.
 */
export function switchingProtocolsHead(headers: ReadonlyMap<string, string | readonly string[]>): string {
  let head = 'HTTP/1.1 101 Switching Protocols\r\n';
  for (const [name, value] of headers) {
    for (const v of typeof value === 'string' ? [value] : value) {
      if (UNSAFE.test(name) || UNSAFE.test(v)) continue;
      head += `${name}: ${v}\r\n`;
    }
  }
  return `${head}\r\n`;
}

export interface UpgradeRequest {
  readonly endpoint: Endpoint;
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  /** Hop-by-hop headers already removed; `connection` and `upgrade` are set here. */
  readonly headers: ReadonlyMap<string, string>;
  readonly upgrade: string;
  /** Aborts the attempt until the answer arrives (the route timeout); not after a 101. */
  readonly signal: AbortSignal;
  readonly traceparent: string;
  readonly clientAddress: string;
}

export type UpgradeResult =
  | { readonly kind: 'upgraded'; readonly headers: IncomingHttpHeaders; readonly socket: Duplex; readonly head: Buffer }
  | { readonly kind: 'response'; readonly response: UpstreamResponse };

export interface UpgradeConnector {
  /** One attempt; a failure before an answer is a `TryFailure`. */
  connect(r: UpgradeRequest): Promise<UpgradeResult>;
}

const hostPort = (ip: string, port: number): string => (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);

/** Upgrades over a new HBONE tunnel to `podIP:15008` per upgraded request (it becomes the byte stream). */
export function createUpgradeConnector(options: UpstreamOptions): UpgradeConnector {
  return {
    async connect(r) {
      const { workload } = r.endpoint;
      let tunnel;
      try {
        tunnel = await options.hbone.connect({
          source: options.identity,
          expectedIdentities: [{ trustDomain: workload.trustDomain || options.identity.trustDomain, namespace: workload.namespace, serviceAccount: workload.serviceAccount }],
          address: { host: r.endpoint.ip, port: options.hbonePort },
          authority: hostPort(r.endpoint.ip, r.endpoint.port),
          traceparent: r.traceparent,
          ...(r.clientAddress ? { forwarded: `for="${r.clientAddress}"` } : {}),
        });
      } catch (err) {
        throw new TryFailure({ kind: 'connect-failure' }, `HBONE to ${hostPort(r.endpoint.ip, r.endpoint.port)} failed: ${errorMessage(err)}`, errorCode(err));
      }
      const stream = tunnel.stream;
      if (r.signal.aborted) {
        stream.destroy();
        throw new TryFailure({ kind: 'per-try-timeout' }, 'aborted', 'ABORTED');
      }
      const socket = new TunnelSocket(stream);
      return new Promise((resolve, reject) => {
        const headers: Record<string, string> = { host: r.authority };
        for (const [k, v] of r.headers) headers[k] = v;
        headers['connection'] = 'Upgrade';
        headers['upgrade'] = r.upgrade;
        const req = h1request({ createConnection: () => socket as never, method: r.method, path: r.path, headers, setHost: false });
        let answered = false;
        const onAbort = () => req.destroy(new Error('upgrade aborted'));
        r.signal.addEventListener('abort', onAbort, { once: true });
        req.on('upgrade', (res: IncomingMessage, upgraded: Duplex, head: Buffer) => {
          answered = true;
          r.signal.removeEventListener('abort', onAbort);
          upgraded.on('error', () => {});
          upgraded.once('close', () => stream.destroy());
          resolve({ kind: 'upgraded', headers: res.headers, socket: upgraded, head });
        });
        req.on('response', (res: IncomingMessage) => {
          answered = true;
          res.on('error', () => {});
          res.once('close', () => {
            r.signal.removeEventListener('abort', onAbort);
            socket.destroy();
            stream.destroy();
          });
          resolve({
            kind: 'response',
            response: {
              status: res.statusCode ?? 502,
              headers: res.headers,
              body: res,
              trailers: () => undefined,
              discard: () => res.destroy(),
            },
          });
        });
        req.on('error', (err) => {
          r.signal.removeEventListener('abort', onAbort);
          socket.destroy();
          stream.destroy();
          if (answered) return;
          if (r.signal.aborted) reject(new TryFailure({ kind: 'per-try-timeout' }, 'upgrade aborted', 'ABORTED'));
          else reject(new TryFailure({ kind: 'reset' }, `upstream reset: ${errorMessage(err)}`, errorCode(err)));
        });
        req.end();
      });
    },
  };
}
