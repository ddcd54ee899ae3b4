/**
 * Finding the network namespaces of pods that already run, as the Istio CNI node agent does at startup
 * (reference §1.10 step 4): walk `<procRoot>/<pid>` (the host's procfs, mounted at `/host/proc` in the agent),
 * read each process's `cgroup` for the pod UID kubelet put in its path, open `ns/net`, dedupe by the namespace's
 * inode, skip the host's namespace, keep only a namespace that holds one of the pod's IPs, and prefer the
 * oldest process (`stat` field 22, starttime). The fds returned stay open for the caller's cache (the ZDS
 * snapshot hands them to ztunnel); every other fd opened on the way is closed before returning.
 *
 * The parsers are pure; the walk is IO, injected through `podUidOf` and `addressesIn` so tests can drive it
 * from a fake procRoot or from real processes.
 */
import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { errorMessage, silentLogger, type Logger } from '../core/index.ts';
import { closeFd, netnsInode, openNetns, threadNetnsInode } from '../sys/netns.ts';

/** A pod's UID as kubelet writes it in cgroup paths: a UUID (dashes, or underscores under systemd) or 32 hex (static pods). */
const UID_BODY = '[0-9a-fA-F]{8}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{12}|[0-9a-fA-F]{32}';
/** cgroupfs driver: a path segment `pod<uid>` (`/kubepods/burstable/pod<uid>/<container>`, `/kubepods/pod<uid>/...`). */
const CGROUPFS_SEGMENT = new RegExp(`^pod(${UID_BODY})$`);
/** systemd driver: `kubepods[-burstable|-besteffort]-pod<uid with _>.slice`. */
const SYSTEMD_SEGMENT = new RegExp(`^kubepods(?:-[a-z]+)?-pod(${UID_BODY})\\.slice$`);

/**
 * The pod UID in the text of `/proc/<pid>/cgroup` (v1: one `id:controllers:path` line per hierarchy; v2: `0::path`),
 * from kubelet's cgroupfs (`pod<uid>`) or systemd (`kubepods-<qos>-pod<uid_with_underscores>.slice`, `_` read
 * back as `-`) layout; relative paths under a cgroup namespace (`/../kubepods-...slice/...`) work too. Lowercase.
 * Undefined for a process that is not in a pod (host daemons, kubelet itself, the empty file of a zombie).
 */
export function podUidFromCgroup(text: string): string | undefined {
  for (const line of text.split('\n')) {
    // The path is everything after the second colon (and may itself hold colons).
    const first = line.indexOf(':');
    const second = first < 0 ? -1 : line.indexOf(':', first + 1);
    if (second < 0) continue;
    for (const segment of line.slice(second + 1).split('/')) {
      const match = CGROUPFS_SEGMENT.exec(segment) ?? SYSTEMD_SEGMENT.exec(segment);
      if (match?.[1] !== undefined) return match[1].replaceAll('_', '-').toLowerCase();
    }
  }
  return undefined;
}

/**
 * Field 22 (starttime, clock ticks after boot) of `/proc/<pid>/stat`. The comm (field 2) is parenthesised and
 * may hold spaces and parentheses, so fields are counted from after the LAST `)`. Undefined when malformed.
 */
export function startTimeFromStat(text: string): number | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  // After ')' comes field 3 (state); field 22 is the 20th from there.
  const fields = text.slice(close + 1).trim().split(/\s+/);
  const value = fields[22 - 3];
  if (value === undefined || !/^\d+$/.test(value)) return undefined;
  const ticks = Number(value);
  return Number.isSafeInteger(ticks) ? ticks : undefined;
}

/** An open namespace found for a pod: the caller owns `fd` (close it with `closeFd`). */
export interface PodNetns {
  readonly fd: number;
  /** `<st_dev>:<st_ino>` of the namespace (as `netnsInode`). */
  readonly inode: string;
  /** The oldest process seen in it. */
  readonly pid: number;
}

