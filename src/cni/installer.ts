/**
 * The CNI installer: puts the plugin binary into the node's CNI bin dir and chains the plugin entry into the
 * node's primary CNI network config, then keeps both in place until closed (istio-cni's `install-cni`).
 *
 * The decisions are pure and sit at the top: the entry (`pluginEntry`), which file is the primary config
 * (`choosePrimaryConfig` / `primaryConfigCandidates`), the chained text (`chainedConfig`) and the text without
 * our entry (`unchainedConfig`). `installPlugin` is the IO around them: atomic writes (temp file in the same
 * directory + rename), a watch on the bin and conf dirs plus a poll, and a reconcile that only writes when the
 * wanted bytes differ from what is on disk, so our own writes never start a loop.
 *
 * Chaining follows istio-cni (`cni/pkg/install/cniconfig.go`): a list gets our entry appended to `plugins`
 * after any earlier entry of our type is removed, and our entry carries no `cniVersion`; a single-plugin file
 * is wrapped as `{"name":"k8s-pod-network","cniVersion":"0.3.1","plugins":[orig, ours]}` (the original loses its
 * own `cniVersion`, as in istio: the list's version is what the runtime hands every plugin) and `.conf` is renamed
 * to `.conflist`. Output is 2-space JSON with a final newline and the original key order, so chaining twice gives
 * the same text.
 */
import { randomBytes } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { ErrorCode, MeshError, errorCode, errorMessage, fail, ok, silentLogger, type Logger, type Result } from '../core/index.ts';
import { SerialRunner } from '../core/serial-runner.ts';

// ---------------------------------------------------------------------------------------------------------------
// The plugin entry
// ---------------------------------------------------------------------------------------------------------------

/**
 * Our plugin's `type` (and so the binary's file name in the CNI bin dir, which is how the runtime finds it).
 * An istio-cni compatible deployment sets `type` to `istio-cni`, so that an Istio installer or agent on the node
 * recognises (and replaces) the entry, and ours replaces theirs.
 */
export const DEFAULT_PLUGIN_TYPE = 'ambient-cni';
export const DEFAULT_CNI_VERSION = '0.3.1';
export const DEFAULT_CNI_AGENT_RUN_DIR = '/var/run/istio-cni';
/** The name and version of the list a single-plugin `.conf` is wrapped in (istio's values). */
export const WRAPPER_LIST_NAME = 'k8s-pod-network';
export const WRAPPER_CNI_VERSION = '0.3.1';

export interface LabelSelectorJson {
  readonly matchLabels?: Readonly<Record<string, string>>;
  readonly matchExpressions?: ReadonlyArray<{ readonly key: string; readonly operator: string; readonly values?: readonly string[] }>;
}

export interface EnablementSelectorJson {
  readonly podSelector?: LabelSelectorJson;
  readonly namespaceSelector?: LabelSelectorJson;
}

/** Istio's default: pods labelled ambient, or pods in a namespace labelled ambient unless the pod opts out with `none`. */
export const DEFAULT_ENABLEMENT_SELECTORS: readonly EnablementSelectorJson[] = [
  { podSelector: { matchLabels: { 'istio.io/dataplane-mode': 'ambient' } } },
  {
    podSelector: { matchExpressions: [{ key: 'istio.io/dataplane-mode', operator: 'NotIn', values: ['none'] }] },
    namespaceSelector: { matchLabels: { 'istio.io/dataplane-mode': 'ambient' } },
  },
];

/** The plugin entry as written into the CNI config; the keys are istio-cni's, exactly. */
export interface PluginEntry {
  readonly name: string;
  readonly type: string;
  readonly cniVersion: string;
  readonly plugin_log_level: string;
  readonly cni_agent_run_dir: string;
  readonly ambient_enabled: boolean;
  readonly enablement_selectors: readonly EnablementSelectorJson[];
  readonly exclude_namespaces: readonly string[];
  readonly pod_namespace: string;
  readonly native_nftables: boolean;
  readonly enable_ambient_detection_retry: boolean;
}

export interface PluginEntryConfig {
  /** Plugin type and binary name; default `ambient-cni` (`istio-cni` for an istio-cni compatible deployment). */
  readonly type?: string;
  /** Entry name; defaults to the type. */
  readonly name?: string;
  readonly cniVersion?: string;
  readonly pluginLogLevel?: string;
  readonly cniAgentRunDir?: string;
  readonly ambientEnabled?: boolean;
  readonly enablementSelectors?: readonly EnablementSelectorJson[];
  readonly excludeNamespaces?: readonly string[];
  readonly podNamespace?: string;
  readonly nativeNftables?: boolean;
  readonly enableAmbientDetectionRetry?: boolean;
}

