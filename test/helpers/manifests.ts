import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';

/**
 * The manifests under deploy/ as plain objects, and two checks against the Kubernetes API's own schemas:
 * - `schemaProblems`: kubernetes-models' validators (ajv, compiled from the Kubernetes OpenAPI document): types,
 *   required fields, enums, formats;
 * - `unknownFields`: what `kubectl apply --validate=strict` adds (an unknown or misspelt field is an error, not
 *   silently dropped), walked over @kubernetes/client-node's generated models, which carry every field of every
 *   API type (the same OpenAPI document). kubernetes-models' schemas allow unknown properties, so both are needed.
 */

export const REPO = join(import.meta.dirname, '..', '..', '..');
export const DEPLOY_DIR = join(REPO, 'deploy');

export interface Manifest {
  readonly file: string;
  /** 0-based index of the document in its file. */
  readonly index: number;
  readonly object: KubeObject;
}

export interface KubeObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly labels?: Record<string, string>; readonly annotations?: Record<string, string> };
  readonly [field: string]: unknown;
}

/** kustomize's file, which is not a Kubernetes object. */
export const KUSTOMIZATION = 'kustomization.yaml';

/** Every YAML document of every `deploy/*.yaml` file but the kustomization (strict: duplicate keys and syntax errors throw). */
export function loadManifests(dir = DEPLOY_DIR): Manifest[] {
  const out: Manifest[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== KUSTOMIZATION).sort()) {
    const docs = parseAllDocuments(readFileSync(join(dir, file), 'utf8'), { uniqueKeys: true, prettyErrors: false });
    if (!Array.isArray(docs)) throw new Error(`${file}: not a YAML stream`);
    docs.forEach((doc, index) => {
      if (doc.errors.length > 0) throw new Error(`${file}[${index}]: ${doc.errors.map((e) => e.message).join('; ')}`);
      const object = doc.toJS() as KubeObject | null;
      if (object !== null) out.push({ file, index, object });
    });
  }
  return out;
}

export function describe(m: Manifest): string {
  return `${m.file}[${m.index}] ${m.object.kind}/${m.object.metadata?.name}`;
}

interface ModelCtor {
  new (data: unknown): { validate(): void };
}

/** kubernetes-models' module path for an apiVersion: `apps/v1` → `kubernetes-models/apps/v1`, `v1` → `kubernetes-models/v1`. */
function modelsModule(apiVersion: string): string {
  return `kubernetes-models/${apiVersion}`;
}

/** The schema errors of one object (empty when valid), as `path: message`. */
export async function schemaProblems(object: KubeObject): Promise<string[]> {
  let models: Record<string, unknown>;
  try {
    models = (await import(modelsModule(object.apiVersion))) as Record<string, unknown>;
  } catch {
    return [`apiVersion ${object.apiVersion}: not a Kubernetes API version`];
  }
  const Model = models[object.kind] as ModelCtor | undefined;
  if (typeof Model !== 'function') return [`kind ${object.kind}: not a kind of ${object.apiVersion}`];
  try {
    new Model(object).validate();
    return [];
  } catch (err) {
    // ajv's ValidationError: `errors` is the list, each with the JSON pointer of the bad value.
    const errors = (err as { errors?: Array<{ instancePath?: string; message?: string; params?: unknown }> }).errors;
    if (Array.isArray(errors) && errors.length > 0) {
      return errors.map((d) => `${d.instancePath || '/'}: ${d.message ?? 'invalid'} ${JSON.stringify(d.params ?? {})}`);
    }
    return [String((err as Error).message)];
  }
}

interface Attribute {
  readonly baseName: string;
  readonly type: string;
}

/** client-node's model class name for an apiVersion + kind: `apps/v1` DaemonSet → `V1DaemonSet`. */
export function modelTypeName(apiVersion: string, kind: string): string {
  const version = apiVersion.split('/').pop() ?? '';
  return `${version.charAt(0).toUpperCase()}${version.slice(1)}${kind}`;
}

function attributesOf(type: string): readonly Attribute[] | undefined {
  const model = (k8s as unknown as Record<string, { getAttributeTypeMap?: () => Attribute[] } | undefined>)[type];
  return typeof model?.getAttributeTypeMap === 'function' ? model.getAttributeTypeMap() : undefined;
}

const MAP_PREFIX = '{ [key: string]: ';
const MAP_SUFFIX = '; }';

