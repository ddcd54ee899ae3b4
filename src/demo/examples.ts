import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseYamlAll } from '../core/yaml.ts';
import { RESOURCES, type FakeResource, type KubeObjectJson } from './api-server.ts';

/**
 * The demo's cluster content: every `*.yaml` / `*.yml` file of a folder (in name order, as `kubectl apply -f
 * <dir>` takes them), each a stream of ordinary Kubernetes objects. Pure apart from reading the files:
 * problems are returned with the file and document they are in, and none is applied when there is one.
 */

export interface ExampleObject {
  readonly resource: FakeResource;
  readonly object: KubeObjectJson;
  /** `file#document`, for messages. */
  readonly source: string;
}

export type ExamplesResult = { readonly ok: true; readonly objects: ExampleObject[] } | { readonly ok: false; readonly problems: string[] };

/** Which resource of the API server an object is, by its apiVersion and kind. */
export function resourceOf(obj: KubeObjectJson): FakeResource | undefined {
  const [group, version] = (obj.apiVersion ?? '').includes('/') ? (obj.apiVersion ?? '').split('/') : ['', obj.apiVersion];
  for (const [name, info] of Object.entries(RESOURCES) as Array<[FakeResource, (typeof RESOURCES)[FakeResource]]>) {
    // Istio's and the Gateway API's beta versions are the same objects as their v1.
    if (info.kind === obj.kind && info.group === group && (version === info.version || (group !== '' && /^v1(beta1|alpha[0-9])$/.test(version ?? '')))) return name;
  }
  return undefined;
}

export function parseExamples(files: ReadonlyArray<{ readonly name: string; readonly text: string }>): ExamplesResult {
  const objects: ExampleObject[] = [];
  const problems: string[] = [];
  for (const file of files) {
    parseYamlAll(file.text).forEach((doc, index) => {
      const source = `${file.name}#${index + 1}`;
      if (!doc.ok) return problems.push(`${source}: ${doc.errors.join('; ')}`);
      if (doc.value === null || doc.value === undefined) return;
      if (typeof doc.value !== 'object' || Array.isArray(doc.value)) return problems.push(`${source}: not a Kubernetes object`);
      const object = doc.value as KubeObjectJson;
      if (!object.metadata?.name) return problems.push(`${source}: metadata.name is required`);
      const resource = resourceOf(object);
      if (!resource) return problems.push(`${source}: ${object.apiVersion ?? '(no apiVersion)'} ${object.kind ?? '(no kind)'} is not a kind the demo's API server serves`);
      objects.push({ resource, object: { ...object, apiVersion: object.apiVersion ?? '', kind: object.kind ?? '' }, source });
      return undefined;
    });
  }
  return problems.length ? { ok: false, problems } : { ok: true, objects };
}

export async function loadExamples(dir: string): Promise<ExamplesResult> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => /\.ya?ml$/.test(n)).sort();
  } catch (err) {
    return { ok: false, problems: [`${dir}: ${(err as Error).message}`] };
  }
  if (names.length === 0) return { ok: false, problems: [`${dir}: no .yaml files`] };
  return parseExamples(await Promise.all(names.map(async (name) => ({ name, text: await readFile(join(dir, name), 'utf8') }))));
}
