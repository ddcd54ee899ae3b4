import { lstat, chmod, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import { ErrorCode } from '../core/error-codes.ts';
import { errorMessage, MeshError } from '../core/errors.ts';
import { onceClose, type Handle } from '../core/lifecycle.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import {
  CniCode, FALLBACK_CNI_VERSION, handleCniInvocation,
  type CmdAddEvent, type CmdAddIp, type CniErrorResult, type CniInvocation, type PluginDeps,
} from './plugin.ts';

/**
 * The agent's end of the plugin event socket (reference istio-ambient.md §1.4), HTTP/1.1 on a unix
 * socket, default `/var/run/istio-cni/pluginevent.sock`:
 *
 * - `POST /cni`: one invocation forwarded by our `ambient-cni` shim, `{"env":{CNI_*},"stdin":"…"}`.
 *   200 with the CNI result as the body (possibly empty, for DEL/CHECK), or a CNI error JSON with
 *   400 (the request body itself is bad) or 500 (the plugin refused or failed). The shim prints the
 *   body either way, so every non-200 answer on this path is a CNI error JSON.
 * - `POST /cmdadd`: Istio's own plugin event (`{Netns, PodName, PodNamespace, IPs}`), so an
 *   unmodified istio-cni binary works against this agent: 200 enrolled, 400 bad body, 500 + text.
 *
 * Decisions beyond the reference text: bodies are capped (413 past it); a stale socket file is
 * removed before listening, but a non-socket file at the path is an error; the socket is made 0600.
 */

export const DEFAULT_PLUGIN_SOCKET = '/var/run/istio-cni/pluginevent.sock';
const MAX_CNI_BODY_BYTES = 16 * 1024 * 1024;
const MAX_CMDADD_BODY_BYTES = 1024 * 1024;

export interface PluginServerOptions {
  readonly socketPath: string;
  readonly deps: PluginDeps;
  readonly logger?: Logger;
}

export interface PluginServerHandle extends Handle {
  /** The socket path listened on. */
  address(): string;
}

export async function startPluginServer(options: PluginServerOptions): Promise<PluginServerHandle> {
  const log = options.logger ?? silentLogger();
  await removeStaleSocket(options.socketPath);

  const server = createServer((req, res) => {
    res.on('error', (err) => log.debug({ err: errorMessage(err) }, 'plugin event response failed'));
    route(req, res, options.deps, log).catch((err: unknown) => {
      log.error({ err: errorMessage(err) }, 'plugin event handler failed');
      if (!res.headersSent) sendCniError(res, 500, cniError(CniCode.TryAgainLater, 'ambient-cni: agent internal error', errorMessage(err)));
      else res.destroy();
    });
  });
  server.on('clientError', (_err, socket) => socket.destroy());

  server.listen(options.socketPath);
  try {
    await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err as Error))]);
    await chmod(options.socketPath, 0o600);
  } catch (err) {
    server.close();
    throw new MeshError(ErrorCode.CNI_PLUGIN_SERVER_FAILED, `cannot listen on the plugin event socket ${options.socketPath}: ${errorMessage(err)}`, { cause: err });
  }
  log.info({ socket: options.socketPath }, 'plugin event socket listening');

  const close = onceClose(async () => {
    const closed = once(server, 'close');
    server.close(); // node removes the socket file
    server.closeIdleConnections();
    await closed;
  });
  return { address: () => options.socketPath, close };
}

