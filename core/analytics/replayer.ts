/**
 * SpoolReplayer: delivers the spool's closed segments to ClickHouse, on a timer.
 *
 * Owns: the replay timer, the one replay running at a time, retrying a migration that has
 * not succeeded yet, the quarantine of a segment whose table is unknown, and the count of
 * rows replayed. Without ClickHouse (a spool-only sink) it only rolls idle segments, so that
 * replayers in other threads or processes see them. Must not: replay while the writer backs
 * off (the backoff is the writer's, shared with the row buffer's inserts), append to the
 * spool, or make anyone wait for a replay except close().
 *
 *   every intervalMs, and once at start() when the schema is in place:
 *     backing off? ── yes ──► skip this turn
 *        │ no
 *     migrate (until it succeeded once) ─► spool.replay() ─► writer.insertRows() per chunk
 *        │                                        │ unknown table / refused data: dead/
 *        └─ failure: writer.fail() (backoff) ◄────┘ other failure: rows stay in the spool
 */
import { errors } from '../errors.js';
import type { SinkLogger } from './sink.js';
import { isAnalyticsTable } from './schema.js';
import type { Spool, SpoolRow } from './spool.js';
import { isPermanentInsertError, type ClickHouseWriter } from './clickhouse-client.js';

export interface SpoolReplayerOptions {
  spool: Spool;
  /** Where replayed rows go; undefined for a spool-only sink. */
  clickhouse: ClickHouseWriter | undefined;
  /** Time between replays (and between attempts at a failed migration). */
  intervalMs: number;
  log: SinkLogger;
}

export class SpoolReplayer {
  readonly #spool: Spool;
  readonly #clickhouse: ClickHouseWriter | undefined;
  readonly #intervalMs: number;
  readonly #log: SinkLogger;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;
  /** Rows delivered from the spool (SinkStats.replayed). */
  replayed = 0;

  constructor(opts: SpoolReplayerOptions) {
    this.#spool = opts.spool;
    this.#clickhouse = opts.clickhouse;
    this.#intervalMs = opts.intervalMs;
    this.#log = opts.log;
  }

  /** The replay in progress, if any (close() waits for it after stop()). */
  get running(): Promise<void> | undefined {
    return this.#running;
  }

  /**
   * Starts the timer (unref: the sink must never be what keeps a process alive), and when
   * the schema is in place replays at once: what earlier runs left behind is drained
   * without making the sink's start() wait for it.
   */
  start(): void {
    this.#timer = setInterval(() => void this.replay(), this.#intervalMs).unref();
    if (this.#clickhouse?.migrated === true) void this.replay();
  }

  /** Stops the timer; a replay in progress stops after its current chunk. */
  stop(): void {
    clearInterval(this.#timer);
    this.#stopped = true;
  }

  /** Replays now, or joins the replay in progress. Never rejects. */
  replay(): Promise<void> {
    if (this.#running !== undefined) return this.#running;
    if (this.#stopped) return Promise.resolve();
    this.#running = this.#replayOnce().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #replayOnce(): Promise<void> {
    const ch = this.#clickhouse;
    if (ch === undefined) {
      await this.#spool.rollAged().catch(() => {});
      return;
    }
    if (ch.backingOff()) return;
    try {
      if (!ch.migrated) await ch.migrate();
      const res = await this.#spool.replay((table, rows) => this.#deliver(ch, table, rows), {
        isPermanent: isPermanentInsertError,
        shouldStop: () => this.#stopped,
      });
      this.replayed += res.rows;
      if (res.rows > 0)
        this.#log.info(
          { event: 'ocr.analytics.replayed', rows: res.rows, segments: res.segments },
          'analytics spool replayed',
        );
      if (res.error !== undefined) ch.fail('replay', res.error);
      else ch.succeed();
    } catch (err) {
      ch.fail(ch.migrated ? 'replay' : 'migrate', err);
    }
  }

  #deliver(ch: ClickHouseWriter, table: string, rows: SpoolRow[]): Promise<void> {
    if (!isAnalyticsTable(table)) {
      // A stray directory in the spool: quarantine it rather than retry it forever.
      return Promise.reject(
        new errors.OCR_ERR_ANALYTICS_SPOOL(`unknown analytics table ${JSON.stringify(table)}`, {
          details: { permanent: true },
        }),
      );
    }
    return ch.insertRows(table, rows);
  }
}
