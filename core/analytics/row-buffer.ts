/**
 * RowBuffer: the analytics rows of one thread between write() and their delivery.
 *
 * Owns: one encoded buffer per table, the flush triggers (the flush timer, and a table
 * reaching batchRows), the delivery of each flush (one ClickHouse insert per table, or one
 * spool append when ClickHouse is absent, failing or backing off), the rows nothing took
 * (held in memory, offered again at every flush), and the back-pressure accounting behind
 * admit() and the written / spooled / dropped / refused counters. Must not: make write()
 * wait for anything, or add work or allocations per row beyond encoding and copying it
 * (write() runs for every row of every message; STYLE.md §9: ClickHouse latency never shows
 * in frame latency), lose a batch that ClickHouse refused (it goes to the spool), or replay
 * the spool (replayer.ts).
 *
 *   write() ── rowEncoder() ──► buffers[table]: JSONEachRow bytes (bounded: maxBufferRows
 *                  │              in total with the held rows, overflow dropped+counted)
 *                  │ every flushIntervalMs, or as soon as one table holds batchRows
 *                  ▼
 *               flush ── one chunk per table ──► ClickHouse insert ──ok──► written
 *                  │                            │ error (the writer backs off)
 *                  │ no ClickHouse, or backing off
 *                  ▼                            ▼
 *               spool.append() ◄────────────────┘
 *                     └─ full, or failing ──► held in memory, offered again at every flush
 *
 * Rows are encoded once, in write(), into the exact JSONEachRow line ClickHouse takes (typed,
 * every column present): the same bytes go to ClickHouse or to the spool, so a replayer in
 * another thread or process only has to insert them. Why in write() and not at the flush:
 * see `rowEncoder` in schema.ts.
 *
 * Back-pressure instead of loss: rows the spool cannot take stay in memory (they count
 * against maxBufferRows), and once the rows in memory reach the admission mark (nine tenths
 * of maxBufferRows) admit() says no: the pipeline then refuses messages that write rows
 * (InternalError; chargers retry transaction messages) rather than answering a message whose
 * rows would be dropped. The last tenth is the room of messages admitted before the mark
 * that are still being handled. Rows are dropped only beyond maxBufferRows, and at close
 * when nothing takes them (both counted and logged).
 *
 * ClickHouseSink (clickhouse-sink.ts) extends this class rather than holding one, so that
 * write() and admit(), called per row and per message, are this class's own methods: no
 * forwarding call in between.
 */
import type { AnalyticsRow, AnalyticsTable, SinkLogger } from './sink.js';
import { rowEncoder, TABLES, type RowEncoder } from './schema.js';
import type { Spool } from './spool.js';
import type { ClickHouseWriter } from './clickhouse-client.js';
import type { RouterError } from '../errors.js';

export interface RowBufferOptions {
  /** Bound on rows in memory, all tables together, held rows included. */
  maxBufferRows: number;
  /** A table holding this many rows is flushed at once. */
  batchRows: number;
  flushIntervalMs: number;
  /** Fills `node_id` in rows that do not set it. */
  nodeId: string;
  spool: Spool;
  /** Where flushes go first; undefined for a spool-only sink. */
  clickhouse: ClickHouseWriter | undefined;
  log: SinkLogger;
}

export abstract class RowBuffer {
  readonly #log: SinkLogger;
  readonly #spool: Spool;
  readonly #clickhouse: ClickHouseWriter | undefined;
  readonly #maxBufferRows: number;
  readonly #admitRows: number;
  readonly #batchRows: number;
  readonly #flushIntervalMs: number;
  readonly #nodeId: string;
  // One encoded buffer per table, created up front: write() does a Map lookup, encodes and copies.
  readonly #buffers = new Map<AnalyticsTable, EncodedRows>(TABLES.map((t) => [t, new EncodedRows(rowEncoder(t))]));
  #buffered = 0;
  #counts = { written: 0, spooled: 0, dropped: 0, refused: 0 };
  // Rows that neither ClickHouse nor the spool took (copies: flush buffers are reused),
  // oldest first, offered again at every flush. Counted in #buffered.
  #held: HeldChunk[] = [];
  #holding = false;
  #flushTimer: NodeJS.Timeout | undefined;
  #flushSoon = false;
  #flushChain: Promise<void> = Promise.resolve();
  #flushPending = 0;
  #started = false;
  #closed = false;

