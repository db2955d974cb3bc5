/**
 * The catalogue is complete and is the only way errors get a code: every OCR_ERR_* code in the
 * sources is a key of `errors`, every key is documented in docs/errors.md (and nothing else
 * is), and each constructor builds what it declares.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import t from 'tap';
import { createError, errors, fromSerialized, type RouterErrorCtor } from './errors.js';

const root = join(import.meta.dirname, '..');

/** Source files (not tests) of core/, plugins/ and bin/, relative to the repository root. */
function sources(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'node_modules' && e.name !== 'dist') walk(path);
      } else if (/\.(ts|js|mjs|cjs)$/.test(e.name) && !/\.test\.[cm]?[jt]s$/.test(e.name)) {
        out.push(relative(root, path));
      }
    }
  };
  for (const top of ['core', 'plugins', 'bin']) walk(join(root, top));
  return out;
}

const files = sources().map((path) => ({ path, text: readFileSync(join(root, path), 'utf8') }));
const catalogue = errors as Record<string, RouterErrorCtor>;
const keys = Object.keys(catalogue);

t.test('the scan sees the sources', async (t) => {
  t.ok(files.some((f) => f.path === join('core', 'errors.ts')));
  t.ok(files.some((f) => f.path.startsWith('plugins')));
  t.ok(files.some((f) => f.path.startsWith('bin')));
  t.notOk(
    files.some((f) => f.path.includes('.test.')),
    'tests are not scanned',
  );
});

t.test('every OCR_ERR_* code in a string literal is in the catalogue', async (t) => {
  let literals = 0;
  for (const { path, text } of files) {
    for (const m of text.matchAll(/(['"`])(OCR_ERR_[A-Z0-9_]+)\1/g)) {
      literals++;
      t.ok(Object.hasOwn(catalogue, m[2]), `${m[2]} (${path}) is a key of errors`);
    }
  }
  t.ok(literals > keys.length, 'found the literals of the catalogue itself and of the raise sites');
});

t.test('each key is its constructor’s code', async (t) => {
  for (const k of keys) t.equal(catalogue[k].code, k);
});

t.test('docs/errors.md documents every code, with its anchor, and no other', async (t) => {
  const doc = readFileSync(join(root, 'docs', 'errors.md'), 'utf8');
  for (const k of keys) t.ok(doc.includes(`<a id="${k}"></a>**${k}**`), `${k} is documented with its anchor`);
  const documented = new Set([...doc.matchAll(/OCR_ERR_[A-Z0-9_]+/g)].map((m) => m[0]));
  for (const code of documented) t.ok(Object.hasOwn(catalogue, code), `documented ${code} exists`);
  const anchors = [...doc.matchAll(/<a id="(OCR_ERR_[A-Z0-9_]+)">/g)].map((m) => m[1]);
  t.equal(new Set(anchors).size, anchors.length, 'each anchor once');
  // An HTTP status in brackets after the name is the constructor's statusCode, and one is
  // documented wherever a constructor has it.
  for (const k of keys) {
    const status = new RegExp(`\\*\\*${k}\\*\\* \\[(\\d{3})\\]`).exec(doc)?.[1];
    t.equal(status === undefined ? undefined : Number(status), catalogue[k].statusCode, `${k}: documented status`);
  }
});

t.test('no error is built by hand', async (t) => {
  for (const { path, text } of files) {
    t.notMatch(text, /Object\.assign\(\s*new\s+Error\b/, `${path}: no Object.assign(new Error…)`);
    t.notMatch(text, /\bcode\s*[:=]\s*['"`]OCR_ERR_/, `${path}: no OCR_ERR_* code set by hand`);
  }
});

t.test('each constructor: code, message from its template, statusCode, cause, details', async (t) => {
  const cause = new Error('underlying');
  for (const k of keys) {
    const E = catalogue[k];
    const n = E.template.match(/%s/g)?.length ?? 0;
    const args = Array.from({ length: n }, (_, i) => `<arg${i}>`);
    let i = 0;
    const expected = E.template.replace(/%s/g, () => args[i++]);

    const err = new E(...args);
    t.ok(err instanceof Error, `${k} is an Error`);
    t.equal(err.code, k);
    t.equal(err.name, 'RouterError');
    t.equal(err.message, expected, `${k} message from its template`);
    t.equal(err.statusCode, E.statusCode, `${k} statusCode as declared`);
    t.notOk('cause' in err, `${k} has no cause unless given`);

    const withOpts = E(...args, { cause, details: { x: 1 } });
    t.equal(withOpts.code, k, `${k} also works without new`);
    t.equal(withOpts.message, expected);
    t.equal(withOpts.cause, cause, `${k} keeps the cause`);
    t.same(withOpts.details, { x: 1 }, `${k} keeps details`);
  }
});

t.test('statusCode where the HTTP API maps the code', async (t) => {
  t.equal(errors.OCR_ERR_CMD_NOT_CONNECTED('x').statusCode, 404);
  t.equal(errors.OCR_ERR_CMD_UNKNOWN_ACTION('a', 'v').statusCode, 400);
  t.equal(errors.OCR_ERR_CMD_INVALID_PAYLOAD('a', 'd').statusCode, 400);
  t.equal(errors.OCR_ERR_CMD_BUSY('x').statusCode, 409);
  t.equal(errors.OCR_ERR_CMD_TIMEOUT('x', 'a', 1).statusCode, 504);
  t.equal(errors.OCR_ERR_CMD_DISCONNECTED('x', 'a', 'r').statusCode, 502);
  t.equal(errors.OCR_ERR_CMD_CALL_ERROR('x', 'a', 'c', 'd').statusCode, 502);
  t.equal(errors.OCR_ERR_CMD_INVALID_RESPONSE('x', 'a', 'd').statusCode, 502);
  t.equal(errors.OCR_ERR_CONFIG_INVALID('x').statusCode, undefined, 'none where it does not map');
});

t.test('an object among the template arguments is not taken for options', async (t) => {
  const E = createError('OCR_ERR_TEST', 'a %s b');
  t.equal(E('1').message, 'a 1 b');
  t.notOk('cause' in E('1'));
  t.equal(E('1', { cause: 2 }).cause, 2);
});

t.test('fromSerialized rebuilds what was sent, and only that', async (t) => {
  const sent = errors.OCR_ERR_CMD_CALL_ERROR('CP', 'Reset', 'NotSupported', 'no', { details: { d: 1 } });
  const wire = JSON.parse(
    JSON.stringify({
      name: sent.name,
      message: sent.message,
      code: sent.code,
      statusCode: sent.statusCode,
      details: sent.details,
      callError: { code: 'NotSupported' },
    }),
  );
  const err = fromSerialized(wire);
  t.ok(err instanceof Error);
  t.match(err, {
    name: 'RouterError',
    message: sent.message,
    code: 'OCR_ERR_CMD_CALL_ERROR',
    statusCode: 502,
    details: { d: 1 },
    callError: { code: 'NotSupported' },
  });

  const plain = fromSerialized({ message: 'boom' });
  t.equal(plain.message, 'boom');
  t.equal(plain.name, 'Error');
  t.notOk('code' in plain, 'an error sent without a code has none');
  t.notOk('statusCode' in plain);
});
