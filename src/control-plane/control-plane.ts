import { readFile, writeFile } from 'node:fs/promises';
import { KubeConfig } from '@kubernetes/client-node';
import { ErrorCode } from '../core/error-codes.ts';
import { errorMessage, MeshError } from '../core/errors.ts';
import { closeInOrder, onceClose, Readiness, type Handle } from '../core/lifecycle.ts';
import type { Logger } from '../core/logger.ts';
import { createMetricsRegistry, exposition } from '../core/metrics.ts';
import { CertificateAuthority } from '../identity/ca.ts';
import { caService, type CaAuthenticator } from '../workload-api/ca-service.ts';
import { startGrpcServer, type GrpcServerHandle } from '../workload-api/grpc-server.ts';
import { TypeUrl } from '../workload-api/proto.ts';
import { ResourceSnapshot } from '../workload-api/snapshot.ts';
import { xdsService, type XdsService } from '../workload-api/xds-server.ts';
import { nodeAuthorizer, parseStaticTokens, staticTokenAuthenticator, tokenReviewAuthenticator } from './ca-auth.ts';
import type { ControlPlaneConfig } from './config.ts';
import { startDirSource, type DirSource } from './dir-source.ts';
import { sendText, startHttpListener } from '../core/http-listener.ts';
import { startRootCertPublisher } from './root-cert-publisher.ts';
import type { Pod } from './kube-objects.ts';
import { startKubeSource, type KubeSource } from './kube-source.ts';
import { createMeshPage } from './mesh-page.ts';
import { startStatusWriter } from './status-writer.ts';
import { Translator, type TranslatorExtension } from './translator.ts';

/**
 * `ambientd control-plane` as a function: the translator fed by the Kubernetes informers or the config folder, the
 * delta ADS server and Istio's CA service on one gRPC-over-TLS port (15012, a serving certificate from our own CA,
 * as istiod's), Prometheus metrics (15014) and readiness (15021). The gRPC port opens only once the sources have
 * synced and the first full translation is in the snapshot, so no client ever sees a partial mesh as complete.
 *
 * The waypoint controller is not part of this module: pass `options.waypointController` (the `cli` branch's
 * `src/control-plane/waypoint-controller.ts`) and it is started once the sources have synced, given the
 * configuration, the API client (kubernetes mode), the translator (to read Gateways and everything else) and a
 * logger, and closed first on shutdown. In local mode there is no API server to hold a Gateway's status: the
 * controller publishes the address of the waypoint it started with
 * `translator.overlayStatus('Gateway', ns, name, { addresses: [{ type: 'IPAddress', value }] })`.
 */

export interface WaypointControllerContext {
  readonly config: ControlPlaneConfig;
  /** Kubernetes mode only. */
  readonly kubeConfig: KubeConfig | undefined;
  readonly translator: Translator;
  readonly logger: Logger;
}

/** The hook for the waypoint controller (Gateway → Deployment/Service/ServiceAccount, or a local process). */
export type WaypointControllerFactory = (context: WaypointControllerContext) => Promise<Handle> | Handle;

export interface ControlPlaneOptions {
  readonly logger: Logger;
  /** The API client; default from `config.kubeconfig` (or in-cluster). Kubernetes mode only. */
  readonly kubeConfig?: KubeConfig;
  /** Sign with this CA instead of `config.caDir` or a new self-signed root. */
  readonly ca?: CertificateAuthority;
  /** Translation of extra resource types (the waypoint's L7 configuration). */
  readonly extensions?: readonly TranslatorExtension[];
  /** Collection paths of the extensions' kinds (kubernetes mode). */
  readonly extraCollections?: Readonly<Record<string, string>>;
  readonly waypointController?: WaypointControllerFactory;
  /** Informer retry delays (tests). */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** Metrics URLs the `/mesh` page scrapes (ztunnels' and waypoints'); default `config.meshScrapeTargets`. */
  readonly meshTargets?: readonly string[];
  /** How long the `/mesh.json` graph is reused (1000 ms). */
  readonly meshCacheMs?: number;
  /**
   * Whether `/mesh` also scrapes the ztunnel and waypoint pods that carry Prometheus scrape annotations (true);
   * false when their pod IPs do not reach their stats ports (`make demo` gives the ports itself).
   */
  readonly meshDiscovery?: boolean;
}

export interface ControlPlanePorts {
  /** 0 until `ready`. */
  readonly grpc: number;
  readonly monitoring: number;
  readonly readiness: number;
}

export interface ControlPlane extends Handle {
  /** Resolves once synced and serving xDS + CA; rejects if that fails. */
  readonly ready: Promise<void>;
  readonly translator: Translator;
  readonly snapshot: ResourceSnapshot;
  readonly ca: CertificateAuthority;
  readonly readiness: Readiness;
  ports(): ControlPlanePorts;
  /** The trust root clients must verify 15012 with. */
  rootCertPem(): string;
  xdsStats(): ReturnType<XdsService['stats']>;
  /** Replaces the `/mesh` page's metrics URLs (absolute http/https; throws `CP_MESH_TARGET_INVALID`). */
  setMeshTargets(urls: readonly string[]): void;
  meshTargets(): readonly string[];
}