  constructor(opts: RowBufferOptions) {
    this.#log = opts.log;
    this.#spool = opts.spool;
    this.#clickhouse = opts.clickhouse;
    this.#maxBufferRows = opts.maxBufferRows;
    this.#admitRows = this.#maxBufferRows - Math.floor(this.#maxBufferRows / 10);
    this.#batchRows = opts.batchRows;
    this.#flushIntervalMs = opts.flushIntervalMs;
    this.#nodeId = opts.nodeId;
  }

  /**
   * Buffers one row, encoded at once (see rowEncoder): the row object is not kept.
   * Synchronous: no I/O, no promise, never throws. Returns false (and counts a drop) when
   * the buffer is full (for an `incidental` row: when admit() would say no), the table is
   * unknown, the row cannot be encoded, or the sink is closed.
   */
  write(table: AnalyticsTable, row: AnalyticsRow, incidental = false): boolean {
    const buf = this.#buffers.get(table);
    if (buf === undefined || this.#closed || this.#buffered >= (incidental ? this.#admitRows : this.#maxBufferRows)) {
      this.#counts.dropped++;
      return false;
    }
    try {
      buf.add(row, this.#nodeId);
    } catch {
      // A value whose String() throws (a plugin's odd object): that row only.
      this.#counts.dropped++;
      return false;
    }
    this.#buffered++;
    if (buf.rows >= this.#batchRows && !this.#flushSoon && this.#started) {
      this.#flushSoon = true;
      setImmediate(() => {
        this.#flushSoon = false;
        void this.#timedFlush();
      });
    }
    return true;
  }

  /** See AnalyticsSink.admit(): false (and a refusal counted) from the admission mark on. */
  admit(): boolean {
    if (this.#buffered < this.#admitRows && !this.#closed) return true;
    this.#counts.refused++;
    return false;
  }

  /** Sends everything buffered (and held) now to ClickHouse, or to the spool. Never rejects. */
  flush(): Promise<void> {
    this.#flushPending++;
    const next = (): Promise<void> => {
      this.#flushPending--;
      return this.#flushOnce();
    };
    const run = this.#flushChain.then(next, next);
    this.#flushChain = run;
    return run;
  }

  /** Rows in memory (buffered and held) and the buffer's counters, for SinkStats. */
  protected bufferStats(): { buffered: number; written: number; spooled: number; dropped: number; refused: number } {
    return { buffered: this.#buffered, ...this.#counts };
  }

  /**
   * From now on a table reaching batchRows is flushed at once (until then, writes only
   * buffer). False when that was already so: start() ran before.
   */
  protected enableFlushes(): boolean {
    if (this.#started) return false;
    this.#started = true;
    return true;
  }

  /** Starts the flush timer (unref: the sink must never be what keeps a process alive). */
  protected startFlushTimer(): void {
    this.#flushTimer = setInterval(() => void this.#timedFlush(), this.#flushIntervalMs).unref();
  }

  /**
   * Stops the timer, refuses writes, flushes, and counts as dropped (and logs) the rows
   * still held: nothing took them and nothing will.
   */
  protected async closeBuffer(): Promise<void> {
    clearInterval(this.#flushTimer);
    // Refuse writes first: a row accepted after the final flush took the buffers would
    // be lost silently.
    this.#closed = true;
    await this.flush();
    if (this.#held.length > 0) {
      // The only rows this sink loses after accepting them.
      let rows = 0;
      for (const h of this.#held) rows += h.rows;
      this.#held = [];
      this.#buffered -= rows;
      this.#counts.dropped += rows;
      this.#log.error(
        { event: 'ocr.analytics.held_rows_lost', rows },
        'analytics rows held in memory lost at close: neither ClickHouse nor the spool took them',
      );
    }
  }

  #timedFlush(): Promise<void> {
    // A flush already queued will take these rows too; do not pile up runs when
    // ClickHouse is slow.
    if (this.#flushPending > 0) return this.#flushChain;
    return this.flush();
  }

  async #flushOnce(): Promise<void> {
    if (this.#held.length > 0) {
      const held = this.#held;
      this.#held = [];
      for (const h of held) {
        this.#buffered -= h.rows;
        await this.#deliverBatch(h.table, h);
      }
    }
    // Take every table's rows first, then deliver each in one insert or one spool append:
    // each step of a delivery waits for an event-loop turn, and a loaded worker turns its
    // loop only every 100-300 ms (it runs the batches in hand first; core/worker/entry.ts),
    // so a flush delivering chunk by chunk falls behind the rows written meanwhile
    // (bench/RESULTS.md, "Why MeterValues k = 8 dropped rows").
    // Rows written during the awaits go to fresh buffers and count against maxBufferRows
    // afresh: memory is bounded by maxBufferRows plus the rows of the flush in flight.
    const taken: Array<{ table: AnalyticsTable; buf: EncodedRows; chunk: EncodedChunk; buffer: Buffer }> = [];
    for (const [table, buf] of this.#buffers) {
      if (buf.rows === 0) continue;
      const { chunk, buffer } = buf.take();
      this.#buffered -= chunk.rows;
      taken.push({ table, buf, chunk, buffer });
    }
    for (const { table, buf, chunk, buffer } of taken) {
      await this.#deliverBatch(table, chunk);
      // Delivered (inserted, spooled, or copied into #held): nothing uses the bytes any more.
      buf.recycle(buffer);
    }
    if (this.#holding && this.#held.length === 0) {
      this.#holding = false;
      this.#log.info(
        { event: 'ocr.analytics.held_rows_stored' },
        'analytics rows held in memory are stored; admitting messages again',
      );
    }
  }

  async #deliverBatch(table: AnalyticsTable, batch: EncodedChunk | HeldChunk): Promise<void> {
    const ch = this.#clickhouse;
    if (ch !== undefined && ch.canInsert()) {
      try {
        await ch.insertEncoded(table, batch.bytes);
        this.#counts.written += batch.rows;
        ch.succeed();
        return;
      } catch (err) {
        ch.fail('insert', err);
      }
    }
    await this.#toSpool(table, batch);
  }

  async #toSpool(table: AnalyticsTable, batch: EncodedChunk | HeldChunk): Promise<void> {
    let accepted: number;
    let err: unknown;
    try {
      accepted = await this.#spool.appendEncoded(table, batch.bytes, batch.rows);
    } catch (e) {
      err = e;
      const appended = (e as RouterError).details?.appended;
      accepted = typeof appended === 'number' ? appended : 0;
    }
    this.#counts.spooled += accepted;
    if (accepted < batch.rows) this.#hold(table, batch, accepted, err);
  }

  /** Keeps the rows of `batch` after its first `skip` in memory, for the next flush. */
  #hold(table: AnalyticsTable, batch: EncodedChunk | HeldChunk, skip: number, err: unknown): void {
    const rows = batch.rows - skip;
    if (skip === 0 && 'table' in batch) {
      this.#held.push(batch); // held before: its bytes are its own already
    } else {
      let from = 0;
      for (let i = 0; i < skip; i++) from = batch.bytes.indexOf(NL, from) + 1;
      // A copy: the flush buffer `batch` points into is reused by the next take().
      this.#held.push({ table, bytes: Buffer.from(batch.bytes.subarray(from)), rows });
    }
    this.#buffered += rows;
    if (!this.#holding) {
      this.#holding = true;
      const fields = {
        event: err === undefined ? 'ocr.analytics.spool_full' : 'ocr.analytics.spool_failed',
        table,
        rows,
        err,
        maxBytes: this.#spool.maxBytes,
      };
      const msg = `analytics spool ${err === undefined ? 'full' : 'write failed'}: rows kept in memory until ClickHouse or the spool takes them; messages that write rows are refused once analytics.maxBufferRows is nearly reached`;
      if (err === undefined) this.#log.warn(fields, msg);
      else this.#log.error(fields, msg);
    }
  }
}

