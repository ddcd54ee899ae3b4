import { errorCode, errorMessage } from '../core/errors.ts';
import { closeInOrder, onceClose, Readiness, type Handle } from '../core/lifecycle.ts';
import type { Logger } from '../core/logger.ts';
import { startReadinessServer } from '../core/readiness-server.ts';
import { startStatsServer } from '../core/stats-server.ts';
import { createMetricsRegistry, type MetricsRegistry } from '../core/metrics.ts';
import { createHboneClient } from '../hbone/client.ts';
import { startHboneServer } from '../hbone/server.ts';
import { CertManager, type CaClient } from '../identity/cert-manager.ts';
import { formatSpiffeId, spiffeIdEquals, type SpiffeId } from '../identity/spiffe.ts';
import { caClientFor, rootPem } from '../workload-api/ca-source.ts';
import { l7Handlers } from '../workload-api/l7-handlers.ts';
import { startL7LocalSource } from '../workload-api/l7-local.ts';
import { L7Store, type L7Reader } from '../workload-api/l7-store.ts';
import { startLocalSource } from '../workload-api/local-source.ts';
import { addressHandler, authorizationHandler } from '../workload-api/store-handlers.ts';
import { WorkloadStore, type StateReader } from '../workload-api/store.ts';
import { startXdsClient, xdsNode } from '../workload-api/xds-client.ts';
import { createXdsMetrics } from '../workload-api/xds-metrics.ts';
import type { WaypointConfig } from './config.ts';
import { Destinations } from './destinations.ts';
import { createWaypointMetrics } from './metrics.ts';
import { waypointHandler } from './tunnel.ts';
import { Upstream } from './upstream.ts';
import { createUpgradeConnector } from './upgrade.ts';

/**
 * `ambientd waypoint` assembled: certificates (FAKE_CA or CA_ADDRESS), the mesh state (workload API
 * over xDS and/or LOCAL_XDS_PATH) and the L7 state (the L7 xDS types and/or L7_CONFIG_PATH), the HBONE
 * listener on 15008, the pooled HBONE client towards endpoints, stats on 15020 and readiness on 15021.
 * Every part is owned here and closed here: the listener first (drain), then the rest, newest first.
 */

export interface Waypoint extends Handle {
  readonly identity: SpiffeId;
  readonly readiness: Readiness;
  readonly state: StateReader;
  readonly l7: L7Reader;
  readonly registry: MetricsRegistry;
  readonly destinations: Destinations;
  ports(): { readonly hbone: number; readonly stats: number; readonly readiness: number };
  readonly stopped: Promise<void>;
}

export interface WaypointOptions {
  readonly logger: Logger;
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Sign certificates here instead of FAKE_CA or CA_ADDRESS (tests, an embedded control plane). */
  readonly ca?: CaClient;
  /** Random numbers for routing decisions (tests pin them). */
  readonly random?: () => number;
  /** Where access-log records go (ambientd's is buffered); the logger's destination by default. */
  readonly accessLog?: Logger;
}

export const WaypointReadiness = { certificates: 'certificates', listeners: 'listeners' } as const;

