/**
 * ClickHouseSink: the batching AnalyticsSink, with the disk spool as its safety net.
 *
 * Owns: the in-memory per-table buffers, the flush and replay timers, the ClickHouse
 * client, the backoff after failures and the counters behind stats(). Must not: make
 * write() wait for anything (STYLE.md §9: ClickHouse latency never shows in frame
 * latency), lose a batch that ClickHouse refused (it goes to the spool), or block
 * start() on ClickHouse being up.
 *
 *   write() ── rowEncoder() ──► buffers[table]: JSONEachRow bytes (bounded: maxBufferRows
 *                  │              in total with the held rows, overflow dropped+counted)
 *                  │ every flushIntervalMs, or as soon as one table holds batchRows
 *                  ▼
 *               flush ── one chunk per table ──► ClickHouse insert ──ok──► written
 *                  │                            │ error (backoff starts)
 *                  │ no ClickHouse, or backing off
 *                  ▼                            ▼
 *               spool.append() ◄────────────────┘
 *                  │   └─ full, or failing ──► held in memory, offered again at every flush
 *                  │
 *               replay loop, every replayIntervalMs once the backoff has passed:
 *               migrate (until it succeeded once) ─► spool.replay() ─► insert ─► replayed
 *
 * Rows are encoded once, in write(), into the exact JSONEachRow line ClickHouse takes (typed,
 * every column present): the same bytes go to ClickHouse or to the spool, so a replayer in
 * another thread or process only has to insert them. Why in write() and not at the flush:
 * see `rowEncoder` in schema.ts (measured on the MeterValues path of bench/).
 *
 * Back-pressure instead of loss: rows the spool cannot take stay in memory (they count
 * against maxBufferRows), and once the rows in memory reach the admission mark (nine tenths
 * of maxBufferRows) admit() says no: the pipeline then refuses messages that write rows
 * (InternalError; chargers retry transaction messages) rather than answering a message whose
 * rows would be dropped. The last tenth is the room of messages admitted before the mark
 * that are still being handled. Rows are dropped only beyond maxBufferRows, and at close
 * when nothing takes them (both counted and logged).
 *
 * Without `clickhouse` options the sink is a pure spool writer ("local analytics spool"),
 * the default for a router started with nothing else installed; a later sink with
 * ClickHouse configured on the same spool directory replays what it wrote.
 */
import type { RouterConfig } from '../options.js';
import { createClient, ClickHouseLogLevel, type ClickHouseClient, type ClickHouseSettings } from '@clickhouse/client';
import { pino } from 'pino';
import type { AnalyticsRow, AnalyticsSink, AnalyticsTable, SinkStats } from './sink.js';
import { Readable } from 'node:stream';
import {
  assertIdentifier,
  clickHouseErrorCode,
  isAnalyticsTable,
  migrate,
  rowEncoder,
  TABLES,
  type RowEncoder,
  type ServerFeatures,
} from './schema.js';
import { Spool, type SpoolOptions, type SpoolRow } from './spool.js';
import { errors, type RouterError } from '../errors.js';

/** The subset of a pino logger the sink uses. */
export interface SinkLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Where ClickHouse is. Plain data, so it can be passed to worker threads. */
export interface ClickHouseConnectionOptions {
  /**
   * HTTP interface, e.g. `http://127.0.0.1:8123`. Absent or empty means no ClickHouse
   * (spool only), so a config section with its url unset can be passed as is.
   * @default undefined
   */
  url?: string | undefined;
  /** @default 'default' */
  username?: string;
  /** @default '' */
  password?: string;
  /**
   * Database holding the analytics tables; created by the migration.
   * @default 'ocpp'
   */
  database?: string;
  /**
   * Per-request timeout. Short, because a slow ClickHouse only delays the spool path.
   * @default 10000
   */
  requestTimeoutMs?: number;
  /** Extra ClickHouse settings sent with every request. @default {} */
  settings?: ClickHouseSettings;
}

