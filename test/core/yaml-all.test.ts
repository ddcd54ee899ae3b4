import test from 'ava';
import { parseYamlAll } from '../../src/core/yaml.ts';

test('parseYamlAll: one result per document; a bad document fails alone with its line; duplicate keys refused', (t) => {
  const docs = parseYamlAll('a: 1\n---\nb: [unclosed\n---\n\n---\nc: 1\nc: 2\n---\n- x\n');
  t.is(docs.length, 5);
  t.deepEqual(docs[0], { ok: true, value: { a: 1 } });
  t.false(docs[1]!.ok);
  t.regex(docs[1]!.ok ? '' : docs[1]!.errors[0] ?? '', /^line \d+, column \d+: /);
  t.deepEqual(docs[2], { ok: true, value: null });
  t.false(docs[3]!.ok, 'duplicate key');
  t.deepEqual(docs[4], { ok: true, value: ['x'] });
  t.deepEqual(parseYamlAll(''), []);
});
