/**
 * Pod netns discovery: the pure cgroup/stat parsers (unit), the walk over a fake procRoot whose `ns/net` links
 * point at real namespaces, the walk over the real /proc with a real process, and the in-pod rules applied
 * through a `path` netns selector (netns tier).
 */
import test, { type ExecutionContext } from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ErrorCode } from '../../src/core/index.ts';
import { applyInpodRules, InpodRulesError, removeInpodRules, type NetnsSelector } from '../../src/cni/apply-rules.ts';
import {
  addressesFromIpJson,
  addressesInNetns,
  discoverPodNetns,
  podUidFromCgroup,
  startTimeFromStat,
  type NetnsRef,
} from '../../src/cni/netns-discovery.ts';
import { closeFd, namedNetnsPath, netnsInode, openNetns, threadNetnsInode } from '../../src/sys/netns.ts';
import { captureLog } from '../helpers/log.ts';
import { requireNetns } from '../helpers/netns.ts';
import { tempDir } from '../helpers/tmp.ts';

const run = promisify(execFile);
let counter = 0;

const UID_A = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
const UID_B = '11111111-2222-3333-4444-555555555555';
const UID_C = 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee';
const UID_D = 'deadbeef-0000-1111-2222-333333333333';
const UID_E = '12345678-9abc-def0-1234-56789abcdef0';

// ---------------------------------------------------------------------------------------------- unit

const CID = '3f4e5d6c7b8a99887766554433221100ffeeddccbbaa99887766554433221100';

const cgroupCases: ReadonlyArray<[string, string, string | undefined]> = [
  ['v1 cgroupfs burstable', `12:memory:/kubepods/burstable/pod${UID_A}/${CID}\n11:cpu,cpuacct:/kubepods/burstable/pod${UID_A}/${CID}\n`, UID_A],
  ['v1 cgroupfs besteffort', `4:pids:/kubepods/besteffort/pod${UID_B}/${CID}\n`, UID_B],
  ['v1 cgroupfs guaranteed', `7:devices:/kubepods/pod${UID_C}/${CID}\n`, UID_C],
  ['v1 cgroupfs, the pod cgroup itself (pause before a container)', `3:cpuset:/kubepods/burstable/pod${UID_A}\n`, UID_A],
  [
    'v1 systemd burstable',
    `10:memory:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_A.replaceAll('-', '_')}.slice/cri-containerd-${CID}.scope\n`,
    UID_A,
  ],
  ['v1 with a name= hierarchy first', `1:name=systemd:/kubepods/besteffort/pod${UID_B}/${CID}\n0::/\n`, UID_B],
  ['v1 non-pod lines before the pod line', `13:rdma:/\n12:memory:/system.slice/containerd.service\n5:pids:/kubepods/pod${UID_C}/${CID}\n`, UID_C],
  [
    'v2 systemd burstable',
    `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_A.replaceAll('-', '_')}.slice/cri-containerd-${CID}.scope\n`,
    UID_A,
  ],
  [
    'v2 systemd besteffort (crio)',
    `0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_B.replaceAll('-', '_')}.slice/crio-${CID}.scope\n`,
    UID_B,
  ],
  ['v2 systemd guaranteed', `0::/kubepods.slice/kubepods-pod${UID_C.replaceAll('-', '_')}.slice/cri-containerd-${CID}.scope\n`, UID_C],
  ['v2 cgroupfs burstable', `0::/kubepods/burstable/pod${UID_D}/${CID}\n`, UID_D],
  ['v2 cgroupfs guaranteed', `0::/kubepods/pod${UID_E}/${CID}\n`, UID_E],
  [
    'v2 seen from inside a cgroup namespace (relative path)',
    `0::/../../kubepods-besteffort-pod${UID_E.replaceAll('-', '_')}.slice/cri-containerd-${CID}.scope\n`,
    UID_E,
  ],
  ['v2 kind/k3s nested under a prefix', `0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/x/pod${UID_D}/${CID}\n`, UID_D],
  ['static pod (32-hex UID)', `0::/kubepods/burstable/pod6c1e0c1d09b0b6f0e2d8d5e0f0a1b2c3/${CID}\n`, '6c1e0c1d09b0b6f0e2d8d5e0f0a1b2c3'],
  ['uppercase is read as lowercase', `0::/kubepods/pod${UID_A.toUpperCase()}/${CID}\n`, UID_A],
  ['v2 host daemon', '0::/system.slice/kubelet.service\n', undefined],
  ['v2 user session', '0::/user.slice/user-0.slice/session-1.scope\n', undefined],
  ['v2 root', '0::/\n', undefined],
  ['v1 host process', '12:memory:/\n11:cpu,cpuacct:/system.slice/sshd.service\n1:name=systemd:/init.scope\n', undefined],
  ['kubepods QoS slice without a pod', '0::/kubepods.slice/kubepods-burstable.slice\n', undefined],
  ['pod prefix but not a UID', '0::/kubepods/burstable/podcast/abc\n', undefined],
  ['a podman container', `0::/machine.slice/libpod-${CID}.scope\n`, undefined],
  ['empty (zombie)', '', undefined],
  ['garbage', 'not a cgroup file', undefined],
];

