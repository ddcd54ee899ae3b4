import type { ConnectionOptions, PeerCertificate, TlsOptions, TLSSocket } from 'node:tls';
import { formatSpiffeId, spiffeIdEquals, type SpiffeId } from '../identity/spiffe.ts';
import { spiffeIdsFromSubjectAltName, type WorkloadCertificate } from '../identity/workload-certificate.ts';
import { ErrorCode } from '../core/error-codes.ts';
import { HboneError } from './errors.ts';
import { ALPN_H2, TLS_CIPHERS } from './settings.ts';

function common(certificate: WorkloadCertificate): TlsOptions {
  return {
    key: certificate.privateKeyPem,
    cert: certificate.chainPem.join(''),
    ca: [...certificate.rootsPem],
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    ciphers: TLS_CIPHERS,
    ALPNProtocols: [ALPN_H2],
  };
}

/**
 * Server side of HBONE mTLS: TLS 1.3, ALPN h2, a client certificate requested and verified against
 * the roots. The verdict is read by the server (`socket.authorized`) before any byte is handled, so
 * that a refusal is logged with its reason; node's own rejection would drop it silently.
 */
export function serverTlsOptions(certificate: WorkloadCertificate): TlsOptions {
  return { ...common(certificate), requestCert: true, rejectUnauthorized: false };
}

/**
 * Client side: presents the source workload's chain, sends no SNI, and accepts the server only if
 * its chain validates to the roots and one URI SAN is among the expected identities.
 */
export function clientTlsOptions(certificate: WorkloadCertificate, expected: readonly SpiffeId[]): ConnectionOptions {
  return {
    ...(common(certificate) as ConnectionOptions),
    rejectUnauthorized: true,
    checkServerIdentity: (_host: string, peer: PeerCertificate) => checkPeerIdentity(peer.subjectaltname ?? '', expected),
  };
}

/** Undefined when one SPIFFE URI SAN of the peer is expected; the error otherwise. */
export function checkPeerIdentity(subjectAltName: string, expected: readonly SpiffeId[]): HboneError | undefined {
  const presented = spiffeIdsFromSubjectAltName(subjectAltName);
  if (presented.some((id) => expected.some((want) => spiffeIdEquals(id, want)))) return undefined;
  return new HboneError(
    ErrorCode.HBONE_PEER_IDENTITY_MISMATCH,
    `peer presented [${presented.map(formatSpiffeId).join(', ')}], expected one of [${expected.map(formatSpiffeId).join(', ')}]`,
  );
}

/** The first SPIFFE id of the peer's leaf certificate, if any. */
export function peerSpiffeId(socket: TLSSocket): SpiffeId | undefined {
  const cert = socket.getPeerX509Certificate();
  return cert ? spiffeIdsFromSubjectAltName(cert.subjectAltName ?? '')[0] : undefined;
}
