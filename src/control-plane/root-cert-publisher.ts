import type { KubeConfig } from '@kubernetes/client-node';
import { ErrorCode } from '../core/error-codes.ts';
import { errorMessage } from '../core/errors.ts';
import { onceClose, type Handle } from '../core/lifecycle.ts';
import type { Logger } from '../core/logger.ts';
import { startInformer } from '../workload-api/kube/index.ts';
import type { KubeObject } from './kube-objects.ts';
import { kubeRest } from './kube-rest.ts';

/**
 * Publishes the mesh's root certificate as istiod does: a ConfigMap `istio-ca-root-cert` with `root-cert.pem` in
 * every namespace (ztunnel and waypoint pods mount it to verify the control plane and their peers). Watches
 * Namespaces and those ConfigMaps; a namespace that appears gets it, a ConfigMap that is deleted or edited is put
 * back, by server-side apply (force) as field manager `istiod`. A namespace being deleted is left alone. A
 * failed write is logged (`CP_ROOT_CERT_PUBLISH_FAILED`) and retried with the next event for that namespace, or
 * after `retryMs`.
 */

export const ROOT_CERT_CONFIGMAP = 'istio-ca-root-cert';
export const ROOT_CERT_KEY = 'root-cert.pem';
const FIELD_MANAGER = 'istiod';

export interface RootCertPublisherOptions {
  readonly kubeConfig: KubeConfig;
  readonly rootPem: string;
  readonly logger: Logger;
  readonly retryMs?: number;
}

export interface RootCertPublisher extends Handle {
  /** Resolves once both informers listed and every namespace present then was written once (or failed). */
  readonly synced: Promise<void>;
}

interface ConfigMap extends KubeObject {
  readonly data?: Readonly<Record<string, string>>;
}

export function startRootCertPublisher(options: RootCertPublisherOptions): RootCertPublisher {
  const log = options.logger.child({ component: 'root-cert-publisher' });
  const rest = kubeRest(options.kubeConfig);
  const namespaces = startInformer<KubeObject>({ kubeConfig: options.kubeConfig, path: '/api/v1/namespaces', logger: log });
  const configMaps = startInformer<ConfigMap>({ kubeConfig: options.kubeConfig, path: '/api/v1/configmaps', fieldSelector: `metadata.name=${ROOT_CERT_CONFIGMAP}`, logger: log });
  const timers = new Set<NodeJS.Timeout>();
  const inFlight = new Map<string, Promise<void>>();
  let closed = false;

  const wanted = (ns: string): boolean => {
    const obj = namespaces.get(undefined, ns);
    return obj !== undefined && !obj.metadata?.deletionTimestamp;
  };

  const ensure = (ns: string): Promise<void> => {
    if (closed || !wanted(ns)) return Promise.resolve();
    const current = configMaps.get(ns, ROOT_CERT_CONFIGMAP);
    if (current?.data?.[ROOT_CERT_KEY] === options.rootPem) return Promise.resolve();
    const running = inFlight.get(ns);
    if (running) return running.then(() => ensure(ns));
    const write = rest.apply(`/api/v1/namespaces/${encodeURIComponent(ns)}/configmaps/${ROOT_CERT_CONFIGMAP}`, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: ROOT_CERT_CONFIGMAP, namespace: ns, labels: { 'istio.io/config': 'true' } },
      data: { [ROOT_CERT_KEY]: options.rootPem },
    }, FIELD_MANAGER, true).then(
      () => log.debug({ namespace: ns }, 'root certificate published'),
      (err: unknown) => {
        log.warn({ code: ErrorCode.CP_ROOT_CERT_PUBLISH_FAILED, namespace: ns, err: errorMessage(err) }, 'publishing the root certificate failed; retrying');
        if (closed) return;
        const timer = setTimeout(() => {
          timers.delete(timer);
          void ensure(ns);
        }, options.retryMs ?? 5000);
        timer.unref();
        timers.add(timer);
      },
    ).finally(() => inFlight.delete(ns));
    inFlight.set(ns, write);
    return write;
  };

  const nameOf = (obj: KubeObject): string => obj.metadata?.name ?? '';
  namespaces.on('add', (ns) => void ensure(nameOf(ns)));
  namespaces.on('update', (ns) => void ensure(nameOf(ns)));
  configMaps.on('update', (cm) => void ensure(cm.metadata?.namespace ?? ''));
  configMaps.on('delete', (cm) => void ensure(cm.metadata?.namespace ?? ''));

  const synced = (async () => {
    await Promise.all([namespaces.synced, configMaps.synced]);
    await Promise.all(namespaces.list().map((ns) => ensure(nameOf(ns))));
  })();
  synced.catch(() => {});

  return {
    synced,
    close: onceClose(async () => {
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      await Promise.allSettled([namespaces.close(), configMaps.close()]);
      await Promise.allSettled([...inFlight.values()]);
    }),
  };
}
