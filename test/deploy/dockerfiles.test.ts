import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { V1DaemonSet } from '@kubernetes/client-node';
import { parseCniAgentConfig } from '../../src/cni/agent-config.ts';
import { loadManifests, REPO } from '../helpers/manifests.ts';
import { tempDir } from '../helpers/tmp.ts';

/**
 * deploy/docker/ambient-node.Dockerfile cannot be built here (no Docker engine), so it is checked statically and
 * re-enacted: its build stage runs in a temporary directory with only what the stage copies (`make build` there),
 * every `COPY --from=build` of the final stage is copied out of that into a temporary root, and the image's
 * entrypoint is run from there. A file the build stage lacks, or one the runtime misses (proto/ is read at run
 * time, the addon is found relative to dist/), shows up as a failure to build or to start, as it would in Docker.
 */

interface Instruction {
  readonly op: string;
  readonly args: string;
}

interface Stage {
  readonly base: string;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

function parseDockerfile(text: string): Stage[] {
  const lines: string[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') || (line === '' && pending === '')) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    lines.push(pending + line);
    pending = '';
  }
  const stages: Stage[] = [];
  for (const line of lines) {
    const [op = '', ...rest] = line.split(/\s+/);
    const args = rest.join(' ');
    if (op.toUpperCase() === 'FROM') {
      const [base = '', as, name] = args.split(/\s+/);
      stages.push({ base, name: as?.toUpperCase() === 'AS' ? name : undefined, instructions: [] });
    } else {
      const stage = stages.at(-1);
      if (stage === undefined) throw new Error(`${op} before FROM`);
      stage.instructions.push({ op: op.toUpperCase(), args });
    }
  }
  return stages;
}

interface Copy {
  readonly from: string | undefined;
  readonly sources: readonly string[];
  readonly dest: string;
}

function copies(stage: Stage): Copy[] {
  return stage.instructions.filter((i) => i.op === 'COPY').map((i) => {
    const words = i.args.split(/\s+/);
    const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
    const paths = words.filter((w) => !w.startsWith('--'));
    return { from, sources: paths.slice(0, -1), dest: paths.at(-1) ?? '' };
  });
}

const DOCKER_DIR = join(REPO, 'deploy', 'docker');
const IMAGE = 'ambient-node';
const COMPONENTS = ['ztunnel', 'cni-agent'];
const version = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const load = (image: string) => parseDockerfile(readFileSync(join(DOCKER_DIR, `${image}.Dockerfile`), 'utf8'));
const daemonSets = loadManifests().filter((m) => m.object.kind === 'DaemonSet').map((m) => m.object as unknown as V1DaemonSet);
const containers = daemonSets.flatMap((ds) => ds.spec!.template.spec!.containers);
const finalStage = (stages: Stage[]) => stages.at(-1)!;
const last = (stage: Stage, op: string) => stage.instructions.filter((i) => i.op === op).at(-1)?.args;

test('deploy/docker holds the one image both DaemonSets run, tagged with the package version', (t) => {
  const files = readdirSync(DOCKER_DIR).filter((f) => f.endsWith('.Dockerfile')).sort();
  t.deepEqual(files, [`${IMAGE}.Dockerfile`]);
  t.deepEqual([...new Set(containers.map((c) => c.image))], [`${IMAGE}:${version}`]);
  t.deepEqual(containers.map((c) => c.args?.[0]).sort(), [...COMPONENTS].sort(), 'the component is the first argument');
  t.true(containers.every((c) => c.command === undefined), 'the image\'s entrypoint is used');
  const buildTag = containers.flatMap((c) => c.env ?? []).find((e) => e.name === 'ISTIO_META_ISTIO_VERSION')?.value;
  t.is(buildTag, version, 'istio_build{tag} is the version the image carries');
});

test('ambient-node.Dockerfile: multi-stage on Node 24 LTS, production dependencies only, ambientd as the entrypoint and on PATH', (t) => {
  const stages = load(IMAGE);
  t.true(stages.length >= 3, 'build, production deps, runtime');
  for (const s of stages) t.regex(s.base, /^node:24-[a-z]+(-slim)?$/, `${s.name ?? 'final'} stage on Node 24`);
  const runtime = finalStage(stages);
  t.regex(runtime.base, /-slim$/, 'a slim runtime');
  const deps = stages.find((s) => s.instructions.some((i) => i.op === 'RUN' && /npm ci\b.*--omit=dev/.test(i.args)));
  t.truthy(deps?.name, 'a stage installs the production dependencies alone');
  const runtimeCopies = copies(runtime);
  t.true(runtimeCopies.every((c) => c.from !== undefined), 'the runtime stage takes nothing from the build context');
  t.deepEqual(runtimeCopies.filter((c) => c.sources.some((src) => src.endsWith('node_modules'))).map((c) => c.from), [deps?.name], 'node_modules only from the production stage');
  t.false(runtime.instructions.some((i) => i.op === 'RUN' && /npm (ci|install)/.test(i.args)), 'no npm install in the runtime stage');
  t.is(last(runtime, 'WORKDIR'), '/', 'ztunnel\'s relative default paths resolve from /');
  t.is(last(runtime, 'ENTRYPOINT'), '["/app/bin/ambientd"]');
  t.regex(last(runtime, 'ENV') ?? '', /\bPATH=\/app\/bin:\$PATH\b/, 'command: [ambientd] works (the waypoint Deployments)');
  t.regex(runtime.instructions.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n'), /apt-get install .*\biptables\b.*\bipset\b.*\biproute2\b/, 'the agent\'s tools');

  // The build stage's context copies exist and are not excluded by the Dockerfile's .dockerignore.
  const ignore = readFileSync(join(DOCKER_DIR, `${IMAGE}.Dockerfile.dockerignore`), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  for (const c of stages.flatMap(copies).filter((x) => x.from === undefined)) {
    for (const source of c.sources) {
      t.true(existsSync(join(REPO, source)), `${source} is in the repository`);
      t.false(ignore.includes(source.replace(/\/$/, '')), `${source} is not in the .dockerignore`);
    }
  }
  for (const heavy of ['node_modules', 'dist', 'build', '.git']) t.true(ignore.includes(heavy), `${heavy} stays out of the build context`);
});

/**
 * The build stage re-enacted once per run, in a temporary directory: its context copies (what the .dockerignore
 * lets through), node_modules standing in for `npm ci` (a directory of links to this checkout's packages, so
 * nothing of the checkout can be removed through it), then the stage's own RUN commands, `make build` included.
 * Resolves with the stage's WORKDIR as it is after the build.
 */
let builtStage: Promise<string> | undefined;
const buildRoots: string[] = [];
test.after.always(() => {
  for (const root of buildRoots) rmSync(root, { recursive: true, force: true });
});

function reenactBuildStage(): Promise<string> {
  builtStage ??= (async () => {
    const stages = load(IMAGE);
    const build = stages.find((st) => st.instructions.some((i) => i.op === 'RUN' && /\bmake build\b/.test(i.args)));
    if (build === undefined) throw new Error('no stage runs `make build`');
    const root = mkdtempSync(join(tmpdir(), 'ambient-build-stage-'));
    buildRoots.push(root);
    const workdir = last(build, 'WORKDIR') ?? '/';
    const dir = join(root, workdir);
    mkdirSync(dir, { recursive: true });
    for (const instruction of build.instructions) {
      if (instruction.op === 'COPY') {
        const [c] = copies({ ...build, instructions: [instruction] });
        if (c!.from !== undefined) throw new Error(`the build stage copies from ${c!.from}`);
        for (const source of c!.sources) {
          const from = join(REPO, source);
          const into = c!.dest.endsWith('/') ? join(dir, c!.dest, basename(source)) : join(dir, c!.dest);
          mkdirSync(dirname(into), { recursive: true });
          cpSync(from, into, { recursive: true, preserveTimestamps: true });
        }
      } else if (instruction.op === 'RUN') {
        let command = instruction.args;
        if (/\bnpm ci\b/.test(command)) {
          const modules = join(dir, 'node_modules');
          mkdirSync(modules);
          for (const entry of readdirSync(join(REPO, 'node_modules'))) {
            if (entry !== '.installed') symlinkSync(join(REPO, 'node_modules', entry), join(modules, entry));
          }
          command = command.replace(/^\s*npm ci\b[^&]*(&&\s*)?/, '');
          if (/\bnpm\b/.test(command)) throw new Error(`cannot re-enact: ${instruction.args}`);
        }
        if (command.trim() === '') continue;
        const result = spawnSync('/bin/sh', ['-c', command], { cwd: dir, encoding: 'utf8', env: { ...process.env, CI: '' } });
        if (result.status !== 0) throw new Error(`build stage: ${command} exited ${result.status}: ${result.stdout}${result.stderr}`);
      } else if (instruction.op !== 'WORKDIR') {
        throw new Error(`cannot re-enact build-stage instruction ${instruction.op}`);
      }
    }
    return dir;
  })();
  return builtStage;
}

/** The runtime stage's layout under a temporary root: build-stage copies from the re-enacted build, node_modules linked. */
async function assemble(t: ExecutionContext, image: string): Promise<string> {
  const built = await reenactBuildStage();
  const root = await tempDir(t, `ambient-image-${image}-`);
  const stages = load(image);
  const build = stages.find((st) => st.instructions.some((i) => i.op === 'RUN' && /\bmake build\b/.test(i.args)));
  const buildDir = build === undefined ? undefined : last(build, 'WORKDIR');
  t.truthy(buildDir, 'a stage runs `make build`');
  for (const c of copies(finalStage(stages))) {
    t.is(c.sources.length, 1);
    const source = c.sources[0]!;
    const target = join(root, c.dest);
    mkdirSync(dirname(target), { recursive: true });
    if (c.from === build?.name) {
      t.true(source.startsWith(`${buildDir}/`), `${source} is inside the build stage's ${buildDir}`);
      const inStage = join(built, source.slice(`${buildDir}/`.length));
      t.true(existsSync(inStage), `${source} exists after the build stage`);
      cpSync(inStage, target, { recursive: true });
    } else {
      t.is(source, '/app/node_modules', 'the production stage gives only node_modules');
      symlinkSync(join(REPO, 'node_modules'), target);
    }
  }
  return root;
}

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

async function run(command: string, args: readonly string[], options: { cwd: string; env: Record<string, string> }): Promise<Run> {
  const child = spawn(command, args, { cwd: options.cwd, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

test('image layout: the entrypoint starts a ztunnel that becomes ready and serves metrics, and stops on SIGTERM', async (t) => {
  const root = await assemble(t, IMAGE);
  const entrypoint = join(root, 'app', 'bin', 'ambientd');
  accessSync(entrypoint, constants.X_OK);
  const mesh = join(root, 'mesh.yaml');
  writeFileSync(mesh, 'workloads:\n- uid: Kubernetes//Pod/default/server\n  name: server\n  namespace: default\n  serviceAccount: server\n  workloadIps: ["127.0.0.1"]\n  protocol: HBONE\n');
  const flags = ['admin-port', 'stats-port', 'readiness-port', 'outbound-port', 'inbound-port', 'inbound-plaintext-port'].flatMap((f) => [`--${f}`, '0']);
  // Started with a low soft open-files limit: Node itself raises it to the hard limit at startup, as ztunnel does.
  const child = spawn('/bin/sh', ['-c', 'ulimit -Sn 256 && exec "$0" "$@"', entrypoint, 'ztunnel', ...flags], {
    cwd: root,
    env: {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      PROXY_MODE: 'dedicated',
      PROXY_WORKLOAD_INFO: 'default/server/server',
      XDS_ADDRESS: '',
      LOCAL_XDS_PATH: mesh,
      FAKE_CA: 'true',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const started = await new Promise<{ stats: number; readiness: number }>((resolve, reject) => {
    let buffered = '';
    child.stdout.on('data', (c: Buffer) => {
      buffered += c.toString();
      for (const line of buffered.split('\n').slice(0, -1)) {
        const record = JSON.parse(line) as { msg?: string; stats?: number; readiness?: number };
        if (record.msg === 'ztunnel started') resolve({ stats: record.stats!, readiness: record.readiness! });
      }
      buffered = buffered.slice(buffered.lastIndexOf('\n') + 1);
    });
    child.once('exit', (code) => reject(new Error(`ztunnel exited ${code} before starting: ${stderr}`)));
  });
  const limits = readFileSync(`/proc/${child.pid}/limits`, 'utf8');
  const [, soft, hard] = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits) ?? [];
  t.is(soft, hard, 'the soft open-files limit is the hard one');
  let ready = 0;
  for (let i = 0; i < 250 && ready !== 200; i++) {
    ready = (await fetch(`http://127.0.0.1:${started.readiness}/healthz/ready`)).status;
    if (ready !== 200) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  t.is(ready, 200);
  const metrics = await (await fetch(`http://127.0.0.1:${started.stats}/metrics`)).text();
  t.regex(metrics, /^istio_build\{component="ztunnel",tag="unknown"\} 1$/m);
  child.kill('SIGTERM');
  const [code] = (await once(child, 'exit')) as [number | null];
  t.is(code, 0);

  // What shared mode and xDS load lazily is inside the layout too: the native addon (loadAddon looks upwards from
  // dist/src/sys for build/) and the .proto files (protoDir looks upwards from dist/src/workload-api for proto/).
  const dist = join(root, 'app', 'dist', 'src');
  const script = [
    `const sys = await import(${JSON.stringify(join(dist, 'sys', 'addon.js'))});`,
    `const proto = await import(${JSON.stringify(join(dist, 'workload-api', 'proto.js'))});`,
    'sys.loadAddon();',
    'proto.grpcPackageDefinition();',
    'console.log(proto.protoDir());',
  ].join('\n');
  const lazy = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: root, env: {} });
  t.is(lazy.stdout.trim(), join(root, 'app', 'proto'), lazy.stderr);
});

test('image layout: the agent entrypoint loads, and the plugin the installer copies is the static shim at the configured path', async (t) => {
  const root = await assemble(t, IMAGE);
  const entrypoint = join(root, 'app', 'bin', 'ambientd');
  const agent = await run(entrypoint, ['cni-agent'], { cwd: root, env: {} });
  t.is(agent.code, 2, 'a configuration error, after every module of the agent loaded');
  t.regex(agent.stderr, /NODE_NAME: required/);

  const container = containers.find((c) => c.args?.[0] === 'cni-agent')!;
  const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? 'node-1']));
  const parsed = parseCniAgentConfig({}, env);
  if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
  const binSource = parsed.value.install!.binSource;
  const shim = join(root, binSource);
  accessSync(shim, constants.X_OK);
  // Statically linked: no ELF program header of type PT_INTERP (3), so it runs on a host with any libc or none.
  const elf = readFileSync(shim);
  t.is(elf.subarray(0, 4).toString('latin1'), '\x7fELF');
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const types = Array.from({ length: elf.readUInt16LE(0x38) }, (_, i) => elf.readUInt32LE(phoff + i * phentsize));
  t.false(types.includes(3), 'no dynamic loader');
  const version = await run(shim, [], { cwd: root, env: { CNI_COMMAND: 'VERSION' } });
  t.is(version.code, 0);
  t.deepEqual((JSON.parse(version.stdout) as { supportedVersions: string[] }).supportedVersions.includes('1.0.0'), true);
});

test('production dependencies suffice: every package dist/src imports is in package.json dependencies', (t) => {
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
  const builtins = new Set(builtinModules);
  const used = new Set<string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.js')) {
        const text = readFileSync(path, 'utf8');
        for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^import\s+['"]([^'"]+)['"]/gm)) {
          const spec = m[1] ?? m[2] ?? m[3] ?? '';
          if (spec.startsWith('.') || spec.startsWith('node:') || builtins.has(spec)) continue;
          used.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
        }
      }
    }
  };
  walk(join(REPO, 'dist', 'src'));
  t.true(used.size > 0);
  for (const name of used) t.truthy(pkg.dependencies[name], `${name} is a production dependency`);
  t.false(used.has('kubernetes-models'), 'the validation library is for tests only');
});
