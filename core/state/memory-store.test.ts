/**
 * MemoryStateStore: the shared StateStore suite plus what only the memory store has
 * (the sweep, the comparator, the key builders and helpers that need no backend).
 * No network, no threads.
 */
import t from 'tap';
import { storeSuite } from '../../test/helpers/store-suite.js';
import { until } from '../../test/helpers/wait.js';
import { getJSON, setJSON } from './json.js';
import { chargerIndexKey, chargerKey, connectorStatusKey, cpKey, cpPrefix, globalKey } from './keys.js';
import { compareLex, MemoryStateStore } from './memory-store.js';
import { scopeStore } from './scoped-store.js';

t.test('StateStore suite', async (t) => {
  storeSuite(t, async () => {
    const store = new MemoryStateStore();
    return { store, cleanup: () => store.close() };
  });
});

t.test('sweep deletes expired keys nobody reads', async (t) => {
  const store = new MemoryStateStore({ sweepIntervalMs: 20 });
  t.teardown(() => store.close());
  await store.set('a', '1', { ttlMs: 10 });
  await store.hset('h', { f: '1' });
  await store.set('b', '1');
  t.equal(store.size, 3);
  // `size` reads no key, so only the sweep timer can make it drop.
  await until(() => store.size === 2, { what: 'the sweep timer to delete the expired key' });
  t.equal(store.size, 2, 'the expired key is gone without being accessed');
  t.equal(store.sweep(), 0);
});

t.test('sweep disabled: expiry stays exact, memory is reclaimed on access', async (t) => {
  const store = new MemoryStateStore({ sweepIntervalMs: 0 });
  t.teardown(() => store.close());
  await store.set('a', '1', { ttlMs: 10 });
  // Its expiry (set from Date.now() during set()) lies within 10 ms of this; wait on the clock
  // the store reads, not a guess. Expired means now > expiry (Redis's keyIsExpired).
  const setBy = Date.now();
  await until(() => Date.now() > setBy + 10, { what: 'the 10 ms TTL to pass' });
  t.equal(store.size, 1, 'still held');
  t.equal(await store.get('a'), null, 'but expired on access');
  t.equal(store.size, 0);
  await store.set('b', '1', { ttlMs: 10 });
  t.equal(store.sweep(Date.now() + 20), 1, 'a manual sweep reclaims it');
});

t.test('compareLex is UTF-8 byte order', async (t) => {
  const cmp = (a: string, b: string) => Math.sign(compareLex(a, b));
  const bytes = (a: string, b: string) => Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const samples = [
    '',
    'a',
    'A',
    'ab',
    'a:b',
    'CP-1',
    'CP-10',
    'CP-2',
    'é',
    '\uE000',
    '\uFFFD',
    '\u{1F600}',
    '\u{10FFFF}',
    'a\u{1F600}',
    'a\uFFFF',
  ];
  for (const a of samples)
    for (const b of samples) t.equal(cmp(a, b), bytes(a, b), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
});

t.test('keys', async (t) => {
  t.equal(cpKey('CP-1', 'auth', 'session'), 'ocr:{CP-1}:auth:session');
  t.equal(cpPrefix('CP-1', 'auth'), 'ocr:{CP-1}:auth:');
  t.equal(chargerKey('a:b.c*'), 'ocr:{a:b.c*}:core:charger');
  t.equal(connectorStatusKey('CP-1'), 'ocr:{CP-1}:core:status');
  t.equal(chargerIndexKey(), 'ocr:idx:chargers');
  t.equal(globalKey('cluster', 'nodes'), 'ocr:cluster:nodes');
  t.throws(() => chargerKey('CP{1}'), { code: 'OCR_ERR_STATE_KEY_INVALID' }, 'braces break the hash tag');
  t.throws(() => cpKey('CP-1', 'auth', 'x}'), { code: 'OCR_ERR_STATE_KEY_INVALID' });
  t.throws(() => globalKey('a{', 'b'), { code: 'OCR_ERR_STATE_KEY_INVALID' });
  t.throws(() => cpKey('', 'auth', 'x'), { code: 'OCR_ERR_STATE_KEY_INVALID' }, 'empty id');
});

t.test('scopeStore prefixes keys, not members, and does not close the store', async (t) => {
  const store = new MemoryStateStore();
  t.teardown(() => store.close());
  const scoped = scopeStore(store, cpPrefix('CP-1', 'auth'));
  t.equal(scoped.kind, 'memory');
  await scoped.set('session', 's1', { ttlMs: 10_000 });
  await scoped.hset('h', { a: '1' });
  await scoped.indexAdd('idx', 'm1', 'm2');
  t.equal(await store.get('ocr:{CP-1}:auth:session'), 's1');
  t.same(await store.hgetall('ocr:{CP-1}:auth:h'), { a: '1' });
  t.same(await scoped.indexRange('idx'), ['m1', 'm2'], 'members come back unprefixed');
  t.ok((await scoped.pttl('session')) > 0);
  t.equal(await scoped.casHash('h', 'a', '1', { a: '2' }), true);
  t.equal(await scoped.incr('n', 2), 2);
  t.equal(await scoped.del('session', 'n'), 2);
  t.equal(await store.get('ocr:{CP-1}:auth:session'), null);
  const nested = scopeStore(scoped, 'sub:');
  await nested.set('k', 'v');
  t.equal(await store.get('ocr:{CP-1}:auth:sub:k'), 'v', 'scopes nest');
  await scoped.close();
  await t.resolves(store.ping(), 'closing a scoped view leaves the store open');
});

t.test('getJSON / setJSON', async (t) => {
  const store = new MemoryStateStore();
  t.teardown(() => store.close());
  t.equal(await getJSON(store, 'j'), null);
  t.equal(await setJSON(store, 'j', { a: [1, 'x'], b: null }), true);
  t.equal(await store.get('j'), '{"a":[1,"x"],"b":null}', 'readable text in the store');
  t.same(await getJSON<{ a: unknown[] }>(store, 'j'), { a: [1, 'x'], b: null });
  t.equal(await setJSON(store, 'j', 1, { ifAbsent: true }), false, 'options pass through');
  await t.rejects(setJSON(store, 'u', undefined), TypeError);
  await store.set('bad', '{nope');
  await t.rejects(getJSON(store, 'bad'), SyntaxError, 'corrupt JSON is an error, not null');
});
