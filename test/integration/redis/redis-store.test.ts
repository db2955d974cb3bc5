/**
 * RedisStateStore against a real redis-server: the shared StateStore suite, keyPrefix,
 * borrowed clients, and fault behaviour (a stopped Redis must make commands reject within
 * commandTimeout, and the store must recover when Redis is back).
 *
 * Redis: OCR_TEST_REDIS_URL when the test runner provides one (each subtest then works
 * under its own random key prefix and deletes its keys in teardown; no FLUSHALL), else a
 * throwaway redis-server from test/services/redis.ts. The fault tests always start their
 * own server because they kill it (SIGKILL: a crash, not a clean shutdown). Never the
 * shared Redis on :6379.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import t from 'tap';
import { RedisStateStore } from '../../../core/state/redis-store.js';
import { storeSuite } from '../../helpers/store-suite.js';
import { startRedis } from '../../services/redis.js';
import { until } from '../../helpers/wait.js';

/** Deletes every key under `prefix` (SCAN, not KEYS or FLUSHALL: the server may be shared). */
async function deletePrefix(url: string, prefix: string): Promise<void> {
  const admin = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await admin.connect();
    let cursor = '0';
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      if (keys.length > 0) await admin.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    admin.disconnect();
  }
}

let sharedUrl = process.env.OCR_TEST_REDIS_URL;
if (sharedUrl === undefined || sharedUrl === '') {
  const local = await startRedis();
  t.teardown(() => local.stop({ removeDir: true }));
  sharedUrl = local.url;
}
const url = sharedUrl;

const newPrefix = () => `ocrtest:${randomUUID()}:`;

/** A store under a fresh key prefix; `cleanup` closes it and deletes its keys. */
function prefixedStore(): { store: RedisStateStore; keyPrefix: string; cleanup: () => Promise<void> } {
  const keyPrefix = newPrefix();
  const store = new RedisStateStore({ url, keyPrefix });
  return {
    store,
    keyPrefix,
    cleanup: async () => {
      await store.close();
      await deletePrefix(url, keyPrefix);
    },
  };
}

t.test('StateStore suite', async (t) => {
  storeSuite(t, async () => prefixedStore());
});

t.test('keyPrefix applies to every command, the casHash script included', async (t) => {
  const { store, keyPrefix, cleanup } = prefixedStore();
  const raw = new Redis(url);
  t.teardown(async () => {
    raw.disconnect();
    await cleanup();
  });
  await store.set('s', 'v');
  await store.hset('h', { f: '1' });
  await store.casHash('c', 'owner', null, { owner: 'me' });
  await store.indexAdd('i', 'm');
  t.equal(await raw.get(`${keyPrefix}s`), 'v');
  t.same(await raw.hgetall(`${keyPrefix}h`), { f: '1' });
  t.same(await raw.hgetall(`${keyPrefix}c`), { owner: 'me' }, 'script KEYS are prefixed');
  t.same(await raw.zrange(`${keyPrefix}i`, '0', '-1', 'WITHSCORES'), ['m', '0'], 'index members have score 0');
  t.equal(await raw.exists('s', 'h', 'c', 'i'), 0, 'nothing written unprefixed');
});

t.test('commands issued in one tick leave in one socket write, in order, each with its own reply', async (t) => {
  const { store, cleanup } = prefixedStore();
  t.teardown(cleanup);
  await store.ping();
  // Count what reaches the socket's write path (writev when several chunks are buffered).
  const stream = store.client.stream as unknown as {
    _write: (...a: unknown[]) => void;
    _writev?: (...a: unknown[]) => void;
  };
  let writes = 0;
  const origWrite = stream._write;
  const origWritev = stream._writev;
  stream._write = function (this: unknown, ...a: unknown[]) {
    writes++;
    return origWrite.apply(this, a);
  };
  if (origWritev) {
    stream._writev = function (this: unknown, ...a: unknown[]) {
      writes++;
      return origWritev.apply(this, a);
    };
  }
  t.teardown(() => {
    stream._write = origWrite;
    if (origWritev) stream._writev = origWritev;
  });

  const n = 500;
  const sets: Promise<void>[] = [];
  const reads: Promise<string | null>[] = [];
  const counts: Promise<number>[] = [];
  for (let i = 0; i < n; i++) {
    sets.push(store.hset(`h{${i}}`, { a: String(i), b: 'two fields' }));
    counts.push(store.incr('n'));
    reads.push(store.hget(`h{${i}}`, 'a'));
  }
  await Promise.all(sets);
  t.same(
    await Promise.all(counts),
    Array.from({ length: n }, (_, i) => i + 1),
    'INCR replies in issue order',
  );
  t.same(
    await Promise.all(reads),
    Array.from({ length: n }, (_, i) => String(i)),
    'each HGET sees the HSET issued before it',
  );
  t.ok(writes <= 2, `${3 * n} commands in ${writes} socket write(s)`);
  t.same(await store.hgetall('h{7}'), { a: '7', b: 'two fields' }, 'several fields in one HSET');

  // The next tick's commands go out too (the cork is per tick, not left on).
  t.equal(await store.get('missing'), null);
});

t.test('a keyPrefix with a brace is refused', async (t) => {
  t.throws(() => new RedisStateStore({ url, keyPrefix: 'x{' }), { code: 'OCR_ERR_CONFIG_INVALID' });
});