for (const [name, text, want] of cgroupCases) {
  test(`podUidFromCgroup: ${name}`, (t) => {
    t.is(podUidFromCgroup(text), want);
  });
}

/** A stat line with `comm` and starttime `ticks` at field 22. */
function statLine(pid: number, comm: string, ticks: number | string): string {
  // fields 3..21, then 22 = starttime, then a few more.
  const middle = ['S', '1', String(pid), String(pid), '0', '-1', '4194560', '100', '0', '0', '0', '5', '3', '0', '0', '20', '0', '1'];
  middle.push('0'); // field 21, itrealvalue
  return `${pid} (${comm}) ${middle.join(' ')} ${ticks} 1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0\n`;
}

const statCases: ReadonlyArray<[string, string, number | undefined]> = [
  ['plain comm', statLine(42, 'sleep', 123456), 123456],
  ['comm with spaces', statLine(42, 'Web Content', 77), 77],
  ['comm with ") ("', statLine(42, 'a) (b', 9001), 9001],
  ['comm ending in ")"', statLine(42, 'x)', 5), 5],
  ['comm of only parens and digits', statLine(42, ') 1 2 3 (', 31337), 31337],
  ['no closing paren', '42 (sleep S 1 42', undefined],
  ['too few fields', '42 (sleep) S 1 42 42 0', undefined],
  ['non-numeric starttime', statLine(42, 'sleep', 'x'), undefined],
  ['empty', '', undefined],
];

for (const [name, text, want] of statCases) {
  test(`startTimeFromStat: ${name}`, (t) => {
    t.is(startTimeFromStat(text), want);
  });
}

test('addressesFromIpJson: the local address of every addr_info', (t) => {
  const text = JSON.stringify([
    { ifname: 'lo', addr_info: [{ family: 'inet', local: '127.0.0.1' }, { family: 'inet6', local: '::1' }] },
    { ifname: 'eth0', addr_info: [{ family: 'inet', local: '10.1.2.3', prefixlen: 24 }] },
    { ifname: 'down0', addr_info: [] },
    { ifname: 'odd' },
  ]);
  t.deepEqual(addressesFromIpJson(text), ['127.0.0.1', '::1', '10.1.2.3']);
  t.throws(() => addressesFromIpJson('{}'));
});

// ---------------------------------------------------------------------------------------------- netns tier

/** A named namespace with lo up and `addresses` on lo; deleted on teardown. */
async function createNamespace(t: ExecutionContext, addresses: readonly string[]): Promise<string> {
  const name = `an-nd-${process.pid}-${++counter}`;
  t.teardown(() => run('ip', ['netns', 'delete', name]).then(() => {}, () => {}));
  await run('ip', ['netns', 'add', name]);
  await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  for (const address of addresses) await run('ip', ['-n', name, 'addr', 'add', address, 'dev', 'lo']);
  return name;
}

function inodeOfPath(path: string): string {
  const fd = openNetns(path);
  try {
    return netnsInode(fd);
  } finally {
    closeFd(fd);
  }
}

/**
 * The open fds of this process: all of them, and those that are namespaces (on the nsfs device, whether opened
 * as `/proc/<pid>/ns/net` or through a bind mount such as `/var/run/netns/<name>`).
 */
