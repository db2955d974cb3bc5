/**
 * The one StateStore contract suite, run against every implementation:
 *   core/state/memory-store.test.ts              MemoryStateStore
 *   test/integration/redis/redis-store.test.ts   RedisStateStore on a real redis-server
 *   core/state/remote-store.test.ts              RemoteStateStore over real BroadcastChannels
 *
 * Owns: what "behaves like Redis" means for our stores, including reply errors (asserted by
 * name 'ReplyError' plus Redis's message prefix, since Redis replies carry no code), TTLs,
 * index byte order and atomicity under concurrency.
 *
 * Must not: depend on an implementation's internals, or share keys between subtests: each
 * subtest asks `makeStore()` for a fresh, isolated store (own instance or own key prefix)
 * and cleans it up in teardown, so files may run in parallel against one Redis.
 */
import type { Test } from 'tap';
import type { StateStore } from '../../core/state/store.js';
import { until } from './wait.js';

export interface StoreFixture {
  store: StateStore;
  /** Must tolerate a store that the test already closed. */
  cleanup(): Promise<void>;
}

export type MakeStore = () => Promise<StoreFixture>;

/**
 * Waits until `ms` have passed since `since` (Date.now()) on the clock a store's TTLs run on
 * (Redis on this host reads the same one). Keys must expire untouched: polling them would
 * expire them by the reading (lazy expiry), which is not what these tests are about.
 */
const passed = (since: number, ms: number, what: string) => until(() => Date.now() > since + ms, { what });

const WRONGTYPE = { name: 'ReplyError', message: /^WRONGTYPE/ };
const NOT_INTEGER = { name: 'ReplyError', message: /^ERR value is not an integer/ };

