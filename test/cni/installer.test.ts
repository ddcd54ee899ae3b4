/**
 * The CNI installer: the pure chaining rules (entry, primary choice, chain, unchain) and, on temp dirs, the
 * install / watch / re-install / uninstall cycle.
 */
import test from 'ava';
import { chmod, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode } from '../../src/core/index.ts';
import {
  chainedConfig,
  choosePrimaryConfig,
  CniInstallError,
  installPlugin,
  pluginEntry,
  primaryConfigCandidates,
  unchainedConfig,
  type CniInstallHandle,
  type InstallOptions,
} from '../../src/cni/installer.ts';
import { tempDir } from '../helpers/tmp.ts';

const ENTRY_JSON = `{
  "name": "ambient-cni",
  "type": "ambient-cni",
  "cniVersion": "0.3.1",
  "plugin_log_level": "info",
  "cni_agent_run_dir": "/var/run/istio-cni",
  "ambient_enabled": true,
  "enablement_selectors": [
    {
      "podSelector": {
        "matchLabels": {
          "istio.io/dataplane-mode": "ambient"
        }
      }
    },
    {
      "podSelector": {
        "matchExpressions": [
          {
            "key": "istio.io/dataplane-mode",
            "operator": "NotIn",
            "values": [
              "none"
            ]
          }
        ]
      },
      "namespaceSelector": {
        "matchLabels": {
          "istio.io/dataplane-mode": "ambient"
        }
      }
    }
  ],
  "exclude_namespaces": [
    "kube-system"
  ],
  "pod_namespace": "istio-system",
  "native_nftables": false,
  "enable_ambient_detection_retry": false
}`;

const entry = pluginEntry();
const { cniVersion: _v, ...entryInList } = entry;

const calicoList = {
  name: 'k8s-pod-network',
  cniVersion: '0.3.1',
  plugins: [
    { type: 'calico', ipam: { type: 'calico-ipam' } },
    { type: 'portmap', capabilities: { portMappings: true } },
  ],
};

function must<T>(r: { ok: true; value: T } | { ok: false; errors: readonly string[] }): T {
  if (!r.ok) throw new Error(`unexpected failure: ${r.errors.join('; ')}`);
  return r.value;
}

// ------------------------------------------------------------------------------------------------- pure

test('pluginEntry has istio-cni keys exactly, in order, with the ambient defaults', (t) => {
  t.is(JSON.stringify(entry, null, 2), ENTRY_JSON);
});

test('pluginEntry: type and name are config values (istio-cni compatible deployment)', (t) => {
  const e = pluginEntry({ type: 'istio-cni', podNamespace: 'mesh', excludeNamespaces: ['kube-system', 'x'], nativeNftables: true });
  t.is(e.type, 'istio-cni');
  t.is(e.name, 'istio-cni');
  t.is(e.pod_namespace, 'mesh');
  t.deepEqual(e.exclude_namespaces, ['kube-system', 'x']);
  t.true(e.native_nftables);
  t.is(pluginEntry({ name: 'n' }).name, 'n');
});

test('choosePrimaryConfig: first .conf/.conflist by name; skips other extensions, hidden files and our own file', (t) => {
  const names = ['99-last.conflist', 'README', '10-calico.conflist', '05-flannel.conf', 'x.json', '.10-tmp.conf', '00-ambient-cni.conflist'];
  t.is(choosePrimaryConfig(names), '05-flannel.conf');
  t.deepEqual(primaryConfigCandidates(names), ['05-flannel.conf', '10-calico.conflist', '99-last.conflist']);
  t.is(choosePrimaryConfig(['b.conflist', 'B.conf', 'a.conf']), 'B.conf'); // code-unit order, as Go
  t.is(choosePrimaryConfig(['README', 'x.json']), undefined);
  t.is(choosePrimaryConfig([]), undefined);
  t.is(choosePrimaryConfig(['02-istio-cni.conflist', '10-calico.conflist'], undefined, 'istio-cni'), '10-calico.conflist');
});