export interface ClickHouseSinkOptions {
  /**
   * ClickHouse to write to. Without it the sink only writes the local spool.
   * @default undefined
   */
  clickhouse?: ClickHouseConnectionOptions | undefined;
  /**
   * Local spool for rows ClickHouse did not take. See core/analytics/spool.ts.
   * @default { dir: spoolDir }
   */
  spool?: Partial<SpoolOptions>;
  /**
   * Shorthand for `spool.dir` (the router config's `analytics.spoolDir`); `spool.dir` wins.
   * Relative to the working directory.
   * @default './data/spool'
   */
  spoolDir?: string;
  /**
   * Bound on rows held in memory, all tables together. write() drops beyond it; admit()
   * says no from nine tenths of it.
   * @default 100000
   */
  maxBufferRows?: number;
  /**
   * A table buffer reaching this many rows is flushed at once (everything buffered goes in
   * one insert per table); also the rows per insert when the spool is replayed.
   * @default 5000
   */
  batchRows?: number;
  /** @default 1000 */
  flushIntervalMs?: number;
  /** How often the spool is drained into ClickHouse (and a failed migration retried). @default 5000 */
  replayIntervalMs?: number;
  /** First delay after a ClickHouse failure; doubles per failure. @default 1000 */
  backoffMinMs?: number;
  /** @default 30000 */
  backoffMaxMs?: number;
  /** Fills `node_id` in rows that do not set it. @default '' */
  nodeId?: string;
  /** pino-compatible logger. @default pino({ name: 'ocr.analytics', level: 'info' }) */
  log?: SinkLogger;
}

const DEFAULTS = {
  spoolDir: './data/spool',
  database: 'ocpp',
  requestTimeoutMs: 10_000,
  maxBufferRows: 100_000,
  batchRows: 5000,
  flushIntervalMs: 1000,
  replayIntervalMs: 5000,
  backoffMinMs: 1000,
  backoffMaxMs: 30_000,
} as const;

// Server error codes meaning "this data is refused" rather than "try again later":
// 6 CANNOT_PARSE_TEXT, 25/26/27 CANNOT_PARSE_*, 38/41 CANNOT_PARSE_DATE(TIME),
// 53 TYPE_MISMATCH, 69 ARGUMENT_OUT_OF_BOUND, 70 CANNOT_CONVERT_TYPE,
// 72 CANNOT_PARSE_NUMBER, 117 INCORRECT_DATA. Retrying them would block the spool forever.
const PERMANENT_CODES = new Set([6, 25, 26, 27, 38, 41, 53, 69, 70, 72, 117]);
// 60 UNKNOWN_TABLE, 81 UNKNOWN_DATABASE: the tables are gone (a fresh server); migrate again.
const SCHEMA_GONE_CODES = new Set([60, 81]);

/** @internal Whether retrying `err` can never succeed (the data, not the server, is the problem). */
export function isPermanentInsertError(err: unknown): boolean {
  if ((err as RouterError | null)?.details?.permanent === true) return true;
  return PERMANENT_CODES.has(clickHouseErrorCode(err) ?? -1);
}

function positiveInt(name: string, v: number | undefined, def: number): number {
  if (v === undefined) return def;
  if (!Number.isInteger(v) || v <= 0)
    throw new errors.OCR_ERR_CONFIG_INVALID(`analytics.${name} must be a positive integer, got ${String(v)}`);
  return v;
}