async function openFds(): Promise<{ all: number; netns: number }> {
  const nsfs = threadNetnsInode().split(':')[0];
  const names = await readdir('/proc/self/fd');
  let netns = 0;
  for (const name of names) {
    const dev = await stat(`/proc/self/fd/${name}`, { bigint: true }).then((s) => String(s.dev), () => '');
    if (dev === nsfs) netns++;
  }
  return { all: names.length, netns };
}

interface FakeProcess {
  readonly pid: number;
  readonly cgroup?: string;
  readonly starttime?: number;
  /** Where `ns/net` links to. */
  readonly netns?: string;
}

async function fakeProcRoot(t: ExecutionContext, processes: readonly FakeProcess[]): Promise<string> {
  const root = await tempDir(t, 'an-fake-proc-');
  await mkdir(join(root, 'self'));
  await writeFile(join(root, 'uptime'), '1.00 1.00\n');
  for (const p of processes) {
    const dir = join(root, String(p.pid));
    await mkdir(join(dir, 'ns'), { recursive: true });
    if (p.cgroup !== undefined) await writeFile(join(dir, 'cgroup'), p.cgroup);
    if (p.starttime !== undefined) await writeFile(join(dir, 'stat'), statLine(p.pid, 'comm) (x', p.starttime));
    if (p.netns !== undefined) await symlink(p.netns, join(dir, 'ns', 'net'));
  }
  return root;
}

const cgroupfs = (uid: string) => `0::/kubepods/burstable/pod${uid}/${CID}\n`;
const systemd = (uid: string) => `0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uid.replaceAll('-', '_')}.slice/cri-containerd-${CID}.scope\n`;