test('choosePrimaryConfig: confName picks that file only, once it exists', (t) => {
  t.is(choosePrimaryConfig(['05-flannel.conf', '10-calico.conflist'], '10-calico.conflist'), '10-calico.conflist');
  t.is(choosePrimaryConfig(['05-flannel.conf'], '10-calico.conflist'), undefined);
});

test('chainedConfig appends our entry to a list, without cniVersion', (t) => {
  const out = must(chainedConfig(JSON.stringify(calicoList), '10-calico.conflist', entry));
  t.is(out.fileName, '10-calico.conflist');
  t.deepEqual(JSON.parse(out.text), { ...calicoList, plugins: [...calicoList.plugins, entryInList] });
  t.false('cniVersion' in (JSON.parse(out.text) as { plugins: object[] }).plugins[2]!);
  t.true(out.text.endsWith('}\n'));
});

test('chainedConfig wraps a single-plugin .conf into a .conflist (exact JSON)', (t) => {
  const conf = '{"cniVersion":"0.4.0","name":"flannel","type":"flannel","delegate":{"isDefaultGateway":true}}';
  const out = must(chainedConfig(conf, '10-flannel.conf', entry));
  t.is(out.fileName, '10-flannel.conflist');
  const expected =
    JSON.stringify(
      {
        name: 'k8s-pod-network',
        cniVersion: '0.3.1',
        plugins: [{ name: 'flannel', type: 'flannel', delegate: { isDefaultGateway: true } }, entryInList],
      },
      null,
      2,
    ) + '\n';
  t.is(out.text, expected);
});

test('chainedConfig replaces prior entries of our type and leaves other types alone', (t) => {
  const old = { type: 'ambient-cni', name: 'ambient-cni', pod_namespace: 'old', cniVersion: '0.3.1' };
  const istio = { type: 'istio-cni', name: 'istio-cni' };
  const list = { ...calicoList, plugins: [calicoList.plugins[0], old, istio, calicoList.plugins[1], old] };
  const out = JSON.parse(must(chainedConfig(JSON.stringify(list), '10-calico.conflist', entry)).text) as { plugins: unknown[] };
  t.deepEqual(out.plugins, [calicoList.plugins[0], istio, calicoList.plugins[1], entryInList]);
});

test('chainedConfig is idempotent', (t) => {
  for (const [text, name] of [
    [JSON.stringify(calicoList), '10-calico.conflist'],
    ['{"cniVersion":"0.3.1","name":"f","type":"flannel"}', '10-flannel.conf'],
  ] as const) {
    const once = must(chainedConfig(text, name, entry));
    const twice = must(chainedConfig(once.text, once.fileName, entry));
    t.deepEqual(twice, once);
  }
});

test('chainedConfig names the file and the field in its errors', (t) => {
  const bad = chainedConfig('{"plugins": [', '10-broken.conflist', entry);
  t.false(bad.ok);
  if (!bad.ok) t.regex(bad.errors[0]!, /^10-broken\.conflist: invalid JSON/);
  const notList = chainedConfig('{"plugins": {}}', 'a.conflist', entry);
  t.deepEqual(notList, { ok: false, errors: ['a.conflist: plugins: must be an array'] });
  const badPlugin = chainedConfig('{"plugins": [{"type":"x"}, 3]}', 'a.conflist', entry);
  t.deepEqual(badPlugin, { ok: false, errors: ['a.conflist: plugins[1]: must be an object'] });
  const neither = chainedConfig('{"name": "x"}', 'a.conf', entry);
  t.false(neither.ok);
  t.false(chainedConfig('[]', 'a.conf', entry).ok);
  t.false(chainedConfig(JSON.stringify({ plugins: [entryInList] }), 'only-ours.conflist', entry).ok);
});