/** Fields the API type `type` does not have, anywhere under `value`, as `path.field` (strict field validation). */
export function unknownFields(value: unknown, type: string, path = ''): string[] {
  if (value === null || typeof value !== 'object') return [];
  if (type.startsWith('Array<') && type.endsWith('>')) {
    if (!Array.isArray(value)) return [];
    const inner = type.slice('Array<'.length, -1);
    return value.flatMap((v, i) => unknownFields(v, inner, `${path}[${i}]`));
  }
  if (type.startsWith(MAP_PREFIX) && type.endsWith(MAP_SUFFIX)) {
    const inner = type.slice(MAP_PREFIX.length, -MAP_SUFFIX.length);
    return Object.entries(value).flatMap(([k, v]) => unknownFields(v, inner, `${path}.${k}`));
  }
  const attributes = attributesOf(type);
  if (attributes === undefined || Array.isArray(value)) return [];
  const out: string[] = [];
  for (const [key, v] of Object.entries(value)) {
    const attribute = attributes.find((a) => a.baseName === key);
    if (attribute === undefined) out.push(`${path}.${key}: unknown field of ${type}`);
    else out.push(...unknownFields(v, attribute.type, `${path}.${key}`));
  }
  return out;
}

/** Both checks for one manifest; empty when the API server would accept it under strict validation. */
export async function validateManifest(object: KubeObject): Promise<string[]> {
  const schema = await schemaProblems(object);
  const type = modelTypeName(object.apiVersion, object.kind);
  if (attributesOf(type) === undefined) return [...schema, `${object.apiVersion} ${object.kind}: no API model ${type}`];
  return [...schema, ...unknownFields(object, type)];
}

/** The subset of a CRD's structural schema that deploy/gateway-api-crds.yaml and deploy/istio-crds.yaml use. */
export interface StructuralSchema {
  readonly type?: string;
  readonly format?: string;
  readonly required?: readonly string[];
  readonly properties?: Readonly<Record<string, StructuralSchema>>;
  readonly items?: StructuralSchema;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly minItems?: number;
  readonly maxItems?: number;
  readonly enum?: readonly unknown[];
  readonly 'x-kubernetes-preserve-unknown-fields'?: boolean;
}

const KNOWN_SCHEMA_KEYS = new Set([
  'type', 'format', 'required', 'properties', 'items', 'minimum', 'maximum', 'minLength', 'maxLength', 'minItems', 'maxItems', 'enum',
  'x-kubernetes-preserve-unknown-fields', 'description',
]);

/**
 * What the API server would say about `value` under a structural schema: validation errors, and fields it would prune
 * (not in `properties` where unknown fields are not preserved), both as `path: reason`. Throws on a schema keyword
 * this checker does not implement, so it never passes something it did not check.
 */
export function structuralErrors(value: unknown, schema: StructuralSchema, path = ''): string[] {
  for (const key of Object.keys(schema)) if (!KNOWN_SCHEMA_KEYS.has(key)) throw new Error(`${path || '<root>'}: schema keyword ${key} is not implemented here`);
  const at = path || '<root>';
  const out: string[] = [];
  const type = schema.type;
  const actual = value === null ? 'null' : Array.isArray(value) ? 'array' : Number.isInteger(value) ? 'integer' : typeof value;
  if (type !== undefined && !(type === actual || (type === 'number' && actual === 'integer'))) return [`${at}: must be ${type}, got ${actual}`];
  if (schema.enum !== undefined && !schema.enum.includes(value)) out.push(`${at}: must be one of ${schema.enum.join(', ')}`);
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) out.push(`${at}: must be >= ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) out.push(`${at}: must be <= ${schema.maximum}`);
  }
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && value.length < schema.minLength) out.push(`${at}: shorter than ${schema.minLength}`);
    if (schema.maxLength !== undefined && value.length > schema.maxLength) out.push(`${at}: longer than ${schema.maxLength}`);
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) out.push(`${at}: fewer than ${schema.minItems} items`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) out.push(`${at}: more than ${schema.maxItems} items`);
    if (schema.items !== undefined) value.forEach((v, i) => out.push(...structuralErrors(v, schema.items!, `${path}[${i}]`)));
  }
  if (actual === 'object') {
    const object = value as Record<string, unknown>;
    for (const name of schema.required ?? []) if (!(name in object)) out.push(`${at}: ${name} is required`);
    for (const [key, v] of Object.entries(object)) {
      // The API server validates a custom resource's metadata as ObjectMeta, not by the CRD's schema.
      if (path === '' && key === 'metadata') continue;
      const child = schema.properties?.[key];
      if (child !== undefined) out.push(...structuralErrors(v, child, `${path}.${key}`));
      else if (schema['x-kubernetes-preserve-unknown-fields'] !== true) out.push(`${path}.${key}: unknown field, would be pruned`);
    }
  }
  return out;
}
