/**
 * State journal (socket thread): the write-behind log that keeps the router serving while
 * Redis is away and catches up when it is back.
 *
 * Owns: one durable FIFO of idempotent writes (set, del, hset, hdel, indexAdd, indexRemove)
 * that workers could not apply, grouped by charger; replaying them into the store in order;
 * telling the dispatcher which chargers still have writes pending. Must not: journal
 * anything whose result the caller needs (incr, casHash, set-if-absent): those fail loudly.
 *
 *   worker write ──fails (OCR_ERR_STATE_UNAVAILABLE)──► RPC journal.append ──► file + FIFO
 *   dispatcher: pending(cpId)? ──► item flag ──► worker journals that charger's writes too
 *   replay loop: FIFO head ──► store ──ok──► next … empty ──► file truncated
 *
 * Ordering: while a charger has entries here, the dispatcher flags each of its items and the
 * worker appends its writes instead of writing live, so a newer live write never lands
 * before an older journaled one. The flag is exact because one charger never has items in
 * two batches at once (lanes). Writes to keys without a charger hash tag (group "*") are
 * ordered among themselves only.
 *
 * Durability: entries are appended to `<dataDir>/state-journal.ndjson` before the worker's
 * write resolves, and reloaded at start, so a restart during an outage loses nothing. After
 * each replayed chunk an `{"applied":n}` watermark is appended *before* the chunk's chargers
 * stop being pending, so a restart never re-applies an entry over a newer live write. No
 * fsync per entry (same trade-off as the analytics spool: a machine crash can lose the last
 * moments, a process crash cannot). Every journaled operation is idempotent, so a write whose
 * outcome was unknown (in flight when the connection dropped) is safe to apply again.
 */
