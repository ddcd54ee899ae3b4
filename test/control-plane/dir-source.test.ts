import test, { type ExecutionContext } from 'ava';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseConfigFile, startDirSource, type DirSource } from '../../src/control-plane/dir-source.ts';
import { Translator } from '../../src/control-plane/translator.ts';
import { TypeUrl } from '../../src/workload-api/proto.ts';
import { ResourceSnapshot } from '../../src/workload-api/snapshot.ts';
import { captureLog } from '../helpers/log.ts';
import { tempDir } from '../helpers/tmp.ts';
import { snapshotJson } from './golden.ts';

const snapshotJsonOf = (s: ResourceSnapshot) => snapshotJson(s).addresses;

// --config-dir: a watched folder of YAML objects feeding the same translator.

const POD = (name: string, ip: string, labels = 'app: web') => `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  labels: {${labels}}
spec: {nodeName: n1}
status: {phase: Running, podIP: ${ip}, conditions: [{type: Ready, status: "True"}]}
`;

test('parseConfigFile: documents, Lists, namespace defaulting, and each bad document skipped alone', (t) => {
  const text = [
    POD('a', '10.0.0.1'),
    'apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: shop, namespace: ignored}}\n- {apiVersion: v1, kind: Service, metadata: {name: s, namespace: shop}}',
    'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}',
    'apiVersion: v2\nkind: Pod\nmetadata: {name: b}',
    'apiVersion: v1\nkind: Pod\nmetadata: {}',
    '',
    '- just\n- a list',
  ].join('\n---\n');
  const parsed = parseConfigFile(text, 'f.yaml');
  t.false(parsed.broken);
  t.deepEqual(parsed.objects.map((o) => `${o.kind} ${o.object.metadata?.namespace ?? '-'}/${o.object.metadata?.name}`), ['Pod default/a', 'Namespace -/shop', 'Service shop/s']);
  t.deepEqual(parsed.problems, [
    'f.yaml (document 3): unknown kind "Deployment" (Namespace, Pod, Service, EndpointSlice, Node, ServiceEntry, WorkloadEntry, AuthorizationPolicy, PeerAuthentication, Gateway, GatewayClass, HTTPRoute, GRPCRoute)',
    'f.yaml (document 4): Pod needs apiVersion v1, got "v2"',
    'f.yaml (document 5): Pod needs metadata.name',
    'f.yaml (document 7): must be a Kubernetes object, got a list',
  ]);
  const broken = parseConfigFile(`${POD('a', '10.0.0.1')}---\nkey: [unclosed\n`, 'g.yaml');
  t.true(broken.broken);
  t.regex(broken.problems[0] ?? '', /^g\.yaml \(document 2\): line \d+, column \d+: /);
  t.deepEqual(parseConfigFile('apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}', 'x', ['VirtualService']).objects.length, 1, 'an extension kind is accepted');
});

interface Setup {
  readonly dir: string;
  readonly source: DirSource;
  readonly snapshot: ResourceSnapshot;
  readonly translator: Translator;
}

async function setup(t: ExecutionContext, files: Record<string, string>): Promise<Setup> {
  const dir = join(await tempDir(t), 'mesh');
  await mkdir(dir);
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  const snapshot = new ResourceSnapshot();
  const translator = new Translator({ snapshot });
  const source = startDirSource({ dir, translator, logger: captureLog().logger, debounceMs: 10 });
  t.teardown(() => source.close());
  await source.synced;
  await new Promise((resolve) => setImmediate(resolve));
  return { dir, source, snapshot, translator };
}

/** Replaces a file atomically (a hidden temporary, then a rename), as config tools and ConfigMap mounts do. */
async function replace(path: string, text: string): Promise<void> {
  const tmp = join(path, '..', `.${Math.random().toString(36).slice(2)}.tmp`);
  await writeFile(tmp, text);
  await rename(tmp, path);
}

const names = (s: ResourceSnapshot) => [...s.get(TypeUrl.address).keys()].sort();

async function eventually(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  if (!check()) throw new Error(`timed out waiting for ${what}`);
}

