import test from 'ava';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { startWaypointController, type ObjectFeed } from '../../src/control-plane/waypoint-controller.ts';
import { localWaypointEnv, loopbackAllocator, processWaypointLauncher } from '../../src/control-plane/waypoint-launcher.ts';
import { decideWaypoint, programmedCondition, waypointGateway, type Gateway, type GatewayStatus, type WaypointRenderOptions } from '../../src/control-plane/waypoint-objects.ts';
import type { InformerEvents } from '../../src/workload-api/kube/informer.ts';
import { captureLog } from '../helpers/log.ts';
import { until } from '../helpers/prometheus.ts';

/**
 * Local mode: the waypoint controller's decision starts real local processes through the production
 * launcher. The launched program is a small fixture that reports its environment and can be killed
 * at will (the launcher runs whatever command it is given); waypoint-hook.test.ts runs the real
 * `ambientd waypoint`.
 */

const FIXTURE = join(import.meta.dirname, 'fixtures', 'fake-waypoint.js');

const RENDER: WaypointRenderOptions = {
  clusterDomain: 'cluster.local',
  trustDomain: 'cluster.local',
  clusterId: 'Kubernetes',
  xdsAddress: '127.0.0.1:15012',
  caAddress: '127.0.0.1:15012',
  image: 'unused-locally',
};