test.serial('a fake procRoot: oldest process per pod, namespaces without the IP, host and non-pod processes skipped, fds closed', async (t) => {
  if (!requireNetns(t)) return;
  const nsA = await createNamespace(t, ['10.124.0.1/32']);
  const nsA2 = await createNamespace(t, ['10.124.0.1/32']); // also holds A's IP, but only a younger process is in it
  const nsB = await createNamespace(t, ['10.124.0.99/32']); // not B's IP
  const nsD = await createNamespace(t, ['10.124.0.4/32']);
  const root = await fakeProcRoot(t, [
    { pid: 100, cgroup: cgroupfs(UID_A), starttime: 500, netns: namedNetnsPath(nsA) },
    { pid: 101, cgroup: systemd(UID_A), starttime: 300, netns: namedNetnsPath(nsA) }, // oldest of A
    { pid: 102, cgroup: cgroupfs(UID_A), starttime: 400, netns: namedNetnsPath(nsA) },
    { pid: 107, cgroup: cgroupfs(UID_A), starttime: 900, netns: namedNetnsPath(nsA2) },
    { pid: 110, cgroup: cgroupfs(UID_B), starttime: 10, netns: namedNetnsPath(nsB) }, // lacks its IP
    { pid: 120, cgroup: '0::/system.slice/sshd.service\n', starttime: 1, netns: namedNetnsPath(nsD) }, // not a pod
    { pid: 130, starttime: 1, netns: namedNetnsPath(nsD) }, // vanished: no cgroup
    { pid: 131, cgroup: cgroupfs(UID_D), netns: namedNetnsPath(nsD) }, // vanished: no stat
    { pid: 132, cgroup: cgroupfs(UID_D), starttime: 2, netns: '/proc/999999999/ns/net' }, // vanished: dangling ns/net
    { pid: 140, cgroup: cgroupfs(UID_C), starttime: 5, netns: `/proc/${process.pid}/ns/net` }, // hostNetwork pod
    { pid: 150, cgroup: cgroupfs(UID_E), starttime: 7, netns: namedNetnsPath(nsD) }, // a pod not asked for
  ]);
  const wantedPods = new Map<string, readonly string[]>([
    [UID_A, ['10.124.0.1']],
    [UID_B, ['10.124.0.2']],
    [UID_C, ['10.124.0.3']],
    [UID_D, ['10.124.0.4']],
  ]);
  const log = captureLog();
  const asked: NetnsRef[] = [];
  const before = await openFds();

  const found = await discoverPodNetns({
    procRoot: root,
    wantedPods,
    logger: log.logger,
    // The default (nsenter + ip), recording what it is asked.
    addressesIn: (netns) => {
      asked.push(netns);
      return addressesInNetns(netns);
    },
  });

  t.deepEqual([...found.keys()], [UID_A]);
  const a = found.get(UID_A)!;
  t.is(a.pid, 101);
  t.is(a.inode, inodeOfPath(namedNetnsPath(nsA)));
  t.is(netnsInode(a.fd), a.inode, 'the returned fd is open on the namespace');
  t.is(asked.length, 3, 'one address query per distinct pod namespace (A, A2, B); none for host, non-pod or vanished');

  const during = await openFds();
  t.is(during.netns, before.netns + 1, 'only the returned namespace fd stays open');
  t.is(during.all, before.all + 1, 'no other fd leaked');
  closeFd(a.fd);
  t.deepEqual(await openFds(), before);

  const skipped = log.records.filter((r) => r['msg'] === 'skipped process during netns discovery').map((r) => r['pid']);
  t.deepEqual(skipped.sort(), [130, 131, 132]);
  t.true(log.records.some((r) => r['pid'] === 140 && /host network namespace/.test(String(r['msg']))));
  t.true(log.records.some((r) => r['uid'] === UID_B && /lacks the pod's IPs/.test(String(r['msg']))));
});

test.serial('a fake procRoot: per-pid errors and failing address queries are skipped, never thrown, and fds are closed', async (t) => {
  if (!requireNetns(t)) return;
  const nsA = await createNamespace(t, []);
  const nsB = await createNamespace(t, []);
  const root = await fakeProcRoot(t, [
    { pid: 200, cgroup: cgroupfs(UID_A), starttime: 1, netns: namedNetnsPath(nsA) },
    { pid: 201, cgroup: cgroupfs(UID_B), starttime: 1, netns: namedNetnsPath(nsB) },
    { pid: 202, cgroup: cgroupfs(UID_C), starttime: 1, netns: namedNetnsPath(nsB) }, // B's netns claimed by another pod
    { pid: 203, cgroup: cgroupfs(UID_D), starttime: 1, netns: namedNetnsPath(nsA) },
  ]);
  const before = await openFds();
  const found = await discoverPodNetns({
    procRoot: `${root}/`,
    wantedPods: new Map([
      [UID_A, ['10.124.1.1']],
      [UID_B, ['fd00:0:0::2']],
      [UID_C, ['10.124.1.3']],
      [UID_D, ['10.124.1.4']],
    ]),
    podUidOf: async (pid) => {
      if (pid === 203) throw Object.assign(new Error('gone'), { code: 'ESRCH' });
      return podUidFromCgroup(await readFile(`${root}/${pid}/cgroup`, 'utf8'));
    },
    addressesIn: async ({ path }) => {
      if (path.includes('/200/')) throw new Error('nsenter failed');
      return ['FD00::2%eth0']; // another spelling of B's address
    },
  });
  t.deepEqual([...found.keys()], [UID_B]);
  t.is(found.get(UID_B)!.pid, 201);
  closeFd(found.get(UID_B)!.fd);
  t.deepEqual(await openFds(), before);
});

test('a procRoot that cannot be listed rejects', async (t) => {
  await t.throwsAsync(discoverPodNetns({ procRoot: '/nonexistent-proc-root', wantedPods: new Map(), hostNetnsInode: 'x' }), {
    code: 'ENOENT',
  });
});

/** Spawns `command` inside the named namespace; resolves once it printed its first line (it is then in there). */
async function spawnIn(t: ExecutionContext, ns: string): Promise<ChildProcess> {
  const child = spawn('ip', ['netns', 'exec', ns, 'sh', '-c', 'echo ready; exec sleep 30'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.on('error', () => {});
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = once(child, 'exit');
    child.kill('SIGKILL');
    await gone;
  });
  child.stdout.setEncoding('utf8');
  const [line] = (await Promise.race([once(child.stdout, 'data'), once(child, 'exit')])) as [unknown];
  if (line !== 'ready\n') throw new Error(`process in ${ns} did not start: ${String(line)}`);
  return child;
}

test.serial('the real /proc: a real process in a namespace is found, with the namespace inode of /var/run/netns/<ns>', async (t) => {
  if (!requireNetns(t)) return;
  const ns = await createNamespace(t, ['10.124.2.1/32', 'fd00:124:2::1/128']);
  const child = await spawnIn(t, ns);
  const uid = 'real-pod-uid';
  const before = await openFds();
  const found = await discoverPodNetns({
    wantedPods: new Map([[uid, ['fd00:124:2:0::1']]]),
    podUidOf: async (pid) => (pid === child.pid ? uid : undefined),
  });
  const entry = found.get(uid);
  t.truthy(entry);
  t.is(entry!.pid, child.pid!);
  t.is(entry!.inode, inodeOfPath(namedNetnsPath(ns)));
  t.not(entry!.inode, threadNetnsInode());
  t.is(netnsInode(entry!.fd), entry!.inode);
  closeFd(entry!.fd);
  t.deepEqual(await openFds(), before);

  // Asked with another IP, the namespace does not count.
  const none = await discoverPodNetns({
    wantedPods: new Map([[uid, ['10.124.2.2']]]),
    podUidOf: async (pid) => (pid === child.pid ? uid : undefined),
  });
  t.is(none.size, 0);
  t.deepEqual(await openFds(), before);
});

// ---------------------------------------------------------------------------------------------- path selector

async function istioLines(ns: string, tool: 'iptables-save' | 'ip6tables-save'): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'exec', ns, tool], { encoding: 'utf8' });
  return stdout.split('\n').filter((line) => line.includes('ISTIO_'));
}

