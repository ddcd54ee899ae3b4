import test from 'ava';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseControlPlaneConfig } from '../../src/control-plane/config.ts';
import { startControlPlane } from '../../src/control-plane/control-plane.ts';
import { l7Extension } from '../../src/control-plane/l7/extension.ts';
import { processWaypointLauncher } from '../../src/control-plane/waypoint-launcher.ts';
import { gatewayFeed, renderOptionsFor, waypointControllerHook } from '../../src/control-plane/waypoint-hook.ts';
import { normalizeGateway } from '../../src/control-plane/waypoint-objects.ts';
import { captureLog } from '../helpers/log.ts';
import { until } from '../helpers/prometheus.ts';
import { tempDir } from '../helpers/tmp.ts';
import { snapshotJson } from './golden.ts';

/**
 * The waypoint controller inside the real control plane in local mode (`--config-dir`): a Gateway in
 * the folder starts a local waypoint process (the fixture: `ambientd waypoint` does not exist on this
 * branch), and the translator then binds the Service that asks for that waypoint to the process's
 * address, with a Workload for the waypoint itself. Removing the Gateway undoes all of it.
 */

const FIXTURE = join(import.meta.dirname, 'fixtures', 'fake-waypoint.js');
const AMBIENTD = join(import.meta.dirname, '..', '..', 'src', 'cli', 'ambientd.js');

const MESH = `
apiVersion: v1
kind: Namespace
metadata:
  name: prod
  labels:
    istio.io/dataplane-mode: ambient
---
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: prod
  labels:
    istio.io/use-waypoint: waypoint
spec:
  clusterIP: 10.96.0.10
  selector:
    app: echo
  ports:
  - name: http
    port: 80
    targetPort: 8080
`;

const GATEWAY = `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: waypoint
  namespace: prod
spec:
  gatewayClassName: istio-waypoint
  listeners:
  - name: mesh
    port: 15008
    protocol: HBONE
`;

interface Report {
  pid: number;
  env: Record<string, string>;
}

type Snapshot = ReturnType<typeof snapshotJson>['addresses'];
const serviceOf = (addresses: Snapshot) => Object.values(addresses).find((a) => (a as { kind: string; service?: { name: string } }).service?.name === 'echo') as { service: { waypoint?: { destination: unknown } } } | undefined;
const waypointWorkload = (addresses: Snapshot) => Object.values(addresses).find((a) => (a as { workload?: { name: string } }).workload?.name === 'waypoint-local') as { workload: { addresses: string[]; serviceAccount: string; namespace: string } } | undefined;

test('local mode: a Gateway in the folder runs a local waypoint; the Service bound to it gets its address; removing the Gateway stops and unbinds it', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'mesh.yaml'), MESH);
  await writeFile(join(dir, 'gateway.yaml'), GATEWAY);
  const parsed = parseControlPlaneConfig({ 'config-dir': dir, 'grpc-port': '0', 'monitoring-port': '0', 'readiness-port': '0', 'listen-address': '127.0.0.1' }, {});
  if (!parsed.ok) return t.fail(parsed.errors.join('\n'));
  const config = parsed.value;
  const log = captureLog();
  const reports: Report[] = [];
  const stopped: number[] = [];
  const feed = gatewayFeed();
  let grpcPort = 0;
  const cp = await startControlPlane(config, {
    logger: log.logger,
    extensions: [feed],
    waypointController: waypointControllerHook({
      image: 'unused',
      localCommand: ['unused'],
      feed,
      localXdsAddress: () => `localhost:${grpcPort}`,
      launcher: processWaypointLauncher({
        command: [process.execPath, FIXTURE],
        logger: log.logger,
        output: (_key, _stream, line) => {
          if (line.startsWith('{')) reports.push(JSON.parse(line) as Report);
          else if (line === 'stopping') stopped.push(reports.length);
        },
      }),
    }),
  });
  t.teardown(() => cp.close());
  // The port is known once serving; the waypoint starts right after, and reads it then.
  void cp.ready.then(() => (grpcPort = cp.ports().grpc));
  await cp.ready;
  await until(() => reports.length === 1, 'the local waypoint process started');
  t.like(reports[0]!.env, { XDS_ADDRESS: `localhost:${cp.ports().grpc}`, CA_ADDRESS: `localhost:${cp.ports().grpc}`, GATEWAY_NAME: 'waypoint', POD_NAMESPACE: 'prod', INSTANCE_IP: '127.0.10.1', TRUST_DOMAIN: 'cluster.local' });

  await until(() => serviceOf(snapshotJson(cp.snapshot).addresses)?.service.waypoint !== undefined, 'the Service is bound to the waypoint');
  const addresses = snapshotJson(cp.snapshot).addresses;
  t.like(serviceOf(addresses)?.service.waypoint, { destination: { kind: 'address', ip: '127.0.10.1' } });
  t.like(waypointWorkload(addresses)?.workload, { addresses: ['127.0.10.1'], serviceAccount: 'waypoint', namespace: 'prod' });
  t.like(cp.translator.reportOf('Service', 'prod', 'echo')?.conditions.find((c) => c.type === 'istio.io/WaypointBound'), { status: 'True' });

  // A reload of the folder (the Gateway file rewritten, with no status in it) keeps the address, and the same process.
  await writeFile(join(dir, 'gateway.yaml'), GATEWAY.replace('  namespace: prod\n', '  namespace: prod\n  labels:\n    team: books\n'));
  await until(() => cp.translator.object('Gateway', 'prod', 'waypoint')?.metadata?.labels?.['team'] === 'books', 'the rewritten Gateway is loaded');
  await until(() => cp.translator.stats().flushes > 0 && serviceOf(snapshotJson(cp.snapshot).addresses)?.service.waypoint !== undefined, 'still bound');
  t.like(cp.translator.object('Gateway', 'prod', 'waypoint'), { status: { addresses: [{ type: 'IPAddress', value: '127.0.10.1' }] } });
  t.is(reports.length, 1, 'not restarted: what the process gets did not change');

  await rm(join(dir, 'gateway.yaml'));
  await until(() => stopped.length === 1, 'the local waypoint stopped');
  await until(() => serviceOf(snapshotJson(cp.snapshot).addresses)?.service.waypoint === undefined, 'the Service is unbound');
  await until(() => waypointWorkload(snapshotJson(cp.snapshot).addresses) === undefined, 'the waypoint Workload is gone with its process');
  t.false(log.records.some((r) => r['level'] === 'error'), 'nothing failed');
});