export class ClickHouseSink implements AnalyticsSink {
  readonly #log: SinkLogger;
  readonly #spool: Spool;
  readonly #client: ClickHouseClient | undefined;
  readonly #database: string;
  readonly #maxBufferRows: number;
  readonly #admitRows: number;
  readonly #batchRows: number;
  readonly #flushIntervalMs: number;
  readonly #replayIntervalMs: number;
  readonly #backoffMinMs: number;
  readonly #backoffMaxMs: number;
  readonly #nodeId: string;
  // One encoded buffer per table, created up front: write() does a Map lookup, encodes and copies.
  readonly #buffers = new Map<AnalyticsTable, EncodedRows>(TABLES.map((t) => [t, new EncodedRows(rowEncoder(t))]));
  #buffered = 0;
  #counts = { written: 0, spooled: 0, dropped: 0, replayed: 0, failures: 0, refused: 0 };
  // Rows that neither ClickHouse nor the spool took (copies: flush buffers are reused),
  // oldest first, offered again at every flush. Counted in #buffered.
  #held: HeldChunk[] = [];
  #holding = false;
  #flushTimer: NodeJS.Timeout | undefined;
  #replayTimer: NodeJS.Timeout | undefined;
  #flushSoon = false;
  #flushChain: Promise<void> = Promise.resolve();
  #flushPending = 0;
  #replaying: Promise<void> | undefined;
  #migrated = false;
  #features: ServerFeatures | undefined;
  #backoffMs = 0;
  #retryAt = 0;
  #healthy = true;
  #started = false;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(opts: ClickHouseSinkOptions = {}) {
    this.#log = opts.log ?? pino({ name: 'ocr.analytics', level: 'info' });
    this.#maxBufferRows = positiveInt('maxBufferRows', opts.maxBufferRows, DEFAULTS.maxBufferRows);
    this.#admitRows = this.#maxBufferRows - Math.floor(this.#maxBufferRows / 10);
    this.#batchRows = positiveInt('batchRows', opts.batchRows, DEFAULTS.batchRows);
    this.#flushIntervalMs = positiveInt('flushIntervalMs', opts.flushIntervalMs, DEFAULTS.flushIntervalMs);
    this.#replayIntervalMs = positiveInt('replayIntervalMs', opts.replayIntervalMs, DEFAULTS.replayIntervalMs);
    this.#backoffMinMs = positiveInt('backoffMinMs', opts.backoffMinMs, DEFAULTS.backoffMinMs);
    this.#backoffMaxMs = Math.max(
      this.#backoffMinMs,
      positiveInt('backoffMaxMs', opts.backoffMaxMs, DEFAULTS.backoffMaxMs),
    );
    this.#nodeId = opts.nodeId ?? '';
    this.#spool = new Spool({
      ...opts.spool,
      dir: opts.spool?.dir ?? opts.spoolDir ?? DEFAULTS.spoolDir,
      replayChunkRows: opts.spool?.replayChunkRows ?? this.#batchRows,
      log: opts.spool?.log ?? this.#log,
    });
    const ch = opts.clickhouse;
    this.#database = assertIdentifier(ch?.database ?? DEFAULTS.database);
    if (ch?.url !== undefined && ch.url !== '') {
      this.#client = createClient({
        url: ch.url,
        username: ch.username ?? 'default',
        password: ch.password ?? '',
        request_timeout: ch.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
        application: 'ocpp-router',
        // The client logs every failed request at ERROR; during an outage that is one line
        // per flush. The sink logs state changes itself instead.
        log: { level: ClickHouseLogLevel.OFF },
        clickhouse_settings: {
          // Rows from an older spool may lack columns (defaults fill them); a table that
          // lacks a column must not refuse the whole batch.
          input_format_skip_unknown_fields: 1,
          ...ch.settings,
        },
      });
    }
  }

  /** True when this sink writes to ClickHouse, false for a spool-only sink. */
  get hasClickHouse(): boolean {
    return this.#client !== undefined;
  }

  /** The spool; exposed for tests and for operators' tooling. @internal */
  get spool(): Spool {
    return this.#spool;
  }

  /** What migrate() detected about the server, once it succeeded. */
  get features(): ServerFeatures | undefined {
    return this.#features;
  }

  /**
   * Opens the spool, runs the migration once and starts the timers. A failed migration is
   * logged and retried by the replay loop; it does not fail start() (which waits at most
   * about `requestTimeoutMs` for an unreachable server): until it succeeds, flushed rows
   * go to the spool. An unusable spool directory does fail start(), with
   * OCR_ERR_ANALYTICS_SPOOL: without it, an outage would lose rows.
   */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    try {
      await this.#spool.open();
    } catch (err) {
      throw new errors.OCR_ERR_ANALYTICS_SPOOL(`cannot open ${this.#spool.dir}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (this.#client !== undefined) {
      try {
        await this.#migrate();
      } catch (err) {
        this.#fail('migrate', err);
      }
    }
    // unref: the sink must never be what keeps a process alive.
    this.#flushTimer = setInterval(() => void this.#timedFlush(), this.#flushIntervalMs).unref();
    this.#replayTimer = setInterval(() => void this.#replayTick(), this.#replayIntervalMs).unref();
    // Drain what earlier runs left behind without making start() wait for it.
    if (this.#migrated) void this.#replayTick();
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

  stats(): SinkStats {
    return { buffered: this.#buffered, ...this.#counts };
  }

  /** Stops the timers, flushes the buffers (to the spool if ClickHouse is down), closes. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    clearInterval(this.#flushTimer);
    clearInterval(this.#replayTimer);
    // Refuse writes first: a row accepted after the final flush took the buffers would
    // be lost silently. This also tells a running replay to stop after its chunk.
    this.#closed = true;
    await this.flush();
    if (this.#held.length > 0) {
      // Nothing took them and nothing will: the only rows this sink loses after accepting them.
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
    await this.#replaying;
    await this.#spool.close();
    await this.#client?.close();
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
    // every step of a delivery waits for an event-loop turn, and a worker under load turns
    // its loop every 100-300 ms (it runs the batches in hand first; core/worker/entry.ts),
    // so a flush that went chunk by chunk fell behind the rows written meanwhile
    // (MeterValues at eight in flight: 5,000-row chunks at ≈ 80 ms each, the buffers at
    // their bound within a second; bench/RESULTS.md, "Why MeterValues k = 8 dropped rows").
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
    if (this.#client !== undefined && this.#migrated && Date.now() >= this.#retryAt) {
      try {
        await this.#insertEncoded(table, batch.bytes);
        this.#counts.written += batch.rows;
        this.#succeed();
        return;
      } catch (err) {
        this.#fail('insert', err);
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

  /** Inserts JSONEachRow bytes as they are (the client's insert() would stringify objects). */
  async #insertEncoded(table: AnalyticsTable, bytes: Uint8Array): Promise<void> {
    try {
      const res = await this.#client!.exec({
        query: `INSERT INTO ${this.#database}.${table} FORMAT JSONEachRow`,
        values: Readable.from([bytes]),
      });
      res.stream.resume(); // the (empty) answer must be read for the socket to be reused
      await new Promise<void>((resolve, reject) => {
        res.stream.once('end', resolve).once('close', resolve).once('error', reject);
      });
    } catch (err) {
      if (SCHEMA_GONE_CODES.has(clickHouseErrorCode(err) ?? -1)) this.#migrated = false;
      throw err;
    }
  }

  async #insert(table: AnalyticsTable, values: ReadonlyArray<SpoolRow>): Promise<void> {
    try {
      await this.#client!.insert({
        table: `${this.#database}.${table}`,
        values: values as Array<Record<string, unknown>>,
        format: 'JSONEachRow',
      });
    } catch (err) {
      // A server that lost its tables (new data directory) is healed by migrating again.
      if (SCHEMA_GONE_CODES.has(clickHouseErrorCode(err) ?? -1)) this.#migrated = false;
      throw err;
    }
  }

  #replayChunk(table: string, rows: SpoolRow[]): Promise<void> {
    if (!isAnalyticsTable(table)) {
      // A stray directory in the spool: quarantine it rather than retry it forever.
      return Promise.reject(
        new errors.OCR_ERR_ANALYTICS_SPOOL(`unknown analytics table ${JSON.stringify(table)}`, {
          details: { permanent: true },
        }),
      );
    }
    return this.#insert(table, rows);
  }

  async #migrate(): Promise<void> {
    this.#features = await migrate(this.#client!, this.#database);
    this.#migrated = true;
    this.#log.info(
      {
        event: 'ocr.analytics.migrated',
        database: this.#database,
        version: this.#features.version,
        lowCardinality: this.#features.lowCardinality,
      },
      'analytics schema ready',
    );
  }

  #replayTick(): Promise<void> {
    if (this.#replaying !== undefined) return this.#replaying;
    if (this.#closed) return Promise.resolve();
    this.#replaying = this.#replayOnce().finally(() => {
      this.#replaying = undefined;
    });
    return this.#replaying;
  }

  async #replayOnce(): Promise<void> {
    if (this.#client === undefined) {
      // Spool-only: make idle segments visible to replayers in other processes.
      await this.#spool.rollAged().catch(() => {});
      return;
    }
    if (Date.now() < this.#retryAt) return;
    try {
      if (!this.#migrated) await this.#migrate();
      const res = await this.#spool.replay((table, rows) => this.#replayChunk(table, rows), {
        isPermanent: isPermanentInsertError,
        shouldStop: () => this.#closed,
      });
      this.#counts.replayed += res.rows;
      if (res.rows > 0)
        this.#log.info(
          { event: 'ocr.analytics.replayed', rows: res.rows, segments: res.segments },
          'analytics spool replayed',
        );
      if (res.error !== undefined) this.#fail('replay', res.error);
      else this.#succeed();
    } catch (err) {
      this.#fail(this.#migrated ? 'replay' : 'migrate', err);
    }
  }

  /** Replays the spool now (tests, shutdown tooling); normally the timer does it. */
  replayNow(): Promise<void> {
    return this.#replayTick();
  }

  #succeed(): void {
    this.#backoffMs = 0;
    this.#retryAt = 0;
    if (!this.#healthy) {
      this.#healthy = true;
      this.#log.info({ event: 'ocr.analytics.clickhouse_recovered' }, 'ClickHouse reachable again');
    }
  }

  #fail(op: 'insert' | 'replay' | 'migrate', err: unknown): void {
    this.#counts.failures++;
    if (op !== 'migrate' && isPermanentInsertError(err)) {
      // The server is up and refuses this data; backing off would only delay good rows.
      this.#log.error({ event: 'ocr.analytics.insert_refused', op, err }, 'ClickHouse refused analytics rows');
      return;
    }
    this.#backoffMs = this.#backoffMs === 0 ? this.#backoffMinMs : Math.min(this.#backoffMs * 2, this.#backoffMaxMs);
    this.#retryAt = Date.now() + this.#backoffMs;
    // One warning per outage, not one per attempt.
    if (this.#healthy) {
      this.#healthy = false;
      this.#log.warn(
        { event: 'ocr.analytics.clickhouse_unavailable', op, err, retryInMs: this.#backoffMs },
        'ClickHouse unavailable; spooling analytics rows',
      );
    } else {
      this.#log.debug(
        { event: 'ocr.analytics.clickhouse_unavailable', op, err, retryInMs: this.#backoffMs },
        'ClickHouse still unavailable',
      );
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

/** Rows nothing took yet, kept by the sink (their own copy). */
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
  // concatenated string first (Buffer#write was 5-11% of worker CPU per line on the
  // MeterValues profile). Few enough lines to die young.
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
   * fits: a fresh multi-megabyte Buffer per flush and table is external memory that V8 answers
   * with full mark-compacts (MeterValues at 10,000 msg/s: ≈ 50 MB a second per thread, a
   * mark-compact every ≈ 0.5 s pausing the thread 2-6 ms; bench/RESULTS.md, "inline").
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

/**
 * Creates the analytics sink: ClickHouse-backed when `options.clickhouse.url` is set, a
 * local spool writer otherwise. Synchronous so that wiring code can hand the sink out at
 * once; call `await sink.start()` before relying on migrations and timers (write() works
 * before that, and buffers).
 */
export function createAnalyticsSink(options: ClickHouseSinkOptions = {}): ClickHouseSink {
  return new ClickHouseSink(options);
}

/** The sink of one router thread (each worker, and the socket thread for inline batches). */
export function threadSink(config: RouterConfig, nodeId: string, log: ClickHouseSinkOptions['log']): ClickHouseSink {
  return new ClickHouseSink({
    clickhouse: config.clickhouse.url ? config.clickhouse : undefined,
    spool: { dir: config.analytics.spoolDir, maxBytes: config.analytics.spoolMaxBytes },
    batchRows: config.analytics.batchRows,
    flushIntervalMs: config.analytics.flushIntervalMs,
    maxBufferRows: config.analytics.maxBufferRows,
    nodeId,
    log,
  });
}
