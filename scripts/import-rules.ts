import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

/**
 * The import rules of DESIGN.md §3: which top-level module of src/ may import which, and no cycles
 * between files. Pure over a map of file → imports, so a test can feed it a broken tree.
 */
export const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  core: [],
  sys: ['core'],
  identity: ['core', 'sys'],
  hbone: ['identity', 'core', 'sys'],
  'workload-api': ['identity', 'core', 'sys'],
  ztunnel: ['hbone', 'identity', 'workload-api', 'core', 'sys'],
  waypoint: ['hbone', 'identity', 'workload-api', 'core', 'sys'],
  cni: ['workload-api', 'core', 'sys'],
  'control-plane': ['workload-api', 'identity', 'core', 'sys'],
  demo: ['control-plane', 'ztunnel', 'waypoint', 'cni', 'hbone', 'identity', 'workload-api', 'core', 'sys'],
  cli: ['demo', 'control-plane', 'ztunnel', 'waypoint', 'cni', 'hbone', 'identity', 'workload-api', 'core', 'sys'],
};

/** Relative imports of each file under src/, as paths relative to src/ (`hbone/client.ts`). */
export function readImportGraph(srcDir: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      // Generated protobuf types are type-only and machine-made (Struct ⇄ Value ⇄ ListValue import
      // each other); the rules govern the code we write.
      if (entry.isDirectory()) {
        if (entry.name !== 'generated') walk(path);
      }
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
        const text = readFileSync(path, 'utf8');
        const specifiers = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+'(\.[^']+)'|import\('(\.[^']+)'\)/g)].map((m) => m[1] ?? m[2] ?? '');
        graph.set(toKey(srcDir, path), specifiers.map((s) => toKey(srcDir, resolve(dirname(path), s))));
      }
    }
  };
  walk(srcDir);
  return graph;
}

function toKey(srcDir: string, path: string): string {
  return relative(srcDir, path).split(sep).join('/');
}

const moduleOf = (file: string): string => (file.includes('/') ? (file.split('/')[0] as string) : '');

/** Every violated rule and every cycle, as readable lines; empty when the tree is clean. */
export function checkImportGraph(graph: ReadonlyMap<string, readonly string[]>): string[] {
  const problems: string[] = [];
  for (const [file, imports] of graph) {
    const from = moduleOf(file);
    for (const target of imports) {
      const to = moduleOf(target);
      if (target.startsWith('..')) problems.push(`${file} imports ${target}, outside src/`);
      else if (from !== to && !(ALLOWED[from] ?? []).includes(to)) problems.push(`${file} imports ${target}: ${from || 'src'} may not import ${to || 'src'}`);
    }
  }
  return [...problems, ...findCycles(graph).map((cycle) => `import cycle: ${cycle.join(' -> ')}`)];
}

/** Cycles among files, each reported once (depth-first search with an on-stack set). */
export function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string): void => {
    state.set(file, 'visiting');
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      if (!graph.has(next)) continue;
      const s = state.get(next);
      if (s === 'visiting') cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (s === undefined) visit(next);
    }
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of [...graph.keys()].sort()) if (!state.has(file)) visit(file);
  return cycles;
}