t.test('borrowed client: the store works on it and leaves it open', async (t) => {
  const keyPrefix = newPrefix();
  const client = new Redis(url, { keyPrefix });
  t.teardown(async () => {
    client.disconnect();
    await deletePrefix(url, keyPrefix);
  });
  const store = new RedisStateStore(client);
  t.equal(store.client, client);
  t.equal(await store.casHash('h', 'f', null, { f: '1' }), true);
  await store.close();
  t.equal(await client.hget('h', 'f'), '1', 'still usable after store.close()');
});

t.test('reply errors propagate unchanged, with no wrapping', async (t) => {
  const { store, cleanup } = prefixedStore();
  t.teardown(cleanup);
  await store.set('s', 'x');
  const err = await store.incr('s').then(
    () => undefined,
    (e: unknown) => e as Error & { code?: string },
  );
  t.ok(err, 'incr of a non-integer rejects');
  t.equal(err?.name, 'ReplyError');
  t.equal(err?.code, undefined, 'not turned into OCR_ERR_STATE_UNAVAILABLE');
});

t.test('faults: a stopped Redis rejects within commandTimeout; the store recovers', async (t) => {
  const redis = await startRedis();
  const commandTimeoutMs = 300;
  const store = new RedisStateStore({ url: redis.url, commandTimeoutMs });
  const failFast = new RedisStateStore({ url: redis.url, commandTimeoutMs, enableOfflineQueue: false });
  t.teardown(async () => {
    await store.close();
    await failFast.close();
    await redis.stop({ removeDir: true });
  });
  await store.ping();
  // Without the offline queue a command before the connection is ready fails at once (what the
  // test checks below, during the outage), so wait for it rather than race the connect.
  if (failFast.client.status !== 'ready') await once(failFast.client, 'ready');
  await failFast.ping();
  t.equal(await store.casHash('h', 'f', null, { f: '1' }), true, 'script loaded before the outage');

  const closed = new Promise((resolve) => store.client.once('close', resolve));
  await redis.stop({ signal: 'SIGKILL' });

  // Issued before the client noticed: the command was written to a dead socket.
  let t0 = Date.now();
  await t.rejects(store.get('k'), { code: 'OCR_ERR_STATE_UNAVAILABLE' }, 'in-flight command rejects');
  t.ok(Date.now() - t0 < commandTimeoutMs + 300, `rejected in ${Date.now() - t0}ms`);

  await closed;
  // Queued while reconnecting: bounded by commandTimeout (or maxRetriesPerRequest first).
  t0 = Date.now();
  const results = await Promise.allSettled([
    store.get('k'),
    store.hset('h', { f: '2' }),
    store.casHash('h', 'f', '1', { f: '2' }),
    store.ping(),
  ]);
  const elapsed = Date.now() - t0;
  for (const r of results) t.match(r, { status: 'rejected', reason: { code: 'OCR_ERR_STATE_UNAVAILABLE' } });
  t.ok(
    elapsed < commandTimeoutMs + 300,
    `queued commands rejected in ${elapsed}ms (commandTimeout ${commandTimeoutMs}ms)`,
  );
  t.ok((results[0] as PromiseRejectedResult).reason.cause instanceof Error, 'the ioredis error is the cause');

  t0 = Date.now();
  await t.rejects(failFast.get('k'), { code: 'OCR_ERR_STATE_UNAVAILABLE' }, 'enableOfflineQueue: false');
  t.ok(Date.now() - t0 < 100, `fails at once without the offline queue (${Date.now() - t0}ms)`);

  await redis.restart({ signal: 'SIGKILL' });
  const raw = new Redis(redis.url);
  t.teardown(() => raw.disconnect());
  await until(() => store.ping().then(() => true), { what: 'the store to reconnect (PING answered)' });
  t.pass('reconnected after the restart');
  t.equal(await raw.exists('k', 'h'), 0, 'commands that failed during the outage were never applied after it');
  // The restart emptied the script cache: EVALSHA gets NOSCRIPT and ioredis falls back to EVAL.
  t.equal(await store.casHash('h', 'f', null, { f: 'after' }), true, 'casHash works on a fresh server (NOSCRIPT path)');
  t.equal(await store.hget('h', 'f'), 'after');
});

t.test('close() on a store whose Redis is gone resolves promptly and fails waiting calls', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop({ removeDir: true }));
  const store = new RedisStateStore({ url: redis.url, commandTimeoutMs: 5000 });
  await store.ping();
  const closed = new Promise((resolve) => store.client.once('close', resolve));
  await redis.stop({ signal: 'SIGKILL' });
  await closed;
  const waiting = store.get('pending');
  const t0 = Date.now();
  await store.close();
  t.ok(Date.now() - t0 < 500, `closed in ${Date.now() - t0}ms`);
  await t.rejects(
    waiting,
    { code: 'OCR_ERR_STATE_UNAVAILABLE' },
    'a call waiting for the connection fails at close, not after 5s',
  );
  await t.rejects(store.ping(), { code: 'OCR_ERR_STATE_UNAVAILABLE' });
});

t.test('lazyConnect: the first command connects', async (t) => {
  const keyPrefix = newPrefix();
  const store = new RedisStateStore({ url, keyPrefix, lazyConnect: true });
  t.teardown(async () => {
    await store.close();
    await deletePrefix(url, keyPrefix);
  });
  t.equal(store.client.status, 'wait');
  t.equal(await store.set('k', 'v'), true);
  t.equal(store.client.status, 'ready');
});
