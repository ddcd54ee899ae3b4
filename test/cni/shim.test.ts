import test from 'ava';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startPluginServer, type PluginServerHandle } from '../../src/cni/plugin-server.ts';
import type { CmdAddEvent, PluginDeps } from '../../src/cni/plugin.ts';
import { runShim, SHIM } from '../helpers/cni.ts';

// Runs the real static `build/ambient-cni` (built by `make build`) against `startPluginServer` on a
// temporary socket, as a container runtime would: env + stdin in, stdout + exit code out.

const MODE = 'istio.io/dataplane-mode';

function cniEnv(socket: string, over: Record<string, string> = {}): Record<string, string> {
  return {
    AMBIENT_CNI_SOCKET: socket,
    CNI_COMMAND: 'ADD',
    CNI_CONTAINERID: 'c0ffee',
    CNI_NETNS: '/var/run/netns/cni-1234',
    CNI_IFNAME: 'eth0',
    CNI_PATH: '/opt/cni/bin',
    CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=app;K8S_POD_NAME=web-1;K8S_POD_UID=uid-1',
    ...over,
  };
}

const PREV = {
  cniVersion: '1.0.0',
  interfaces: [{ name: 'eth0', sandbox: '/var/run/netns/cni-1234' }],
  ips: [{ interface: 0, address: '10.0.0.5/24', gateway: '10.0.0.1' }],
};

function conf(over: Record<string, unknown> = {}): string {
  return JSON.stringify({
    name: 'istio-cni',
    type: 'istio-cni',
    cniVersion: '1.0.0',
    ambient_enabled: true,
    enablement_selectors: [{ podSelector: { matchLabels: { [MODE]: 'ambient' } } }],
    exclude_namespaces: ['kube-system'],
    pod_namespace: 'istio-system',
    prevResult: PREV,
    ...over,
  });
}

interface Agent {
  readonly socket: string;
  readonly server: PluginServerHandle;
  readonly events: CmdAddEvent[];
}