/** The namespace `addressesIn` is asked about: an open fd, and the path it was opened from. */
export interface NetnsRef {
  readonly fd: number;
  /** `<procRoot>/<pid>/ns/net`; the pid may have exited (or, rarely, been reused) since `fd` was opened. */
  readonly path: string;
}

export interface DiscoverPodNetnsOptions {
  /** The host's procfs: `/proc` (default), or `/host/proc` in the agent's pod. */
  readonly procRoot?: string;
  /** The namespace to skip as the host's (as `netnsInode`); default the calling thread's, `threadNetnsInode()`. */
  readonly hostNetnsInode?: string;
  /** The pods to look for: UID → their IPs (one must be in a namespace for it to count). */
  readonly wantedPods: ReadonlyMap<string, readonly string[]>;
  /** The addresses configured in a namespace; default `addressesInNetns` (nsenter + `ip -j addr show`). */
  readonly addressesIn?: (netns: NetnsRef) => Promise<readonly string[]>;
  /** The pod UID of `pid`, undefined for a non-pod process; default reads `<procRoot>/<pid>/cgroup` (podUidFromCgroup). */
  readonly podUidOf?: (pid: number) => Promise<string | undefined>;
  /** Per-pid problems are logged here at debug. */
  readonly logger?: Logger;
}

interface Candidate {
  readonly uid: string;
  readonly fd: number;
  readonly inode: string;
  pid: number;
  startTime: number;
}

const ADDRESSES_TIMEOUT_MS = 10_000;

/**
 * The addresses (`local` of every `addr_info`) in the namespace `netns.fd`. Runs `nsenter --net=/proc/self/fd/3
 * ip -j addr show` with the fd handed down as the child's fd 3, so the namespace asked about is exactly the one
 * held open (no race with the pid exiting or being reused, as a path would have). Rejects when nsenter or ip fails.
 */
