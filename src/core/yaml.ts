import { LineCounter, parseAllDocuments, parseDocument } from 'yaml';
import { errorMessage } from './errors.ts';
import { fail, ok, type Result } from './result.ts';

type YamlDocument = ReturnType<typeof parseDocument>;

/** One parsed document as plain JSON values, or its errors with their line and column. */
function documentValue(doc: YamlDocument, lineCounter: LineCounter, maxAliasCount: number): Result<unknown> {
  if (doc.errors.length > 0) {
    return fail(
      ...doc.errors.map((e) => {
        const { line, col } = lineCounter.linePos(e.pos[0]);
        return `line ${line}, column ${col}: ${e.message}`;
      }),
    );
  }
  try {
    return ok(doc.toJS({ maxAliasCount }));
  } catch (err) {
    return fail(`<root>: ${errorMessage(err)}`);
  }
}

/**
 * A YAML document as plain JSON values, strictly: duplicate keys are errors, syntax errors come back
 * as `line L, column C: …`, and alias expansion is capped (a billion-laughs file is refused).
 */
export function parseYaml(text: string, maxAliasCount = 100): Result<unknown> {
  const lineCounter = new LineCounter();
  return documentValue(parseDocument(text, { uniqueKeys: true, prettyErrors: false, lineCounter }), lineCounter, maxAliasCount);
}

/**
 * Every document of a multi-document YAML stream (`---` separated), each as `parseYaml` would give it: one Result
 * per document, so one bad document does not hide the others. Empty documents come back as null.
 */
export function parseYamlAll(text: string, maxAliasCount = 100): Array<Result<unknown>> {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { uniqueKeys: true, prettyErrors: false, lineCounter });
  const list = Array.isArray(docs) ? docs : [docs];
  return list.map((doc) => documentValue(doc as YamlDocument, lineCounter, maxAliasCount));
}
