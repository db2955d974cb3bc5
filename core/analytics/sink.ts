/**
 * AnalyticsSink: where meter values, status changes, transactions and errors go.
 *
 * Owns: the enqueue-only contract. `write()` never awaits I/O and never throws on the hot
 * path: rows are buffered (bounded, with a drop counter) and flushed in the background
 * to ClickHouse, or to the local spool when ClickHouse is not configured or not reachable.
 * Must not: block a reply on ClickHouse (STYLE.md §9), or lose a row it accepted while
 * its process runs: when neither ClickHouse nor the spool takes rows, they stay in memory
 * and `admit()` turns new messages away instead. Also the types the parts of a sink share
 * (SinkStats, SinkLogger).
 */

/** Tables that analytics rows go to. Columns are described in core/analytics/schema.ts. */
export type AnalyticsTable = 'meter_values' | 'status_events' | 'ocpp_events' | 'call_errors';

/** One row: column name → value. `ts` is epoch milliseconds; the sink converts it. */
export type AnalyticsRow = Record<string, string | number | boolean | null>;

export interface SinkStats {
  /** Rows in memory: buffered for the next flush, or held because nothing could take them. */
  buffered: number;
  written: number;
  spooled: number;
  dropped: number;
  replayed: number;
  failures: number;
  /** Messages refused (CALLERROR, the charger retries) because the sink was full: see admit(). */
  refused: number;
}

/** The subset of a pino logger the analytics sink and its parts use. */
export interface SinkLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface AnalyticsSink {
  /**
   * Buffers one row; returns false when the row was dropped (buffer full, closed, unencodable).
   * `incidental`: a row the router writes about its own doings (a CALLERROR it sent, a
   * connection opened): dropped once the sink stops admitting messages (admit()), so that
   * the rows of messages already admitted keep their room.
   */
  write(table: AnalyticsTable, row: AnalyticsRow, incidental?: boolean): boolean;
  /**
   * Whether a message that writes rows may be handled now. False when the rows in memory
   * are near the bound (ClickHouse and the spool cannot keep up, or are full): the caller
   * then refuses the message, and the refusal is counted in `stats().refused`.
   */
  admit(): boolean;
  /** Writes everything buffered now (to ClickHouse or spool). */
  flush(): Promise<void>;
  stats(): SinkStats;
  close(): Promise<void>;
}
