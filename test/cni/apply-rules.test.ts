/**
 * netns tier: the in-pod rules installed in a real network namespace with iptables-restore, read back with
 * iptables-save, exercised with a real TCP connect, and removed again.
 */
import test, { type ExecutionContext } from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { ErrorCode } from '../../src/core/index.ts';
import { applyInpodRules, InpodRulesError, removeInpodRules, type NetnsSelector } from '../../src/cni/apply-rules.ts';
import { inpodRulesConfig, inpodTableRules } from '../../src/cni/inpod-rules.ts';
import { requireNetns } from '../helpers/netns.ts';

const run = promisify(execFile);
let counter = 0;

interface Pod {
  readonly netns: NetnsSelector;
  exec(command: string, args: readonly string[]): Promise<string>;
  spawn(command: string, args: readonly string[]): ChildProcess;
}

/**
 * A pod-like namespace: lo up, and a veth pair (both ends inside) with 10.123.0.1/24 on eth0, so a connect
 * to 10.123.0.0/24 has a route (and would find nobody there without capture). Removed, with anything spawned in it, on teardown.
 */
async function createPod(t: ExecutionContext): Promise<Pod> {
  const name = `an-cni-${process.pid}-${++counter}`;
  const children = new Set<ChildProcess>();
  t.teardown(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await run('ip', ['netns', 'delete', name]).catch(() => {});
  });
  await run('ip', ['netns', 'add', name]);
  for (const args of [
    ['link', 'set', 'lo', 'up'],
    ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1'],
    ['addr', 'add', '10.123.0.1/24', 'dev', 'eth0'],
    ['link', 'set', 'eth0', 'up'],
    ['link', 'set', 'eth1', 'up'],
  ]) {
    await run('ip', ['-n', name, ...args]);
  }
  return {
    netns: { kind: 'name', name },
    exec: async (command, args) => (await run('ip', ['netns', 'exec', name, command, ...args], { encoding: 'utf8' })).stdout,
    spawn(command, args) {
      const child = spawn('ip', ['netns', 'exec', name, command, ...args], { stdio: 'pipe' });
      child.on('error', () => {});
      children.add(child);
      return child;
    },
  };
}

/** Rules of other owners that must survive apply and remove. */
async function addForeignRules(pod: Pod): Promise<void> {
  await pod.exec('iptables', ['-w', '-A', 'INPUT', '-p', 'tcp', '--dport', '9', '-j', 'ACCEPT']);
  await pod.exec('iptables', ['-w', '-t', 'mangle', '-A', 'OUTPUT', '-p', 'udp', '--dport', '9999', '-j', 'ACCEPT']);
  await pod.exec('iptables', ['-w', '-t', 'nat', '-N', 'OTHER_CHAIN']);
  await pod.exec('iptables', ['-w', '-t', 'nat', '-A', 'POSTROUTING', '-o', 'eth0', '-j', 'OTHER_CHAIN']);
  await pod.exec('ip6tables', ['-w', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '--dport', '7', '-j', 'RETURN']);
}

/** iptables-save without comments and counters. */
async function save(pod: Pod, family: 'ipv4' | 'ipv6'): Promise<string[]> {
  const out = await pod.exec(family === 'ipv4' ? 'iptables-save' : 'ip6tables-save', []);
  return out.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
}

/** The lines of a save that name an ISTIO chain, per table (`nat: -A ...`). */
function istioLines(lines: readonly string[]): string[] {
  let table = '';
  const found: string[] = [];
  for (const line of lines) {
    if (line.startsWith('*')) table = line.slice(1);
    else if (line.includes('ISTIO_')) found.push(`${table}: ${line}`);
  }
  return found;
}

/** Rule and custom-chain lines that are not ours (built-in chain headers come and go with tables). */
function foreignLines(lines: readonly string[]): string[] {
  let table = '';
  const found: string[] = [];
  for (const line of lines) {
    if (line.startsWith('*')) table = line.slice(1);
    else if ((line.startsWith('-A ') || / - \[\d+:\d+\]$/.test(line)) && !line.includes('ISTIO_')) found.push(`${table}: ${line}`);
  }
  return found;
}