test('unchainedConfig removes only our entry and keeps the list', (t) => {
  const chained = must(chainedConfig('{"cniVersion":"0.3.1","name":"f","type":"flannel"}', '10-flannel.conf', entry));
  const istio = { type: 'istio-cni' };
  const withIstio = JSON.stringify({ ...(JSON.parse(chained.text) as object), plugins: [...(JSON.parse(chained.text) as { plugins: object[] }).plugins, istio] });
  const out = must(unchainedConfig(withIstio, 'ambient-cni', '10-flannel.conflist'));
  t.is(out.removed, 1);
  t.deepEqual(JSON.parse(out.text), { name: 'k8s-pod-network', cniVersion: '0.3.1', plugins: [{ name: 'f', type: 'flannel' }, istio] });
  const untouched = JSON.stringify(calicoList);
  t.deepEqual(must(unchainedConfig(untouched, 'ambient-cni')), { text: untouched, removed: 0 });
  const bad = unchainedConfig('nope', 'ambient-cni', 'x.conflist');
  t.false(bad.ok);
  if (!bad.ok) t.regex(bad.errors[0]!, /^x\.conflist: /);
});

// ------------------------------------------------------------------------------------------------- IO

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Node {
  readonly binDir: string;
  readonly confDir: string;
  readonly source: string;
  readonly binary: string;
  readonly kubeconfig: string;
  start(extra?: Partial<InstallOptions>): CniInstallHandle;
}

async function node(t: Parameters<typeof tempDir>[0]): Promise<Node> {
  const root = await tempDir(t, 'ambient-cni-install-');
  const binDir = join(root, 'bin');
  const confDir = join(root, 'net.d');
  const source = join(root, 'plugin-src');
  await writeFile(source, '#!/bin/sh\necho plugin\n', { mode: 0o600 });
  const kubeconfig = join(root, 'kubeconfig');
  await writeFile(kubeconfig, 'apiVersion: v1\n', { mode: 0o600 });
  const handles: CniInstallHandle[] = [];
  t.teardown(async () => {
    await Promise.all(handles.map((h) => h.close()));
  });
  return {
    binDir,
    confDir,
    source,
    binary: join(binDir, 'ambient-cni'),
    kubeconfig,
    start(extra = {}) {
      const h = installPlugin({
        binSource: source,
        cniBinDir: binDir,
        cniConfDir: confDir,
        entry,
        kubeconfigPath: kubeconfig,
        pollIntervalMs: 1000,
        debounceMs: 50,
        ...extra,
      });
      handles.push(h);
      return h;
    },
  };
}

async function pluginTypes(path: string): Promise<string[]> {
  const config = JSON.parse(await readFile(path, 'utf8')) as { plugins: Array<{ type: string }> };
  return config.plugins.map((p) => p.type);
}

test('install waits for a primary config, then chains it (mode kept) and copies the binary (0755)', async (t) => {
  const n = await node(t);
  const h = n.start();
  await waitFor('binary', async () => (await stat(n.binary)).isFile());
  t.false(h.isInstalled());

  const conf = join(n.confDir, '10-flannel.conf');
  // appears at once with its mode, as a real CNI's own installer would write it
  const staged = join(n.binDir, 'staged.conf');
  await writeFile(staged, '{"cniVersion":"0.3.1","name":"f","type":"flannel"}');
  await chmod(staged, 0o640);
  await rename(staged, conf);
  await h.installed;
  t.true(h.isInstalled());

  const list = join(n.confDir, '10-flannel.conflist');
  t.is(h.configPath(), list);
  t.deepEqual(await pluginTypes(list), ['flannel', 'ambient-cni']);
  t.is((await stat(list)).mode & 0o777, 0o640);
  t.deepEqual((await readdir(n.confDir)).sort(), ['10-flannel.conflist']);
  t.is((await stat(n.binary)).mode & 0o777, 0o755);
  t.deepEqual(await readFile(n.binary), await readFile(n.source));
});

