#!/usr/bin/env node
import { errorCode, errorMessage } from '../core/errors.ts';
import { bufferedDestination, createLogger, type Logger, type LogLevel } from '../core/logger.ts';
import type { Result } from '../core/result.ts';
import { parseFlags } from './flags.ts';

/**
 * `ambientd <component> [--flag value | --flag=value ...]`: the node daemons. Exit codes: 0 after a
 * graceful stop, 1 on a start failure or a forced stop, 2 on bad usage or configuration.
 */

/**
 * Each component's modules are loaded only by the command that runs it: a ztunnel never loads the
 * control plane's Kubernetes client, nor the waypoint's HTTP stack (start-up time and memory on every
 * node). The usage loads the four config modules, for their flag lists.
 */
async function usage(): Promise<string> {
  const [{ ZTUNNEL_FLAGS }, { CNI_AGENT_FLAGS }, { CONTROL_PLANE_FLAGS }, { WAYPOINT_FLAGS }] = await Promise.all([
    import('../ztunnel/config.ts'), import('../cni/agent-config.ts'), import('../control-plane/config.ts'), import('../waypoint/config.ts'),
  ]);
  return `usage: ambientd ztunnel [flags]
  Configured from ztunnel's environment variables (PROXY_MODE, PROXY_WORKLOAD_INFO, XDS_ADDRESS,
  CA_ADDRESS, LOCAL_XDS_PATH, FAKE_CA, NODE_NAME, NETWORK, PACKET_MARK, ...) and these flags:
${ZTUNNEL_FLAGS.map((f) => `    --${f.replace(/^--/, '')}`).join('\n')}
usage: ambientd cni-agent [flags]
  The node agent (plugin event socket, ZDS server, pod reconciliation). NODE_NAME is required; each
  flag overrides the environment variable named after it:
${Object.entries(CNI_AGENT_FLAGS).map(([f, env]) => `    --${f} (${env})`).join('\n')}
usage: ambientd control-plane [flags]
  Delta ADS and the CA on 15012 (gRPC over TLS), metrics on 15014, readiness on 15021; from the Kubernetes API
  (KUBECONFIG, else in-cluster) or, with --config-dir, a folder of YAML objects. Also CLUSTER_ID, TRUST_DOMAIN,
  POD_NAMESPACE, CA_TRUSTED_NODE_ACCOUNTS, ...; each flag
  overrides the environment variable named after it:
${Object.entries(CONTROL_PLANE_FLAGS).map(([f, env]) => `    --${f} (${env})`).join('\n')}
usage: ambientd waypoint [flags]
  The L7 proxy (HBONE 15008, stats 15020, readiness 15021). POD_NAMESPACE and SERVICE_ACCOUNT name its
  identity; XDS_ADDRESS, CA_ADDRESS, LOCAL_XDS_PATH, L7_CONFIG_PATH, FAKE_CA, PATH_NORMALIZATION, LOG_LEVEL; flags:
${WAYPOINT_FLAGS.map((f) => `    --${f}`).join('\n')}
`;
}

/** The configuration, or exit code 2 with every problem and the usage on stderr. */
async function configOrUsage<T>(component: string, argErrors: readonly string[], parsed: Result<T>): Promise<T | undefined> {
  const problems = [...argErrors, ...(parsed.ok ? [] : parsed.errors)];
  if (problems.length === 0 && parsed.ok) return parsed.value;
  process.stderr.write(`ambientd ${component}: invalid configuration:\n  ${problems.join('\n  ')}\n\n${await usage()}`);
  return undefined;
}

/**
 * SIGTERM and SIGINT call `close` once (graceful); a second SIGINT exits at once. Resolves when
 * `close` has finished.
 */
