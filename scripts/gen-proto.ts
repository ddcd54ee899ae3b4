/**
 * Generates the TypeScript types of proto/*.proto into src/workload-api/generated (with the same
 * options the runtime loader uses, see src/workload-api/proto.ts), then adds `.ts` to relative
 * imports so the ESM build resolves them. `--check` generates into a temporary folder and fails
 * when the committed files differ.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';

/** The repository root: the nearest folder above this file holding proto/ (works from scripts/ and dist/scripts/). */
function findRoot(from: string): string {
  for (let dir = from; dir !== dirname(dir); dir = dirname(dir)) if (existsSync(join(dir, 'proto', 'workload.proto'))) return dir;
  throw new Error(`no proto/ above ${from}`);
}

const root = findRoot(import.meta.dirname);
const committed = join(root, 'src', 'workload-api', 'generated');
const PROTOS = ['workload.proto', 'authorization.proto', 'zds.proto', 'citadel.proto', 'discovery.proto', 'l7.proto'];

function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

function generate(outDir: string): void {
  rmSync(outDir, { recursive: true, force: true });
  execFileSync(join(root, 'node_modules', '.bin', 'proto-loader-gen-types'), [
    '--longs=Number', '--enums=String', '--defaults', '--oneofs', '--bytes=Buffer', '--grpcLib=@grpc/grpc-js',
    `--includeDirs=${join(root, 'proto')}`, `--outDir=${outDir}`, ...PROTOS,
  ], { stdio: ['ignore', 'ignore', 'inherit'] });
  for (const file of files(outDir)) {
    const path = join(outDir, file);
    let text = readFileSync(path, 'utf8')
      .replace(/^\/\/ Original file: .*$/gm, (line) => line.replace(root + '/', ''))
      .replace(/from '(\.{1,2}\/[^']+)'/g, "from '$1.ts'");
    // A top-level type map of a file without services is unused (messages are decoded with
    // protobufjs) and would not compile under noUnusedLocals: leave it out.
    if (!file.includes('/') && !/\bgrpc\./.test(text)) {
      rmSync(path);
      continue;
    }
    writeFileSync(path, text);
  }
}

if (process.argv.includes('--check')) {
  const scratch = mkdtempSync(join(tmpdir(), 'ambient-proto-'));
  try {
    generate(scratch);
    const want = files(scratch);
    const have = files(committed);
    const differ = [...new Set([...want, ...have])].filter((f) => {
      try {
        return readFileSync(join(scratch, f), 'utf8') !== readFileSync(join(committed, f), 'utf8');
      } catch {
        return true;
      }
    });
    if (differ.length > 0) {
      console.error(`generated types are stale (run make proto): ${differ.join(', ')}`);
      process.exitCode = 1;
    } else {
      console.log(`generated types: ${want.length} files up to date`);
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
} else {
  generate(committed);
  console.log(`generated ${files(committed).length} files into ${relative(root, committed)}`);
}