export function addressesInNetns(netns: NetnsRef): Promise<readonly string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', ['--net=/proc/self/fd/3', '--', 'ip', '-j', 'addr', 'show'], {
      stdio: ['ignore', 'pipe', 'pipe', netns.fd],
      timeout: ADDRESSES_TIMEOUT_MS,
      killSignal: 'SIGKILL',
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code !== 0) {
        reject(new Error(`nsenter ip -j addr show in ${netns.path}: exit ${code ?? signal}: ${stderr.trim()}`));
        return;
      }
      try {
        resolve(addressesFromIpJson(stdout));
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

/** The `local` addresses in the output of `ip -j addr show`. */
export function addressesFromIpJson(text: string): string[] {
  const links: unknown = JSON.parse(text);
  if (!Array.isArray(links)) throw new Error('ip -j addr show: not a JSON array');
  const found: string[] = [];
  for (const link of links) {
    const infos = (link as { addr_info?: unknown }).addr_info;
    if (!Array.isArray(infos)) continue;
    for (const info of infos) {
      const local = (info as { local?: unknown }).local;
      if (typeof local === 'string') found.push(local);
    }
  }
  return found;
}

/** One spelling per address: IPv6 compressed lowercase without zone; anything else as given. */
function canonicalIp(ip: string): string {
  const bare = ip.split('%')[0] ?? ip;
  if (isIP(bare) !== 6) return bare;
  try {
    return new URL(`http://[${bare}]/`).hostname.slice(1, -1);
  } catch {
    return bare.toLowerCase();
  }
}

async function cgroupPodUid(procRoot: string, pid: number): Promise<string | undefined> {
  return podUidFromCgroup(await readFile(`${procRoot}/${pid}/cgroup`, 'utf8'));
}

async function startTimeOf(procRoot: string, pid: number): Promise<number> {
  const ticks = startTimeFromStat(await readFile(`${procRoot}/${pid}/stat`, 'utf8'));
  if (ticks === undefined) throw new Error('malformed stat');
  return ticks;
}

function closeQuietly(fd: number, log: Logger): void {
  try {
    closeFd(fd);
  } catch (err) {
    log.debug({ fd, err: errorMessage(err) }, 'closing a netns fd failed');
  }
}

/**
 * The network namespace of each wanted pod that has a process under `procRoot`, keyed by pod UID; pods not found
 * are absent. Per-pid failures (a process that exits mid-walk, an unreadable file, a namespace that cannot be
 * opened or asked for its addresses) are logged at debug and skipped; only a procRoot that cannot be listed
 * rejects. Every fd not in the result is closed, also when it rejects. Needs root (CAP_SYS_PTRACE to open other
 * processes' `ns/net`, CAP_SYS_ADMIN for nsenter).
 */
export async function discoverPodNetns(options: DiscoverPodNetnsOptions): Promise<Map<string, PodNetns>> {
  const procRoot = (options.procRoot ?? '/proc').replace(/\/+$/, '') || '/';
  const log = options.logger ?? silentLogger();
  const hostInode = options.hostNetnsInode ?? threadNetnsInode();
  const addressesIn = options.addressesIn ?? addressesInNetns;
  const podUidOf = options.podUidOf ?? ((pid: number) => cgroupPodUid(procRoot, pid));
  const wanted = options.wantedPods;

  const byInode = new Map<string, Candidate>();
  const result = new Map<string, PodNetns>();
  try {
    const pids = (await readdir(procRoot)).filter((name) => /^\d+$/.test(name)).map(Number);
    for (const pid of pids) {
      let fd: number | undefined;
      try {
        const uid = await podUidOf(pid);
        if (uid === undefined || !wanted.has(uid)) continue;
        const startTime = await startTimeOf(procRoot, pid);
        fd = openNetns(`${procRoot}/${pid}/ns/net`);
        // The pid may have exited and been reused between the reads and the open: the starttime tells.
        if ((await startTimeOf(procRoot, pid)) !== startTime) throw new Error('process replaced during the walk');
        const inode = netnsInode(fd);
        if (inode === hostInode) {
          log.debug({ pid, uid }, 'pod process in the host network namespace (hostNetwork pod); skipped');
          continue;
        }
        const seen = byInode.get(inode);
        if (seen === undefined) {
          byInode.set(inode, { uid, fd, inode, pid, startTime });
          fd = undefined; // kept
          continue;
        }
        if (seen.uid !== uid) {
          log.debug({ pid, uid, otherUid: seen.uid, inode }, 'network namespace shared with another pod; skipped');
        } else if (startTime < seen.startTime || (startTime === seen.startTime && pid < seen.pid)) {
          seen.pid = pid;
          seen.startTime = startTime;
        }
      } catch (err) {
        log.debug({ pid, err: errorMessage(err) }, 'skipped process during netns discovery');
      } finally {
        if (fd !== undefined) closeQuietly(fd, log);
      }
    }

    // Namespaces holding one of their pod's IPs; then, per pod, the one with the oldest process.
    const chosen = new Map<string, Candidate>();
    for (const candidate of [...byInode.values()]) {
      const ips = new Set((wanted.get(candidate.uid) ?? []).map(canonicalIp));
      let holds = false;
      try {
        const addresses = await addressesIn({ fd: candidate.fd, path: `${procRoot}/${candidate.pid}/ns/net` });
        holds = addresses.some((address) => ips.has(canonicalIp(address)));
        if (!holds) log.debug({ uid: candidate.uid, pid: candidate.pid, addresses }, "network namespace lacks the pod's IPs; skipped");
      } catch (err) {
        log.debug({ uid: candidate.uid, pid: candidate.pid, err: errorMessage(err) }, 'cannot read addresses of a network namespace; skipped');
      }
      if (!holds) continue;
      const best = chosen.get(candidate.uid);
      if (best === undefined || candidate.startTime < best.startTime) chosen.set(candidate.uid, candidate);
    }
    for (const { uid, fd, inode, pid } of chosen.values()) result.set(uid, { fd, inode, pid });
    return result;
  } finally {
    const kept = new Set([...result.values()].map((found) => found.fd));
    for (const { fd } of byInode.values()) if (!kept.has(fd)) closeQuietly(fd, log);
  }
}
