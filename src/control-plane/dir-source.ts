import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { extname, join, relative } from 'node:path';
import { ErrorCode } from '../core/error-codes.ts';
import { errorMessage } from '../core/errors.ts';
import { onceClose, type Handle } from '../core/lifecycle.ts';
import { SerialRunner } from '../core/serial-runner.ts';
import type { Logger } from '../core/logger.ts';
import { parseYamlAll } from '../core/yaml.ts';
import { API_VERSIONS, CLUSTER_SCOPED, KINDS, objectKey, type Kind, type KubeObject } from './kube-objects.ts';
import type { Translator } from './translator.ts';

/**
 * `--config-dir DIR`: a folder of the same objects as the cluster would hold, as YAML (or JSON) files, each with
 * any number of `---` separated documents (a `kind: List` document holds `items`). Files ending in `.yaml`,
 * `.yml` or `.json`, in subfolders too, hidden ones skipped. The folder is watched; every change re-reads it and
 * the translator gets only the differences (objects added, changed, removed).
 *
 * Bad input loses nothing: a file that cannot be read or has a YAML syntax error keeps the objects it had before
 * (a problem is reported for it); a document with an unknown kind, a wrong apiVersion or no name is skipped alone;
 * the same object in two files is taken from the first (by path) and reported. Replace files atomically (write a
 * hidden temporary, then rename), as config tools and ConfigMap mounts do: a file caught half-written is taken as
 * it reads, until the next change event reads it again.
 */

export interface ParsedObject {
  readonly kind: string;
  readonly object: KubeObject;
}

export interface ParsedFile {
  readonly objects: readonly ParsedObject[];
  readonly problems: readonly string[];
  /** A syntax error: the file's previous objects are kept. */
  readonly broken: boolean;
}

/** One file's objects (pure). Namespaced objects without a namespace land in `default`, as `kubectl apply` does. */
export function parseConfigFile(text: string, file: string, extraKinds: readonly string[] = []): ParsedFile {
  const problems: string[] = [];
  const objects: ParsedObject[] = [];
  let broken = false;
  const take = (value: unknown, where: string) => {
    if (value === null || value === undefined) return;
    if (typeof value !== 'object' || Array.isArray(value)) {
      problems.push(`${where}: must be a Kubernetes object, got ${Array.isArray(value) ? 'a list' : typeof value}`);
      return;
    }
    const obj = value as KubeObject & { items?: unknown };
    if (obj.kind === 'List') {
      if (!Array.isArray(obj.items)) problems.push(`${where}: a List needs items`);
      else obj.items.forEach((item, i) => take(item, `${where}.items[${i}]`));
      return;
    }
    const kind = obj.kind ?? '';
    const core = (KINDS as readonly string[]).includes(kind);
    if (!core && !extraKinds.includes(kind)) {
      problems.push(`${where}: unknown kind ${JSON.stringify(kind)} (${[...KINDS, ...extraKinds].join(', ')})`);
      return;
    }
    if (core && !API_VERSIONS[kind as Kind].includes(obj.apiVersion ?? '')) {
      problems.push(`${where}: ${kind} needs apiVersion ${API_VERSIONS[kind as Kind].join(' or ')}, got ${JSON.stringify(obj.apiVersion ?? '')}`);
      return;
    }
    const name = obj.metadata?.name;
    if (typeof name !== 'string' || name === '') {
      problems.push(`${where}: ${kind} needs metadata.name`);
      return;
    }
    const clusterScoped = CLUSTER_SCOPED.has(kind as Kind);
    const metadata = { ...obj.metadata };
    if (clusterScoped) delete (metadata as { namespace?: string }).namespace;
    else if (!metadata.namespace) (metadata as { namespace?: string }).namespace = 'default';
    objects.push({ kind, object: { ...obj, metadata } });
  };
  parseYamlAll(text, 1000).forEach((doc, i) => {
    const where = `${file} (document ${i + 1})`;
    if (!doc.ok) {
      broken = true;
      problems.push(...doc.errors.map((e) => `${where}: ${e}`));
      return;
    }
    take(doc.value, where);
  });
  return { objects, problems, broken };
}

export interface DirSourceOptions {
  readonly dir: string;
  readonly translator: Translator;
  readonly logger: Logger;
  /** Changes closer together than this are read once (50 ms). */
  readonly debounceMs?: number;
}

export interface DirSource extends Handle {
  /** Resolves after the first read has been translated. */
  readonly synced: Promise<void>;
  /** Reads the folder again now (what a change event does). */
  reload(): Promise<void>;
  /** The problems of the last read. */
  problems(): readonly string[];
  /** Completed reads. */
  reloads(): number;
}

const EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && EXTENSIONS.has(extname(e.name)))
    .map((e) => join(e.parentPath, e.name))
    .filter((p) => !relative(dir, p).split('/').some((part) => part.startsWith('.')))
    .sort();
}

export function startDirSource(options: DirSourceOptions): DirSource {
  const log = options.logger.child({ component: 'config-dir', dir: options.dir });
  const translator = options.translator;
  const extraKinds = translator.extensionKinds();
  /** file → its objects at the last good read. */
  const byFile = new Map<string, readonly ParsedObject[]>();
  /** kind\0key → the object as last given to the translator. */
  let applied = new Map<string, { readonly kind: string; readonly object: KubeObject; readonly json: string }>();
  let problems: readonly string[] = [];
  let reloads = 0;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let watcher: FSWatcher | undefined;
  const closers: Array<() => void> = [];

  const readOnce = async (): Promise<void> => {
    const found: string[] = [];
    let files: string[];
    try {
      files = await listFiles(options.dir);
    } catch (err) {
      found.push(`${options.dir}: cannot be read: ${errorMessage(err)}; keeping what was loaded`);
      files = [...byFile.keys()];
    }
    const present = new Set(files);
    for (const file of [...byFile.keys()]) if (!present.has(file) && found.length === 0) byFile.delete(file);
    for (const file of files) {
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          byFile.delete(file);
          continue;
        }
        found.push(`${relative(options.dir, file)}: cannot be read: ${errorMessage(err)}; keeping its previous objects`);
        continue;
      }
      const parsed = parseConfigFile(text, relative(options.dir, file), extraKinds);
      found.push(...parsed.problems);
      if (parsed.broken) {
        if (byFile.has(file)) found.push(`${relative(options.dir, file)}: keeping its previous objects`);
        continue;
      }
      byFile.set(file, parsed.objects);
    }
    const next = new Map<string, { kind: string; object: KubeObject; json: string }>();
    const origin = new Map<string, string>();
    for (const file of [...byFile.keys()].sort()) {
      for (const { kind, object } of byFile.get(file) ?? []) {
        const ref = `${kind}\u0000${objectKey(object)}`;
        const first = origin.get(ref);
        if (first !== undefined) {
          found.push(`${relative(options.dir, file)}: ${kind} ${objectKey(object)} is also in ${relative(options.dir, first)}; that one is used`);
          continue;
        }
        origin.set(ref, file);
        next.set(ref, { kind, object, json: JSON.stringify(object) });
      }
    }
    translator.hold();
    try {
      for (const [ref, entry] of applied) if (!next.has(ref)) translator.change({ kind: entry.kind, type: 'delete', object: entry.object });
      for (const [ref, entry] of next) if (applied.get(ref)?.json !== entry.json) translator.change({ kind: entry.kind, type: 'upsert', object: entry.object });
      if (reloads === 0) translator.markAll();
    } finally {
      translator.release();
    }
    applied = next;
    if (JSON.stringify(found) !== JSON.stringify(problems) && found.length > 0) log.warn({ code: ErrorCode.CP_CONFIG_DIR_FAILED, problems: found }, 'problems in the config folder');
    problems = found;
    reloads++;
    log.debug({ objects: applied.size, files: byFile.size }, 'config folder read');
  };

  const runner = new SerialRunner(readOnce, () => closed);
  const reload = (): Promise<void> => runner.run();

  const schedule = () => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      reload().catch((err: unknown) => log.error({ code: ErrorCode.CP_CONFIG_DIR_FAILED, err: errorMessage(err) }, 'reading the config folder failed'));
    }, options.debounceMs ?? 50);
    timer.unref();
  };

  translator.hold();
  const synced = (async () => {
    try {
      await reload();
    } finally {
      translator.release();
    }
    if (closed) return;
    try {
      watcher = watch(options.dir, { recursive: true }, schedule);
      watcher.on('error', (err) => {
        log.warn({ code: ErrorCode.CP_CONFIG_DIR_FAILED, err: errorMessage(err) }, 'watching the config folder failed; polling every second');
        watcher?.close();
        const poll = setInterval(schedule, 1000);
        poll.unref();
        closers.push(() => clearInterval(poll));
      });
    } catch (err) {
      log.warn({ code: ErrorCode.CP_CONFIG_DIR_FAILED, err: errorMessage(err) }, 'cannot watch the config folder; polling every second');
      const poll = setInterval(schedule, 1000);
      poll.unref();
      closers.push(() => clearInterval(poll));
    }
  })();

  return {
    synced,
    reload,
    problems: () => problems,
    reloads: () => reloads,
    close: onceClose(async () => {
      closed = true;
      if (timer) clearTimeout(timer);
      watcher?.close();
      for (const c of closers) c();
      await runner.idle();
    }),
  };
}
