import test from 'ava';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode } from '../../src/core/error-codes.ts';
import { CaFiles, CertificateAuthority } from '../../src/identity/ca.ts';
import { spiffeId } from '../../src/identity/spiffe.ts';
import { workloadCertificateFromChain } from '../../src/identity/workload-certificate.ts';
import { buildCsrPem, generateKeyPair, privateKeyPem } from '../../src/identity/x509.ts';
import { tempDir } from '../helpers/tmp.ts';

const id = spiffeId('cluster.local', 'default', 'sleep');
const uri = 'spiffe://cluster.local/ns/default/sa/sleep';

function openssl(args: string[], input?: string): string {
  return execFileSync('openssl', args, { encoding: 'utf8', ...(input ? { input } : {}), stdio: ['pipe', 'pipe', 'pipe'] });
}

test('a CSR has an empty subject and one critical URI SAN, and openssl verifies it', (t) => {
  const { privateKey } = generateKeyPair();
  const csr = buildCsrPem(privateKey, [uri]);
  const text = openssl(['req', '-noout', '-text', '-verify'], csr);
  t.regex(text, /Subject:\s*\n/);
  t.regex(text, /Subject Alternative Name: critical\s+URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/);
  t.regex(text, /NIST CURVE: P-256/);
  t.regex(text, /Signature Algorithm: ecdsa-with-SHA256/);
});

test('the CA signs a leaf for the identity with the TTL, chaining to its root (openssl verify)', async (t) => {
  const now = Date.UTC(2026, 0, 1);
  const ca = CertificateAuthority.generate('cluster.local', { now: () => now });
  const { privateKey } = generateKeyPair();
  const signed = ca.sign({ csrPem: buildCsrPem(privateKey, [uri]), identity: id, ttlSeconds: 7200 });
  if (!signed.ok) return t.fail(signed.errors.join());
  t.is(signed.value.length, 2, 'leaf + roots');
  const cert = workloadCertificateFromChain(id, privateKeyPem(privateKey), signed.value);
  t.is(cert.notBefore, now);
  t.is(cert.notAfter - cert.notBefore, 7200_000);
  const leaf = new X509Certificate(cert.chainPem[0]!);
  t.is(leaf.subjectAltName, `URI:${uri}`);
  t.false(leaf.ca);
  t.true(new X509Certificate(cert.rootsPem[0]!).ca);
  const dir = await tempDir(t, 'ambient-ca-');
  await writeFile(join(dir, 'root.pem'), cert.rootsPem.join(''));
  await writeFile(join(dir, 'leaf.pem'), cert.chainPem[0]!);
  const verified = openssl(['verify', '-attime', String(now / 1000 + 60), '-purpose', 'sslclient', '-CAfile', join(dir, 'root.pem'), join(dir, 'leaf.pem')]);
  t.regex(verified, /leaf\.pem: OK/);
  t.regex(openssl(['x509', '-noout', '-text', '-in', join(dir, 'leaf.pem')]), /Subject Alternative Name: critical/);
});

test('the CA refuses a CSR for another identity, several SANs, a too-long TTL, and garbage', (t) => {
  const ca = CertificateAuthority.generate('cluster.local');
  const { privateKey } = generateKeyPair();
  const other = ca.sign({ csrPem: buildCsrPem(privateKey, ['spiffe://cluster.local/ns/default/sa/other']), identity: id, ttlSeconds: 60 });
  t.false(other.ok);
  if (!other.ok) t.regex(other.errors[0]!, /may only request spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/);
  t.false(ca.sign({ csrPem: buildCsrPem(privateKey, [uri, uri]), identity: id, ttlSeconds: 60 }).ok);
  const long = ca.sign({ csrPem: buildCsrPem(privateKey, [uri]), identity: id, ttlSeconds: 91 * 86_400 });
  t.false(long.ok);
  if (!long.ok) t.regex(long.errors[0]!, /^validity_duration: /);
  const garbage = ca.sign({ csrPem: 'not a csr', identity: id, ttlSeconds: 60 });
  t.false(garbage.ok);
  if (!garbage.ok) t.regex(garbage.errors[0]!, /^csr: /);
});

test('the CA refuses a CSR whose signature does not verify', (t) => {
  const ca = CertificateAuthority.generate('cluster.local');
  const csr = buildCsrPem(generateKeyPair().privateKey, [uri]);
  const der = Buffer.from(csr.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  der[der.length - 3] = (der[der.length - 3] as number) ^ 0xff; // inside the signature
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  const signed = ca.sign({ csrPem: tampered, identity: id, ttlSeconds: 60 });
  t.false(signed.ok);
  if (!signed.ok) t.regex(signed.errors[0]!, /csr: (signature does not verify|malformed DER)/);
});

test('a saved CA loads back and signs leaves its old root verifies', async (t) => {
  const dir = await tempDir(t, 'ambient-ca-');
  const first = CertificateAuthority.generate('cluster.local');
  await first.save(dir);
  t.is((await readFile(join(dir, CaFiles.key), 'utf8')).split('\n')[0], '-----BEGIN PRIVATE KEY-----');
  const loaded = await CertificateAuthority.load(dir);
  t.deepEqual(loaded.rootsPem, first.rootsPem);
  const { privateKey } = generateKeyPair();
  const signed = loaded.sign({ csrPem: buildCsrPem(privateKey, [uri]), identity: id, ttlSeconds: 60 });
  if (!signed.ok) return t.fail(signed.errors.join());
  const leaf = new X509Certificate(signed.value[0]!);
  t.true(leaf.verify(new X509Certificate(first.rootsPem[0]!).publicKey));
});

test('loading a CA from a directory without its files fails with a code', async (t) => {
  const dir = await tempDir(t, 'ambient-ca-');
  await t.throwsAsync(CertificateAuthority.load(dir), { code: ErrorCode.IDENTITY_CA_LOAD_FAILED } as never);
  const a = CertificateAuthority.generate('a');
  const b = CertificateAuthority.generate('b');
  await a.save(dir);
  const other = await tempDir(t, 'ambient-ca-');
  await b.save(other);
  await writeFile(join(dir, CaFiles.key), await readFile(join(other, CaFiles.key)));
  await t.throwsAsync(CertificateAuthority.load(dir), { code: ErrorCode.IDENTITY_CA_LOAD_FAILED, message: /does not match/ } as never);
});

test('a chain whose leaf names another identity is refused', (t) => {
  const ca = CertificateAuthority.generate('cluster.local');
  const { privateKey } = generateKeyPair();
  const signed = ca.sign({ csrPem: buildCsrPem(privateKey, [uri]), identity: id, ttlSeconds: 60 });
  if (!signed.ok) return t.fail();
  const error = t.throws(() => workloadCertificateFromChain(spiffeId('cluster.local', 'default', 'other'), privateKeyPem(privateKey), signed.value));
  t.is((error as { code?: string }).code, ErrorCode.IDENTITY_CERT_MISMATCH);
});