function closeOnSignals(logger: Logger, close: () => Promise<void>): { readonly requested: () => boolean; readonly closed: Promise<void> } {
  let interrupts = 0;
  let closing: Promise<void> | undefined;
  let markClosed!: () => void;
  const closed = new Promise<void>((resolve) => (markClosed = resolve));
  const stop = (signal: NodeJS.Signals) => {
    if (signal === 'SIGINT' && ++interrupts > 1) {
      logger.warn('second SIGINT: exiting now');
      process.exit(1);
    }
    logger.info({ signal }, 'shutdown requested');
    closing ??= close().then(markClosed);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  return { requested: () => closing !== undefined, closed };
}

/** What each daemon's start function gives back. */
interface Daemon {
  close(): Promise<void>;
  /** Settles once started (the node agent and the control plane wait for their API server first). */
  readonly ready?: Promise<void>;
  /** Resolves when it stopped by itself (ztunnel's and the waypoint's `/quitquitquit`); else a signal stops it. */
  readonly stopped?: Promise<void>;
}

/**
 * Starts a daemon and runs it until it stops: exit code 1 when it fails to start, 0 after a graceful stop. The
 * signal handlers go in before `ready`, so SIGTERM works while it still waits for its API server.
 */
async function serve(name: string, logger: Logger, start: () => Promise<Daemon>): Promise<number> {
  let daemon: Daemon;
  try {
    daemon = await start();
  } catch (err) {
    logger.fatal({ code: errorCode(err), err: errorMessage(err) }, `${name} failed to start`);
    return 1;
  }
  const running = daemon;
  const signals = closeOnSignals(logger, () => running.close());
  if (running.ready) {
    try {
      await running.ready;
    } catch (err) {
      if (signals.requested()) {
        await signals.closed;
        return 0;
      }
      logger.fatal({ code: errorCode(err), err: errorMessage(err) }, `${name} failed to start`);
      await running.close();
      return 1;
    }
  }
  await (running.stopped ?? signals.closed);
  return 0;
}

async function ztunnel(args: readonly string[]): Promise<number> {
  const { flags, errors } = parseFlags(args);
  const { parseZtunnelConfig } = await import('../ztunnel/config.ts');
  const config = await configOrUsage('ztunnel', errors, parseZtunnelConfig(flags, process.env));
  if (!config) return 2;
  const { startZtunnel } = await import('../ztunnel/ztunnel.ts');
  const level: LogLevel = config.logLevel === 'off' ? 'silent' : config.logLevel;
  const logger = createLogger({ level });
  return serve('ztunnel', logger, () => startZtunnel(config, { logger, env: process.env }));
}

async function cniAgent(args: readonly string[]): Promise<number> {
  const { flags, errors } = parseFlags(args);
  const { parseCniAgentConfig } = await import('../cni/agent-config.ts');
  const config = await configOrUsage('cni-agent', errors, parseCniAgentConfig(flags, process.env));
  if (!config) return 2;
  const { startCniAgent } = await import('../cni/agent.ts');
  const logger = createLogger({ level: config.logLevel });
  return serve('cni agent', logger, () => startCniAgent(config, { logger }));
}

async function controlPlane(args: readonly string[]): Promise<number> {
  const { flags, errors } = parseFlags(args);
  const { parseControlPlaneConfig } = await import('../control-plane/config.ts');
  const config = await configOrUsage('control-plane', errors, parseControlPlaneConfig(flags, process.env));
  if (!config) return 2;
  const [{ startControlPlane }, { L7_COLLECTIONS, l7Extension }, { gatewayFeed, waypointControllerHook }, { WAYPOINT_NODE_FLAGS }] = await Promise.all([
    import('../control-plane/control-plane.ts'), import('../control-plane/l7/extension.ts'), import('../control-plane/waypoint-hook.ts'), import('../waypoint/config.ts'),
  ]);
  const logger = createLogger({ level: config.logLevel });
  // The waypoint controller: Deployments in a cluster (image --waypoint-image), local `ambientd waypoint` processes with --config-dir.
  const feed = gatewayFeed();
  let cp: Awaited<ReturnType<typeof startControlPlane>> | undefined;
  const waypointController = waypointControllerHook({
    image: config.waypointImage,
    // The node flags this process runs with (bin/ambientd's), with the waypoint's young generation, for each local waypoint.
    localCommand: [process.execPath, ...process.execArgv.filter((a) => !a.startsWith('--max-semi-space-size')), ...WAYPOINT_NODE_FLAGS, process.argv[1] as string, 'waypoint'],
    localBaseEnv: { PATH: process.env['PATH'] },
    localXdsAddress: () => `localhost:${cp?.ports().grpc ?? config.grpcPort}`,
    feed,
  });
  return serve('control plane', logger, async () => {
    cp = await startControlPlane(config, {
      logger, waypointController, extensions: [l7Extension({ logger }), ...(config.mode === 'local' ? [feed] : [])], extraCollections: L7_COLLECTIONS,
    });
    return cp;
  });
}

async function waypoint(args: readonly string[]): Promise<number> {
  const { flags, errors } = parseFlags(args);
  const { parse: parseWaypointConfig } = await import('../waypoint/config.ts');
  const config = await configOrUsage('waypoint', errors, parseWaypointConfig(flags, process.env));
  if (!config) return 2;
  const { startWaypoint } = await import('../waypoint/waypoint.ts');
  const logger = createLogger({ level: config.logLevel });
  const buffered = config.accessLogFlushMs > 0 ? bufferedDestination(1, config.accessLogFlushMs) : undefined;
  const accessLog = buffered && createLogger({ level: config.logLevel, destination: buffered.destination });
  // What is still buffered is written however the process ends (a second SIGINT exits at once).
  if (buffered) process.once('exit', () => buffered.close());
  return serve('waypoint', logger, () => startWaypoint(config, { logger, env: process.env, ...(accessLog ? { accessLog } : {}) }));
}

const [component, ...rest] = process.argv.slice(2);
switch (component) {
  case 'ztunnel':
    process.exitCode = await ztunnel(rest);
    break;
  case 'cni-agent':
    process.exitCode = await cniAgent(rest);
    break;
  case 'control-plane':
    process.exitCode = await controlPlane(rest);
    break;
  case 'waypoint':
    process.exitCode = await waypoint(rest);
    break;
  default:
    process.stderr.write(await usage());
    process.exitCode = 2;
}
// Anything left (a straggling socket) must not keep a stopped daemon alive.
setImmediate(() => process.exit()).unref();