const PENDING_LINES = 64;
const NL = 0x0a;

/** One insert's worth of encoded rows. */
interface EncodedChunk {
  bytes: Uint8Array;
  rows: number;
}

/** Rows nothing took yet, kept by the buffer (their own copy). */
interface HeldChunk extends EncodedChunk {
  table: AnalyticsTable;
}

/**
 * A table's buffered rows as JSONEachRow bytes in one growing Buffer.
 * Written by this module only; why bytes and not row objects: see `rowEncoder`.
 */
class EncodedRows {
  rows = 0;
  #buf: Buffer = Buffer.allocUnsafe(64 * 1024);
  #len = 0;
  // Lines not yet in #buf. Copied PENDING_LINES at a time: one join and one UTF-8 write of
  // a flat string cost much less than a write per line, each of which flattens a
  // concatenated string first (bench/RESULTS.md, "Where the time goes"). Few enough lines
  // to die young.
  #pending: string[] = [];
  /** See take() and recycle(). */
  #spare: Buffer | null = null;
  constructor(readonly encode: RowEncoder) {}

  add(row: AnalyticsRow, nodeId: string): void {
    this.#pending.push(this.encode(row, Date.now(), nodeId));
    this.rows++;
    if (this.#pending.length >= PENDING_LINES) this.#commit();
  }

  #commit(): void {
    if (this.#pending.length === 0) return;
    const text = this.#pending.length === 1 ? this.#pending[0] : this.#pending.join('');
    this.#pending = [];
    // Worst case 3 bytes per UTF-16 unit; grow before writing so a line is never cut.
    if (this.#len + text.length * 3 > this.#buf.length) {
      const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#len + text.length * 3));
      this.#buf.copy(next, 0, 0, this.#len);
      this.#buf = next;
    }
    this.#len += this.#buf.write(text, this.#len);
  }

  /**
   * Hands out everything buffered, as one chunk (a view of `buffer`), and starts afresh with twice
   * what was used (shrinking by half at most): at a steady rate the next buffer never has to
   * grow (each growth copies it). The new buffer is the one given back by recycle() when it
   * fits: a fresh multi-megabyte Buffer per flush and table is external memory, which V8
   * answers with full mark-compacts that pause the thread (bench/RESULTS.md, "The GC finding
   * behind the p99 change").
   */
  take(): { chunk: EncodedChunk; buffer: Buffer } {
    this.#commit();
    const chunk: EncodedChunk = { bytes: this.#buf.subarray(0, this.#len), rows: this.rows };
    const taken = this.#buf;
    const want = Math.max(64 * 1024, 2 * this.#len, taken.length >> 1);
    const spare = this.#spare;
    this.#spare = null;
    // A spare much larger than needed is dropped: the rate fell, let the memory go.
    this.#buf = spare !== null && spare.length >= want && spare.length <= 4 * want ? spare : Buffer.allocUnsafe(want);
    this.#len = 0;
    this.rows = 0;
    return { chunk, buffer: taken };
  }

  /** A buffer handed out by take() whose chunks are no longer used: the next take() may reuse it. */
  recycle(buffer: Buffer): void {
    this.#spare = buffer;
  }
}
