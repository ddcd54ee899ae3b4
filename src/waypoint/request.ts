/**
 * One HTTP request as the waypoint's decisions see it, the same for HTTP/1.1 and HTTP/2: the method,
 * the normalized path and raw query, the authority, lower-case headers (repeated values joined with
 * `,`, cookies with `; `), and who sent it.
 */
export interface L7Request {
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly authority: string;
  readonly scheme: 'http' | 'https';
  readonly headers: ReadonlyMap<string, string>;
  /** The service port (or workload port) the CONNECT addressed. */
  readonly port: number;
  readonly source: {
    /** SPIFFE id without `spiffe://` (`cluster.local/ns/prod/sa/web`), '' when unknown. */
    readonly principal: string;
    readonly namespace: string;
    readonly ip: string;
  };
  /** From a verified JWT (RequestAuthentication), when there is one. */
  readonly auth?: {
    readonly principal: string;
    readonly claims: Readonly<Record<string, unknown>>;
    readonly audiences: readonly string[];
    readonly presenter: string;
  };
}

/** Header values from node's IncomingHttpHeaders shape into the request's map. */
export function headerMap(headers: Readonly<Record<string, string | string[] | undefined>>): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name.startsWith(':')) continue;
    const key = name.toLowerCase();
    out.set(key, Array.isArray(value) ? value.join(key === 'cookie' ? '; ' : ',') : value);
  }
  return out;
}

/** The value of one query parameter (first occurrence, decoded), or undefined. */
export function queryParam(query: string, name: string): string | undefined {
  if (!query) return undefined;
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    const key = eq < 0 ? pair : pair.slice(0, eq);
    if (safeDecode(key) !== name) continue;
    return eq < 0 ? '' : safeDecode(pair.slice(eq + 1));
  }
  return undefined;
}

/** A cookie's value from the `cookie` header, or undefined. */
export function cookie(headers: ReadonlyMap<string, string>, name: string): string | undefined {
  const header = headers.get('cookie');
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return text;
  }
}