test('the folder is read at start and watched: added, changed and removed files become changes', async (t) => {
  const { dir, snapshot, source } = await setup(t, {
    'pods.yaml': `${POD('a', '10.0.0.1')}---\n${POD('b', '10.0.0.2')}`,
    'svc.yml': 'apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, clusterIP: 10.96.0.1, ports: [{port: 80}]}',
    '.hidden.yaml': POD('hidden', '10.0.0.9'),
    'notes.txt': 'not a config file',
  });
  t.deepEqual(names(snapshot), ['Kubernetes//Pod/default/a', 'Kubernetes//Pod/default/b', 'default/web.default.svc.cluster.local']);
  const changed: string[] = [];
  snapshot.on('change', (c) => changed.push(...c.names));
  await replace(join(dir, 'more.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'c' }, spec: {}, status: { podIP: '10.0.0.3' } }));
  await eventually(() => names(snapshot).includes('Kubernetes//Pod/default/c'), 'the new file');
  t.deepEqual(changed, ['Kubernetes//Pod/default/c'], 'only the new object is pushed');
  changed.length = 0;
  await replace(join(dir, 'pods.yaml'), `${POD('a', '10.0.0.1', 'app: other')}`);
  await eventually(() => !names(snapshot).includes('Kubernetes//Pod/default/b'), 'the removed document');
  await eventually(() => changed.includes('Kubernetes//Pod/default/a'), 'the changed pod');
  t.deepEqual([...new Set(changed)].sort(), ['Kubernetes//Pod/default/a', 'Kubernetes//Pod/default/b']);
  await rm(join(dir, 'svc.yml'));
  await eventually(() => !names(snapshot).includes('default/web.default.svc.cluster.local'), 'the removed file');
  t.true(source.reloads() >= 4);
});

test('bad input loses nothing: a broken file keeps its objects, duplicates are reported, the rest applies', async (t) => {
  const { dir, snapshot, source, translator } = await setup(t, { 'a.yaml': POD('a', '10.0.0.1'), 'b.yaml': POD('b', '10.0.0.2') });
  await replace(join(dir, 'a.yaml'), `${POD('a', '10.0.0.1')}---\nkind: [broken`);
  await replace(join(dir, 'c.yaml'), `${POD('b', '10.0.0.99')}---\n${POD('c', '10.0.0.3')}`);
  await eventually(() => names(snapshot).includes('Kubernetes//Pod/default/c'), 'c.yaml');
  t.deepEqual(names(snapshot), ['Kubernetes//Pod/default/a', 'Kubernetes//Pod/default/b', 'Kubernetes//Pod/default/c'], 'a.yaml kept its pod');
  const problems = source.problems();
  t.true(problems.some((p) => /^a\.yaml \(document 2\): line/.test(p)));
  t.true(problems.includes('a.yaml: keeping its previous objects'));
  t.true(problems.includes('c.yaml: Pod default/b is also in b.yaml; that one is used'));
  t.like((translator.object('Pod', 'default', 'b') as { status: { podIP: string } }).status, { podIP: '10.0.0.2' });
  // Fixed: the broken document goes, the file's objects stay.
  await replace(join(dir, 'a.yaml'), POD('a', '10.0.0.1'));
  await eventually(() => !source.problems().some((p) => p.startsWith('a.yaml')) && names(snapshot).length === 3, 'the fix');
  t.deepEqual(names(snapshot), ['Kubernetes//Pod/default/a', 'Kubernetes//Pod/default/b', 'Kubernetes//Pod/default/c']);
});

test('local mode: a status overlay (a waypoint controller publishing an address) survives later changes of the file', async (t) => {
  const gateway = 'apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: wp, namespace: default}\nspec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n';
  const service = (extra: string) => `apiVersion: v1\nkind: Service\nmetadata: {name: web, labels: {istio.io/use-waypoint: wp${extra}}}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n`;
  const { dir, snapshot, translator } = await setup(t, { 'gw.yaml': gateway, 'svc.yaml': service('') });
  const waypointOf = () => (snapshotJsonOf(snapshot)['default/web.default.svc.cluster.local'] as { service: { waypoint?: unknown } }).service.waypoint;
  t.is(waypointOf(), undefined, 'no address yet');
  const flushed = new Promise((resolve) => translator.once('flush', resolve));
  translator.overlayStatus('Gateway', 'default', 'wp', { addresses: [{ type: 'IPAddress', value: '10.96.0.50' }] });
  await flushed;
  t.deepEqual(waypointOf(), { destination: { kind: 'address', network: '', ip: '10.96.0.50' }, hboneMtlsPort: 15008 });
  await replace(join(dir, 'gw.yaml'), gateway.replace('listeners:', 'infrastructure: {labels: {a: b}}, listeners:'));
  await eventually(() => (translator.object('Gateway', 'default', 'wp') as { spec?: { infrastructure?: unknown } }).spec?.infrastructure !== undefined, 'the file change');
  t.truthy(waypointOf(), 'the overlay stays across a file change');
  translator.overlayStatus('Gateway', 'default', 'wp', undefined);
  await eventually(() => waypointOf() === undefined, 'the cleared overlay');
});
