import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { namedNetnsPath } from '../sys/netns.ts';
import type { FakeKube, KubeObjectJson } from './api-server.ts';
import type { NetnsNode } from './node-network.ts';

/**
 * A container runtime's CNI side, for tests that create pods the way kubelet does: libcni's plugin lookup on
 * CNI_PATH, each plugin of a conflist run inside the node namespace with CNI_* environment and the network
 * config on stdin (prevResult chained), DEL in reverse with the cached result.
 */

/** Debian's containernetworking-plugins. */
export const CNI_BIN = '/usr/lib/cni';
export const CNI_VERSION = '1.0.0';

export type Json = Record<string, unknown>;

export interface NetConfList {
  readonly name: string;
  readonly cniVersion: string;
  readonly plugins: readonly Json[];
}

export interface CniArgs {
  readonly containerId: string;
  readonly podNs: string;
  readonly podName: string;
  readonly podNamespace: string;
  readonly podUid: string;
}

/** libcni's plugin lookup: the first directory of CNI_PATH holding an executable named after the type. */
export function findPlugin(cniPath: readonly string[], type: string): string {
  for (const dir of cniPath) if (existsSync(join(dir, type))) return join(dir, type);
  throw new Error(`no plugin "${type}" in ${cniPath.join(':')}`);
}

