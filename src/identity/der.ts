import forge from 'node-forge';

/**
 * DER building and reading for the few X.509 / PKCS#10 structures we create. node-forge supplies the
 * ASN.1 codec; its certificate and CSR classes are RSA-only, so keys and signatures come from
 * node:crypto (ECDSA P-256, as Istio uses).
 */
const { asn1 } = forge;
export type Asn1 = forge.asn1.Asn1;

const U = asn1.Class.UNIVERSAL;
const T = asn1.Type;

export const Oid = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  extensionRequest: '1.2.840.113549.1.9.14',
  subjectAltName: '2.5.29.17',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  basicConstraints: '2.5.29.19',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  organization: '2.5.4.10',
  commonName: '2.5.4.3',
} as const;

const toBinary = (bytes: Uint8Array): string => Buffer.from(bytes).toString('binary');
const fromBinary = (s: string): Buffer => Buffer.from(s, 'binary');

export const seq = (items: Asn1[]): Asn1 => asn1.create(U, T.SEQUENCE, true, items);
export const set = (items: Asn1[]): Asn1 => asn1.create(U, T.SET, true, items);
export const oid = (id: string): Asn1 => asn1.create(U, T.OID, false, asn1.oidToDer(id).getBytes());
export const octets = (bytes: Uint8Array): Asn1 => asn1.create(U, T.OCTETSTRING, false, toBinary(bytes));
export const bits = (bytes: Uint8Array, unusedBits = 0): Asn1 =>
  asn1.create(U, T.BITSTRING, false, String.fromCharCode(unusedBits) + toBinary(bytes));
export const bool = (value: boolean): Asn1 => asn1.create(U, T.BOOLEAN, false, value ? '\xff' : '\x00');
export const smallInt = (n: number): Asn1 => asn1.create(U, T.INTEGER, false, asn1.integerToDer(n).getBytes());
export const utf8 = (s: string): Asn1 => asn1.create(U, T.UTF8, false, forge.util.encodeUtf8(s));
export const explicit = (tag: number, inner: Asn1): Asn1 => asn1.create(asn1.Class.CONTEXT_SPECIFIC, tag, true, [inner]);
export const raw = (der: Uint8Array): Asn1 => asn1.fromDer(toBinary(der));

/** A positive INTEGER from big-endian bytes (a serial number). */
export function unsignedInt(bytes: Uint8Array): Asn1 {
  const body = bytes[0] !== undefined && bytes[0] >= 0x80 ? Buffer.concat([Buffer.of(0), bytes]) : Buffer.from(bytes);
  return asn1.create(U, T.INTEGER, false, toBinary(body));
}

/** X.509 Time: UTCTime before 2050, GeneralizedTime from then on (RFC 5280 §4.1.2.5). */
export function time(date: Date): Asn1 {
  return date.getUTCFullYear() < 2050
    ? asn1.create(U, T.UTCTIME, false, asn1.dateToUtcTime(date))
    : asn1.create(U, T.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(date));
}

/** A Name with the given attributes in order; an empty list gives the empty Name. */
export function name(attributes: ReadonlyArray<readonly [string, string]>): Asn1 {
  return seq(attributes.map(([type, value]) => set([seq([oid(type), utf8(value)])])));
}

export function extension(id: string, critical: boolean, value: Asn1): Asn1 {
  const parts = [oid(id)];
  if (critical) parts.push(bool(true));
  parts.push(octets(encode(value)));
  return seq(parts);
}

/** GeneralNames with URI entries ([6] IA5String) and DNS entries ([2] IA5String). */
export function generalNames(uris: readonly string[], dnsNames: readonly string[] = []): Asn1 {
  return seq([
    ...dnsNames.map((dns) => asn1.create(asn1.Class.CONTEXT_SPECIFIC, 2, false, dns)),
    ...uris.map((uri) => asn1.create(asn1.Class.CONTEXT_SPECIFIC, 6, false, uri)),
  ]);
}

export function encode(value: Asn1): Buffer {
  return fromBinary(asn1.toDer(value).getBytes());
}

export function decode(der: Uint8Array): Asn1 {
  // Options beyond `strict` exist at runtime but not in @types/node-forge.
  return (asn1.fromDer as unknown as (bytes: string, options: object) => Asn1)(toBinary(der), { strict: true, parseAllBytes: true, decodeBitStrings: false });
}

export function children(node: Asn1 | undefined): Asn1[] {
  return node && Array.isArray(node.value) ? (node.value as Asn1[]) : [];
}

export function primitiveBytes(node: Asn1 | undefined): Buffer {
  return node && typeof node.value === 'string' ? fromBinary(node.value) : Buffer.alloc(0);
}

export function oidOf(node: Asn1 | undefined): string | undefined {
  if (!node || node.type !== T.OID || typeof node.value !== 'string') return undefined;
  return asn1.derToOid(node.value);
}

export function isContext(node: Asn1 | undefined, tag: number): boolean {
  return node?.tagClass === asn1.Class.CONTEXT_SPECIFIC && node.type === tag;
}

/** The raw bytes of each top-level element inside a DER SEQUENCE, as they appear on the wire. */
export function sequenceElements(der: Uint8Array): Buffer[] {
  const outer = readTlv(der, 0);
  if (!outer || der[0] !== 0x30) throw new Error('not a DER SEQUENCE');
  const elements: Buffer[] = [];
  for (let at = outer.contentStart; at < outer.end; ) {
    const tlv = readTlv(der, at);
    if (!tlv || tlv.end > outer.end) throw new Error('truncated DER element');
    elements.push(Buffer.from(der.subarray(at, tlv.end)));
    at = tlv.end;
  }
  return elements;
}

function readTlv(der: Uint8Array, at: number): { contentStart: number; end: number } | undefined {
  if (at + 2 > der.length) return undefined;
  let length = der[at + 1] as number;
  let contentStart = at + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4 || contentStart + count > der.length) return undefined;
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + (der[contentStart + i] as number);
    contentStart += count;
  }
  const end = contentStart + length;
  return end <= der.length ? { contentStart, end } : undefined;
}
