import test from 'ava';
import { KubeConfig } from '@kubernetes/client-node';
import { ROOT_CERT_CONFIGMAP, ROOT_CERT_KEY, startRootCertPublisher } from '../../src/control-plane/root-cert-publisher.ts';
import { startFakeKube, type FakeKube } from '../../src/demo/api-server.ts';
import { captureLog } from '../helpers/log.ts';
import { until } from '../helpers/prometheus.ts';

// The root certificate ConfigMap istiod keeps in every namespace, against the fake API server.

const ROOT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

function rootIn(fake: FakeKube, ns: string): string | undefined {
  return (fake.get('configmaps', ns, ROOT_CERT_CONFIGMAP) as { data?: Record<string, string> } | undefined)?.data?.[ROOT_CERT_KEY];
}

test('every namespace gets istio-ca-root-cert; a new namespace too; a deleted or edited one is put back; a terminating namespace is left alone', async (t) => {
  const fake = await startFakeKube();
  t.teardown(() => fake.close());
  fake.create('namespaces', { metadata: { name: 'default' } });
  fake.create('namespaces', { metadata: { name: 'prod' } });
  fake.create('namespaces', { metadata: { name: 'going', deletionTimestamp: '2026-01-01T00:00:00Z' } } as Parameters<FakeKube['create']>[1]);
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(fake.kubeconfigPath);
  const log = captureLog();
  const publisher = startRootCertPublisher({ kubeConfig, rootPem: ROOT, logger: log.logger, retryMs: 50 });
  t.teardown(() => publisher.close());
  await publisher.synced;

  t.is(rootIn(fake, 'default'), ROOT);
  t.is(rootIn(fake, 'prod'), ROOT);
  t.is(rootIn(fake, 'going'), undefined, 'a namespace being deleted gets nothing');
  const cm = fake.get('configmaps', 'prod', ROOT_CERT_CONFIGMAP);
  t.is(cm?.metadata?.labels?.['istio.io/config'], 'true');

  fake.create('namespaces', { metadata: { name: 'late' } });
  await until(() => rootIn(fake, 'late') === ROOT, 'the new namespace to get the root');

  fake.delete('configmaps', 'prod', ROOT_CERT_CONFIGMAP);
  await until(() => rootIn(fake, 'prod') === ROOT, 'the deleted ConfigMap to come back');

  const edited = fake.get('configmaps', 'default', ROOT_CERT_CONFIGMAP)!;
  fake.update('configmaps', { ...edited, data: { [ROOT_CERT_KEY]: 'tampered' } } as Parameters<FakeKube['update']>[1]);
  await until(() => rootIn(fake, 'default') === ROOT, 'the edited ConfigMap to be restored');
  t.false(log.records.some((r) => r['code'] === 'CP_ROOT_CERT_PUBLISH_FAILED'));
});