async function agent(t: { teardown(fn: () => Promise<void>): void }, opts: { addFails?: string } = {}): Promise<Agent> {
  const dir = await mkdtemp(join(tmpdir(), 'ambient-cni-'));
  const socket = join(dir, 'pluginevent.sock');
  const events: CmdAddEvent[] = [];
  // The Kubernetes lookup is a stub: the API server cannot run in these tests.
  const deps: PluginDeps = {
    lookupPod: async (namespace, name) => ({
      pod: { name, namespace, uid: 'uid-1', labels: { [MODE]: 'ambient' } },
      namespace: { name: namespace },
    }),
    addPodToMesh: async (event) => {
      events.push(event);
      if (opts.addFails !== undefined) throw new Error(opts.addFails);
    },
  };
  const server = await startPluginServer({ socketPath: socket, deps });
  t.teardown(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { socket, server, events };
}

test('the shim is a static executable', async (t) => {
  t.true(existsSync(SHIM), `${SHIM} is missing: run \`make build\``);
  // ldd exits 1 for static binaries on glibc; its message is what matters.
  const r = await promisify(execFile)('ldd', [SHIM]).then(
    (x) => x.stdout + x.stderr,
    (e: { stdout?: string; stderr?: string }) => `${e.stdout ?? ''}${e.stderr ?? ''}`,
  );
  t.regex(r, /not a dynamic executable/);
});

test('VERSION works with no agent and an empty environment (no PATH)', async (t) => {
  const r = await runShim({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}');
  t.is(r.code, 0);
  t.deepEqual(JSON.parse(r.stdout), { cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
});

test('no CNI_COMMAND → code 4 error JSON, exit 1', async (t) => {
  const r = await runShim({}, '');
  t.is(r.code, 1);
  const e = JSON.parse(r.stdout) as { code: number };
  t.is(e.code, 4);
});

test('ADD prints prevResult and enrols the pod; only CNI_* in the environment', async (t) => {
  const a = await agent(t);
  const r = await runShim(cniEnv(a.socket), conf());
  t.is(r.code, 0, r.stdout);
  t.deepEqual(JSON.parse(r.stdout), PREV);
  t.deepEqual(a.events, [
    {
      Netns: '/var/run/netns/cni-1234',
      PodName: 'web-1',
      PodNamespace: 'app',
      IPs: [{ Interface: 0, Address: { IP: '10.0.0.5', Mask: '////AA==' }, Gateway: '10.0.0.1' }],
    },
  ]);
});

test('without AMBIENT_CNI_SOCKET the agent socket is <cni_agent_run_dir>/pluginevent.sock from the network config, as a runtime passes no extra env', async (t) => {
  const a = await agent(t);
  const { AMBIENT_CNI_SOCKET: _ignored, ...env } = cniEnv(a.socket);
  const runDir = a.socket.slice(0, -'/pluginevent.sock'.length);
  const r = await runShim(env, conf({ cni_agent_run_dir: runDir }));
  t.is(r.code, 0, r.stdout);
  t.deepEqual(JSON.parse(r.stdout), PREV);
  t.is(a.events.length, 1, 'the agent got the ADD');

  // A run dir with no agent: the shim fails closed naming that socket, not the default.
  const missing = await runShim(env, conf({ cni_agent_run_dir: `${runDir}/nowhere` }));
  t.is(missing.code, 1);
  const e = JSON.parse(missing.stdout) as { code: number; details?: string; msg?: string };
  t.is(e.code, 11);
  t.true(`${e.msg ?? ''} ${e.details ?? ''}`.includes(`${runDir}/nowhere/pluginevent.sock`), missing.stdout);
});

test('ADD in an older version re-prints prevResult with ips[].version', async (t) => {
  const a = await agent(t);
  const r = await runShim(cniEnv(a.socket), conf({ cniVersion: '0.4.0' }));
  t.is(r.code, 0, r.stdout);
  t.deepEqual(JSON.parse(r.stdout), { ...PREV, cniVersion: '0.4.0', ips: [{ version: '4', interface: 0, address: '10.0.0.5/24', gateway: '10.0.0.1' }] });
});

test('DEL and CHECK exit 0 and print nothing', async (t) => {
  const a = await agent(t);
  for (const command of ['DEL', 'CHECK']) {
    const r = await runShim(cniEnv(a.socket, { CNI_COMMAND: command }), conf());
    t.is(r.code, 0, `${command}: ${r.stdout}`);
    t.is(r.stdout, '');
  }
  t.deepEqual(a.events, []);
});

test('agent refuses (enrolment failed) → its CNI error JSON, exit 1', async (t) => {
  const a = await agent(t, { addFails: 'no ztunnel connected' });
  const r = await runShim(cniEnv(a.socket), conf());
  t.is(r.code, 1);
  t.deepEqual(JSON.parse(r.stdout), {
    cniVersion: '1.0.0',
    code: 11,
    msg: 'istio-cni cmdAdd failed to contact node Istio CNI agent',
    details: 'no ztunnel connected',
  });
});

test('bad config → code 7 naming the field, exit 1', async (t) => {
  const a = await agent(t);
  const r = await runShim(cniEnv(a.socket), conf({ ambient_enabled: 'yes' }));
  t.is(r.code, 1);
  const e = JSON.parse(r.stdout) as { code: number; details: string };
  t.is(e.code, 7);
  t.regex(e.details, /^ambient_enabled: /);
});

test('agent down → code 11 error JSON from the shim, exit 1', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ambient-cni-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const r = await runShim(cniEnv(join(dir, 'nobody.sock')), conf());
  t.is(r.code, 1);
  const e = JSON.parse(r.stdout) as { cniVersion: string; code: number; msg: string; details: string };
  t.is(e.cniVersion, '1.0.0');
  t.is(e.code, 11);
  t.is(e.msg, 'ambient-cni: cannot reach the node agent');
  t.regex(e.details, /nobody\.sock: No such file or directory/);
});

test('agent closed after serving → code 11 from the shim', async (t) => {
  const a = await agent(t);
  await a.server.close();
  const r = await runShim(cniEnv(a.socket), conf());
  t.is(r.code, 1);
  t.is((JSON.parse(r.stdout) as { code: number }).code, 11);
});

test('malformed answer → code 11 from the shim', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ambient-cni-'));
  const socket = join(dir, 'bad.sock');
  const server = createServer((s) => {
    s.on('error', () => {});
    s.end('garbage\r\n\r\n');
  });
  server.listen(socket);
  await once(server, 'listening');
  t.teardown(async () => {
    server.close();
    await rm(dir, { recursive: true, force: true });
  });
  const r = await runShim(cniEnv(socket), conf());
  t.is(r.code, 1);
  const e = JSON.parse(r.stdout) as { code: number; details: string };
  t.is(e.code, 11);
  t.regex(e.details, /malformed answer/);
});

test('a 100 KB config with every kind of character round-trips intact', async (t) => {
  const a = await agent(t);
  const unit = 'plain "quoted" back\\slash\ttab\nnewline \u0001ctl é 😀 ';
  const big = unit.repeat(Math.ceil(100_000 / unit.length));
  const prev = { ...PREV, custom: { big } };
  // Pretty-printed with tabs so raw newlines and tabs sit between tokens too.
  const stdin = JSON.stringify(JSON.parse(conf({ prevResult: prev })), null, '\t');
  t.true(Buffer.byteLength(stdin) > 100_000);
  const r = await runShim(cniEnv(a.socket), stdin);
  t.is(r.code, 0, r.stdout.slice(0, 500));
  t.deepEqual(JSON.parse(r.stdout), prev);
});

test('the server answers Istio’s own /cmdadd event', async (t) => {
  const a = await agent(t);
  const body = {
    Netns: '/var/run/netns/cni-1234',
    PodName: 'p',
    PodNamespace: 'ns',
    IPs: [{ Interface: 2, Address: { IP: '10.0.0.5', Mask: '////AA==' }, Gateway: '10.0.0.1' }],
  };
  const post = async (payload: string): Promise<number> => {
    const { request } = await import('node:http');
    const req = request({ socketPath: a.socket, path: '/cmdadd', method: 'POST', headers: { 'content-type': 'application/json' } });
    req.end(payload);
    const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage];
    res.resume();
    await once(res, 'end');
    return res.statusCode ?? 0;
  };
  t.is(await post(JSON.stringify(body)), 200);
  t.deepEqual(a.events, [body]);
  t.is(await post('{"Netns":1}'), 400);
  t.is(a.events.length, 1);
});