/** The config-dir source's shape: an informer-like feed the test writes to. */
class MemoryFeed extends EventEmitter<InformerEvents<Gateway>> implements ObjectFeed<Gateway> {
  readonly synced = Promise.resolve();
  readonly #items = new Map<string, Gateway>();
  list(): Gateway[] {
    return [...this.#items.values()];
  }
  get(namespace: string | undefined, name: string): Gateway | undefined {
    return this.#items.get(`${namespace}/${name}`);
  }
  set(gw: Gateway): void {
    const key = `${gw.metadata.namespace}/${gw.metadata.name}`;
    const prev = this.#items.get(key);
    this.#items.set(key, gw);
    if (prev) this.emit('update', gw, prev);
    else this.emit('add', gw);
  }
  remove(namespace: string, name: string): void {
    const prev = this.#items.get(`${namespace}/${name}`);
    this.#items.delete(`${namespace}/${name}`);
    if (prev) this.emit('delete', prev);
  }
}

interface Report {
  pid: number;
  port: number;
  env: Record<string, string>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function gateway(name: string, namespace: string, labels: Record<string, string> = {}): Gateway {
  const gw = waypointGateway({ name, namespace });
  return { ...gw, metadata: { ...gw.metadata, uid: `uid-${name}`, labels } };
}

test('localWaypointEnv: the Deployment env with the downward API resolved locally; loopbackAllocator hands one address per key', (t) => {
  const d = decideWaypoint(gateway('wp', 'prod'), RENDER);
  if (d.kind !== 'deploy') return t.fail();
  const env = localWaypointEnv(d, { address: '127.0.10.7', nodeName: 'laptop' });
  t.like(env, { POD_NAME: 'wp-local', POD_NAMESPACE: 'prod', INSTANCE_IP: '127.0.10.7', HOST_IP: '127.0.10.7', SERVICE_ACCOUNT: 'wp', NODE_NAME: 'laptop', XDS_ADDRESS: '127.0.0.1:15012', GATEWAY_NAME: 'wp', ISTIO_META_WORKLOAD_NAME: 'wp' });
  t.false(Object.values(env).some((v) => v.startsWith('fieldRef')));
  t.false(['AUTH_TOKEN', 'XDS_ROOT_CA', 'CA_ROOT_CA'].some((k) => k in env), 'paths into the pod\'s volumes are left out');
  const next = loopbackAllocator();
  t.deepEqual([next('a/x'), next('b/y'), next('a/x')], ['127.0.10.1', '127.0.10.2', '127.0.10.1']);
});

test('processWaypointLauncher: a missing program is a start failure with its code', async (t) => {
  const launcher = processWaypointLauncher({ command: ['/nonexistent/ambientd', 'waypoint'], logger: captureLog().logger, output: () => {} });
  const err = await t.throwsAsync(launcher.start({ key: 'a/b', name: 'b', namespace: 'a', serviceAccount: 'b', address: '127.0.10.1', env: {} }));
  t.is((err as { code?: string }).code, 'WAYPOINT_LAUNCHER_START_FAILED');
});

test('local mode: a waypoint Gateway starts a process with its env; a change restarts it; an exit restarts it; deletion stops it', async (t) => {
  const log = captureLog();
  const reports: Report[] = [];
  const stopped: string[] = [];
  const feed = new MemoryFeed();
  const statuses: Array<[string, GatewayStatus | undefined]> = [];
  const controller = startWaypointController({
    render: RENDER,
    logger: log.logger,
    retry: { initialMs: 20, maxMs: 100, jitter: 0 },
    mode: {
      kind: 'local',
      gateways: feed,
      nodeName: 'node-local',
      restartBackoff: { initialMs: 20, maxMs: 100, jitter: 0 },
      onStatus: (key, status) => statuses.push([key, status]),
      launcher: processWaypointLauncher({
        command: [process.execPath, FIXTURE],
        baseEnv: { PATH: process.env['PATH'] },
        env: { FAKE_CA: 'true' },
        logger: log.logger,
        stopTimeoutMs: 2000,
        output: (key, _stream, line) => {
          if (line === 'stopping') stopped.push(key);
          else if (line.startsWith('{')) reports.push(JSON.parse(line) as Report);
        },
      }),
    },
  });
  t.teardown(() => controller.close());
  await controller.synced;

  feed.set(gateway('wp', 'prod'));
  feed.set({ ...gateway('ingress', 'prod'), spec: { gatewayClassName: 'istio', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] } });
  await until(() => reports.length === 1, 'the waypoint process reports');
  const first = reports[0]!;
  t.like(first.env, { POD_NAME: 'wp-local', POD_NAMESPACE: 'prod', SERVICE_ACCOUNT: 'wp', NODE_NAME: 'node-local', INSTANCE_IP: '127.0.10.1', GATEWAY_NAME: 'wp', XDS_ADDRESS: '127.0.0.1:15012', FAKE_CA: 'true', PATH: process.env['PATH'] });
  // It really is serving on its own address.
  t.is(await (await fetch(`http://127.0.10.1:${first.port}/healthz/ready`)).text(), 'ready');
  t.deepEqual([...controller.running().keys()], ['prod/wp']);
  const wpStatus = controller.status('prod', 'wp');
  t.like(programmedCondition({ status: wpStatus! }), { status: 'True' });
  t.deepEqual(wpStatus?.addresses, [{ type: 'IPAddress', value: '127.0.10.1' }], 'the address only: no Service carries the hostname locally');
  t.true(statuses.some(([key, s]) => key === 'prod/wp' && s?.addresses !== undefined), 'onStatus saw the address');
  t.is(controller.status('prod', 'ingress'), undefined, 'a Gateway of another class is not ours');

  // A change to what the pod would get (a new network label) restarts the process with the new env.
  const otherReports = () => reports.filter((r) => r.env['GATEWAY_NAME'] === 'wp');
  feed.set(gateway('wp', 'prod', { 'topology.istio.io/network': 'net-b' }));
  await until(() => otherReports().length === 2 && stopped.includes('prod/wp'), 'the waypoint restarted with the new configuration');
  t.is(otherReports()[1]?.env['NETWORK'], 'net-b');
  t.not(otherReports()[1]?.pid, first.pid);

  // The process dies: the controller starts it again.
  process.kill(otherReports()[1]!.pid, 'SIGKILL');
  await until(() => otherReports().length === 3, 'the waypoint was restarted after it exited');
  t.like(log.records.find((l) => l['code'] === 'WAYPOINT_LAUNCHER_EXITED'), { gateway: 'prod/wp', signal: 'SIGKILL', restartInMs: 20 });

  // The Gateway goes: the process stops (gracefully) and the status is withdrawn.
  const lastPid = otherReports()[2]!.pid;
  feed.remove('prod', 'wp');
  await until(() => !alive(lastPid), 'the waypoint process exited');
  await until(() => stopped.filter((k) => k === 'prod/wp').length === 2, 'it was asked to stop (SIGTERM) and said so');
  t.false(controller.running().has('prod/wp'));
  t.is(controller.status('prod', 'wp'), undefined);
  t.is(statuses.filter(([key]) => key === 'prod/wp').at(-1)?.[1], undefined, 'onStatus was told the Gateway is gone');
});

test('local mode: close() stops every waypoint it started', async (t) => {
  const log = captureLog();
  const reports: Report[] = [];
  const feed = new MemoryFeed();
  feed.set(gateway('a', 'one'));
  feed.set(gateway('b', 'two'));
  const controller = startWaypointController({
    render: RENDER,
    logger: log.logger,
    mode: {
      kind: 'local',
      gateways: feed,
      launcher: processWaypointLauncher({ command: [process.execPath, FIXTURE], logger: log.logger, output: (_k, _s, line) => line.startsWith('{') && reports.push(JSON.parse(line) as Report) }),
    },
  });
  await controller.synced;
  await until(() => reports.length === 2, 'both waypoints report');
  t.deepEqual(reports.map((r) => r.env['INSTANCE_IP']).sort(), ['127.0.10.1', '127.0.10.2']);
  await controller.close();
  for (const r of reports) t.throws(() => process.kill(r.pid, 0), undefined, `pid ${r.pid} is gone`);
  t.is(controller.running().size, 0);
});

test('local mode: a waypoint that keeps exiting is restarted with growing delays (a crash loop backs off)', async (t) => {
  const log = captureLog();
  const feed = new MemoryFeed();
  feed.set(gateway('crashy', 'prod'));
  const controller = startWaypointController({
    render: RENDER,
    logger: log.logger,
    mode: {
      kind: 'local',
      gateways: feed,
      restartBackoff: { initialMs: 50, maxMs: 200, jitter: 0 },
      launcher: processWaypointLauncher({ command: [process.execPath, '-e', 'process.exit(3)'], logger: log.logger, output: () => {} }),
    },
  });
  t.teardown(() => controller.close());
  await controller.synced;
  await until(() => log.records.filter((r) => r['code'] === 'WAYPOINT_LAUNCHER_EXITED').length >= 4, 'four exits');
  const exits = log.records.filter((r) => r['code'] === 'WAYPOINT_LAUNCHER_EXITED').slice(0, 4);
  t.deepEqual(exits.map((r) => r['restartInMs']), [50, 100, 200, 200]);
  t.true(exits.every((r) => r['exitCode'] === 3));
});
