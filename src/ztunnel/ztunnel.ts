import { ErrorCode } from '../core/error-codes.ts';
import { errorCode, errorMessage } from '../core/errors.ts';
import { closeInOrder, onceClose, Readiness, type Handle } from '../core/lifecycle.ts';
import type { Logger } from '../core/logger.ts';
import { createMetricsRegistry, type MetricsRegistry } from '../core/metrics.ts';
import { createHboneClient, type HboneClient } from '../hbone/client.ts';
import { CertManager, type CaClient } from '../identity/cert-manager.ts';
import { formatSpiffeId, parseSpiffeId, type SpiffeId } from '../identity/spiffe.ts';
import { caClientFor, rootPem } from '../workload-api/ca-source.ts';
import { startLocalSource } from '../workload-api/local-source.ts';
import { addressHandler, authorizationHandler } from '../workload-api/store-handlers.ts';
import { WorkloadStore, type StateReader } from '../workload-api/store.ts';
import type { Workload } from '../workload-api/types.ts';
import { startXdsClient, xdsNode } from '../workload-api/xds-client.ts';
import { createXdsMetrics } from '../workload-api/xds-metrics.ts';
import { startAdminServer } from './admin.ts';
import type { ZtunnelConfig } from './config.ts';
import { identityCertificateDump, toJson } from './config-dump.ts';
import { ConnectionManager } from './connection-manager.ts';
import { IdentityManager } from './identity-manager.ts';
import { createL4Metrics } from './metrics.ts';
import { startReadinessServer } from '../core/readiness-server.ts';
import { hostSocketFactory, type SocketFactory } from './socket-factory.ts';
import { startStatsServer } from '../core/stats-server.ts';
import { startWorkloadProxy, type ProxyPorts } from './workload-proxy.ts';
import { inPodSocketFactory } from './inpod-socket-factory.ts';
import { ProxyManager, type PodProxy, type StartPodProxy } from './proxy-manager.ts';
import { startZdsClient, type ZdsClient } from './zds-client.ts';
import { closeFd, netnsInode } from '../sys/netns.ts';

/**
 * `ambientd ztunnel` assembled: the mesh state (local file and/or xDS), certificates (CA client or
 * FAKE_CA), the workload proxy (dedicated mode), admin/stats/readiness, and the drain on shutdown.
 * Every part is owned here and closed here, in order.
 */

export interface Ztunnel extends Handle {
  readonly readiness: Readiness;
  readonly state: StateReader;
  readonly registry: MetricsRegistry;
  /** The bound ports (tests start with 0). */
  ports(): { readonly admin: number; readonly stats: number; readonly readiness: number; readonly proxy: ProxyPorts | undefined };
  /** Resolves when the process should exit: after `close()`, `/quitquitquit`, or a signal handled by the CLI. */
  readonly stopped: Promise<void>;
}

export interface ZtunnelOptions {
  readonly logger: Logger;
  /** The environment `ISTIO_META_*` node metadata is read from (process.env in the CLI). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Sign certificates here instead of FAKE_CA or CA_ADDRESS (an embedded control plane, tests). */
  readonly ca?: CaClient;
}

/** Readiness task names, as ztunnel reports them while pending. */
export const ReadinessTask = { proxy: 'proxy', certificates: 'certificates' } as const;

