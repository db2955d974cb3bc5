/**
 * The analytics counters of a whole router process, over all its threads.
 *
 * Owns: the sum of every thread's SinkStats. Each worker's sink counts for itself (rows
 * written, spooled, dropped… since the thread started) and reports them over the router's
 * control channel (core/worker/entry.ts): checked once a second and sent when they changed, and a
 * last time when the thread drains before it stops. A stopped thread's last report is kept
 * in the totals, so the counters never go back when idle workers stop and new ones start
 * (pool.idleTimeoutMs); a crashed thread's last report stays as it was. Must not: read a
 * sink itself; the socket thread's own sink (inline batches) is passed in by the caller.
 */
import type { SinkStats } from './sink.js';

const FIELDS = ['buffered', 'written', 'spooled', 'dropped', 'replayed', 'failures', 'refused'] as const;

function emptySinkStats(): SinkStats {
  return { buffered: 0, written: 0, spooled: 0, dropped: 0, replayed: 0, failures: 0, refused: 0 };
}

function addInto(acc: SinkStats, s: SinkStats): void {
  for (const f of FIELDS) acc[f] += Number.isFinite(s[f]) ? s[f] : 0;
}

/** Whether two reports hold the same counts (a worker sends only when they changed). */
export function sameSinkStats(a: SinkStats | null, b: SinkStats): boolean {
  return a !== null && FIELDS.every((f) => a[f] === b[f]);
}

/** A report as it came over a channel: only the SinkStats fields, as numbers. */
export function isSinkStats(v: unknown): v is SinkStats {
  return (
    typeof v === 'object' && v !== null && FIELDS.every((f) => typeof (v as Record<string, unknown>)[f] === 'number')
  );
}

export class AnalyticsTotals {
  readonly #retired = emptySinkStats();
  readonly #live = new Map<number, SinkStats>();

  /** A live thread's counters since it started (replaces its last report). */
  report(thread: number, stats: SinkStats): void {
    this.#live.set(thread, stats);
  }

  /** A thread's last counters, as it stops: kept in the totals for good. */
  retire(thread: number, stats: SinkStats): void {
    this.#live.delete(thread);
    addInto(this.#retired, { ...stats, buffered: 0 });
  }

  /** Every thread's counters summed, with `local` (this thread's sinks) read now. */
  totals(local: readonly SinkStats[] = []): SinkStats {
    const acc = emptySinkStats();
    addInto(acc, this.#retired);
    for (const s of this.#live.values()) addInto(acc, s);
    for (const s of local) addInto(acc, s);
    return acc;
  }
}
