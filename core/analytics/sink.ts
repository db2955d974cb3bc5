/**
 * AnalyticsSink: where meter values, status changes, transactions and errors go.
 *
 * Owns: the enqueue-only contract. `write()` never awaits I/O and never throws on the hot
 * path: rows are buffered (bounded, with a drop counter) and flushed in the background
 * to ClickHouse, or to the local spool when ClickHouse is not configured or not reachable.
 * Must not: block a reply on ClickHouse (STYLE.md §9).
 */

/** Tables that analytics rows go to. Columns are described in core/analytics/schema.ts. */
export type AnalyticsTable = 'meter_values' | 'status_events' | 'ocpp_events' | 'call_errors';

/** One row: column name → value. `ts` is epoch milliseconds; the sink converts it. */
export type AnalyticsRow = Record<string, string | number | boolean | null>;

export interface SinkStats {
  buffered: number;
  written: number;
  spooled: number;
  dropped: number;
  replayed: number;
  failures: number;
}

export interface AnalyticsSink {
  /** Buffers one row; returns false when the bounded buffer was full and the row dropped. */
  write(table: AnalyticsTable, row: AnalyticsRow): boolean;
  /** Writes everything buffered now (to ClickHouse or spool). */
  flush(): Promise<void>;
  stats(): SinkStats;
  close(): Promise<void>;
}
