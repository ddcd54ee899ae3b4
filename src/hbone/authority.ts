import { isIP } from 'node:net';
import { fail, ok, type Result } from '../core/result.ts';

/** Where an HBONE CONNECT asks to go: a socket address, or a service hostname and port. */
export type HboneTarget =
  | { readonly kind: 'address'; readonly ip: string; readonly port: number }
  | { readonly kind: 'hostname'; readonly hostname: string; readonly port: number };

const HOSTNAME = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const PORT = /^[0-9]{1,5}$/;

/** Parses `ip:port`, `[ipv6]:port` or `hostname:port`; anything else (no port, port 0, junk) is refused. */
export function parseAuthority(authority: string): Result<HboneTarget> {
  const colon = authority.lastIndexOf(':');
  if (colon <= 0) return fail(`authority "${authority}" has no port`);
  const host = authority.slice(0, colon);
  const portText = authority.slice(colon + 1);
  const port = PORT.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65_535)) return fail(`authority "${authority}" has an invalid port`);
  if (host.startsWith('[') && host.endsWith(']')) {
    const ip = host.slice(1, -1);
    return isIP(ip) === 6 ? ok({ kind: 'address', ip, port }) : fail(`authority "${authority}" has an invalid IPv6 address`);
  }
  if (isIP(host) === 4) return ok({ kind: 'address', ip: host, port });
  if (host.includes(':')) return fail(`authority "${authority}" has an unbracketed IPv6 address`);
  if (HOSTNAME.test(host) && !/^[0-9.]+$/.test(host)) return ok({ kind: 'hostname', hostname: host, port });
  return fail(`authority "${authority}" has an invalid host`);
}

/** `ip:port`, bracketing IPv6. */
export function formatAuthority(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}
