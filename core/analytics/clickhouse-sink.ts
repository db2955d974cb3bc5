/**
 * ClickHouseSink: the batching AnalyticsSink, with the disk spool as its safety net.
 *
 * Owns: the sink's options (validation and defaults), the wiring of its three parts, and its
 * lifecycle (start, close, the order in which the parts stop). Must not: hold logic of the
 * parts themselves, or block start() on ClickHouse being up.
 *
 *   write() / admit() / flush()
 *        ▼
 *   RowBuffer (row-buffer.ts; this class extends it): buffers, flush triggers, back-pressure
 *        │ each flush: one insert per table, or one spool append
 *        ├─────────────────────────► ClickHouseWriter (clickhouse-client.ts): connection,
 *        ▼                                ▲         inserts, schema, and the backoff both
 *   Spool (spool.ts) ──► SpoolReplayer ───┘         of its callers obey
 *                        (replayer.ts): closed segments into ClickHouse, on its own timer
 *
 * Without `clickhouse` options the sink is a pure spool writer ("local analytics spool"),
 * the default for a router started with nothing else installed; a later sink with
 * ClickHouse configured on the same spool directory replays what it wrote.
 */
import type { RouterConfig } from '../options.js';
import { pino } from 'pino';
import type { AnalyticsSink, SinkLogger, SinkStats } from './sink.js';
import type { ServerFeatures } from './schema.js';
import { Spool, type SpoolOptions } from './spool.js';
import { analyticsDatabase, ClickHouseWriter, type ClickHouseConnectionOptions } from './clickhouse-client.js';
import { RowBuffer } from './row-buffer.js';
import { SpoolReplayer } from './replayer.js';
import { errors } from '../errors.js';

export type { SinkLogger } from './sink.js';
export { isPermanentInsertError, type ClickHouseConnectionOptions } from './clickhouse-client.js';

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
  maxBufferRows: 100_000,
  batchRows: 5000,
  flushIntervalMs: 1000,
  replayIntervalMs: 5000,
  backoffMinMs: 1000,
  backoffMaxMs: 30_000,
} as const;

function positiveInt(name: string, v: number | undefined, def: number): number {
  if (v === undefined) return def;
  if (!Number.isInteger(v) || v <= 0)
    throw new errors.OCR_ERR_CONFIG_INVALID(`analytics.${name} must be a positive integer, got ${String(v)}`);
  return v;
}

export class ClickHouseSink extends RowBuffer implements AnalyticsSink {
  readonly #spool: Spool;
  readonly #clickhouse: ClickHouseWriter | undefined;
  readonly #replayer: SpoolReplayer;
  #closing: Promise<void> | undefined;

  constructor(opts: ClickHouseSinkOptions = {}) {
    const log = opts.log ?? pino({ name: 'ocr.analytics', level: 'info' });
    const maxBufferRows = positiveInt('maxBufferRows', opts.maxBufferRows, DEFAULTS.maxBufferRows);
    const batchRows = positiveInt('batchRows', opts.batchRows, DEFAULTS.batchRows);
    const flushIntervalMs = positiveInt('flushIntervalMs', opts.flushIntervalMs, DEFAULTS.flushIntervalMs);
    const replayIntervalMs = positiveInt('replayIntervalMs', opts.replayIntervalMs, DEFAULTS.replayIntervalMs);
    const backoffMinMs = positiveInt('backoffMinMs', opts.backoffMinMs, DEFAULTS.backoffMinMs);
    const backoffMaxMs = Math.max(backoffMinMs, positiveInt('backoffMaxMs', opts.backoffMaxMs, DEFAULTS.backoffMaxMs));
    const spool = new Spool({
      ...opts.spool,
      dir: opts.spool?.dir ?? opts.spoolDir ?? DEFAULTS.spoolDir,
      replayChunkRows: opts.spool?.replayChunkRows ?? batchRows,
      log: opts.spool?.log ?? log,
    });
    const ch = opts.clickhouse;
    const database = analyticsDatabase(ch);
    const clickhouse =
      ch?.url !== undefined && ch.url !== ''
        ? new ClickHouseWriter({ connection: { ...ch, url: ch.url }, database, backoffMinMs, backoffMaxMs, log })
        : undefined;
    super({ maxBufferRows, batchRows, flushIntervalMs, nodeId: opts.nodeId ?? '', spool, clickhouse, log });
    this.#spool = spool;
    this.#clickhouse = clickhouse;
    this.#replayer = new SpoolReplayer({ spool, clickhouse, intervalMs: replayIntervalMs, log });
  }

  /** True when this sink writes to ClickHouse, false for a spool-only sink. */
  get hasClickHouse(): boolean {
    return this.#clickhouse !== undefined;
  }

  /** The spool; exposed for tests and for operators' tooling. @internal */
  get spool(): Spool {
    return this.#spool;
  }

  /** What migrate() detected about the server, once it succeeded. */
  get features(): ServerFeatures | undefined {
    return this.#clickhouse?.features;
  }

  /**
   * Opens the spool, runs the migration once and starts the timers. A failed migration is
   * logged and retried by the replay loop; it does not fail start() (which waits at most
   * about `requestTimeoutMs` for an unreachable server): until it succeeds, flushed rows
   * go to the spool. An unusable spool directory does fail start(), with
   * OCR_ERR_ANALYTICS_SPOOL: without it, an outage would lose rows.
   */
  async start(): Promise<void> {
    if (!this.enableFlushes()) return;
    try {
      await this.#spool.open();
    } catch (err) {
      throw new errors.OCR_ERR_ANALYTICS_SPOOL(`cannot open ${this.#spool.dir}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (this.#clickhouse !== undefined) {
      try {
        await this.#clickhouse.migrate();
      } catch (err) {
        this.#clickhouse.fail('migrate', err);
      }
    }
    this.startFlushTimer();
    this.#replayer.start();
  }

  stats(): SinkStats {
    const b = this.bufferStats();
    return {
      buffered: b.buffered,
      written: b.written,
      spooled: b.spooled,
      dropped: b.dropped,
      replayed: this.#replayer.replayed,
      failures: this.#clickhouse?.failures ?? 0,
      refused: b.refused,
    };
  }

  /** Replays the spool now (tests, shutdown tooling); normally the timer does it. */
  replayNow(): Promise<void> {
    return this.#replayer.replay();
  }

  /** Stops the timers, flushes the buffers (to the spool if ClickHouse is down), closes. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    // Both stop before the final flush: a running replay stops after its chunk, and a row
    // written after the flush took the buffers is refused rather than lost silently.
    this.#replayer.stop();
    await this.closeBuffer();
    await this.#replayer.running;
    await this.#spool.close();
    await this.#clickhouse?.close();
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
