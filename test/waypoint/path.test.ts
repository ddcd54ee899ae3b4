import test from 'ava';
import { normalizeRequestTarget, type PathNormalization } from '../../src/waypoint/path.ts';

const cases: Array<[string, PathNormalization, string | RegExp, string?]> = [
  ['/a/b', 'BASE', '/a/b'],
  ['/a/./b/../c', 'BASE', '/a/c'],
  ['/a/%2E%2E/admin', 'BASE', '/admin'],
  ['/%61dmin', 'BASE', '/admin'],
  ['/a%2fb', 'BASE', '/a%2Fb'],
  ['/a\\..\\admin', 'BASE', '/admin'],
  ['//admin', 'BASE', '//admin'],
  ['//admin', 'MERGE_SLASHES', '/admin'],
  ['/public/..%2Fadmin', 'BASE', '/public/..%2Fadmin'],
  ['/public/..%2Fadmin', 'DECODE_AND_MERGE_SLASHES', '/admin'],
  ['/public/%2F%2Fadmin', 'DECODE_AND_MERGE_SLASHES', '/public/admin'],
  ['/../../etc', 'BASE', '/etc'],
  ['/a/b/..', 'BASE', '/a/'],
  ['/a/./b/../c', 'NONE', '/a/./b/../c'],
  ['/x?a=1&b=/../', 'BASE', '/x', 'a=1&b=/../'],
  ['http://host:80/p/../q?z', 'BASE', '/q', 'z'],
  ['/bad%zz', 'BASE', /invalid percent-encoding/],
  ['/frag#x', 'BASE', /fragment/],
  ['relative', 'BASE', /not origin-form/],
  ['/sp ace', 'BASE', /control character/],
];

for (const [target, mode, want, query] of cases) {
  test(`path ${mode} ${JSON.stringify(target)}`, (t) => {
    const got = normalizeRequestTarget(target, mode);
    if (want instanceof RegExp) {
      t.false(got.ok);
      if (!got.ok) t.regex(got.errors.join(), want);
    } else if (!got.ok) {
      t.fail(got.errors.join());
    } else {
      t.is(got.value.path, want);
      t.is(got.value.query, query ?? '');
    }
  });
}
