import type { Kind, KubeObject } from './kube-objects.ts';

/**
 * The shape check at the translator's door: every field the translation reads, with the type it must have. A
 * field of the wrong type (a list where a map belongs, a number for a name: what a hand-written file can hold;
 * the API server would have refused it) is dropped with a problem naming its path, and the rest of the object is
 * kept, so one wrong field never loses the object and the pure functions can trust the types they are given.
 * Fields not listed are passed through untouched (an extension's kinds are not checked at all).
 */

type Schema = 'string' | 'number' | 'boolean' | 'int-or-string' | 'string-map' | 'number-map' | 'object-map' | 'any' | readonly [Schema] | { readonly [field: string]: Schema };

const STRINGS: readonly ['string'] = ['string'];
const META: Schema = {
  name: 'string',
  namespace: 'string',
  uid: 'string',
  resourceVersion: 'string',
  creationTimestamp: 'string',
  deletionTimestamp: 'any',
  labels: 'string-map',
  annotations: 'string-map',
  ownerReferences: [{ kind: 'string', name: 'string', controller: 'boolean', apiVersion: 'string' }],
};
const SELECTOR: Schema = { matchLabels: 'string-map' };
const LABEL_SELECTOR: Schema = { matchLabels: 'string-map', matchExpressions: [{ key: 'string', operator: 'string', values: STRINGS }] };
const CONTAINER: Schema = { name: 'string', restartPolicy: 'string', ports: [{ name: 'string', containerPort: 'number', protocol: 'string' }] };
const WORKLOAD_ENTRY_SPEC: Schema = { address: 'string', ports: 'number-map', labels: 'string-map', network: 'string', locality: 'string', weight: 'number', serviceAccount: 'string' };
const ANY_LIST: readonly ['any'] = ['any'];
// Policy values stay as given (the conversion checks each, with its own problem); only the lists must be lists.
const SOURCE: Schema = Object.fromEntries(
  ['principals', 'notPrincipals', 'requestPrincipals', 'notRequestPrincipals', 'namespaces', 'notNamespaces', 'serviceAccounts', 'notServiceAccounts', 'ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks'].map((f) => [f, ANY_LIST]),
);
const OPERATION: Schema = Object.fromEntries(['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'].map((f) => [f, ANY_LIST]));
const TARGET_REF: Schema = { group: 'string', kind: 'string', name: 'string', namespace: 'string' };

const SCHEMAS: Partial<Record<Kind, Schema>> = {
  Namespace: { metadata: META },
  Node: { metadata: META },
  Pod: {
    metadata: META,
    spec: { nodeName: 'string', serviceAccountName: 'string', hostNetwork: 'boolean', containers: [CONTAINER], initContainers: [CONTAINER] },
    status: { phase: 'string', podIP: 'string', podIPs: [{ ip: 'string' }], conditions: [{ type: 'string', status: 'string' }] },
  },
  Service: {
    metadata: META,
    spec: {
      type: 'string',
      selector: 'string-map',
      clusterIP: 'string',
      clusterIPs: STRINGS,
      ports: [{ name: 'string', port: 'number', targetPort: 'int-or-string', protocol: 'string', appProtocol: 'string' }],
      ipFamilies: STRINGS,
      internalTrafficPolicy: 'string',
      trafficDistribution: 'string',
      publishNotReadyAddresses: 'boolean',
    },
  },
  EndpointSlice: {
    metadata: META,
    addressType: 'string',
    endpoints: [{ addresses: STRINGS, conditions: { ready: 'any' }, targetRef: TARGET_REF, nodeName: 'string' }],
    ports: [{ name: 'string', port: 'number', protocol: 'string' }],
  },
  ServiceEntry: {
    metadata: META,
    spec: {
      hosts: STRINGS,
      addresses: STRINGS,
      ports: [{ number: 'number', protocol: 'string', name: 'string', targetPort: 'number' }],
      location: 'string',
      resolution: 'string',
      endpoints: [WORKLOAD_ENTRY_SPEC],
      workloadSelector: { labels: 'string-map' },
      subjectAltNames: STRINGS,
      exportTo: STRINGS,
    },
    status: { addresses: [{ host: 'string', value: 'string' }] },
  },
  WorkloadEntry: { metadata: META, spec: WORKLOAD_ENTRY_SPEC },
  AuthorizationPolicy: {
    metadata: META,
    spec: {
      selector: SELECTOR,
      targetRef: 'any',
      targetRefs: 'any',
      action: 'string',
      provider: 'any',
      rules: [
        {
          from: [{ source: SOURCE }],
          to: [{ operation: OPERATION }],
          when: [{ key: 'string', values: ANY_LIST, notValues: ANY_LIST }],
        },
      ],
    },
  },
  PeerAuthentication: { metadata: META, spec: { selector: SELECTOR, mtls: { mode: 'string' }, portLevelMtls: 'object-map' } },
  Gateway: {
    metadata: META,
    spec: {
      gatewayClassName: 'string',
      listeners: [{ name: 'string', port: 'number', protocol: 'string', allowedRoutes: { namespaces: { from: 'string', selector: LABEL_SELECTOR } } }],
    },
    status: { addresses: [{ type: 'string', value: 'string' }] },
  },
  GatewayClass: { metadata: META, spec: { controllerName: 'string' } },
};

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

