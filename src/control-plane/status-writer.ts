import { HttpMethod, IsomorphicFetchHttpLibrary, RequestContext, type KubeConfig } from '@kubernetes/client-node';
import { ErrorCode } from '../core/error-codes.ts';
import { errorMessage } from '../core/errors.ts';
import { onceClose, type Handle } from '../core/lifecycle.ts';
import type { Logger } from '../core/logger.ts';
import { COLLECTION_PATHS, type Kind, type KubeObject } from './kube-objects.ts';
import type { Condition } from './report.ts';
import type { Translator } from './translator.ts';
import { WAYPOINT_BOUND } from './waypoint.ts';
import { ZTUNNEL_ACCEPTED } from './authorization.ts';

/**
 * Writes the conditions Istio sets (reference istio-ambient.md §3.10, `AMBIENT_ENABLE_STATUS`) to the objects'
 * `status.conditions` through their status subresource: `istio.io/WaypointBound` on Services and ServiceEntries,
 * `ZtunnelAccepted` on AuthorizationPolicies. Only the condition types it owns are replaced, others' are kept;
 * `lastTransitionTime` changes only when the status does; nothing is written when nothing changed, so the watch
 * event of its own write ends the loop. Writes are batched per event-loop turn and retried on the next change.
 */

const OWNED: Partial<Record<Kind, readonly string[]>> = {
  Service: [WAYPOINT_BOUND],
  ServiceEntry: [WAYPOINT_BOUND],
  WorkloadEntry: [WAYPOINT_BOUND],
  AuthorizationPolicy: [ZTUNNEL_ACCEPTED],
};

interface StatusCondition extends Condition {
  readonly lastTransitionTime?: string;
}

/** The object's next `status.conditions`, or undefined when it would not change (pure). */
export function nextConditions(current: readonly StatusCondition[], owned: readonly string[], desired: readonly Condition[], now: string): StatusCondition[] | undefined {
  const kept = current.filter((c) => !owned.includes(c.type));
  const mine = desired
    .filter((c) => owned.includes(c.type))
    .map((c) => {
      const before = current.find((o) => o.type === c.type);
      return { type: c.type, status: c.status, reason: c.reason, message: c.message, lastTransitionTime: before && before.status === c.status && before.lastTransitionTime ? before.lastTransitionTime : now };
    });
  const next = [...kept, ...mine];
  const same =
    next.length === current.length &&
    next.every((c) => {
      const o = current.find((x) => x.type === c.type);
      return o !== undefined && o.status === c.status && o.reason === c.reason && o.message === c.message;
    });
  return same ? undefined : next;
}

export interface StatusWriterOptions {
  readonly kubeConfig: KubeConfig;
  readonly translator: Translator;
  readonly logger: Logger;
}

export interface StatusWriter extends Handle {
  /** Writes done (successful PATCHes). */
  writes(): number;
}

export function startStatusWriter(options: StatusWriterOptions): StatusWriter {
  const log = options.logger.child({ component: 'status-writer' });
  const { translator, kubeConfig } = options;
  const queued = new Map<string, { kind: Kind; key: string }>();
  let scheduled = false;
  let closed = false;
  let writes = 0;
  let running: Promise<void> = Promise.resolve();

  const patch = async (kind: Kind, obj: KubeObject, conditions: StatusCondition[]): Promise<void> => {
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) return;
    const ns = obj.metadata?.namespace ?? '';
    const name = obj.metadata?.name ?? '';
    const collection = COLLECTION_PATHS[kind].replace(/\/([a-z]+)$/, `/namespaces/${encodeURIComponent(ns)}/$1`);
    const ctx = new RequestContext(`${cluster.server.replace(/\/+$/, '')}${collection}/${encodeURIComponent(name)}/status`, HttpMethod.PATCH);
    await kubeConfig.applySecurityAuthentication(ctx);
    ctx.setHeaderParam('Content-Type', 'application/merge-patch+json');
    ctx.setHeaderParam('Accept', 'application/json');
    ctx.setBody(JSON.stringify({ status: { conditions } }));
    const response = await new IsomorphicFetchHttpLibrary().send(ctx).toPromise();
    const text = await response.body.text();
    if (response.httpStatusCode === 404) return; // gone meanwhile
    if (response.httpStatusCode < 200 || response.httpStatusCode >= 300) throw new Error(`HTTP ${response.httpStatusCode}: ${text.slice(0, 200)}`);
    writes++;
  };

  const flush = async (): Promise<void> => {
    const batch = [...queued.values()];
    queued.clear();
    for (const { kind, key } of batch) {
      if (closed) return;
      const [ns, name = ''] = key.split('/');
      const obj = translator.object(kind, ns, name) as (KubeObject & { status?: { conditions?: StatusCondition[] } }) | undefined;
      if (!obj) continue;
      const desired = translator.reportOf(kind, ns, name)?.conditions ?? [];
      const next = nextConditions(obj.status?.conditions ?? [], OWNED[kind] ?? [], desired, new Date().toISOString().replace(/\.\d+Z$/, 'Z'));
      if (!next) continue;
      try {
        await patch(kind, obj, next);
      } catch (err) {
        log.warn({ code: ErrorCode.KUBE_REQUEST_FAILED, kind, object: key, err: errorMessage(err) }, 'writing status failed; retried on the next change');
      }
    }
  };

  const onReport = (event: { kind: string; key: string }): void => {
    if (closed || !(event.kind in OWNED)) return;
    queued.set(`${event.kind}\u0000${event.key}`, { kind: event.kind as Kind, key: event.key });
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      running = running.then(flush).catch(() => {});
    });
  };
  translator.on('report', onReport);
  // What was reported before the writer started.
  for (const kind of Object.keys(OWNED) as Kind[]) {
    for (const obj of translator.objectsOf(kind)) {
      const key = `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
      if (translator.reportOf(kind, obj.metadata?.namespace, obj.metadata?.name ?? '') || (obj as { status?: { conditions?: unknown[] } }).status?.conditions?.length) onReport({ kind, key });
    }
  }

  return {
    writes: () => writes,
    close: onceClose(async () => {
      closed = true;
      translator.off('report', onReport);
      await running;
    }),
  };
}
