import t from 'tap';
import { mkdtempSync, readFileSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { until } from '../../test/helpers/wait.js';
import { StateJournal, groupOf } from './journal.js';
import { JournalingStore } from './journaling-store.js';
import { MemoryStateStore } from './memory-store.js';
import type { StateStore } from './store.js';

const quiet = { info() {}, warn() {}, error() {} };
const unavailable = () => Object.assign(new Error('down'), { code: 'OCR_ERR_STATE_UNAVAILABLE' });

/** A MemoryStateStore that fails every call with OCR_ERR_STATE_UNAVAILABLE while `down`. */
function flaky(inner: MemoryStateStore): StateStore & { down: boolean } {
  const s = { down: false } as StateStore & { down: boolean };
  return new Proxy(s, {
    get(target, prop) {
      if (prop === 'down') return target.down;
      const v = (inner as unknown as Record<string | symbol, unknown>)[prop];
      if (typeof v !== 'function') return v;
      return (...a: unknown[]) =>
        target.down ? Promise.reject(unavailable()) : (v as (...x: unknown[]) => unknown).apply(inner, a);
    },
    set(target, prop, value) {
      (target as unknown as Record<string | symbol, unknown>)[prop] = value;
      return true;
    },
  });
}

/** The journal's replay runs on its own retry timer: wait for it to empty the journal. */
const drained = (journal: StateJournal) => until(() => journal.size === 0, { what: 'the journal to drain' });

t.test('groupOf', async (t) => {
  t.equal(groupOf('ocr:{CP-1}:core:status'), 'CP-1');
  t.equal(groupOf('ocr:idx:chargers'), '*');
  t.equal(groupOf('ocr:{}:x'), '*');
});

t.test('journaled writes are answered, replayed in order, and ordering holds across the outage', async (t) => {
  const mem = new MemoryStateStore();
  const redis = flaky(mem);
  const file = join(mkdtempSync(join(tmpdir(), 'ocr-j-')), 'j.ndjson');
  const journal = new StateJournal(file, redis, quiet, { retryMs: 20 });
  await journal.open();
  const worker = new Set<string>();
  const store = new JournalingStore(redis, (e) => journal.append(e), {
    has: (g) => worker.has(g),
    mark: (g) => worker.add(g),
  });

  await store.hset('ocr:{A}:core:status', { 1: 'Available' });
  redis.down = true;
  await store.hset('ocr:{A}:core:status', { 1: 'Faulted' });
  await store.hset('ocr:{A}:core:status', { 2: 'Charging' });
  await store.del('ocr:{A}:x');
  t.equal(journal.size, 3);
  t.ok(journal.pending('A'));
  t.notOk(journal.pending('B'));
  await t.rejects(store.incr('ocr:{A}:n'), { code: 'OCR_ERR_STATE_UNAVAILABLE' }, 'non-idempotent writes fail loudly');
  await t.rejects(store.hget('ocr:{A}:core:status', '1'), { code: 'OCR_ERR_STATE_UNAVAILABLE' }, 'reads fail loudly');
  t.equal(readFileSync(file, 'utf8').trim().split('\n').length, 3, 'durable before the write resolves');
  redis.down = false;
  // Still pending: a new write of A must queue behind the journal, not overtake it.
  await store.hset('ocr:{A}:core:status', { 1: 'Finishing' });
  t.ok(await drained(journal), 'journal drained');
  t.same(await mem.hgetall('ocr:{A}:core:status'), { 1: 'Finishing', 2: 'Charging' });
  t.equal(readFileSync(file, 'utf8'), '', 'file truncated once drained');
  await journal.close();
});

t.test('reload: skips what the watermark says was applied; torn lines skipped', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ocr-j-'));
  const file = join(dir, 'j.ndjson');
  writeFileSync(
    file,
    [
      JSON.stringify({ g: 'A', m: 'hset', a: ['ocr:{A}:s', { 1: 'old' }] }),
      JSON.stringify({ applied: 1 }),
      JSON.stringify({ g: 'A', m: 'hset', a: ['ocr:{A}:s', { 2: 'new' }] }),
    ].join('\n') + '\n',
  );
  appendFileSync(file, '{"g":"A","m":"hs');
  const mem = new MemoryStateStore();
  await mem.hset('ocr:{A}:s', { 1: 'newer-live-value' });
  const journal = new StateJournal(file, mem, quiet, { retryMs: 10 });
  await journal.open();
  t.equal(journal.size, 1, 'only the unapplied entry is loaded');
  t.ok(await drained(journal), 'journal drained');
  t.same(
    await mem.hgetall('ocr:{A}:s'),
    { 1: 'newer-live-value', 2: 'new' },
    'an applied entry is never re-applied over a newer value',
  );
  await journal.close();
});