/** The entry of §1.2 with its exact keys, in istio's order; unset values take istio's ambient defaults. */
export function pluginEntry(config: PluginEntryConfig = {}): PluginEntry {
  const type = config.type ?? DEFAULT_PLUGIN_TYPE;
  return {
    name: config.name ?? type,
    type,
    cniVersion: config.cniVersion ?? DEFAULT_CNI_VERSION,
    plugin_log_level: config.pluginLogLevel ?? 'info',
    cni_agent_run_dir: config.cniAgentRunDir ?? DEFAULT_CNI_AGENT_RUN_DIR,
    ambient_enabled: config.ambientEnabled ?? true,
    enablement_selectors: structuredClone(config.enablementSelectors ?? DEFAULT_ENABLEMENT_SELECTORS),
    exclude_namespaces: [...(config.excludeNamespaces ?? ['kube-system'])],
    pod_namespace: config.podNamespace ?? 'istio-system',
    native_nftables: config.nativeNftables ?? false,
    enable_ambient_detection_retry: config.enableAmbientDetectionRetry ?? false,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Choosing the primary config
// ---------------------------------------------------------------------------------------------------------------

function isConfigFileName(name: string): boolean {
  return !name.startsWith('.') && (name.endsWith('.conf') || name.endsWith('.conflist'));
}

/** A standalone file of our own (`02-ambient-cni.conflist`, `ambient-cni.conf`): never a primary. */
function isOwnStandaloneFile(name: string, type: string): boolean {
  const stem = name.replace(/\.conf(list)?$/, '').replace(/^\d+-/, '');
  return stem === type;
}

/**
 * The files that may be the primary config, best first: with `confName` only that file (when present);
 * otherwise every `*.conf` / `*.conflist` sorted by name (code-unit order, as Go's sort), without hidden
 * files and without our own standalone file. The caller takes the first that parses (istio's "first valid").
 */
export function primaryConfigCandidates(fileNames: readonly string[], confName?: string, type: string = DEFAULT_PLUGIN_TYPE): string[] {
  if (confName !== undefined && confName !== '') return fileNames.includes(confName) ? [confName] : [];
  return fileNames
    .filter((n) => isConfigFileName(n) && !isOwnStandaloneFile(n, type))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The first candidate by name (see `primaryConfigCandidates`), or undefined when there is none yet. */
export function choosePrimaryConfig(fileNames: readonly string[], confName?: string, type: string = DEFAULT_PLUGIN_TYPE): string | undefined {
  return primaryConfigCandidates(fileNames, confName, type)[0];
}

// ---------------------------------------------------------------------------------------------------------------
// Chaining and unchaining
// ---------------------------------------------------------------------------------------------------------------

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function render(config: JsonObject): string {
  return `${JSON.stringify(config, null, 2)}\n`;
}

function parseConfig(text: string, fileName: string): Result<JsonObject> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return fail(`${fileName}: invalid JSON: ${errorMessage(err)}`);
  }
  if (!isObject(parsed)) return fail(`${fileName}: must be a JSON object`);
  return ok(parsed);
}

/** The plugins of a list, checked; undefined when the config is not a list. */
function listPlugins(config: JsonObject, fileName: string): Result<JsonObject[]> | undefined {
  if (!('plugins' in config)) return undefined;
  const plugins = config.plugins;
  if (!Array.isArray(plugins)) return fail(`${fileName}: plugins: must be an array`);
  const errors: string[] = [];
  plugins.forEach((p, i) => {
    if (!isObject(p)) errors.push(`${fileName}: plugins[${i}]: must be an object`);
  });
  return errors.length > 0 ? { ok: false, errors } : ok(plugins as JsonObject[]);
}

export interface ChainedConfig {
  /** The file to write: the primary's name, with `.conf` turned into `.conflist`. */
  readonly fileName: string;
  readonly text: string;
}

/**
 * The primary config with our entry chained in (see the file comment for the rules). Errors name the file and
 * the field. Idempotent: chaining the result again (under its new name) gives the same name and text.
 */
export function chainedConfig(primaryText: string, fileName: string, entry: PluginEntry): Result<ChainedConfig> {
  const parsed = parseConfig(primaryText, fileName);
  if (!parsed.ok) return parsed;
  const config = parsed.value;
  const { cniVersion: _dropped, ...ours } = entry;
  const outName = fileName.endsWith('.conf') ? `${fileName}list` : fileName;

  const plugins = listPlugins(config, fileName);
  if (plugins !== undefined) {
    if (!plugins.ok) return plugins;
    const others = plugins.value.filter((p) => p.type !== entry.type);
    if (others.length === 0) return fail(`${fileName}: plugins: no plugin other than ${entry.type} to chain to`);
    return ok({ fileName: outName, text: render({ ...config, plugins: [...others, ours] }) });
  }
  if (typeof config.type !== 'string' || config.type === '') {
    return fail(`${fileName}: neither a plugin list (plugins) nor a single plugin (type)`);
  }
  if (config.type === entry.type) return fail(`${fileName}: type: is our own plugin, not a network to chain to`);
  const { cniVersion: _origVersion, ...orig } = config;
  const list = { name: WRAPPER_LIST_NAME, cniVersion: WRAPPER_CNI_VERSION, plugins: [orig, ours] };
  return ok({ fileName: outName, text: render(list) });
}

export interface UnchainedConfig {
  readonly text: string;
  /** How many entries of our type were removed; 0 means the text is returned as it was. */
  readonly removed: number;
}

/**
 * The config without our entries, for uninstall. Only entries whose `type` is ours go; everything else stays,
 * and a list stays a list (also one we once made out of a `.conf`: we do not remember the original file, and a
 * one-plugin list is as valid as the `.conf` was). A config that is not a list is returned unchanged.
 */
export function unchainedConfig(text: string, type: string, fileName = 'config'): Result<UnchainedConfig> {
  const parsed = parseConfig(text, fileName);
  if (!parsed.ok) return parsed;
  const plugins = listPlugins(parsed.value, fileName);
  if (plugins === undefined) return ok({ text, removed: 0 });
  if (!plugins.ok) return plugins;
  const others = plugins.value.filter((p) => p.type !== type);
  const removed = plugins.value.length - others.length;
  if (removed === 0) return ok({ text, removed: 0 });
  return ok({ text: render({ ...parsed.value, plugins: others }), removed });
}

// ---------------------------------------------------------------------------------------------------------------
// IO: install, watch, uninstall
// ---------------------------------------------------------------------------------------------------------------

type InstallerErrorCode = typeof ErrorCode.CNI_INSTALL_FAILED | typeof ErrorCode.CNI_CONFIG_INVALID;

/** A failure to install or remove the plugin; `path` is the file or directory concerned. */
export class CniInstallError extends MeshError {
  readonly path: string;

  constructor(code: InstallerErrorCode, path: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.path = path;
  }
}

export interface InstallOptions {
  /** The plugin binary to copy (from our image). */
  readonly binSource: string;
  /** The node's CNI bin dir (`/opt/cni/bin`); the binary is written there under `entry.type`. */
  readonly cniBinDir: string;
  /** The node's CNI conf dir (`/etc/cni/net.d`). */
  readonly cniConfDir: string;
  /** Chain into this file only (`CNI_CONF_NAME`); otherwise the first valid config by name. */
  readonly confName?: string;
  readonly entry: PluginEntry;
  /** Removed by `uninstall()` (the agent's kubeconfig), when given. */
  readonly kubeconfigPath?: string;
  readonly logger?: Logger;
  /** Poll fallback for missed watch events (default 1000 ms). */
  readonly pollIntervalMs?: number;
  /** Quiet time after a watch event before reconciling (default 100 ms). */
  readonly debounceMs?: number;
}

export interface CniInstallHandle {
  /** Resolves once the binary and the chained config are first in place; rejects if closed before that. */
  readonly installed: Promise<void>;
  /** Whether the last reconcile found (or put) everything in place. */
  isInstalled(): boolean;
  /** The config file our entry was last written to. */
  configPath(): string | undefined;
  /** Stops watching and waits for a running reconcile; leaves everything installed (upgrade). Idempotent. */
  close(): Promise<void>;
  /** Closes, then removes our entry from every config that has it, the binary, and the kubeconfig if given. */
  uninstall(): Promise<void>;
}

let tempCounter = 0;

/** Writes `data` to `path` through a temp file in the same directory and a rename; the mode is set explicitly. */
async function writeAtomic(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const dir = join(path, '..');
  const temp = join(dir, `.${basename(path)}.tmp-${process.pid}-${++tempCounter}-${randomBytes(4).toString('hex')}`);
  try {
    await writeFile(temp, data, { mode });
    await chmod(temp, mode); // the umask may have narrowed it
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
}

function isNotFound(err: unknown): boolean {
  return errorCode(err) === 'ENOENT';
}

async function readIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

const BINARY_MODE = 0o755;

/**
 * Installs the plugin and keeps it installed: copies the binary, waits for a primary config, chains our entry
 * into it, then watches the bin and conf dirs (and polls) and puts back whatever disappears or changes. Never
 * throws after it has started: IO failures and invalid configs are logged with their code and retried on the
 * next event or poll.
 */
export function installPlugin(options: InstallOptions): CniInstallHandle {
  const logger = (options.logger ?? silentLogger()).child({ component: 'cni-installer' });
  const pollMs = options.pollIntervalMs ?? 1000;
  const debounceMs = options.debounceMs ?? 100;
  const { entry, cniBinDir, cniConfDir } = options;
  const binaryPath = join(cniBinDir, entry.type);

  let closed = false;
  let installedFlag = false;
  let writtenConfig: string | undefined;
  /** stat of the binary as we last left it: a cheap check before comparing bytes. */
  let binaryStamp: string | undefined;
  let lastProblem: string | undefined;
  const watchers: FSWatcher[] = [];
  let debounceTimer: NodeJS.Timeout | undefined;
  let pollTimer: NodeJS.Timeout | undefined;

  let resolveInstalled!: () => void;
  let rejectInstalled!: (err: unknown) => void;
  const installed = new Promise<void>((resolve, reject) => {
    resolveInstalled = resolve;
    rejectInstalled = reject;
  });
  installed.catch(() => undefined); // a caller that never awaits it must not see an unhandled rejection

  const stampOf = async (path: string): Promise<string | undefined> => {
    try {
      const s = await stat(path);
      return `${s.size}:${s.mtimeMs}:${s.mode & 0o777}:${s.ino}`;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  };

  const ensureBinary = async (): Promise<void> => {
    const stamp = await stampOf(binaryPath);
    if (stamp !== undefined && stamp === binaryStamp) return;
    const source = await readFile(options.binSource);
    const current = stamp === undefined ? undefined : await readIfExists(binaryPath);
    const modeOk = stamp !== undefined && stamp.split(':')[2] === String(BINARY_MODE);
    if (current === undefined || !modeOk || !current.equals(source)) {
      await writeAtomic(binaryPath, source, BINARY_MODE);
      logger.info({ path: binaryPath }, current === undefined ? 'installed CNI plugin binary' : 'replaced CNI plugin binary');
    }
    binaryStamp = await stampOf(binaryPath);
  };

  /** Chains into the first valid primary config; false while there is none. */
  const ensureConfig = async (): Promise<boolean> => {
    let names: string[];
    try {
      names = await readdir(cniConfDir);
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
    const problems: string[] = [];
    for (const name of primaryConfigCandidates(names, options.confName, entry.type)) {
      const path = join(cniConfDir, name);
      const text = await readIfExists(path);
      if (text === undefined) continue; // removed since readdir
      const chained = chainedConfig(text.toString('utf8'), name, entry);
      if (!chained.ok) {
        problems.push(...chained.errors);
        continue;
      }
      const outPath = join(cniConfDir, chained.value.fileName);
      const existing = outPath === path ? text : await readIfExists(outPath);
      if (existing === undefined || existing.toString('utf8') !== chained.value.text) {
        const mode = (await stat(path)).mode & 0o777;
        await writeAtomic(outPath, chained.value.text, mode);
        logger.info({ path: outPath, primary: path }, 'chained CNI plugin into the primary config');
      }
      if (outPath !== path) {
        await unlink(path).catch((err: unknown) => {
          if (!isNotFound(err)) throw err;
        });
      }
      writtenConfig = outPath;
      reportProblems([]);
      return true;
    }
    reportProblems(problems);
    return false;
  };

  /** Logs invalid configs once per distinct set of problems, not on every poll. */
  const reportProblems = (problems: readonly string[]): void => {
    const key = problems.join('\n');
    if (key === (lastProblem ?? '')) return;
    lastProblem = key;
    if (problems.length > 0) {
      logger.warn({ code: ErrorCode.CNI_CONFIG_INVALID, problems }, 'skipping invalid CNI config files');
    }
  };

  const reconcileOnce = async (): Promise<void> => {
    try {
      await ensureBinary();
      const configured = await ensureConfig();
      if (!configured && !installedFlag) {
        logger.debug({ dir: cniConfDir }, 'waiting for a primary CNI config');
      }
      installedFlag = configured;
      if (configured) resolveInstalled();
    } catch (err) {
      installedFlag = false;
      const wrapped = new CniInstallError(ErrorCode.CNI_INSTALL_FAILED, cniConfDir, `cannot install the CNI plugin: ${errorMessage(err)}`, { cause: err });
      logger.error({ code: wrapped.code, err: errorMessage(err) }, wrapped.message);
    }
  };

  /** Runs reconciles one at a time; a request during a run queues exactly one more. */
  const runner = new SerialRunner(reconcileOnce, () => closed);
  const reconcile = (): Promise<void> => (closed ? Promise.resolve() : runner.run());

  const schedule = (): void => {
    if (closed) return;
    if (debounceTimer) clearTimeout(debounceTimer);
    debounceTimer = setTimeout(() => {
      debounceTimer = undefined;
      void reconcile();
    }, debounceMs);
    debounceTimer.unref();
  };

  const startWatching = async (): Promise<void> => {
    await mkdir(cniBinDir, { recursive: true }).catch(() => undefined);
    await mkdir(cniConfDir, { recursive: true }).catch(() => undefined);
    for (const dir of [cniBinDir, cniConfDir]) {
      if (closed) return;
      try {
        const w = watch(dir, { persistent: false }, schedule);
        w.on('error', (err) => logger.warn({ dir, err: errorMessage(err) }, 'CNI dir watch failed; polling only'));
        watchers.push(w);
      } catch (err) {
        logger.warn({ dir, err: errorMessage(err) }, 'cannot watch CNI dir; polling only');
      }
    }
    const poll = (): void => {
      pollTimer = setTimeout(() => {
        void reconcile().then(() => {
          if (!closed) poll();
        });
      }, pollMs);
      pollTimer.unref();
    };
    if (!closed) poll();
  };

  const started = startWatching().then(() => reconcile());

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      closed = true;
      if (debounceTimer) clearTimeout(debounceTimer);
      if (pollTimer) clearTimeout(pollTimer);
      await started.catch(() => undefined);
      for (const w of watchers.splice(0)) w.close();
      if (pollTimer) clearTimeout(pollTimer);
      await runner.idle();
      if (!installedFlag) {
        rejectInstalled(new CniInstallError(ErrorCode.CNI_INSTALL_FAILED, cniConfDir, `closed before a primary CNI config appeared in ${cniConfDir}`));
      }
    })();
    return closing;
  };

  const uninstall = async (): Promise<void> => {
    await close();
    const failures: unknown[] = [];
    let names: string[] = [];
    try {
      names = await readdir(cniConfDir);
    } catch (err) {
      if (!isNotFound(err)) failures.push(err);
    }
    for (const name of names.filter(isConfigFileName)) {
      const path = join(cniConfDir, name);
      try {
        const text = await readIfExists(path);
        if (text === undefined) continue;
        const result = unchainedConfig(text.toString('utf8'), entry.type, name);
        if (!result.ok || result.value.removed === 0) continue; // not ours to touch
        await writeAtomic(path, result.value.text, (await stat(path)).mode & 0o777);
        logger.info({ path }, 'removed CNI plugin entry');
      } catch (err) {
        failures.push(err);
      }
    }
    for (const path of [binaryPath, options.kubeconfigPath]) {
      if (path === undefined) continue;
      try {
        await unlink(path);
        logger.info({ path }, 'removed');
      } catch (err) {
        if (!isNotFound(err)) failures.push(err);
      }
    }
    installedFlag = false;
    if (failures.length > 0) {
      throw new CniInstallError(
        ErrorCode.CNI_INSTALL_FAILED,
        cniConfDir,
        `cannot fully uninstall the CNI plugin: ${failures.map(errorMessage).join('; ')}`,
        { cause: new AggregateError(failures) },
      );
    }
  };

  return {
    installed,
    isInstalled: () => installedFlag,
    configPath: () => writtenConfig,
    close,
    uninstall,
  };
}