function count(lines: readonly string[], line: string): number {
  return lines.filter((l) => l === line).length;
}

/** `ip route show table N` fails while the table does not exist; that reads as no routes. */
async function routes(pod: Pod, ...args: string[]): Promise<string> {
  return (await pod.exec('ip', [...args, 'route', 'show', 'table', '100']).catch(() => '')).trim();
}

async function policyRouting(pod: Pod) {
  return {
    rules: (await pod.exec('ip', ['rule', 'show'])).split('\n').filter((l) => l.includes('fwmark 0x111/0xfff lookup 100')).length,
    rules6: (await pod.exec('ip', ['-6', 'rule', 'show'])).split('\n').filter((l) => l.includes('fwmark 0x111/0xfff lookup 100')).length,
    route: await routes(pod),
    route6: await routes(pod, '-6'),
  };
}

function checkInstalledOnce(t: ExecutionContext, v4: readonly string[], v6: readonly string[]): void {
  const config = inpodRulesConfig();
  for (const [family, lines] of [
    ['ipv4', v4],
    ['ipv6', v6],
  ] as const) {
    const istio = istioLines(lines);
    for (const { table, chains, rules } of inpodTableRules(config, family)) {
      for (const chain of chains) t.is(count(istio, `${table}: :${chain} - [0:0]`), 1, `${family} ${table} ${chain} declared once`);
      t.is(count(istio, `${table}: -A PREROUTING -j ISTIO_PRERT`), 1, `${family} ${table} PREROUTING jump once`);
      t.is(count(istio, `${table}: -A OUTPUT -j ISTIO_OUTPUT`), 1, `${family} ${table} OUTPUT jump once`);
      const inChains = istio.filter((l) => l.startsWith(`${table}: -A ISTIO_`));
      t.is(inChains.length, rules.filter((r) => r.startsWith('-A ISTIO_')).length, `${family} ${table} rule count`);
    }
    t.is(
      istio.filter((l) => l.startsWith('nat: -A ISTIO_OUTPUT') && l.endsWith('-j REDIRECT --to-ports 15001')).length,
      1,
      `${family} outbound redirect once`,
    );
  }
}

const LISTENER = `
const net = process.getBuiltinModule('node:net');
const server = net.createServer((socket) => {
  socket.on('error', () => {});
  socket.end('captured ' + socket.localAddress + ':' + socket.localPort + '\\n');
});
server.listen(15001, '0.0.0.0', () => process.stdout.write('ready\\n'));
`;

const CLIENT = `
const net = process.getBuiltinModule('node:net');
const socket = net.connect({ host: '10.123.0.2', port: 80 });
let data = '';
socket.setTimeout(5000, () => { process.stderr.write('timed out'); process.exit(1); });
socket.on('error', (err) => { process.stderr.write(String(err)); process.exit(1); });
socket.on('data', (chunk) => { data += chunk; });
socket.on('end', () => { process.stdout.write(data); process.exit(0); });
`;