t.test('a write the store refuses is dropped, not blocking the rest', async (t) => {
  const mem = new MemoryStateStore();
  await mem.set('ocr:{A}:str', 'x');
  const journal = new StateJournal(join(mkdtempSync(join(tmpdir(), 'ocr-j-')), 'j.ndjson'), mem, quiet, {
    retryMs: 10,
  });
  await journal.open();
  await journal.append([
    { g: 'A', m: 'hset', a: ['ocr:{A}:str', { f: 'v' }] },
    { g: 'A', m: 'hset', a: ['ocr:{A}:ok', { f: 'v' }] },
  ]);
  t.ok(await drained(journal), 'journal drained');
  t.equal(journal.stats.dropped, 1);
  t.same(await mem.hgetall('ocr:{A}:ok'), { f: 'v' });
  await t.rejects(journal.append([{ g: 'A', m: 'incr' as never, a: [] }]), /not a journaled method/);
  await journal.close();
});

t.test('a failed disk write fails that append only; the journal keeps working', async (t) => {
  const { mkdirSync, rmdirSync } = await import('node:fs');
  const dir = mkdtempSync(join(tmpdir(), 'ocr-j-'));
  const file = join(dir, 'j.ndjson');
  const mem = new MemoryStateStore();
  const journal = new StateJournal(file, mem, quiet, { retryMs: 10 });
  await journal.open();
  mkdirSync(file); // appendFile now fails with EISDIR
  await t.rejects(journal.append([{ g: 'A', m: 'hset', a: ['ocr:{A}:s', { 1: 'x' }] }]), { code: 'EISDIR' });
  t.notOk(journal.pending('A'), 'nothing pending for a write that is not on disk');
  rmdirSync(file);
  await journal.append([{ g: 'A', m: 'hset', a: ['ocr:{A}:s', { 2: 'y' }] }]);
  t.ok(await drained(journal), 'journal drained');
  t.same(await mem.hgetall('ocr:{A}:s'), { 2: 'y' });
  await journal.close();
});

t.test('open() compacts: a torn line cannot glue onto the next append', async (t) => {
  const file = join(mkdtempSync(join(tmpdir(), 'ocr-j-')), 'j.ndjson');
  writeFileSync(file, `${JSON.stringify({ g: 'A', m: 'hset', a: ['ocr:{A}:s', { 1: 'a' }] })}\n{"g":"A","m":"hs`);
  const redis = flaky(new MemoryStateStore());
  redis.down = true;
  const journal = new StateJournal(file, redis, quiet, { retryMs: 1000 });
  await journal.open();
  t.equal(
    readFileSync(file, 'utf8'),
    `${JSON.stringify({ g: 'A', m: 'hset', a: ['ocr:{A}:s', { 1: 'a' }] })}\n`,
    'torn line gone',
  );
  await journal.append([{ g: 'A', m: 'hset', a: ['ocr:{A}:s', { 2: 'b' }] }]);
  t.equal(readFileSync(file, 'utf8').trim().split('\n').length, 2, 'both entries intact');
  await journal.close();
});