test('install chains into confName only, and skips invalid files otherwise', async (t) => {
  const n = await node(t);
  await n.start().close(); // creates the dirs
  await writeFile(join(n.confDir, '05-broken.conflist'), '{');
  await writeFile(join(n.confDir, '10-calico.conflist'), JSON.stringify(calicoList));
  await writeFile(join(n.confDir, '20-other.conflist'), JSON.stringify(calicoList));

  const h = n.start();
  await h.installed;
  t.is(h.configPath(), join(n.confDir, '10-calico.conflist'));
  t.is(await readFile(join(n.confDir, '05-broken.conflist'), 'utf8'), '{');
  await h.close();

  const h2 = n.start({ confName: '20-other.conflist' });
  await h2.installed;
  t.is(h2.configPath(), join(n.confDir, '20-other.conflist'));
  t.deepEqual(await pluginTypes(join(n.confDir, '20-other.conflist')), ['calico', 'portmap', 'ambient-cni']);
});

test('a removed entry and a removed binary are put back; no rewrite loop', async (t) => {
  const n = await node(t);
  await n.start().close();
  const conf = join(n.confDir, '10-calico.conflist');
  await writeFile(conf, JSON.stringify(calicoList), { mode: 0o644 });
  const h = n.start();
  await h.installed;

  // stable: nothing is rewritten for longer than a poll interval
  const before = await stat(conf);
  const binBefore = await stat(n.binary);
  await new Promise((r) => setTimeout(r, 1300));
  const after = await stat(conf);
  t.is(after.mtimeMs, before.mtimeMs);
  t.is(after.ino, before.ino);
  t.is((await stat(n.binary)).ino, binBefore.ino);

  // someone rewrites the file without our entry
  await writeFile(conf, JSON.stringify(calicoList));
  await waitFor('entry back', async () => (await pluginTypes(conf)).includes('ambient-cni'), 3000);
  t.deepEqual(await pluginTypes(conf), ['calico', 'portmap', 'ambient-cni']);

  // someone removes the binary
  await unlink(n.binary);
  await waitFor('binary back', async () => (await stat(n.binary)).isFile(), 3000);
  t.is((await stat(n.binary)).mode & 0o777, 0o755);

  // someone corrupts the binary (same path, other bytes)
  await writeFile(n.binary, 'garbage');
  await waitFor('binary repaired', async () => (await readFile(n.binary)).equals(await readFile(n.source)), 3000);
  t.true(h.isInstalled());
});

test('uninstall removes our entry, the binary and the kubeconfig; other plugins stay', async (t) => {
  const n = await node(t);
  await n.start().close();
  const conf = join(n.confDir, '10-calico.conflist');
  const withIstio = { ...calicoList, plugins: [...calicoList.plugins, { type: 'istio-cni' }] };
  await writeFile(conf, JSON.stringify(withIstio), { mode: 0o600 });
  const h = n.start();
  await h.installed;
  t.deepEqual(await pluginTypes(conf), ['calico', 'portmap', 'istio-cni', 'ambient-cni']);

  await h.uninstall();
  t.deepEqual(await pluginTypes(conf), ['calico', 'portmap', 'istio-cni']);
  t.is((await stat(conf)).mode & 0o777, 0o600);
  await t.throwsAsync(stat(n.binary), { code: 'ENOENT' });
  await t.throwsAsync(stat(n.kubeconfig), { code: 'ENOENT' });
  await h.uninstall(); // again: nothing left to remove, no error
});

test('close leaves everything installed (upgrade); close before install rejects `installed` with a code', async (t) => {
  const n = await node(t);
  const early = n.start();
  await early.close();
  const err = await t.throwsAsync(early.installed, { instanceOf: CniInstallError });
  t.is(err?.code, ErrorCode.CNI_INSTALL_FAILED);

  const conf = join(n.confDir, '10-calico.conflist');
  await writeFile(conf, JSON.stringify(calicoList));
  const h = n.start();
  await h.installed;
  await h.close();
  await h.close();
  t.deepEqual(await pluginTypes(conf), ['calico', 'portmap', 'ambient-cni']);
  t.true((await stat(n.binary)).isFile());
  t.true((await stat(n.kubeconfig)).isFile());
});