async function loadCa(config: ControlPlaneConfig, options: ControlPlaneOptions): Promise<CertificateAuthority> {
  if (options.ca) return options.ca;
  if (config.caDir) return CertificateAuthority.load(config.caDir);
  return CertificateAuthority.generate(config.trustDomain);
}

export async function startControlPlane(config: ControlPlaneConfig, options: ControlPlaneOptions): Promise<ControlPlane> {
  const log = options.logger.child({ component: 'control-plane' });
  const ca = await loadCa(config, options);
  const rootPem = ca.rootsPem.join('');
  if (config.rootCertOut) await writeFile(config.rootCertOut, rootPem);

  const snapshot = new ResourceSnapshot();
  const translator = new Translator({
    snapshot,
    settings: {
      clusterId: config.clusterId,
      domainSuffix: config.domainSuffix,
      trustDomain: config.trustDomain,
      rootNamespace: config.rootNamespace,
      systemNamespace: config.systemNamespace,
      enableDryRun: config.enableDryRun,
      autoAllowWaypointPolicy: config.autoAllowWaypointPolicy,
    },
    ...(options.extensions ? { extensions: options.extensions } : {}),
  });

  // ---- metrics ----
  const registry = createMetricsRegistry();
  const objectsGauge = registry.gauge({ name: 'ambient_control_plane_objects', help: 'Objects held, by kind.', labelNames: ['kind'] });
  const resourcesGauge = registry.gauge({ name: 'ambient_control_plane_xds_resources', help: 'Resources in the xDS snapshot, by type.', labelNames: ['type'] });
  const problemObjects = registry.gauge({ name: 'ambient_control_plane_objects_with_problems', help: 'Objects whose translation found problems.', labelNames: [] });
  const problemsCounter = registry.counter({ name: 'ambient_control_plane_translation_problems_total', help: 'Problems found translating objects, by kind.', labelNames: ['kind'] });
  const streamsGauge = registry.gauge({ name: 'ambient_control_plane_xds_streams', help: 'Open delta ADS streams.', labelNames: [] });
  const xdsCounters = registry.gauge({ name: 'ambient_control_plane_xds_messages', help: 'Delta ADS responses, ACKs and NACKs since start.', labelNames: ['kind'] });
  const flushes = registry.counter({ name: 'ambient_control_plane_translations_total', help: 'Translation flushes.', labelNames: [] });
  translator.on('flush', () => flushes.inc({}));
  translator.on('report', (event) => {
    const where = { kind: event.kind, object: event.key };
    if (event.report.problems.length > 0) {
      problemsCounter.inc({ kind: event.kind }, event.report.problems.length);
      log.warn({ code: ErrorCode.CP_INVALID_OBJECT, ...where, problems: event.report.problems }, 'object translated with problems; the rest of it is served');
    }
    const notOk = event.report.conditions.filter((c) => c.status === 'False');
    if (notOk.length > 0) log.info({ ...where, conditions: notOk }, 'object status');
  });

  const readiness = new Readiness();
  const sourcesDone = readiness.register('sources synced');
  const grpcDone = readiness.register('xds and ca listening');

  const handles: Handle[] = [];
  let grpc: GrpcServerHandle | undefined;
  let xds: XdsService | undefined;
  let source: KubeSource | DirSource | undefined;
  let waypoints: Handle | undefined;
  let kubeConfig: KubeConfig | undefined;

  const meshPage = createMeshPage({
    snapshot,
    translator,
    targets: options.meshTargets ?? config.meshScrapeTargets,
    logger: log,
    ...(options.meshCacheMs !== undefined ? { cacheMs: options.meshCacheMs } : {}),
    ...(options.meshDiscovery !== undefined ? { discover: options.meshDiscovery } : {}),
  });
  const monitoring = await startHttpListener({ host: config.listenAddress, port: config.monitoringPort, logger: log, name: 'monitoring' }, async (req, res, url) => {
    // The live mesh page and its JSON (mesh-page.ts).
    if (await meshPage.route(req, res, url)) return;
    if (url.pathname === '/debug/problems' && req.method === 'GET') {
      // Every object whose translation found problems, with what and its conditions: the counts' details.
      const body = JSON.stringify(translator.problems(), null, 2);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (url.pathname !== '/metrics' && url.pathname !== '/stats/prometheus') return sendText(res, 404, 'not found\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendText(res, 405, 'method not allowed\n', { allow: 'GET' });
    const stats = translator.stats();
    for (const [kind, n] of Object.entries(stats.objects)) objectsGauge.set({ kind }, n);
    resourcesGauge.set({ type: 'workload' }, stats.workloads);
    resourcesGauge.set({ type: 'service' }, stats.services);
    resourcesGauge.set({ type: 'authorization' }, snapshot.get(TypeUrl.authorization).size);
    problemObjects.set({}, stats.objectsWithProblems);
    const x = xds?.stats();
    streamsGauge.set({}, x?.streams ?? 0);
    xdsCounters.set({ kind: 'push' }, x?.pushes ?? 0);
    xdsCounters.set({ kind: 'ack' }, x?.acks ?? 0);
    xdsCounters.set({ kind: 'nack' }, x?.nacks ?? 0);
    // OpenMetrics when the scraper asks for it, else the classic text format (core/metrics.ts).
    const { contentType, body } = await exposition(registry, req.headers.accept);
    res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  let readinessServer;
  try {
    readinessServer = await startHttpListener({ host: config.listenAddress, port: config.readinessPort, logger: log, name: 'readiness' }, (_req, res, url) => {
      if (url.pathname !== '/healthz/ready') return sendText(res, 404, 'not found\n');
      const report = readiness.report();
      return report.ready ? sendText(res, 200, 'ready') : sendText(res, 503, `not ready, pending: ${report.pending.join(', ')}`);
    });
  } catch (err) {
    await monitoring.close();
    throw err;
  }

  const close = onceClose(async () => {
    await closeInOrder([
      ...(waypoints ? [waypoints] : []),
      ...handles,
      ...(source ? [source] : []),
      { close: async () => xds?.close() },
      ...(grpc ? [grpc] : []),
      readinessServer,
      monitoring,
    ]);
  });

  const ready = (async () => {
    let authenticator: CaAuthenticator;
    if (config.mode === 'local') {
      let tokens: ReturnType<typeof parseStaticTokens> = { ok: true, value: [] };
      if (config.staticTokensFile) {
        tokens = parseStaticTokens(await readFile(config.staticTokensFile, 'utf8'));
        if (!tokens.ok) throw new MeshError(ErrorCode.CP_START_FAILED, `${config.staticTokensFile}: ${tokens.errors.join('; ')}`);
      }
      authenticator = staticTokenAuthenticator(tokens.ok ? tokens.value : [], config.trustDomain);
      source = startDirSource({ dir: config.configDir ?? '.', translator, logger: options.logger });
    } else {
      kubeConfig = options.kubeConfig ?? new KubeConfig();
      if (!options.kubeConfig) {
        if (config.kubeconfig) kubeConfig.loadFromFile(config.kubeconfig);
        else kubeConfig.loadFromCluster();
      }
      authenticator = tokenReviewAuthenticator({
        kubeConfig,
        trustDomain: config.trustDomain,
        podNode: (ns, name) => (translator.object('Pod', ns, name) as Pod | undefined)?.spec?.nodeName,
      });
      source = startKubeSource({
        kubeConfig,
        translator,
        logger: options.logger,
        ...(options.extraCollections ? { extraCollections: options.extraCollections } : {}),
        ...(options.backoff ? { backoff: options.backoff } : {}),
      });
    }
    await source.synced;
    // The synced state is in the snapshot once the first flush ran.
    if (translator.stats().flushes === 0) translator.flush();
    sourcesDone();
    log.info({ mode: config.mode, ...translator.stats() }, 'sources synced');
    if (kubeConfig && config.enableStatus) handles.unshift(startStatusWriter({ kubeConfig, translator, logger: options.logger }));
    // As istiod: every namespace gets the root certificate that ztunnels and waypoints mount.
    if (kubeConfig) handles.unshift(startRootCertPublisher({ kubeConfig, rootPem, logger: options.logger }));

    xds = xdsService({ snapshot, logger: options.logger, typeUrls: [TypeUrl.address, TypeUrl.authorization, ...translator.extensionTypeUrls()] });
    const ca_ = caService({
      ca,
      authenticator,
      authorizer: nodeAuthorizer({ trustDomain: config.trustDomain, trustedNodeAccounts: config.trustedNodeAccounts, podsOnNode: (node) => translator.podsOnNode(node) }),
      logger: options.logger,
    });
    grpc = await startGrpcServer({
      host: config.listenAddress,
      port: config.grpcPort,
      tls: ca.issueServingCertificate(config.servingDnsNames),
      services: [xds, ca_],
      drainMs: 1000,
    });
    grpcDone();
    log.info({ port: grpc.address().port, dnsNames: config.servingDnsNames }, 'serving delta ADS and the CA');
    if (options.waypointController) {
      waypoints = await options.waypointController({ config, kubeConfig, translator, logger: options.logger });
    }
  })();
  ready.catch((err: unknown) => log.error({ code: ErrorCode.CP_START_FAILED, err: errorMessage(err) }, 'control plane failed to start'));

  return {
    ready,
    translator,
    snapshot,
    ca,
    readiness,
    ports: () => ({ grpc: grpc?.address().port ?? 0, monitoring: monitoring.address().port, readiness: readinessServer.address().port }),
    rootCertPem: () => rootPem,
    xdsStats: () => xds?.stats() ?? { streams: 0, acks: 0, nacks: 0, pushes: 0, ignoredRequests: 0 },
    setMeshTargets: (urls) => meshPage.setTargets(urls),
    meshTargets: () => meshPage.targets(),
    close,
  };
}
