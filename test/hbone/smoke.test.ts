import test from 'ava';
import { createHboneClient } from '../../src/hbone/client.ts';
import { forwardToTarget } from '../../src/hbone/forward.ts';
import { startHboneServer } from '../../src/hbone/server.ts';
import { testPki } from '../helpers/pki.ts';
import { echo, tcpServer } from '../helpers/tcp.ts';

test('smoke: one tunnel echoes', async (t) => {
  const pki = testPki();
  const target = await tcpServer(echo);
  const server = await startHboneServer({ host: '127.0.0.1', port: 0, certificate: await pki.cert('ns', 'server'), handler: forwardToTarget() });
  const client = createHboneClient({ certificates: pki.certificates });
  const tunnel = await client.connect({ source: pki.id('ns', 'client'), expectedIdentities: [pki.id('ns', 'server')], address: { host: '127.0.0.1', port: server.address().port }, authority: `127.0.0.1:${target.port}` });
  tunnel.stream.end('hello');
  const chunks: Buffer[] = [];
  for await (const c of tunnel.stream) chunks.push(c as Buffer);
  t.is(Buffer.concat(chunks).toString(), 'hello');
  await client.close();
  await server.close();
  await target.close();
  await pki.close();
});