import { appendFile, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { errors } from '../errors.js';
import type { StateStore } from './store.js';

export type JournalMethod = 'set' | 'del' | 'hset' | 'hdel' | 'indexAdd' | 'indexRemove';
export const JOURNAL_METHODS: ReadonlySet<string> = new Set<JournalMethod>([
  'set',
  'del',
  'hset',
  'hdel',
  'indexAdd',
  'indexRemove',
]);

export interface JournalEntry {
  /** Group: the charger id of the key's hash tag, or "*". */
  g: string;
  m: JournalMethod;
  a: unknown[];
}

export interface JournalLogger {
  info(o: object, m?: string): void;
  warn(o: object, m?: string): void;
  error(o: object, m?: string): void;
}

export interface JournalOptions {
  /** Delay between replay attempts while the store is unreachable. @default 500 */
  retryMs?: number;
  /** Entries held at most; beyond, appends are refused (the write then fails loudly). @default 1000000 */
  maxEntries?: number;
}

export class StateJournal {
  private queue: JournalEntry[] = [];
  private head = 0;
  private readonly counts = new Map<string, number>();
  /** Entries of the current file already applied (the last watermark written). */
  private fileApplied = 0;
  private fileOp: Promise<unknown> = Promise.resolve();
  private draining = false;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  readonly stats = { appended: 0, applied: 0, dropped: 0 };
  private readonly retryMs: number;
  private readonly maxEntries: number;

  constructor(
    private readonly file: string,
    private readonly store: StateStore,
    private readonly log: JournalLogger,
    opts: JournalOptions = {},
  ) {
    this.retryMs = opts.retryMs ?? 500;
    this.maxEntries = opts.maxEntries ?? 1_000_000;
  }

  /** Loads entries left by a previous run and starts replaying them. */
  async open(): Promise<void> {
    await mkdir(dirname(this.file), { recursive: true });
    let text = '';
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const entries: JournalEntry[] = [];
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        const v = JSON.parse(line) as JournalEntry | { applied: number };
        if ('applied' in v) this.fileApplied = v.applied;
        else entries.push(v);
      } catch {
        this.log.warn({ file: this.file }, 'torn journal line skipped'); // a crash mid-append
      }
    }
    const left = entries.slice(this.fileApplied);
    // Compact: rewrite only what is left, via a temp file and rename, so a torn last line (a
    // crash mid-append) cannot glue onto the next append and shift the watermark positions.
    if (text) {
      const tmp = `${this.file}.tmp`;
      await writeFile(tmp, left.map((e) => `${JSON.stringify(e)}\n`).join(''));
      await rename(tmp, this.file);
      this.fileApplied = 0;
    }
    for (const e of left) this.push(e);
    if (this.size > 0) {
      this.log.info({ entries: this.size }, 'state journal: replaying writes left by the previous run');
      this.kick(0);
    }
  }

  get size(): number {
    return this.queue.length - this.head;
  }

  /** True while `group` has writes waiting: its new writes must be journaled too. */
  pending(group: string): boolean {
    return (this.counts.get(group) ?? 0) > 0;
  }

  private push(e: JournalEntry): void {
    this.queue.push(e);
    this.counts.set(e.g, (this.counts.get(e.g) ?? 0) + 1);
  }

  /** Runs file operations one after another; a failed one does not poison the ones after it. */
  private file_(op: () => Promise<void>): Promise<void> {
    const p = this.fileOp.then(op);
    this.fileOp = p.catch(() => undefined);
    return p;
  }

  /**
   * Records writes durably; resolves once they are in the file. They join the replay queue
   * only then, so a failed disk write (the caller's write then fails loudly) leaves no entry
   * that is pending forever or replayed without being on disk.
   */
  async append(entries: JournalEntry[]): Promise<void> {
    if (this.closed) throw new Error('state journal closed');
    if (this.size + entries.length > this.maxEntries)
      throw new errors.OCR_ERR_STATE_UNAVAILABLE(`state journal full (${this.maxEntries} entries)`);
    for (const e of entries) if (!JOURNAL_METHODS.has(e.m)) throw new Error(`not a journaled method: ${e.m}`);
    const text = entries.map((e) => JSON.stringify(e)).join('\n') + '\n';
    await this.file_(async () => {
      await appendFile(this.file, text);
      // Pushed inside the chained operation: queue order = file order, which the watermark needs.
      for (const e of entries) this.push(e);
    });
    this.stats.appended += entries.length;
    this.kick(this.retryMs);
  }

  private kick(delay: number): void {
    if (this.timer || this.draining || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.drain().catch((err: Error) => {
        // e.g. the watermark could not be written: nothing was released; try again later.
        this.log.error({ err }, 'state journal: replay failed, retrying');
        this.kick(this.retryMs * 4);
      });
    }, delay);
    this.timer.unref();
  }

  /** Replays in order, in chunks; stops at the first unavailable error and retries later. */
  async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      let unavailable = false;
      while (this.size > 0 && !this.closed && !unavailable) {
        const end = Math.min(this.queue.length, this.head + 256);
        let j = this.head;
        for (; j < end; j++) {
          const e = this.queue[j];
          try {
            await (this.store[e.m] as (...a: unknown[]) => Promise<unknown>).apply(this.store, e.a);
            this.stats.applied++;
          } catch (err) {
            if ((err as { code?: string }).code === 'OCR_ERR_STATE_UNAVAILABLE') {
              unavailable = true;
              break;
            }
            // A write the store refuses (e.g. WRONGTYPE) would block every later one forever.
            this.stats.dropped++;
            this.log.error({ err, group: e.g, method: e.m }, 'state journal: write refused by the store, dropped');
          }
        }
        if (j === this.head) break;
        // Watermark first, then release the groups (see "Durability" above).
        const mark = `${JSON.stringify({ applied: this.fileApplied + (j - this.head) })}\n`;
        await this.file_(() => appendFile(this.file, mark));
        this.fileApplied += j - this.head;
        for (let k = this.head; k < j; k++) {
          const g = this.queue[k].g;
          const n = (this.counts.get(g) ?? 1) - 1;
          if (n === 0) this.counts.delete(g);
          else this.counts.set(g, n);
        }
        this.head = j;
      }
      if (this.size === 0 && this.head > 0) {
        this.queue = [];
        this.head = 0;
        await this.file_(async () => {
          // Appends chained before this one are applied already; later ones start the new file.
          if (this.size === 0) {
            await writeFile(this.file, '');
            this.fileApplied = 0;
          }
        });
        this.log.info({ applied: this.stats.applied }, 'state journal drained');
      } else if (this.head > 4096) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
    } finally {
      this.draining = false;
    }
    if (this.size > 0) this.kick(this.retryMs);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.fileOp;
  }
}

/** The journal group of a key: the charger id of its `{…}` hash tag, or "*". */
export function groupOf(key: string): string {
  const open = key.indexOf('{');
  if (open < 0) return '*';
  const close = key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : '*';
}
