/**
 * Journaling store (worker side): Redis first; a write that cannot reach Redis goes to the
 * socket thread's state journal (journal.ts) and counts as stored.
 *
 * Owns: deciding per write whether it goes live or to the journal. Must not: journal writes
 * whose result matters to the caller (incr, casHash, set-if-absent) or reads: those keep
 * failing with OCR_ERR_STATE_UNAVAILABLE while Redis is away.
 *
 * `pending` tells which chargers (journal groups) must have their writes journaled: in a
 * worker, each batch item's flag (the dispatcher knows the journal) plus groups this store had
 * to journal itself; on the socket thread, the journal itself. Values returned for journaled
 * writes are neutral (0 / true): the count of removed fields or added members is unknown.
 */
import { groupOf, type JournalEntry, type JournalMethod } from './journal.js';
import type { IndexRangeOptions, SetOptions, StateStore } from './store.js';

export type JournalAppend = (entries: JournalEntry[]) => Promise<void>;

function unavailable(err: unknown): boolean {
  return (err as { code?: string })?.code === 'OCR_ERR_STATE_UNAVAILABLE';
}

export class JournalingStore implements StateStore {
  readonly kind = 'redis' as const;

  constructor(
    private readonly inner: StateStore,
    private readonly append: JournalAppend,
    private readonly pending: { has(group: string): boolean; mark(group: string): void },
  ) {}

  private async write<T>(key: string, m: JournalMethod, a: unknown[], live: () => Promise<T>, neutral: T): Promise<T> {
    const g = groupOf(key);
    if (!this.pending.has(g)) {
      try {
        return await live();
      } catch (err) {
        if (!unavailable(err)) throw err;
        this.pending.mark(g);
      }
    }
    await this.append([{ g, m, a }]);
    return neutral;
  }

  get(key: string) { return this.inner.get(key); }
  set(key: string, value: string, opts?: SetOptions): Promise<boolean> {
    if (opts?.ifAbsent) return this.inner.set(key, value, opts);
    return this.write(key, 'set', [key, value, opts], () => this.inner.set(key, value, opts), true);
  }
  async del(...keys: string[]): Promise<number> {
    let n = 0;
    for (const k of keys) n += await this.write(k, 'del', [k], () => this.inner.del(k), 0);
    return n;
  }
  incr(key: string, by?: number) { return this.inner.incr(key, by); }
  pttl(key: string) { return this.inner.pttl(key); }
  hget(key: string, field: string) { return this.inner.hget(key, field); }
  hgetall(key: string) { return this.inner.hgetall(key); }
  hset(key: string, fields: Record<string, string>): Promise<void> {
    return this.write(key, 'hset', [key, fields], () => this.inner.hset(key, fields), undefined);
  }
  hdel(key: string, ...fields: string[]): Promise<number> {
    return this.write(key, 'hdel', [key, ...fields], () => this.inner.hdel(key, ...fields), 0);
  }
  casHash(key: string, field: string, expected: string | null, update: Record<string, string>, remove?: string[]) {
    return this.inner.casHash(key, field, expected, update, remove);
  }
  indexAdd(key: string, ...members: string[]): Promise<number> {
    return this.write(key, 'indexAdd', [key, ...members], () => this.inner.indexAdd(key, ...members), 0);
  }
  indexRemove(key: string, ...members: string[]): Promise<number> {
    return this.write(key, 'indexRemove', [key, ...members], () => this.inner.indexRemove(key, ...members), 0);
  }
  indexRange(key: string, opts?: IndexRangeOptions) { return this.inner.indexRange(key, opts); }
  indexCount(key: string) { return this.inner.indexCount(key); }
  ping() { return this.inner.ping(); }
  close() { return this.inner.close(); }
}