export function storeSuite(t: Test, makeStore: MakeStore): void {
  /** A subtest with a fresh store, cleaned up whatever happens. */
  const withStore = (name: string, fn: (t: Test, store: StateStore) => Promise<void>) =>
    void t.test(name, async (t) => {
      const made = await makeStore();
      t.teardown(() => made.cleanup());
      await fn(t, made.store);
    });

  withStore('get / set / del', async (t, s) => {
    t.equal(await s.get('a'), null, 'missing key reads null');
    t.equal(await s.set('a', '1'), true);
    t.equal(await s.get('a'), '1');
    t.equal(await s.set('a', '2'), true, 'plain set overwrites');
    t.equal(await s.get('a'), '2');
    t.equal(await s.set('', 'empty key'), true, 'the empty string is a valid key');
    t.equal(await s.get(''), 'empty key');
    t.equal(await s.set('e', ''), true);
    t.equal(await s.get('e'), '', 'empty value is not null');

    t.equal(await s.set('a', '3', { ifAbsent: true }), false, 'ifAbsent on an existing key');
    t.equal(await s.get('a'), '2', 'value unchanged');
    t.equal(await s.set('b', 'x', { ifAbsent: true }), true, 'ifAbsent on a missing key');
    t.equal(await s.get('b'), 'x');

    t.equal(await s.del('a', 'b', 'nope', 'a'), 2, 'counts removed keys; duplicates and missing count 0');
    t.equal(await s.get('a'), null);
    t.equal(await s.del(), 0, 'del() with no keys is a no-op');
    t.equal(await s.del('e', ''), 2);
  });

  withStore('TTL: expiry, pttl, SET semantics', async (t, s) => {
    t.equal(await s.pttl('none'), -2, 'missing key');
    await s.set('p', 'v');
    t.equal(await s.pttl('p'), -1, 'no TTL');

    // 250ms leaves room for a loaded CI machine between set and the reads below. Both
    // keys were applied before `applied`, so both have expired once it is ttlMs + 30 ago.
    const ttlMs = 250;
    t.equal(await s.set('k', 'v', { ttlMs }), true);
    await s.set('k2', 'v', { ttlMs, ifAbsent: true });
    const applied = Date.now();
    const left = await s.pttl('k');
    t.ok(left > 0 && left <= ttlMs, `pttl within (0, ${ttlMs}]: ${left}`);
    t.equal(await s.get('k'), 'v', 'readable before expiry');
    await passed(applied, ttlMs + 30, `the ${ttlMs} ms TTL (+30 ms) to pass`);
    t.equal(await s.get('k'), null, 'expired');
    t.equal(await s.pttl('k'), -2, 'expired key does not exist');
    t.equal(
      await s.set('k2', 'again', { ttlMs, ifAbsent: true }),
      true,
      'an expired key counts as absent for ifAbsent',
    );

    await s.set('keep', 'v', { ttlMs: 10_000 });
    await s.set('keep', 'w');
    t.equal(await s.pttl('keep'), -1, 'a plain SET drops the old TTL');

    await s.set('ctr', '5', { ttlMs: 10_000 });
    t.equal(await s.incr('ctr'), 6);
    t.ok((await s.pttl('ctr')) > 0, 'INCR keeps the TTL');

    await s.set('nx', 'v', { ttlMs: 10_000 });
    await s.set('nx', 'w', { ifAbsent: true });
    t.ok((await s.pttl('nx')) > 0, 'a refused ifAbsent leaves the TTL alone');

    await t.rejects(
      s.set('bad', 'v', { ttlMs: 0 }),
      { name: 'ReplyError', message: /^ERR invalid expire time/ },
      'ttlMs 0',
    );
    await t.rejects(
      s.set('bad', 'v', { ttlMs: -5 }),
      { name: 'ReplyError', message: /^ERR invalid expire time/ },
      'negative ttlMs',
    );
    await t.rejects(s.set('bad', 'v', { ttlMs: 1.5 }), NOT_INTEGER, 'fractional ttlMs');
    t.equal(await s.get('bad'), null, 'nothing written by a rejected set');
  });

  withStore('incr', async (t, s) => {
    t.equal(await s.incr('c'), 1, 'created at 0');
    t.equal(await s.incr('c', 5), 6);
    t.equal(await s.incr('c', -10), -4);
    t.equal(await s.incr('c', 0), -4);
    t.equal(await s.get('c'), '-4', 'stored as a decimal string');

    await s.set('n', '41');
    t.equal(await s.incr('n'), 42);
    // 2^50: past the 15 digits MemoryStateStore handles without BigInt. (Not closer to
    // 2^53: ioredis's reply decoder rounds integers within ~60 of Number.MAX_SAFE_INTEGER.)
    await s.set('big', '1125899906842623');
    t.equal(await s.incr('big'), 1125899906842624, 'large integers stay exact');
    t.equal(await s.incr('big', -1125899906842625), -1);
    await s.set('max', '9223372036854775807');
    await t.rejects(
      s.incr('max'),
      { name: 'ReplyError', message: /^ERR increment or decrement would overflow/ },
      'int64 overflow',
    );
    t.equal(await s.get('max'), '9223372036854775807', 'unchanged after overflow');

    for (const bad of ['abc', '1.5', '01', ' 1', '1 ', '+1', '-0', '', '1e3', '99999999999999999999']) {
      await s.set('x', bad);
      await t.rejects(s.incr('x'), NOT_INTEGER, `non-integer value ${JSON.stringify(bad)}`);
      t.equal(await s.get('x'), bad, 'value unchanged');
    }
    await t.rejects(s.incr('c', 1.5), NOT_INTEGER, 'fractional increment');
    await t.rejects(s.incr('c', Number.NaN), NOT_INTEGER, 'NaN increment');
    t.equal(await s.get('c'), '-4');

    await s.hset('h', { f: '1' });
    await t.rejects(s.incr('h'), WRONGTYPE, 'incr on a hash');
  });

  withStore('hashes', async (t, s) => {
    t.equal(await s.hget('h', 'f'), null, 'missing key');
    t.same(await s.hgetall('h'), {}, 'hgetall of a missing key is {}');
    await s.hset('h', { a: '1', b: '2' });
    t.equal(await s.hget('h', 'a'), '1');
    t.equal(await s.hget('h', 'zz'), null, 'missing field');
    await s.hset('h', { b: '3', c: '' });
    t.same(await s.hgetall('h'), { a: '1', b: '3', c: '' }, 'hset merges');
    t.equal(await s.hdel('h', 'a', 'nope', 'a'), 1, 'counts removed fields');
    t.equal(await s.hdel('h'), 0, 'hdel with no fields is a no-op');
    t.same(await s.hgetall('h'), { b: '3', c: '' });
    t.equal(await s.hdel('h', 'b', 'c'), 2);
    t.equal(await s.pttl('h'), -2, 'removing the last field deletes the key');
    t.same(await s.hgetall('h'), {});

    await s.hset('empty', {});
    t.equal(await s.pttl('empty'), -2, 'hset with no fields creates nothing');

    await s.hset('proto', { __proto__: 'x', constructor: 'y' });
    await s.hset('proto', JSON.parse('{"__proto__":"p"}') as Record<string, string>);
    const all = await s.hgetall('proto');
    t.equal(Object.getPrototypeOf(all), Object.prototype, 'field "__proto__" does not replace the prototype');
    t.equal(Object.getOwnPropertyDescriptor(all, '__proto__')?.value, 'p', '"__proto__" is an own field');
    t.equal(all.constructor, 'y');

    await s.set('str', 'v');
    await t.rejects(s.hget('str', 'f'), WRONGTYPE, 'hget on a string');
    await t.rejects(s.hgetall('str'), WRONGTYPE, 'hgetall on a string');
    await t.rejects(s.hset('str', { f: '1' }), WRONGTYPE, 'hset on a string');
    await t.rejects(s.get('proto'), WRONGTYPE, 'get on a hash');
    t.equal(await s.set('proto', 'now a string'), true, 'SET replaces a key of any type');
    t.equal(await s.get('proto'), 'now a string');
  });

  withStore('hash TTL is kept by hset and reset by expiry', async (t, s) => {
    await s.set('h', 'tmp', { ttlMs: 60 });
    await passed(Date.now(), 60 + 30, 'the 60 ms TTL (+30 ms) to pass');
    await s.hset('h', { f: '1' });
    t.same(await s.hgetall('h'), { f: '1' }, 'an expired string key does not block a new hash');
    t.equal(await s.pttl('h'), -1);
  });

  withStore('casHash', async (t, s) => {
    t.equal(
      await s.casHash('lock', 'owner', 'someone', { owner: 'me' }),
      false,
      'expected value on a missing key fails',
    );
    t.equal(await s.pttl('lock'), -2, 'and creates nothing');

    t.equal(await s.casHash('lock', 'owner', null, { owner: 'A', since: '1' }), true, 'expected null on a missing key');
    t.same(await s.hgetall('lock'), { owner: 'A', since: '1' });
    t.equal(await s.casHash('lock', 'owner', null, { owner: 'B' }), false, 'expected null but the field is present');
    t.equal(await s.casHash('lock', 'owner', 'B', { owner: 'C' }), false, 'mismatch');
    t.same(await s.hgetall('lock'), { owner: 'A', since: '1' }, 'unchanged after failures');

    t.equal(
      await s.casHash('lock', 'owner', 'A', { owner: 'B', extra: 'x' }, ['since']),
      true,
      'match: update and remove',
    );
    t.same(await s.hgetall('lock'), { owner: 'B', extra: 'x' });

    t.equal(
      await s.casHash('lock', 'other', null, { other: '1' }),
      true,
      'expected null when the key exists but the field does not',
    );
    t.equal(await s.casHash('lock', 'owner', 'B', {}, ['extra', 'nope']), true, 'remove only');
    t.same(await s.hgetall('lock'), { owner: 'B', other: '1' });
    t.equal(await s.casHash('lock', 'owner', 'B', { both: '1' }, ['both']), true);
    t.equal(await s.hget('lock', 'both'), null, 'a field both updated and removed ends up removed (HSET, then HDEL)');
    t.equal(await s.casHash('lock', 'owner', 'B', {}), true, 'match with nothing to change');
    t.same(await s.hgetall('lock'), { owner: 'B', other: '1' });

    t.equal(await s.casHash('lock', 'owner', 'B', {}, ['owner', 'other']), true, 'remove every field');
    t.equal(await s.pttl('lock'), -2, 'the emptied hash is deleted');
    t.equal(await s.casHash('lock', 'owner', '', { owner: 'x' }), false, "'' is a value, not absence");
    await s.hset('lock', { owner: '' });
    t.equal(await s.casHash('lock', 'owner', '', { owner: 'y' }), true, "expected '' matches an empty field");
    t.equal(await s.casHash('lock', 'owner', null, { owner: 'z' }), false, 'an empty field is present');

    await s.set('str', 'v');
    await t.rejects(s.casHash('str', 'f', null, { f: '1' }), WRONGTYPE, 'casHash on a string');
  });

  withStore('index: lexicographic order, counts, pagination', async (t, s) => {
    t.same(await s.indexRange('idx'), [], 'missing index');
    t.equal(await s.indexCount('idx'), 0);
    t.equal(
      await s.indexAdd('idx', 'CP-2', 'CP-10', 'a:b.c', 'CP-1', 'cp-1', 'A', 'CP-1'),
      6,
      'duplicates in one call count once',
    );
    t.equal(await s.indexAdd('idx', 'CP-1', 'CP-3'), 1, 'existing members are not counted');
    t.equal(await s.indexAdd('idx'), 0, 'no members is a no-op');
    t.equal(await s.indexCount('idx'), 7);
    const all = ['A', 'CP-1', 'CP-10', 'CP-2', 'CP-3', 'a:b.c', 'cp-1'];
    t.same(await s.indexRange('idx'), all, 'byte order, not numeric or case-folded');

    t.same(await s.indexRange('idx', { limit: 3 }), all.slice(0, 3));
    t.same(await s.indexRange('idx', { after: 'CP-10', limit: 3 }), ['CP-2', 'CP-3', 'a:b.c'], '`after` is exclusive');
    t.same(
      await s.indexRange('idx', { after: 'CP-15' }),
      ['CP-2', 'CP-3', 'a:b.c', 'cp-1'],
      '`after` need not be a member',
    );
    t.same(await s.indexRange('idx', { after: '' }), all, "after '' skips only the empty member");
    t.same(await s.indexRange('idx', { after: 'cp-1' }), [], 'after the last member');
    t.same(await s.indexRange('idx', { after: 'zzz' }), []);
    t.same(await s.indexRange('idx', { limit: 0 }), [], 'limit 0');
    t.same(await s.indexRange('idx', { limit: -1 }), all, 'negative limit: all (Redis LIMIT semantics)');
    await t.rejects(s.indexRange('idx', { limit: 1.5 }), NOT_INTEGER, 'fractional limit');

    const pages: string[][] = [];
    let after: string | undefined;
    for (;;) {
      const page = await s.indexRange('idx', after === undefined ? { limit: 2 } : { after, limit: 2 });
      if (page.length === 0) break;
      pages.push(page);
      after = page[page.length - 1];
    }
    t.same(pages.flat(), all, 'paging with after = last member visits every member once');
    t.equal(pages.length, 4);

    t.equal(await s.indexRemove('idx', 'CP-10', 'nope', 'CP-10'), 1);
    t.equal(await s.indexRemove('idx'), 0, 'no members is a no-op');
    t.equal(await s.indexCount('idx'), 6);
    t.equal(await s.indexRemove('idx', ...all), 6);
    t.equal(await s.pttl('idx'), -2, 'removing the last member deletes the key');
    t.equal(await s.indexRemove('idx', 'x'), 0, 'on a missing key');

    await s.set('str', 'v');
    await t.rejects(s.indexAdd('str', 'm'), WRONGTYPE, 'indexAdd on a string');
    await t.rejects(s.indexRange('str'), WRONGTYPE, 'indexRange on a string');
  });

  withStore('index: UTF-8 byte order and default limit', async (t, s) => {
    // UTF-8 byte order: é (C3 A9) < U+FFFD (EF BF BD) < 😀 (F0 9F 98 80). UTF-16 code-unit
    // order (JS `<`) would put 😀 (D83D DE00) before U+FFFD.
    await s.indexAdd('u', '\u{1F600}', '\uFFFD', 'é', 'z', '');
    t.same(await s.indexRange('u'), ['', 'z', 'é', '\uFFFD', '\u{1F600}']);
    t.same(await s.indexRange('u', { after: '\uFFFD' }), ['\u{1F600}']);

    const ids = Array.from({ length: 250 }, (_, i) => `CP-${String(i).padStart(3, '0')}`);
    t.equal(await s.indexAdd('big', ...ids), 250);
    const first = await s.indexRange('big');
    t.equal(first.length, 100, 'default limit is 100');
    t.same(first, ids.slice(0, 100));
    t.same(await s.indexRange('big', { after: first[99], limit: 1000 }), ids.slice(100));
  });

  withStore('concurrency: one winner, no lost updates', async (t, s) => {
    const claims = await Promise.all(
      Array.from({ length: 50 }, (_, i) => s.casHash('claim', 'owner', null, { owner: `w${i}` })),
    );
    t.equal(claims.filter(Boolean).length, 1, 'exactly one of 50 concurrent casHash(expected null) wins');
    const winner = claims.indexOf(true);
    t.equal(await s.hget('claim', 'owner'), `w${winner}`, 'and its update is the one stored');

    const counts = await Promise.all(Array.from({ length: 200 }, () => s.incr('ctr')));
    t.equal(await s.get('ctr'), '200', '200 concurrent incr: final value 200');
    t.same(
      [...counts].sort((a, b) => a - b),
      Array.from({ length: 200 }, (_, i) => i + 1),
      'each incr saw a distinct value',
    );

    const sets = await Promise.all(Array.from({ length: 50 }, (_, i) => s.set('once', `v${i}`, { ifAbsent: true })));
    t.equal(sets.filter(Boolean).length, 1, 'exactly one of 50 concurrent set(ifAbsent) wins');

    // A CAS chain: 20 writers each retry until they advance the version by one.
    await s.hset('ver', { v: '0' });
    const bump = async () => {
      for (;;) {
        const cur = (await s.hget('ver', 'v'))!;
        if (await s.casHash('ver', 'v', cur, { v: String(Number(cur) + 1) })) return;
      }
    };
    await Promise.all(Array.from({ length: 20 }, bump));
    t.equal(await s.hget('ver', 'v'), '20', 'optimistic CAS loop loses no increment');
  });

  withStore('ping and close', async (t, s) => {
    await t.resolves(s.ping());
    t.ok(['memory', 'redis', 'remote'].includes(s.kind));
    await s.close();
    await t.rejects(s.get('a'), { code: 'OCR_ERR_STATE_UNAVAILABLE' }, 'calls after close reject');
    await t.resolves(s.close(), 'close is idempotent');
  });
}