export async function startZtunnel(config: ZtunnelConfig, options: ZtunnelOptions): Promise<Ztunnel> {
  const root = options.logger;
  const log = root.child({ component: 'ztunnel' });
  const accessLog = root.child({ component: 'access' });
  const readiness = new Readiness();
  const proxyReady = readiness.register(ReadinessTask.proxy);
  const registry = createMetricsRegistry();
  const metrics = createL4Metrics(registry, { buildTag: config.istioVersion });
  const store = new WorkloadStore();
  const connections = new ConnectionManager();
  const owned: Handle[] = []; // closed in reverse order of creation
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((resolve) => (resolveStopped = resolve));

  const dedicatedIdentity = config.proxyMode === 'dedicated' && config.workloadInfo ? workloadInfoIdentity(config) : undefined;
  const localWorkload = localWorkloadLookup(store, config);

  try {
    // Certificates.
    const ca = options.ca ?? (await caClientFor(config, log));
    const certManager = new CertManager({ ca, ttlSeconds: config.workloadApi.secretTtlSeconds, impersonate: config.proxyMode === 'shared', logger: root });
    owned.push(certManager);
    const identities = new IdentityManager({ certificates: certManager, nodeName: config.nodeName, logger: root });

    // Mesh state: on every change, prefetch certificates and re-check live connections against policy.
    let changeQueued = false;
    const stateChanged = () => {
      if (changeQueued) return;
      changeQueued = true;
      setImmediate(() => {
        changeQueued = false;
        void identities.sync(store.allWorkloads());
        const result = connections.recheck(store);
        if (result.closed.length > 0) log.info({ code: ErrorCode.PROXY_POLICY_CHANGED, closed: result.closed.length, checked: result.checked }, 'policy change closed live connections');
      });
    };
    const local = config.workloadApi.local;
    if (local) {
      const source = await startLocalSource({ store, ...(local.kind === 'path' ? { path: local.path, watch: true } : { inline: local.yaml }), logger: root });
      source.on('reload', stateChanged);
      owned.push(source);
      stateChanged();
    }
    if (config.workloadApi.xdsAddress) {
      const api = config.workloadApi;
      const xds = startXdsClient({
        address: api.xdsAddress as string,
        ...rootPem(api.xdsRootCa, 'XDS_ROOT_CA'),
        ...(api.altXdsHostname ? { alternateHostname: api.altXdsHostname } : {}),
        auth: { token: api.token, clusterId: api.clusterId, headers: api.xdsHeaders },
        node: xdsNode({ podName: options.env?.['POD_NAME'], podNamespace: options.env?.['POD_NAMESPACE'], instanceIp: options.env?.['INSTANCE_IP'], nodeName: config.nodeName, env: options.env ?? {} }),
        handlers: [addressHandler(store), authorizationHandler(store)],
        metrics: createXdsMetrics(registry),
        readiness,
        logger: root,
      });
      xds.on('ack', stateChanged);
      xds.on('nack', stateChanged);
      owned.push(xds);
    }

    /**
     * One workload's proxy and its own HBONE pool, both on `factory`'s sockets (ztunnel keeps a pool per
     * proxied workload: in-pod, a pod's tunnels leave from the pod). Closing closes both.
     */
    const startProxyWithPool = async (identity: SpiffeId, workload: () => Workload | undefined, factory: SocketFactory, logger: Logger) => {
      const pool: HboneClient = createHboneClient({ certificates: identities, connectSocket: factory.connect, logger: root, closeDeadlineMs: config.terminationDeadlineMs });
      try {
        const started = await startWorkloadProxy({
          identity,
          workload,
          state: store,
          factory,
          hbone: pool,
          certificates: identities,
          certificateEvents: certManager,
          connections,
          telemetry: { metrics, accessLog, network: config.network },
          ports: config.proxyPorts,
          logger,
          drainMs: config.terminationDeadlineMs,
        });
        return { proxy: started, pool, close: () => closeInOrder([started, pool]) };
      } catch (err) {
        await pool.close().catch(() => {});
        throw err;
      }
    };

    let dedicated: Awaited<ReturnType<typeof startProxyWithPool>> | undefined;
    if (dedicatedIdentity) {
      dedicated = await startProxyWithPool(dedicatedIdentity, localWorkload, hostSocketFactory({ mark: config.packetMark, reusePort: config.portReuse }), root);
      owned.push(dedicated);
    }

    // Shared (in-pod) mode: one proxy per pod, started and stopped by the node agent over ZDS.
    let manager: ProxyManager | undefined;
    let zds: ZdsClient | undefined;
    if (config.proxyMode === 'shared') {
      const startPodProxy = (pod: StartPodProxy): Promise<PodProxy> =>
        startProxyWithPool(
          pod.identity,
          pod.workload,
          inPodSocketFactory(pod.netnsFd, { mark: config.packetMark, reusePort: config.portReuse }),
          root.child({ uid: pod.uid, pod: `${pod.info.namespace}/${pod.info.name}` }),
        );
      manager = new ProxyManager({ trustDomain: config.trustDomain, state: store, startProxy: startPodProxy, netns: { inode: netnsInode, close: closeFd }, readiness, logger: root });
      owned.push(manager);
      zds = startZdsClient({ path: config.inpodUds, handler: manager, logger: root, closeFd });
      owned.push(zds);
      log.info({ path: config.inpodUds }, 'shared mode: per-pod proxies are started by the node agent over ZDS');
    }
    proxyReady();

    const shutdown = onceClose(async () => {
      log.info({ deadlineMs: config.terminationDeadlineMs }, 'draining');
      try {
        // The proxy drains first (its deadline bounds the whole shutdown), then the rest, newest first.
        // In shared mode the ZDS client stops first (no new pods), then the pod proxies drain.
        const first: Handle[] = [...(dedicated ? [dedicated] : []), ...(zds ? [zds] : []), ...(manager ? [manager] : [])];
        await closeInOrder([...first, ...owned.filter((h) => !first.includes(h)).reverse()]);
      } catch (err) {
        log.error({ code: errorCode(err), err: errorMessage(err) }, 'shutdown failed in part');
      }
      log.info('stopped');
      resolveStopped();
    });

    const configDump = () => ({
      workloads: toJson(store.allWorkloads()),
      services: toJson(store.allServices()),
      policies: toJson(store.allPolicies()),
      certificates: certificateIdentities(identities, dedicatedIdentity).map((id) => {
        const parsed = parseSpiffeId(id);
        return identityCertificateDump(id, parsed.ok ? certManager.peek(parsed.value) : undefined);
      }),
      ...(manager ? { workloadState: manager.dump() } : {}),
      connections: { inbound: connections.dump(), ...(dedicated ? { proxy: dedicated.proxy.stats(), hbonePool: dedicated.pool.stats() } : {}) },
      config: toJson(publicConfig(config)),
      version: { version: '0.1.0', istioVersion: config.istioVersion ?? 'unknown', runtime: `node ${process.version}` },
    });
    const admin = await startAdminServer({ port: config.adminPort, configDump, logger: root, onQuit: () => void shutdown() });
    owned.push(admin);
    const stats = await startStatsServer({ port: config.statsPort, registry, logger: root });
    owned.push(stats);
    const ready = await startReadinessServer({ port: config.readinessPort, readiness, logger: root });
    owned.push(ready);

    log.info({ mode: config.proxyMode, identity: dedicatedIdentity && formatSpiffeId(dedicatedIdentity), admin: admin.address().port, stats: stats.address().port, readiness: ready.address().port }, 'ztunnel started');
    return {
      readiness,
      state: store,
      registry,
      stopped,
      close: shutdown,
      ports: () => ({ admin: admin.address().port, stats: stats.address().port, readiness: ready.address().port, proxy: dedicated?.proxy.ports() }),
    };
  } catch (err) {
    await closeInOrder([...owned].reverse()).catch(() => {});
    throw err;
  }
}