test('apply installs the rules once, twice is still once, TCP is redirected to 15001, remove leaves the rest', async (t) => {
  if (!requireNetns(t)) return;
  const pod = await createPod(t);
  await addForeignRules(pod);
  const before4 = foreignLines(await save(pod, 'ipv4'));
  const before6 = foreignLines(await save(pod, 'ipv6'));
  t.true(before4.length >= 4);

  await applyInpodRules(pod.netns);
  const first4 = await save(pod, 'ipv4');
  const first6 = await save(pod, 'ipv6');
  checkInstalledOnce(t, first4, first6);
  const installed = await policyRouting(pod);
  t.is(installed.rules, 1);
  t.is(installed.rules6, 1);
  t.is(installed.route, 'local default dev lo scope host');
  t.regex(installed.route6, /^local default dev lo\b/);

  await applyInpodRules(pod.netns);
  const second4 = await save(pod, 'ipv4');
  const second6 = await save(pod, 'ipv6');
  checkInstalledOnce(t, second4, second6);
  t.deepEqual(second4, first4, 'a second apply changes nothing');
  t.deepEqual(second6, first6);
  const routing = await policyRouting(pod);
  t.is(routing.rules, 1);
  t.is(routing.rules6, 1);
  t.deepEqual(foreignLines(second4), before4);

  // An outbound connect to a non-local address lands on the 15001 listener.
  const listener = pod.spawn(process.execPath, ['-e', LISTENER]);
  listener.stdout?.setEncoding('utf8');
  const [ready] = (await Promise.race([once(listener.stdout!, 'data'), once(listener, 'exit')])) as [unknown];
  t.is(ready, 'ready\n');
  const reply = await pod.exec(process.execPath, ['-e', CLIENT]);
  t.is(reply, 'captured 127.0.0.1:15001\n');

  await removeInpodRules(pod.netns);
  const after4 = await save(pod, 'ipv4');
  const after6 = await save(pod, 'ipv6');
  t.deepEqual(istioLines(after4), []);
  t.deepEqual(istioLines(after6), []);
  t.deepEqual(foreignLines(after4), before4);
  t.deepEqual(foreignLines(after6), before6);
  t.deepEqual(await policyRouting(pod), { rules: 0, rules6: 0, route: '', route6: '' });

  await t.notThrowsAsync(removeInpodRules(pod.netns), 'removing again is a no-op');
});

test('re-apply with a changed config replaces the old rules (DNS capture off removes raw)', async (t) => {
  if (!requireNetns(t)) return;
  const pod = await createPod(t);
  await applyInpodRules(pod.netns);
  t.true(istioLines(await save(pod, 'ipv4')).some((l) => l.startsWith('raw: ')));

  await applyInpodRules(pod.netns, inpodRulesConfig({ dnsCapture: false, outboundPort: 25001, ipv6: false }));
  const v4 = istioLines(await save(pod, 'ipv4'));
  t.false(v4.some((l) => l.startsWith('raw: ')));
  t.false(v4.some((l) => l.includes('15053') || l.includes('--to-ports 15001')));
  t.is(v4.filter((l) => l.endsWith('-j REDIRECT --to-ports 25001')).length, 1);
  t.is(count(v4, 'nat: -A OUTPUT -j ISTIO_OUTPUT'), 1);
  // IPv6 was not re-applied, so the earlier v6 copy is untouched; remove cleans it up regardless.
  t.true(istioLines(await save(pod, 'ipv6')).length > 0);
  await removeInpodRules(pod.netns, inpodRulesConfig({ ipv6: false }));
  t.deepEqual(istioLines(await save(pod, 'ipv4')), []);
  t.deepEqual(istioLines(await save(pod, 'ipv6')), []);
});

test('failures are InpodRulesError with stable codes', async (t) => {
  if (!requireNetns(t)) return;
  const missing: NetnsSelector = { kind: 'name', name: `an-cni-${process.pid}-missing` };
  const applyErr = await t.throwsAsync(applyInpodRules(missing), { instanceOf: InpodRulesError });
  t.is(applyErr?.code, ErrorCode.CNI_RULES_APPLY_FAILED);
  t.true(applyErr?.message.includes(missing.name));
  const removeErr = await t.throwsAsync(removeInpodRules(missing), { instanceOf: InpodRulesError });
  t.is(removeErr?.code, ErrorCode.CNI_RULES_REMOVE_FAILED);
  const badName = await t.throwsAsync(applyInpodRules({ kind: 'name', name: '../etc' }), { instanceOf: InpodRulesError });
  t.is(badName?.code, ErrorCode.CNI_RULES_APPLY_FAILED);
});
