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

  /**
   * A write `m(...a)` (key first): live unless the charger's group is journaling, then to the
   * journal; a live write that finds Redis away goes to the journal too. The live call is the
   * journal's own replay form (`store[m].apply(store, a)`, journal.ts), so the argument array
   * is built once (it is the journal entry's too) and there is no async frame: this wrapper is
   * on every state write of the hot path.
   */
  private write<T>(m: JournalMethod, a: unknown[], neutral: T): Promise<T> {
    const g = groupOf(a[0] as string);
    if (this.pending.has(g)) return this.journaled(g, m, a, neutral);
    return (this.inner[m] as (...args: unknown[]) => Promise<T>).apply(this.inner, a).catch((err: unknown) => {
      if (!unavailable(err)) throw err;
      this.pending.mark(g);
      return this.journaled(g, m, a, neutral);
    });
  }

  private journaled<T>(g: string, m: JournalMethod, a: unknown[], neutral: T): Promise<T> {
    return this.append([{ g, m, a }]).then(() => neutral);
  }

  get(key: string) {
    return this.inner.get(key);
  }
  set(key: string, value: string, opts?: SetOptions): Promise<boolean> {
    if (opts?.ifAbsent) return this.inner.set(key, value, opts);
    return this.write('set', [key, value, opts], true);
  }
  async del(...keys: string[]): Promise<number> {
    let n = 0;
    for (const k of keys) n += await this.write('del', [k], 0);
    return n;
  }
  incr(key: string, by?: number) {
    return this.inner.incr(key, by);
  }
  pttl(key: string) {
    return this.inner.pttl(key);
  }
  hget(key: string, field: string) {
    return this.inner.hget(key, field);
  }
  hgetall(key: string) {
    return this.inner.hgetall(key);
  }
  hset(key: string, fields: Record<string, string>): Promise<void> {
    return this.write('hset', [key, fields], undefined);
  }
  hdel(key: string, ...fields: string[]): Promise<number> {
    return this.write('hdel', [key, ...fields], 0);
  }
  casHash(key: string, field: string, expected: string | null, update: Record<string, string>, remove?: string[]) {
    return this.inner.casHash(key, field, expected, update, remove);
  }
  indexAdd(key: string, ...members: string[]): Promise<number> {
    return this.write('indexAdd', [key, ...members], 0);
  }
  indexRemove(key: string, ...members: string[]): Promise<number> {
    return this.write('indexRemove', [key, ...members], 0);
  }
  indexRange(key: string, opts?: IndexRangeOptions) {
    return this.inner.indexRange(key, opts);
  }
  indexCount(key: string) {
    return this.inner.indexCount(key);
  }
  ping() {
    return this.inner.ping();
  }
  close() {
    return this.inner.close();
  }
}
