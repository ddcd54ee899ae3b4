import test from 'ava';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseControlPlaneConfig } from '../../src/control-plane/config.ts';
import { startControlPlane } from '../../src/control-plane/control-plane.ts';
import type { TranslatorExtension } from '../../src/control-plane/translator.ts';
import { startXdsClient, xdsNode } from '../../src/workload-api/xds-client.ts';
import type { XdsResource } from '../../src/workload-api/xds-types.ts';
import { captureLog } from '../helpers/log.ts';
import { until } from '../helpers/prometheus.ts';
import { tempDir } from '../helpers/tmp.ts';

// The plug-in point for other resource types: an extension gets its kinds' changes and serves its own type URL.

const ROUTES = 'type.googleapis.com/ambient.test.Routes';

test('an extension receives HTTPRoute changes from the config folder and its type URL is served over delta ADS', async (t) => {
  const dir = join(await tempDir(t), 'mesh');
  await mkdir(dir);
  await writeFile(join(dir, 'route.yaml'), 'apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: reviews, namespace: bookinfo}\nspec: {parentRefs: [{kind: Service, name: reviews}]}\n');
  const seen: string[] = [];
  const routes: TranslatorExtension = {
    name: 'routes',
    kinds: ['HTTPRoute'],
    typeUrls: [ROUTES],
    apply(changes, context) {
      for (const c of changes) {
        const key = `${c.object.metadata?.namespace}/${c.object.metadata?.name}`;
        seen.push(`${c.type} ${key}`);
        if (c.type === 'delete') context.snapshot.delete(ROUTES, key);
        else context.snapshot.set(ROUTES, key, Buffer.from(JSON.stringify(c.object.metadata?.name)));
      }
    },
  };
  const config = parseControlPlaneConfig({ 'config-dir': dir, 'listen-address': '127.0.0.1', 'grpc-port': '0', 'monitoring-port': '0', 'readiness-port': '0' }, {});
  if (!config.ok) throw new Error(config.errors.join('; '));
  const cp = await startControlPlane(config.value, { logger: captureLog().logger, extensions: [routes] });
  t.teardown(() => cp.close());
  await cp.ready;
  t.deepEqual(seen, ['upsert bookinfo/reviews']);

  const received: string[] = [];
  const client = startXdsClient({
    address: `localhost:${cp.ports().grpc}`,
    rootCaPem: cp.rootCertPem(),
    alternateHostname: 'istiod.istio-system.svc',
    auth: { token: { kind: 'literal', token: 't' }, clusterId: 'Kubernetes' },
    node: xdsNode({ podName: 'waypoint-x', podNamespace: 'bookinfo', nodeName: 'n1' }),
    handlers: [{ typeUrl: ROUTES, handle: (resources: readonly XdsResource[], removed: readonly string[]) => {
      received.push(...resources.map((r) => `${r.name}=${r.value.toString()}`), ...removed.map((n) => `-${n}`));
      return [];
    } }],
    logger: captureLog().logger,
  });
  t.teardown(() => client.close());
  await client.synced;
  t.deepEqual(received, ['bookinfo/reviews="reviews"']);
  await writeFile(join(dir, 'route.yaml'), '');
  await until(() => received.includes('-bookinfo/reviews'), 'the removal to reach the client', 10_000);
  t.deepEqual(seen, ['upsert bookinfo/reviews', 'delete bookinfo/reviews']);
});