async function removeStaleSocket(path: string): Promise<void> {
  try {
    const st = await lstat(path);
    if (!st.isSocket()) {
      throw new MeshError(ErrorCode.CNI_PLUGIN_SERVER_FAILED, `cannot listen on ${path}: a file that is not a socket is in the way`);
    }
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

async function route(req: IncomingMessage, res: ServerResponse, deps: PluginDeps, log: Logger): Promise<void> {
  const path = (req.url ?? '').split('?')[0];
  if (path === '/cni') {
    if (req.method !== 'POST') return sendCniError(res, 405, cniError(CniCode.InvalidEnvironment, 'ambient-cni: method not allowed', `${req.method} /cni`));
    const body = await readBody(req, MAX_CNI_BODY_BYTES);
    if (body === undefined) return sendCniError(res, 413, cniError(CniCode.DecodeFailure, 'ambient-cni: request too large', `over ${MAX_CNI_BODY_BYTES} bytes`));
    const invocation = parseInvocation(body);
    if (typeof invocation === 'string') return sendCniError(res, 400, cniError(CniCode.DecodeFailure, 'ambient-cni: bad request from the shim', invocation));
    const outcome = await handleCniInvocation(invocation, deps);
    if (outcome.status === 'ok') return send(res, 200, 'application/json', outcome.stdout);
    log.warn({ code: outcome.reason, cni: outcome.error, command: invocation.env.CNI_COMMAND, args: invocation.env.CNI_ARGS }, 'cni invocation failed');
    return sendCniError(res, 500, outcome.error);
  }
  if (path === '/cmdadd') {
    if (req.method !== 'POST') return send(res, 405, 'text/plain', 'method not allowed\n');
    const body = await readBody(req, MAX_CMDADD_BODY_BYTES);
    if (body === undefined) return send(res, 413, 'text/plain', 'request too large\n');
    const event = parseCmdAddEvent(body);
    if (typeof event === 'string') return send(res, 400, 'text/plain', `bad cmdadd event: ${event}\n`);
    try {
      await deps.addPodToMesh(event);
    } catch (err) {
      log.warn({ code: ErrorCode.CNI_ENROLL_FAILED, pod: `${event.PodNamespace}/${event.PodName}`, err: errorMessage(err) }, 'cmdadd enrolment failed');
      return send(res, 500, 'text/plain', `${errorMessage(err)}\n`);
    }
    return send(res, 200, 'text/plain', '');
  }
  return sendCniError(res, 404, cniError(CniCode.InvalidEnvironment, 'ambient-cni: unknown path', path ?? ''));
}

/** The whole body as text, or undefined past `limit` bytes. */
async function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** A request body as a JSON object, or the problem with it. */
function jsonObjectBody(body: string): Record<string, unknown> | string {
  let root: unknown;
  try {
    root = JSON.parse(body);
  } catch (err) {
    return `body: ${errorMessage(err)}`;
  }
  return isObject(root) ? root : 'body: must be a JSON object';
}

function parseInvocation(body: string): CniInvocation | string {
  const root = jsonObjectBody(body);
  if (typeof root === 'string') return root;
  if (!isObject(root.env)) return 'env: must be an object';
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(root.env)) {
    if (typeof v !== 'string') return `env.${k}: must be a string`;
    env[k] = v;
  }
  if (typeof root.stdin !== 'string') return 'stdin: must be a string';
  return { env, stdin: root.stdin };
}

/** Validates Istio's CNIPluginAddEvent (Go JSON: capitalised keys, `Mask` base64). */
export function parseCmdAddEvent(body: string): CmdAddEvent | string {
  const root = jsonObjectBody(body);
  if (typeof root === 'string') return root;
  for (const key of ['Netns', 'PodName', 'PodNamespace'] as const) {
    if (typeof root[key] !== 'string' || root[key] === '') return `${key}: must be a non-empty string`;
  }
  const rawIps = root.IPs ?? [];
  if (!Array.isArray(rawIps)) return 'IPs: must be a list';
  const ips: CmdAddIp[] = [];
  for (const [i, x] of (rawIps as unknown[]).entries()) {
    const at = `IPs[${i}]`;
    if (!isObject(x)) return `${at}: must be an object`;
    const iface = x.Interface ?? null;
    if (iface !== null && !(typeof iface === 'number' && Number.isInteger(iface) && iface >= 0)) return `${at}.Interface: must be a non-negative integer or null`;
    if (!isObject(x.Address) || typeof x.Address.IP !== 'string' || typeof x.Address.Mask !== 'string') {
      return `${at}.Address: must be {IP, Mask}`;
    }
    const maskLen = Buffer.from(x.Address.Mask, 'base64').length;
    if (maskLen !== 4 && maskLen !== 16) return `${at}.Address.Mask: must be base64 of 4 or 16 bytes`;
    const gw = x.Gateway ?? '';
    if (typeof gw !== 'string') return `${at}.Gateway: must be a string`;
    ips.push({ Interface: iface as number | null, Address: { IP: x.Address.IP, Mask: x.Address.Mask }, Gateway: gw });
  }
  return { Netns: root.Netns as string, PodName: root.PodName as string, PodNamespace: root.PodNamespace as string, IPs: ips };
}

function cniError(code: number, msg: string, details: string): CniErrorResult {
  return { cniVersion: FALLBACK_CNI_VERSION, code, msg, details };
}

function sendCniError(res: ServerResponse, status: number, error: CniErrorResult): void {
  send(res, status, 'application/json', `${JSON.stringify(error)}\n`);
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  const bytes = Buffer.from(body, 'utf8');
  res.writeHead(status, { 'content-type': type, 'content-length': bytes.length, connection: 'close' });
  res.end(bytes);
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}