async function markRules(ns: string): Promise<number> {
  const { stdout } = await run('ip', ['-n', ns, 'rule', 'show'], { encoding: 'utf8' });
  return stdout.split('\n').filter((l) => l.includes('fwmark 0x111/0xfff lookup 100')).length;
}

test.serial('the in-pod rules apply and remove through a path selector (/proc/<pid>/ns/net)', async (t) => {
  if (!requireNetns(t)) return;
  const ns = await createNamespace(t, ['10.124.3.1/32']);
  const child = await spawnIn(t, ns);
  const selector: NetnsSelector = { kind: 'path', path: `/proc/${child.pid}/ns/net` };

  await applyInpodRules(selector);
  const v4 = await istioLines(ns, 'iptables-save');
  t.true(v4.includes(':ISTIO_PRERT - [0:0]'), 'ISTIO_PRERT declared in the pod namespace');
  t.true(v4.includes('-A PREROUTING -j ISTIO_PRERT'), 'jumped to from PREROUTING');
  t.true((await istioLines(ns, 'ip6tables-save')).length > 0);
  t.is(await markRules(ns), 1);

  await applyInpodRules(selector);
  t.deepEqual(await istioLines(ns, 'iptables-save'), v4, 'applying twice changes nothing');

  await removeInpodRules(selector);
  t.deepEqual(await istioLines(ns, 'iptables-save'), []);
  t.deepEqual(await istioLines(ns, 'ip6tables-save'), []);
  t.is(await markRules(ns), 0);

  // A named selector on the same namespace still works.
  await applyInpodRules({ kind: 'name', name: ns });
  t.true((await istioLines(ns, 'iptables-save')).length > 0);
  await removeInpodRules({ kind: 'path', path: namedNetnsPath(ns) });
  t.deepEqual(await istioLines(ns, 'iptables-save'), []);
});

test('a path selector must be an absolute path without ".." and must exist', async (t) => {
  for (const path of ['proc/1/ns/net', '/proc/../etc/passwd', '', '/a\nb']) {
    const err = await t.throwsAsync(applyInpodRules({ kind: 'path', path }), { instanceOf: InpodRulesError });
    t.is(err?.code, ErrorCode.CNI_RULES_APPLY_FAILED);
    t.is(err?.command, 'select netns');
  }
  if (!requireNetns(t)) return;
  const missing = '/var/run/netns/an-nd-missing-namespace';
  const err = await t.throwsAsync(removeInpodRules({ kind: 'path', path: missing }), { instanceOf: InpodRulesError });
  t.is(err?.code, ErrorCode.CNI_RULES_REMOVE_FAILED);
  t.is(err?.netns, missing);
  t.regex(err?.message ?? '', /an-nd-missing-namespace/);
});
