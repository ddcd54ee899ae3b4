const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n[\s\S]*?\r?\n-----END \1-----/g;

/** Splits a PEM bundle (possibly several certificates concatenated) into its blocks, each newline-terminated. */
export function splitPem(bundle: string): string[] {
  return [...bundle.matchAll(PEM_BLOCK)].map((m) => `${m[0]}\n`);
}

export function derToPem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

export function pemToDer(pem: string, label: string): Buffer | undefined {
  const match = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`).exec(pem);
  if (!match?.[1]) return undefined;
  return Buffer.from(match[1].replace(/\s+/g, ''), 'base64');
}
