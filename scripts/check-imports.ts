import { join } from 'node:path';
import { checkImportGraph, readImportGraph } from './import-rules.ts';

const root = join(import.meta.dirname, '..', '..');
const graph = readImportGraph(join(root, 'src'));
const problems = checkImportGraph(graph);
for (const line of problems) console.error(line);
console.log(`import rules: ${graph.size} files, ${problems.length} problem(s)`);
process.exitCode = problems.length === 0 ? 0 : 1;
