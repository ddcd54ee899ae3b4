import { sendText, startHttpListener } from '../core/http-listener.ts';
import { closeInOrder, type ServerHandle } from '../core/lifecycle.ts';
import type { Logger } from '../core/logger.ts';
import { createMetricsRegistry, exposition, type CounterFamily, type GaugeFamily, type MetricsRegistry } from '../core/metrics.ts';

/**
 * The node agent's metrics (reference istio-ambient.md §1.13: `istio_cni_plugin_requests_total`,
 * `nodeagent_reconcile_events_total`, `ztunnel_connected`) on `MONITORING_PORT` (15014, `/metrics`), and
 * istio-cni's health endpoints on `READINESS_PORT` (8000): `/healthz` always 200, `/readyz` 200 only once the
 * plugin is installed and the agent is ready, else 503 naming what is pending.
 */

export interface CniAgentMetrics {
  readonly registry: MetricsRegistry;
  /** One per CNI ADD the agent answered: `response_code` is the HTTP status given to the plugin. */
  readonly pluginRequests: CounterFamily<'response_code'>;
  /** One per reconcile the work queue ran: `type` is `update`, `delete` or `retry`. */
  readonly reconcileEvents: CounterFamily<'type'>;
  /** How many ztunnels are connected over ZDS. */
  readonly ztunnelConnected: GaugeFamily<never>;
}

export function createCniAgentMetrics(): CniAgentMetrics {
  const registry = createMetricsRegistry();
  return {
    registry,
    pluginRequests: registry.counter({
      name: 'istio_cni_plugin_requests_total', help: 'CNI ADD requests the node agent answered, by HTTP status', labelNames: ['response_code'],
    }),
    reconcileEvents: registry.counter({
      name: 'nodeagent_reconcile_events_total', help: 'Pod reconcile events processed by the node agent', labelNames: ['type'],
    }),
    ztunnelConnected: registry.gauge({ name: 'ztunnel_connected', help: 'Number of ztunnels connected over ZDS', labelNames: [] }),
  };
}

export interface AgentMonitoringOptions {
  readonly metrics: CniAgentMetrics;
  /** What keeps `/readyz` from answering 200; empty when ready. */
  readonly pending: () => readonly string[];
  readonly monitoringPort: number;
  readonly readinessPort: number;
  readonly host?: string;
  readonly logger: Logger;
}

export interface AgentMonitoring {
  readonly ports: { readonly metrics: number; readonly readiness: number };
  close(): Promise<void>;
}

export async function startAgentMonitoring(options: AgentMonitoringOptions): Promise<AgentMonitoring> {
  const host = options.host === undefined ? {} : { host: options.host };
  const started: ServerHandle[] = [];
  try {
    started.push(await startHttpListener({ ...host, port: options.monitoringPort, logger: options.logger, name: 'metrics' }, async (req, res, url) => {
      if (url.pathname !== '/metrics') return sendText(res, 404, 'not found\n');
      const { contentType, body } = await exposition(options.metrics.registry, req.headers.accept);
      res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    }));
    started.push(await startHttpListener({ ...host, port: options.readinessPort, logger: options.logger, name: 'readiness' }, (_req, res, url) => {
      if (url.pathname === '/healthz') return sendText(res, 200, 'ok\n');
      if (url.pathname !== '/readyz') return sendText(res, 404, 'not found\n');
      const pending = options.pending();
      return pending.length === 0 ? sendText(res, 200, 'ready\n') : sendText(res, 503, `not ready: ${pending.join(', ')}\n`);
    }));
  } catch (err) {
    await closeInOrder(started.reverse());
    throw err;
  }
  const [metrics, readiness] = started as [ServerHandle, ServerHandle];
  return {
    ports: { metrics: metrics.address().port, readiness: readiness.address().port },
    close: () => closeInOrder([readiness, metrics]),
  };
}