/** One plugin binary run inside the node namespace, as the runtime on that node would run it. */
export async function runPlugin(node: NetnsNode, cniPath: readonly string[], command: 'ADD' | 'DEL', conf: Json, args: CniArgs): Promise<string> {
  const type = String(conf['type']);
  try {
    const { stdout } = await node.exec(findPlugin(cniPath, type), [], {
      env: {
        CNI_COMMAND: command,
        CNI_CONTAINERID: args.containerId,
        CNI_NETNS: namedNetnsPath(args.podNs),
        CNI_IFNAME: 'eth0',
        CNI_PATH: cniPath.join(':'),
        CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${args.podNamespace};K8S_POD_NAME=${args.podName};` +
          `K8S_POD_INFRA_CONTAINER_ID=${args.containerId};K8S_POD_UID=${args.podUid}`,
      },
      input: JSON.stringify(conf),
      timeoutMs: 30_000,
    });
    return stdout;
  } catch (err) {
    // A CNI error is printed on stdout.
    const stdout = (err as { cause?: { stdout?: string } }).cause?.stdout ?? '';
    throw new Error(`CNI ${command} ${type}: ${(err as Error).message} ${stdout}`, { cause: err });
  }
}

export interface ChainRun {
  /** The result of each plugin's ADD, in order. */
  readonly results: Json[];
  /** DEL through the list in reverse order, each with the cached final result as prevResult (as libcni does). */
  del(): Promise<void>;
}

/**
 * libcni's AddNetworkList: each plugin gets its conf plus the list's name and cniVersion, and the previous
 * plugin's result as `prevResult`.
 */
export async function runCniChain(node: NetnsNode, cniPath: readonly string[], list: NetConfList, args: CniArgs): Promise<ChainRun> {
  const results: Json[] = [];
  let prev: Json | undefined;
  for (const plugin of list.plugins) {
    const conf: Json = { ...plugin, name: list.name, cniVersion: list.cniVersion, ...(prev === undefined ? {} : { prevResult: prev }) };
    const stdout = await runPlugin(node, cniPath, 'ADD', conf, args);
    prev = JSON.parse(stdout) as Json;
    results.push(prev);
  }
  const cached = prev;
  let deleted = false;
  return {
    results,
    async del() {
      if (deleted) return;
      deleted = true;
      for (const plugin of [...list.plugins].reverse()) {
        const conf: Json = { ...plugin, name: list.name, cniVersion: list.cniVersion, ...(cached === undefined ? {} : { prevResult: cached }) };
        await runPlugin(node, cniPath, 'DEL', conf, args);
      }
    },
  };
}

/** The node's primary pod network, as a cluster's network add-on leaves it: bridge + host-local for its pod CIDR. */
export function primaryNetwork(name: string, podCidr: string, ipamDir: string): NetConfList {
  return {
    name,
    cniVersion: CNI_VERSION,
    plugins: [{
      type: 'bridge',
      bridge: 'cni0',
      isGateway: true,
      ipMasq: false,
      ipam: { type: 'host-local', ranges: [[{ subnet: podCidr }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: ipamDir },
    }],
  };
}

export const LOOPBACK: NetConfList = { name: 'cni-loopback', cniVersion: CNI_VERSION, plugins: [{ type: 'loopback' }] };

/**
 * Sets kubelet's view of the pod's IP (and, with `ready`, its Ready condition), keeping whatever the agent
 * wrote meanwhile (retries on a conflict).
 */
export async function setPodIp(fake: FakeKube, namespace: string, name: string, ip: string, options: { readonly ready?: boolean } = {}): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const current = fake.get('pods', namespace, name) as KubeObjectJson;
    const status = (current['status'] ?? {}) as Json;
    const conditions = options.ready ? { conditions: [{ type: 'Ready', status: 'True' }] } : {};
    try {
      fake.update('pods', { ...current, status: { ...status, phase: 'Running', podIP: ip, podIPs: [{ ip }], ...conditions } } as Parameters<FakeKube['update']>[1]);
      return;
    } catch (err) {
      if ((err as { status?: number }).status !== 409 || attempt > 20) throw err;
    }
  }
}

/** A simulated node's CNI side: its namespace, its pod CIDR and the folder that stands for its disk. */
export interface SimNode {
  readonly node: NetnsNode;
  readonly name: string;
  readonly podCidr: string;
  readonly dir: string;
}

/** The file name of the node's primary network config, the one the agent's installer chains into. */
export const PRIMARY_CONF = '10-pods.conflist';

/**
 * Lays out the node's CNI dirs under `node.dir` (`net.d` with the primary bridge + host-local config, `bin`,
 * and an empty `proc`) and returns the node agent's environment for them: the installer's dirs and shim, its run
 * dir, the node netns for the host rules, ports 0.
 */
export async function nodeAgentEnv(node: SimNode, kubeconfigPath: string, shim: string): Promise<Record<string, string>> {
  const confDir = join(node.dir, 'net.d');
  const binDir = join(node.dir, 'bin');
  const procRoot = join(node.dir, 'proc');
  for (const d of [confDir, binDir, procRoot]) await mkdir(d, { recursive: true });
  await writeFile(join(confDir, PRIMARY_CONF), JSON.stringify(primaryNetwork(`pods-${node.name}`, node.podCidr, join(node.dir, 'ipam'))));
  return {
    NODE_NAME: node.name, KUBECONFIG: kubeconfigPath, CNI_AGENT_RUN_DIR: node.dir, ZTUNNEL_UDS_ADDRESS: join(node.dir, 'ztunnel.sock'),
    AMBIENT_IPV6: 'false', CNI_PLUGIN_BINARY: shim, CNI_BIN_DIR: binDir, MOUNTED_CNI_NET_DIR: confDir, PROC_ROOT: procRoot,
    HOST_NETNS: namedNetnsPath(node.node.name), MONITORING_PORT: '0', READINESS_PORT: '0',
  };
}

/**
 * The runtime's part of creating a pod sandbox on `node`: loopback, then the node's installed conflist (with the
 * shim the installer copied, found on CNI_PATH), each ADD in the node namespace. Returns the pod's IP and the
 * chain runs (DEL them in reverse).
 */
export async function runtimeAddPod(node: SimNode, args: CniArgs): Promise<{ ip: string; chains: ChainRun[] }> {
  const cniPath = [join(node.dir, 'bin'), CNI_BIN];
  const chains = [await runCniChain(node.node, cniPath, LOOPBACK, args)];
  const list = JSON.parse(await readFile(join(node.dir, 'net.d', PRIMARY_CONF), 'utf8')) as NetConfList;
  const chain = await runCniChain(node.node, cniPath, list, args);
  chains.push(chain);
  const ip = ((chain.results[0]?.['ips'] as Array<{ address: string }> | undefined)?.[0]?.address ?? '').split('/')[0] ?? '';
  return { ip, chains };
}
