import { HttpMethod, IsomorphicFetchHttpLibrary, RequestContext, type KubeConfig } from '@kubernetes/client-node';
import { ErrorCode } from '../core/error-codes.ts';
import { MeshError } from '../core/errors.ts';

/**
 * The few Kubernetes REST calls the waypoint controller and ambientctl make (get, list, server-side
 * apply, merge patch, delete), over client-node's KubeConfig (auth, TLS) and its HTTP library, as the
 * informer does. A failure is a `KubeApiError` carrying the HTTP status and the Status reason, so
 * callers can tell NotFound or Conflict from a broken connection.
 */

export class KubeApiError extends MeshError {
  readonly status: number;
  readonly reason: string;

  constructor(message: string, status: number, reason: string, options?: { cause?: unknown }) {
    super(ErrorCode.KUBE_REQUEST_FAILED, message, options);
    this.status = status;
    this.reason = reason;
  }
}

export interface KubeList<T> {
  readonly metadata?: { readonly resourceVersion?: string };
  readonly items: T[];
}

export interface KubeRest {
  get<T>(path: string): Promise<T | undefined>;
  list<T>(path: string, query?: Readonly<Record<string, string>>): Promise<KubeList<T>>;
  /** Server-side apply (`application/apply-patch+yaml`; JSON is YAML) as `fieldManager`. */
  apply<T>(path: string, object: unknown, fieldManager: string, force: boolean): Promise<T>;
  mergePatch<T>(path: string, patch: unknown, fieldManager?: string): Promise<T>;
  /** False when there was nothing to delete (404). */
  delete(path: string): Promise<boolean>;
}

interface StatusBody {
  kind?: string;
  reason?: string;
  message?: string;
}

const METHOD = { GET: HttpMethod.GET, PATCH: HttpMethod.PATCH, DELETE: HttpMethod.DELETE } as const;

export function kubeRest(kubeConfig: KubeConfig): KubeRest {
  const http = new IsomorphicFetchHttpLibrary();

  async function call(method: keyof typeof METHOD, path: string, query: Readonly<Record<string, string>>, body?: { readonly contentType: string; readonly value: unknown }): Promise<{ status: number; json: unknown }> {
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new KubeApiError('the kubeconfig has no current cluster', 0, 'NoCluster');
    const url = new URL(cluster.server.replace(/\/+$/, '') + path);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    const ctx = new RequestContext(url.toString(), METHOD[method]);
    await kubeConfig.applySecurityAuthentication(ctx);
    ctx.setHeaderParam('Accept', 'application/json');
    if (body) {
      ctx.setHeaderParam('Content-Type', body.contentType);
      ctx.setBody(JSON.stringify(body.value));
    }
    let response;
    let text: string;
    try {
      response = await http.send(ctx).toPromise();
      text = await response.body.text();
    } catch (err) {
      throw new KubeApiError(`${method} ${url.pathname} failed: ${(err as Error).message}`, 0, 'ConnectionFailed', { cause: err });
    }
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: response.httpStatusCode, json: json ?? text };
  }

  function failure(method: string, path: string, status: number, json: unknown): KubeApiError {
    const s = (typeof json === 'object' && json !== null ? json : {}) as StatusBody;
    const message = s.message ?? (typeof json === 'string' ? json.slice(0, 200) : '');
    return new KubeApiError(`${method} ${path}: HTTP ${status}${s.reason ? ` ${s.reason}` : ''}: ${message}`, status, s.reason ?? '');
  }

  return {
    async get<T>(path: string): Promise<T | undefined> {
      const { status, json } = await call('GET', path, {});
      if (status === 404) return undefined;
      if (status !== 200) throw failure('GET', path, status, json);
      return json as T;
    },
    async list<T>(path: string, query: Readonly<Record<string, string>> = {}): Promise<KubeList<T>> {
      const { status, json } = await call('GET', path, query);
      if (status !== 200) throw failure('GET', path, status, json);
      const list = json as { metadata?: { resourceVersion?: string }; items?: T[] | null };
      return { ...(list.metadata ? { metadata: list.metadata } : {}), items: list.items ?? [] };
    },
    async apply<T>(path: string, object: unknown, fieldManager: string, force: boolean): Promise<T> {
      const { status, json } = await call('PATCH', path, { fieldManager, ...(force ? { force: 'true' } : {}) }, { contentType: 'application/apply-patch+yaml', value: object });
      if (status !== 200 && status !== 201) throw failure('PATCH', path, status, json);
      return json as T;
    },
    async mergePatch<T>(path: string, patch: unknown, fieldManager?: string): Promise<T> {
      const { status, json } = await call('PATCH', path, fieldManager ? { fieldManager } : {}, { contentType: 'application/merge-patch+json', value: patch });
      if (status !== 200) throw failure('PATCH', path, status, json);
      return json as T;
    },
    async delete(path: string): Promise<boolean> {
      const { status, json } = await call('DELETE', path, {});
      if (status === 404) return false;
      if (status !== 200 && status !== 202) throw failure('DELETE', path, status, json);
      return true;
    },
  };
}

const enc = encodeURIComponent;

/** Paths of the objects the waypoint code touches. */
export const KubePath = {
  gateways: (namespace?: string) => (namespace === undefined ? '/apis/gateway.networking.k8s.io/v1/gateways' : `/apis/gateway.networking.k8s.io/v1/namespaces/${enc(namespace)}/gateways`),
  gateway: (namespace: string, name: string) => `/apis/gateway.networking.k8s.io/v1/namespaces/${enc(namespace)}/gateways/${enc(name)}`,
  gatewayStatus: (namespace: string, name: string) => `/apis/gateway.networking.k8s.io/v1/namespaces/${enc(namespace)}/gateways/${enc(name)}/status`,
  gatewayApi: () => '/apis/gateway.networking.k8s.io/v1',
  gatewayClass: (name: string) => `/apis/gateway.networking.k8s.io/v1/gatewayclasses/${enc(name)}`,
  gatewayClassStatus: (name: string) => `/apis/gateway.networking.k8s.io/v1/gatewayclasses/${enc(name)}/status`,
  services: (namespace?: string) => (namespace === undefined ? '/api/v1/services' : `/api/v1/namespaces/${enc(namespace)}/services`),
  service: (namespace: string, name: string) => `/api/v1/namespaces/${enc(namespace)}/services/${enc(name)}`,
  serviceAccount: (namespace: string, name: string) => `/api/v1/namespaces/${enc(namespace)}/serviceaccounts/${enc(name)}`,
  deployment: (namespace: string, name: string) => `/apis/apps/v1/namespaces/${enc(namespace)}/deployments/${enc(name)}`,
  namespace: (name: string) => `/api/v1/namespaces/${enc(name)}`,
} as const;