test('renderOptionsFor: the control plane\'s names and addresses; normalizeGateway: loose YAML made safe or refused', (t) => {
  const parsed = parseControlPlaneConfig({ 'config-dir': '/x' }, { TRUST_DOMAIN: 'example.org', CLUSTER_ID: 'c1', POD_NAMESPACE: 'mesh-system' });
  if (!parsed.ok) return t.fail(parsed.errors.join('\n'));
  t.like(renderOptionsFor(parsed.value, 'img:1'), { trustDomain: 'example.org', clusterId: 'c1', xdsAddress: 'istiod.mesh-system.svc:15012', caAddress: 'istiod.mesh-system.svc:15012', image: 'img:1' });
  t.is(renderOptionsFor(parsed.value, 'img:1', 'canary').xdsAddress, 'istiod-canary.mesh-system.svc:15012');
  t.is(normalizeGateway({ metadata: {} }), undefined);
  t.is(normalizeGateway('x'), undefined);
  t.deepEqual(normalizeGateway({ metadata: { name: 'g' }, spec: { listeners: [{ port: '15008' }, null] } })?.spec, { gatewayClassName: '', listeners: [{ name: 'listener-0', port: -1, protocol: '' }, { name: 'listener-1', port: -1, protocol: '' }] });
});

test('local mode with the real `ambientd waypoint`: it runs on its own address, gets its certificate from this CA with the static token of its service account, and turns ready on this control plane\'s xDS (the L7 types included)', async (t) => {
  const dir = await tempDir(t);
  const out = await tempDir(t);
  await writeFile(join(dir, 'mesh.yaml'), MESH);
  await writeFile(join(dir, 'gateway.yaml'), GATEWAY);
  const tokens = join(out, 'tokens');
  await writeFile(tokens, '# local CA tokens\nwaypoint-secret prod/waypoint\n');
  const rootCert = join(out, 'root-cert.pem');
  const parsed = parseControlPlaneConfig(
    { 'config-dir': dir, 'grpc-port': '0', 'monitoring-port': '0', 'readiness-port': '0', 'listen-address': '127.0.0.1', 'static-tokens': tokens, 'root-cert-out': rootCert },
    {},
  );
  if (!parsed.ok) return t.fail(parsed.errors.join('\n'));
  const log = captureLog();
  const lines: string[] = [];
  const feed = gatewayFeed();
  let grpcPort = 0;
  const cp = await startControlPlane(parsed.value, {
    logger: log.logger,
    extensions: [l7Extension({ logger: log.logger }), feed],
    waypointController: waypointControllerHook({
      image: 'unused',
      localCommand: [process.execPath, AMBIENTD, 'waypoint'],
      localArgs: ['--hbone-port', '0', '--stats-port', '0', '--readiness-port', '0'],
      localBaseEnv: { PATH: process.env['PATH'] },
      localOutput: (_key, _stream, line) => void lines.push(line),
      localXdsAddress: () => `localhost:${grpcPort}`,
      feed,
    }),
  });
  t.teardown(() => cp.close());
  void cp.ready.then(() => (grpcPort = cp.ports().grpc));
  await cp.ready;
  const startedLine = () => lines.map((l) => (l.startsWith('{') ? (JSON.parse(l) as Record<string, unknown>) : {})).find((r) => r['msg'] === 'waypoint started');
  await until(() => startedLine() !== undefined, `the waypoint started: ${lines.slice(-5).join('\n')}`, 20_000);
  const started = startedLine()!;
  t.is(started['identity'], 'spiffe://cluster.local/ns/prod/sa/waypoint');
  const records = () => lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.like(records().find((r) => r['msg'] === 'certificate issued'), { identity: 'spiffe://cluster.local/ns/prod/sa/waypoint' }, 'its certificate came from this CA, with its static token');
  t.like(records().find((r) => r['msg'] === 'HBONE listening'), { address: '127.0.10.1' }, 'on its own address');
  await until(() => cp.xdsStats().streams >= 1, 'it holds an xDS stream to this control plane');
  // With the L7 types served as ambientd control-plane serves them, every type it asks for is answered: ready.
  const readiness = `http://127.0.10.1:${started['readiness'] as number}/healthz/ready`;
  let body = '';
  await until(async () => {
    const res = await fetch(readiness);
    body = await res.text();
    return res.status === 200;
  }, 'the waypoint is ready', 20_000).catch((err: Error) => {
    throw new Error(`${err.message}; readiness says: ${body}`);
  });
  t.false(lines.some((l) => l.includes('"level":"error"') || l.includes('"level":"fatal"')), lines.filter((l) => l.includes('error')).join('\n'));
});