const describe = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v);

/** `value` with every field of the wrong type dropped (undefined when `value` itself is wrong). */
function conformValue(value: unknown, schema: Schema, path: string, problems: string[]): unknown {
  if (value === undefined || schema === 'any') return value;
  if (value === null) return undefined;
  switch (schema) {
    case 'string':
    case 'number':
    case 'boolean':
      if (typeof value === schema && (schema !== 'number' || Number.isFinite(value))) return value;
      problems.push(`${path}: must be a ${schema}, got ${describe(value)}; ignored`);
      return undefined;
    case 'int-or-string':
      if (typeof value === 'string' || (typeof value === 'number' && Number.isInteger(value))) return value;
      problems.push(`${path}: must be a number or a name, got ${describe(value)}; ignored`);
      return undefined;
    case 'string-map':
    case 'number-map':
    case 'object-map': {
      const want = schema === 'string-map' ? 'string' : schema === 'number-map' ? 'number' : 'object';
      if (!isRecord(value)) {
        problems.push(`${path}: must be a map of ${want}s, got ${describe(value)}; ignored`);
        return undefined;
      }
      let out: Record<string, unknown> | undefined;
      for (const [k, v] of Object.entries(value)) {
        if (want === 'object' ? isRecord(v) : typeof v === want) continue;
        problems.push(`${path}.${k}: must be a${want === 'object' ? 'n' : ''} ${want}, got ${describe(v)}; ignored`);
        out ??= { ...value };
        delete out[k];
      }
      return out ?? value;
    }
  }
  if (Array.isArray(schema)) {
    if (!Array.isArray(value)) {
      problems.push(`${path}: must be a list, got ${describe(value)}; ignored`);
      return undefined;
    }
    const element = schema[0] as Schema;
    let changed = false;
    const out: unknown[] = [];
    value.forEach((item, i) => {
      const c = conformValue(item, element, `${path}[${i}]`, problems);
      if (c !== item) changed = true;
      if (c !== undefined) out.push(c);
    });
    return changed ? out : value;
  }
  if (!isRecord(value)) {
    problems.push(`${path}: must be an object, got ${describe(value)}; ignored`);
    return undefined;
  }
  // Copied only when a field changes: a well-formed object comes back as the same object.
  let out: Record<string, unknown> | undefined;
  for (const [field, sub] of Object.entries(schema as Record<string, Schema>)) {
    if (!(field in value)) continue;
    const c = conformValue(value[field], sub, path ? `${path}.${field}` : field, problems);
    if (c === value[field]) continue;
    out ??= { ...value };
    if (c === undefined) delete out[field];
    else out[field] = c;
  }
  return out ?? value;
}

/** The object with wrongly typed fields dropped, and what was dropped. Kinds without a schema come back as given. */
export function conformObject(kind: string, obj: KubeObject): { readonly object: KubeObject; readonly problems: readonly string[] } {
  const schema = SCHEMAS[kind as Kind];
  if (!schema) return { object: obj, problems: [] };
  const problems: string[] = [];
  const object = conformValue(obj, schema, '', problems) as KubeObject | undefined;
  return { object: object ?? {}, problems };
}