function workloadInfoIdentity(config: ZtunnelConfig): SpiffeId {
  const info = config.workloadInfo!;
  return { trustDomain: config.trustDomain, namespace: info.namespace, serviceAccount: info.serviceAccount };
}

/** The dedicated workload by PROXY_WORKLOAD_INFO: found by name once, then by uid (so updates are seen). */
function localWorkloadLookup(store: WorkloadStore, config: ZtunnelConfig): () => Workload | undefined {
  const info = config.workloadInfo;
  let uid: string | undefined;
  return () => {
    if (!info) return undefined;
    const byUid = uid === undefined ? undefined : store.workloadByUid(uid);
    if (byUid) return byUid;
    const found = store.workloadByName(info.namespace, info.name);
    uid = found?.uid;
    return found;
  };
}


function certificateIdentities(identities: IdentityManager, dedicated: SpiffeId | undefined): string[] {
  const all = new Set(identities.localIdentities());
  if (dedicated) all.add(formatSpiffeId(dedicated));
  return [...all].sort();
}

/** The effective config for the dump, without inline secrets (a literal token is shown as redacted). */
function publicConfig(config: ZtunnelConfig): unknown {
  const token = config.workloadApi.token;
  return { ...config, workloadApi: { ...config.workloadApi, token: token.kind === 'literal' ? { kind: 'literal', token: '[redacted]' } : token } };
}
