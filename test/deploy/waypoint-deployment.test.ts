import test from 'ava';
import type { V1Container, V1Deployment, V1Service } from '@kubernetes/client-node';
import { decideWaypoint, waypointGateway, type WaypointObjects } from '../../src/control-plane/waypoint-objects.ts';
import { Env } from '../../src/workload-api/env.ts';
import { parse as parseWaypointConfig, WaypointEnv } from '../../src/waypoint/config.ts';
import { loadManifests, validateManifest, type KubeObject } from '../helpers/manifests.ts';

/**
 * The waypoint's manifests are made at run time by the control plane's waypoint controller, not kept in deploy/:
 * here the objects it renders for `ambientctl waypoint apply -n prod` are held to the same standard as deploy/'s
 * (strict Kubernetes schemas; the environment parses with the waypoint's own parser; ports, probes and scrape
 * annotations are the waypoint's), with deploy/control-plane.yaml's image and xDS address.
 */

const controlPlane = loadManifests().find((m) => m.object.kind === 'Deployment' && m.object.metadata.name === 'istiod')!.object as unknown as V1Deployment;
const cpContainer = controlPlane.spec!.template.spec!.containers[0]!;
const cpEnv = Object.fromEntries((cpContainer.env ?? []).map((e) => [e.name, e.value]));

function render(): WaypointObjects {
  const decision = decideWaypoint(waypointGateway({ name: 'waypoint', namespace: 'prod' }), {
    clusterDomain: 'cluster.local',
    trustDomain: cpEnv['TRUST_DOMAIN']!,
    clusterId: cpEnv['CLUSTER_ID']!,
    xdsAddress: `istiod.${controlPlane.metadata!.namespace}.svc:15012`,
    caAddress: `istiod.${controlPlane.metadata!.namespace}.svc:15012`,
    image: cpEnv['WAYPOINT_IMAGE']!,
  });
  if (decision.kind !== 'deploy') throw new Error(`the controller would not deploy: ${JSON.stringify(decision)}`);
  return decision.objects;
}

const FIELD_VALUES: Record<string, string> = {
  'metadata.name': 'waypoint-5d8f7-x2x9q',
  'metadata.namespace': 'prod',
  'spec.nodeName': 'node-1',
  'spec.serviceAccountName': 'waypoint',
  'status.podIP': '10.244.1.7',
  'status.hostIP': '192.168.0.11',
};

function envOf(container: V1Container): Record<string, string> {
  return Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? FIELD_VALUES[e.valueFrom?.fieldRef?.fieldPath ?? ''] ?? '<ref>']));
}

test('the waypoint controller\'s ServiceAccount, Deployment and Service are valid against the Kubernetes schemas, strictly', async (t) => {
  const objects = render();
  for (const object of [objects.serviceAccount, objects.deployment, objects.service]) {
    t.deepEqual(await validateManifest(object as unknown as KubeObject), [], `${object.kind}/${object.metadata.name}`);
  }
});

test('the waypoint Deployment: our image, its environment parses with the waypoint\'s parser, ports, probes and scrape annotations are the waypoint\'s', (t) => {
  const deployment = render().deployment as unknown as V1Deployment;
  const pod = deployment.spec!.template;
  const container = pod.spec!.containers[0]!;
  t.is(container.image, cpContainer.image, 'the image of deploy/ (ambientd is on its PATH)');
  t.deepEqual([...(container.command ?? []), ...(container.args ?? [])], ['ambientd', 'waypoint']);

  const env = envOf(container);
  const parsed = parseWaypointConfig({}, env);
  if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
  const config = parsed.value;
  t.is(config.namespace, 'prod');
  t.is(config.serviceAccount, 'waypoint');
  t.is(config.workloadApi.xdsAddress, 'https://istiod.istio-system.svc:15012');

  // What it sets that the waypoint does not read (Istio's pilot-agent reads them); pinned so a change is seen.
  const reads = new Set<string>([...Object.values(WaypointEnv), ...Object.values(Env)]);
  const unread = Object.keys(env).filter((name) => !reads.has(name) && !name.startsWith('ISTIO_META_')).sort();
  t.deepEqual(unread, ['CLUSTER_DOMAIN', 'GATEWAY_NAME', 'HOST_IP']);

  const ports = new Map((container.ports ?? []).map((p) => [p.containerPort, p.name]));
  t.true(ports.has(config.statsPort));
  t.true(ports.has(config.readinessPort));
  t.is(container.readinessProbe?.httpGet?.port, config.readinessPort);
  t.is(container.readinessProbe?.httpGet?.path, '/healthz/ready');
  const annotations = pod.metadata!.annotations ?? {};
  t.is(annotations['prometheus.io/scrape'], 'true');
  t.is(annotations['prometheus.io/port'], String(config.statsPort));
  t.is(annotations['prometheus.io/path'], '/stats/prometheus');
  // The root certificate and token are where the waypoint's environment says.
  const mountOf = (path: string) => (container.volumeMounts ?? []).find((m) => path.startsWith(`${m.mountPath}/`));
  t.is(pod.spec!.volumes?.find((v) => v.name === mountOf(env['XDS_ROOT_CA']!)?.name)?.configMap?.name, 'istio-ca-root-cert');
  t.is(pod.spec!.volumes?.find((v) => v.name === mountOf(env['AUTH_TOKEN']!)?.name)?.projected?.sources?.[0]?.serviceAccountToken?.audience, 'istio-ca');

  const service = render().service as unknown as V1Service;
  t.true((service.spec!.ports ?? []).some((p) => p.port === config.hbonePort), 'the Service carries HBONE');
});
