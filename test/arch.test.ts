import test from 'ava';
import { join } from 'node:path';
import { checkImportGraph, findCycles, readImportGraph } from '../scripts/import-rules.ts';

const src = join(import.meta.dirname, '..', '..', 'src');

test('the source tree keeps the import rules and has no cycles', (t) => {
  const graph = readImportGraph(src);
  t.true(graph.size > 10, 'the reader found the sources');
  t.true(graph.get('hbone/client.ts')?.includes('identity/spiffe.ts'), 'the reader resolves relative imports');
  t.deepEqual(checkImportGraph(graph), []);
});

test('a forbidden direction is reported', (t) => {
  const problems = checkImportGraph(new Map([['core/a.ts', ['hbone/b.ts']], ['hbone/b.ts', []]]));
  t.deepEqual(problems, ['core/a.ts imports hbone/b.ts: core may not import hbone']);
});

test('ztunnel and waypoint may not import each other', (t) => {
  const problems = checkImportGraph(new Map([['ztunnel/a.ts', ['waypoint/b.ts']], ['waypoint/b.ts', []]]));
  t.is(problems.length, 1);
});

test('a cycle is reported once with its path', (t) => {
  const graph = new Map([['hbone/a.ts', ['hbone/b.ts']], ['hbone/b.ts', ['hbone/c.ts']], ['hbone/c.ts', ['hbone/a.ts']]]);
  t.deepEqual(findCycles(graph), [['hbone/a.ts', 'hbone/b.ts', 'hbone/c.ts', 'hbone/a.ts']]);
});
