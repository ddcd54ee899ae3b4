import { createHboneClient, type HboneClient, type HboneConnectRequest } from '../../src/hbone/client.ts';
import { forwardToTarget } from '../../src/hbone/forward.ts';
import { startHboneServer, type HboneHandler, type HboneServer } from '../../src/hbone/server.ts';
import type { Logger } from '../../src/core/logger.ts';
import { testPki, type TestPki } from './pki.ts';

export interface HboneFixture {
  readonly pki: TestPki;
  readonly server: HboneServer;
  readonly client: HboneClient;
  /** Opens a tunnel from ns/client to the fixture server, targeting `authority`. */
  connect(authority: string, overrides?: Partial<HboneConnectRequest>): ReturnType<HboneClient['connect']>;
  close(): Promise<void>;
}

/** A real HBONE server (identity ns/server) and pooled client (identity ns/client) on loopback. */
export async function hboneFixture(options: { handler?: HboneHandler; serverLog?: Logger; clientLog?: Logger; pki?: TestPki } = {}): Promise<HboneFixture> {
  const pki = options.pki ?? testPki();
  const server = await startHboneServer({
    host: '127.0.0.1',
    port: 0,
    certificate: await pki.cert('ns', 'server'),
    handler: options.handler ?? forwardToTarget(),
    ...(options.serverLog ? { logger: options.serverLog } : {}),
  });
  const client = createHboneClient({ certificates: pki.certificates, ...(options.clientLog ? { logger: options.clientLog } : {}) });
  return {
    pki,
    server,
    client,
    connect: (authority, overrides = {}) =>
      client.connect({
        source: pki.id('ns', 'client'),
        expectedIdentities: [pki.id('ns', 'server')],
        address: { host: '127.0.0.1', port: server.address().port },
        authority,
        ...overrides,
      }),
    close: async () => {
      await client.close();
      await server.close();
      await pki.close();
    },
  };
}
