import { createHash, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { fail, ok, type Result } from '../core/result.ts';
import {
  bits, bool, children, decode, encode, explicit, extension, isContext, name, oid, Oid, oidOf,
  primitiveBytes, raw, sequenceElements, seq, set, smallInt, time, unsignedInt, generalNames, type Asn1,
} from './der.ts';
import { derToPem, pemToDer } from './pem.ts';

/** An ECDSA P-256 key pair, as Istio's workload keys are. */
export function generateKeyPair(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

export function privateKeyPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }) as string;
}

const ECDSA_SHA256 = seq([oid(Oid.ecdsaWithSha256)]);

function signed(tbs: Asn1, key: KeyObject): Buffer {
  const tbsDer = encode(tbs);
  const signature = sign('sha256', tbsDer, key);
  return encode(seq([raw(tbsDer), ECDSA_SHA256, bits(signature)]));
}

/** A PKCS#10 CSR with an empty subject and one critical URI SubjectAltName (reference ztunnel.md §2.4). */
export function buildCsrPem(privateKey: KeyObject, uris: readonly string[]): string {
  const publicKey = createPublicKey(privateKey);
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const extensions = seq([extension(Oid.subjectAltName, true, generalNames(uris))]);
  // attributes [0] IMPLICIT SET OF Attribute: the context tag stands in for the SET tag.
  const attributes = explicit(0, seq([oid(Oid.extensionRequest), set([extensions])]));
  const info = seq([smallInt(0), name([]), raw(spki), attributes]);
  return derToPem('CERTIFICATE REQUEST', signed(info, privateKey));
}

export interface ParsedCsr {
  readonly publicKey: KeyObject;
  readonly uris: readonly string[];
}

const CSR_SIGNATURE_ALGORITHMS = new Set<string>([Oid.ecdsaWithSha256, Oid.ecdsaWithSha384, Oid.sha256WithRsa]);

/** Parses a PEM CSR, checks its self-signature, and returns its key and requested URI SANs. */
export function parseCsrPem(pem: string): Result<ParsedCsr> {
  const der = pemToDer(pem, 'CERTIFICATE REQUEST');
  if (!der) return fail('csr: not a PEM CERTIFICATE REQUEST');
  try {
    const [infoDer, algDer, sigDer] = sequenceElements(der);
    if (!infoDer || !algDer || !sigDer) return fail('csr: expected info, algorithm and signature');
    const algorithm = oidOf(children(decode(algDer))[0]);
    if (!algorithm || !CSR_SIGNATURE_ALGORITHMS.has(algorithm)) return fail(`csr: unsupported signature algorithm ${algorithm}`);
    const hash = algorithm === Oid.ecdsaWithSha384 ? 'sha384' : 'sha256';
    const [, spkiDer] = sequenceElements(infoDer).slice(1);
    if (!spkiDer) return fail('csr: missing subjectPublicKeyInfo');
    const publicKey = createPublicKey({ key: spkiDer, format: 'der', type: 'spki' });
    const signature = primitiveBytes(decode(sigDer)).subarray(1); // drop the unused-bits byte
    if (!verify(hash, infoDer, publicKey, signature)) return fail('csr: signature does not verify');
    return ok({ publicKey, uris: csrUris(decode(infoDer)) });
  } catch (err) {
    return fail(`csr: malformed DER (${err instanceof Error ? err.message : String(err)})`);
  }
}

function csrUris(info: Asn1): string[] {
  const attributes = children(info).find((node) => isContext(node, 0));
  const uris: string[] = [];
  for (const attribute of children(attributes)) {
    const [type, values] = children(attribute);
    if (oidOf(type) !== Oid.extensionRequest) continue;
    for (const extensions of children(values)) {
      for (const ext of children(extensions)) {
        const parts = children(ext);
        if (oidOf(parts[0]) !== Oid.subjectAltName) continue;
        const generalNames = decode(primitiveBytes(parts[parts.length - 1]));
        for (const gn of children(generalNames)) {
          if (isContext(gn, 6)) uris.push(primitiveBytes(gn).toString('latin1'));
        }
      }
    }
  }
  return uris;
}

export interface CertificateSpec {
  readonly subject: ReadonlyArray<readonly [string, string]>;
  /** The issuer's Name: attributes, or the DER of an existing Name. */
  readonly issuer: ReadonlyArray<readonly [string, string]> | Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly publicKey: KeyObject;
  readonly signingKey: KeyObject;
  /** The issuer's public key, for the authority key identifier (the subject's own for a root). */
  readonly issuerPublicKey: KeyObject;
  readonly isCa: boolean;
  /** URI SANs; a leaf with an empty subject carries them as a critical extension. */
  readonly uris?: readonly string[];
  /** DNS SANs, for serving certificates (the control plane's gRPC port). */
  readonly dnsNames?: readonly string[];
}

function keyIdentifier(key: KeyObject): Buffer {
  const spki = key.export({ type: 'spki', format: 'der' });
  return createHash('sha1').update(spki).digest();
}

/** Builds and signs an X.509 v3 certificate, returning PEM. */
export function buildCertificatePem(spec: CertificateSpec): string {
  const serial = randomBytes(16);
  serial[0] = (serial[0] as number) & 0x7f;
  const extensions: Asn1[] = [];
  if (spec.isCa) {
    extensions.push(extension(Oid.basicConstraints, true, seq([bool(true)])));
    // keyCertSign, cRLSign, digitalSignature
    extensions.push(extension(Oid.keyUsage, true, bits(Buffer.of(0x86), 1)));
  } else {
    extensions.push(extension(Oid.basicConstraints, true, seq([])));
    // digitalSignature, keyEncipherment
    extensions.push(extension(Oid.keyUsage, true, bits(Buffer.of(0xa0), 5)));
    extensions.push(extension(Oid.extKeyUsage, false, seq([oid(Oid.serverAuth), oid(Oid.clientAuth)])));
  }
  extensions.push(extension(Oid.subjectKeyIdentifier, false, octetsOf(keyIdentifier(spec.publicKey))));
  extensions.push(extension(Oid.authorityKeyIdentifier, false, seq([contextPrimitive(0, keyIdentifier(spec.issuerPublicKey))])));
  const uris = spec.uris ?? [];
  const dnsNames = spec.dnsNames ?? [];
  if (uris.length + dnsNames.length > 0) {
    extensions.push(extension(Oid.subjectAltName, spec.subject.length === 0, generalNames(uris, dnsNames)));
  }
  const tbs = seq([
    explicit(0, smallInt(2)),
    unsignedInt(serial),
    ECDSA_SHA256,
    spec.issuer instanceof Uint8Array ? raw(spec.issuer) : name(spec.issuer),
    seq([time(spec.notBefore), time(spec.notAfter)]),
    name(spec.subject),
    raw(spec.publicKey.export({ type: 'spki', format: 'der' })),
    explicit(3, seq(extensions)),
  ]);
  return derToPem('CERTIFICATE', signed(tbs, spec.signingKey));
}

function octetsOf(bytes: Buffer): Asn1 {
  return raw(Buffer.concat([Buffer.of(0x04, bytes.length), bytes]));
}

function contextPrimitive(tag: number, bytes: Buffer): Asn1 {
  return raw(Buffer.concat([Buffer.of(0x80 | tag, bytes.length), bytes]));
}