export async function startWaypoint(config: WaypointConfig, options: WaypointOptions): Promise<Waypoint> {
  const root = options.logger;
  const log = root.child({ component: 'waypoint' });
  const readiness = new Readiness();
  const certsReady = readiness.register(WaypointReadiness.certificates);
  const listenersReady = readiness.register(WaypointReadiness.listeners);
  const registry = createMetricsRegistry();
  const metrics = createWaypointMetrics(registry, { buildTag: config.istioVersion });
  const store = new WorkloadStore();
  const l7 = new L7Store();
  const identity: SpiffeId = { trustDomain: config.trustDomain, namespace: config.namespace, serviceAccount: config.serviceAccount };
  const owned: Handle[] = [];
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((resolve) => (resolveStopped = resolve));

  try {
    const ca = options.ca ?? (await caClientFor(config, log));
    const certManager = new CertManager({ ca, ttlSeconds: config.workloadApi.secretTtlSeconds, logger: root });
    owned.push(certManager);

    const local = config.workloadApi.local;
    if (local) owned.push(await startLocalSource({ store, ...(local.kind === 'path' ? { path: local.path, watch: true } : { inline: local.yaml }), logger: root }));
    if (config.l7ConfigPath) owned.push(await startL7LocalSource({ store: l7, path: config.l7ConfigPath, watch: true, logger: root }));
    if (config.workloadApi.xdsAddress) {
      const api = config.workloadApi;
      const node = xdsNode({ podName: config.podName, podNamespace: config.namespace, instanceIp: config.instanceIp, nodeName: config.nodeName, env: options.env ?? {} });
      owned.push(startXdsClient({
        address: api.xdsAddress as string,
        ...rootPem(api.xdsRootCa, 'XDS_ROOT_CA'),
        ...(api.altXdsHostname ? { alternateHostname: api.altXdsHostname } : {}),
        auth: { token: api.token, clusterId: api.clusterId, headers: api.xdsHeaders },
        node: { ...node, id: node.id.replace(/^ztunnel~/, 'waypoint~') },
        handlers: [addressHandler(store), authorizationHandler(store), ...l7Handlers(l7)],
        metrics: createXdsMetrics(registry),
        readiness,
        logger: root,
      }));
    }

    const certificate = await certManager.fetch(identity);
    certsReady();
    const hbone = createHboneClient({ certificates: certManager, logger: root, closeDeadlineMs: config.terminationDeadlineMs });
    owned.push(hbone);
    const upstream = new Upstream({ hbone, identity, hbonePort: config.upstreamHbonePort, logger: root });
    owned.push({ close: async () => upstream.close() });
    const destinations = new Destinations({ state: store, l7, network: config.network, ...(options.random ? { random: options.random } : {}) });

    const server = await startHboneServer({
      host: config.bindAddress ?? '::',
      port: config.hbonePort,
      certificate,
      drainMs: config.terminationDeadlineMs,
      logger: root,
      handler: waypointHandler({
        state: store,
        l7,
        network: config.network,
        hbone,
        identity,
        hbonePort: config.upstreamHbonePort,
        destinations,
        upstream,
        upgrades: createUpgradeConnector({ hbone, identity, hbonePort: config.upstreamHbonePort, logger: root }),
        metrics,
        // Its records have fixed fields, none a secret: no redaction pass (half the cost of a line).
        accessLog: (options.accessLog ?? root).child({ component: 'access' }, { redact: [] }),
        log,
        pathNormalization: config.pathNormalization,
        clusterId: config.workloadApi.clusterId,
        maxHeaderBytes: config.maxHeaderBytes,
        ...(options.random ? { random: options.random } : {}),
      }),
    });
    certManager.on('certificate', (next) => {
      if (spiffeIdEquals(next.identity, identity)) server.setCertificate(next);
    });
    const stats = await startStatsServer({ ...(config.bindAddress === undefined ? {} : { host: config.bindAddress }), port: config.statsPort, registry, logger: root });
    const ready = await startReadinessServer({ ...(config.bindAddress === undefined ? {} : { host: config.bindAddress }), port: config.readinessPort, readiness, logger: root });
    owned.push(stats, ready);
    listenersReady();

    const close = onceClose(async () => {
      log.info({ deadlineMs: config.terminationDeadlineMs }, 'draining');
      try {
        await closeInOrder([server, ...[...owned].reverse()]);
      } catch (err) {
        log.error({ code: errorCode(err), err: errorMessage(err) }, 'shutdown failed in part');
      }
      log.info('stopped');
      resolveStopped();
    });
    log.info({ identity: formatSpiffeId(identity), hbone: server.address().port, stats: stats.address().port, readiness: ready.address().port }, 'waypoint started');
    return {
      identity,
      readiness,
      state: store,
      l7,
      registry,
      destinations,
      stopped,
      close,
      ports: () => ({ hbone: server.address().port, stats: stats.address().port, readiness: ready.address().port }),
    };
  } catch (err) {
    await closeInOrder([...owned].reverse()).catch(() => {});
    throw err;
  }
}


