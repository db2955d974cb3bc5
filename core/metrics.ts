/**
 * Prometheus metrics (prom-client), owned by the socket thread.
 *
 * Owns: metric names (`ocr_*`) and label sets. Workers do not register metrics: each batch
 * result carries per-frame outcome, action and handler time, and the socket thread counts
 * them here, so one /metrics covers all threads. Must not: use unbounded label values
 * (unknown action names are folded into "(unknown)").
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { SinkStats } from './analytics/sink.js';

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'ocr_process_' });
  const m = {
    registry,
    connections: new Gauge({
      name: 'ocr_connections',
      help: 'Connected chargers on this node',
      labelNames: ['version'],
      registers: [registry],
    }),
    upgrades: new Counter({
      name: 'ocr_upgrades_total',
      help: 'WebSocket upgrade attempts by outcome',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    messages: new Counter({
      name: 'ocr_messages_total',
      help: 'Charger-initiated messages by action and outcome',
      labelNames: ['version', 'action', 'outcome'],
      registers: [registry],
    }),
    callErrors: new Counter({
      name: 'ocr_call_errors_total',
      help: 'CALLERRORs sent to chargers by semantic code',
      labelNames: ['version', 'code'],
      registers: [registry],
    }),
    deviations: new Counter({
      name: 'ocr_lenient_deviations_total',
      help: 'Spec deviations tolerated in lenient mode',
      labelNames: ['kind'],
      registers: [registry],
    }),
    dropped: new Counter({
      name: 'ocr_frames_dropped_total',
      help: 'Frames dropped without processing, by reason',
      labelNames: ['reason'],
      registers: [registry],
    }),
    outbox: new Counter({
      name: 'ocr_outbox_total',
      help: 'Socket send results other than sent',
      labelNames: ['result'],
      registers: [registry],
    }),
    commands: new Counter({
      name: 'ocr_commands_total',
      help: 'CSMS-initiated CALLs by action and outcome',
      labelNames: ['action', 'outcome'],
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'ocr_pool_pending_frames',
      help: 'Frames waiting for a free batch slot (load is shed at pool.maxPendingFrames)',
      registers: [registry],
    }),
    threads: new Gauge({
      name: 'ocr_pool_threads',
      help: 'Worker threads running in this router process (0 while stopped for idleness: pool.idleTimeoutMs)',
      registers: [registry],
    }),
    inFlight: new Gauge({
      name: 'ocr_pool_batches_in_flight',
      help: 'Batches being processed by workers',
      registers: [registry],
    }),
    backlog: new Gauge({
      name: 'ocr_lane_backlog_frames',
      help: "Frames waiting behind their charger's in-flight frames",
      registers: [registry],
    }),
    batches: new Counter({
      name: 'ocr_batches_total',
      help: 'Batches run, by thread: "worker", or "socket" (run inline on the socket thread: no thread hop)',
      labelNames: ['thread'],
      registers: [registry],
    }),
    socketLoad: new Gauge({
      name: 'ocr_socket_thread_load',
      help: 'Event loop utilization of the socket thread over the last interval (0-1); batches run inline only below pool.inline.maxLoad',
      registers: [registry],
    }),
    batchSize: new Histogram({
      name: 'ocr_batch_items',
      help: 'Items per batch',
      buckets: [1, 4, 16, 64, 256, 1024, 4096],
      registers: [registry],
    }),
    batchSeconds: new Histogram({
      name: 'ocr_batch_round_trip_seconds',
      help: 'Batch round trip, socket thread to worker and back',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
      registers: [registry],
    }),
    handlerSeconds: new FrameHistogram({
      name: 'ocr_handler_seconds',
      help: 'Pipeline time per frame in the worker',
      labelName: 'action',
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.25, 1],
      registry,
    }),
    workerStarts: new Counter({
      name: 'ocr_worker_starts_total',
      help: 'Times the worker threads were started again after an idle stop (pool.idleTimeoutMs)',
      registers: [registry],
    }),
    workerCrashes: new Counter({
      name: 'ocr_worker_crashes_total',
      help: 'Batches lost to a worker crash (each item answered with InternalError)',
      registers: [registry],
    }),
  };
  return m;
}

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * The analytics pipeline's counters (every thread's sink, summed by the caller: see
 * core/analytics/thread-totals.ts), read at each scrape. Rows by outcome: `written` (inserted
 * into ClickHouse), `spooled` (kept on disk: no ClickHouse configured, or it failed),
 * `replayed` (from the spool into ClickHouse later), `dropped` (lost: memory bound passed, or
 * rows held in memory when the router stopped); messages refused while rows could not be stored.
 */
export function registerAnalyticsMetrics(registry: Registry, read: () => SinkStats): void {
  new Counter({
    name: 'ocr_analytics_rows_total',
    help: 'Analytics rows by outcome: written to ClickHouse, spooled to disk, replayed from the spool, dropped (memory bound passed, or held rows at shutdown)',
    labelNames: ['outcome'],
    registers: [registry],
    collect() {
      const s = read();
      this.reset();
      for (const outcome of ['written', 'spooled', 'replayed', 'dropped'] as const) this.inc({ outcome }, s[outcome]);
    },
  });
  new Gauge({
    name: 'ocr_analytics_buffered_rows',
    help: 'Analytics rows in memory: waiting for the next flush, or held while neither ClickHouse nor the spool takes them',
    registers: [registry],
    collect() {
      this.set(read().buffered);
    },
  });
  new Counter({
    name: 'ocr_analytics_refused_messages_total',
    help: 'Charger messages refused with InternalError (the charger retries) because analytics rows could not be stored: ClickHouse and the spool did not take rows, and the rows in memory reached nine tenths of analytics.maxBufferRows',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read().refused);
    },
  });
  new Counter({
    name: 'ocr_analytics_insert_failures_total',
    help: 'Failed ClickHouse inserts and migrations (their rows went to the spool)',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read().failures);
    },
  });
}

/**
 * A histogram with one label, for the per-frame path of the socket thread, registered in a
 * prom-client Registry like its own metrics (same text and JSON output).
 *
 * Why not prom-client's Histogram: its labelled child validates and hashes the labels on
 * every observe(); at one observe per frame that was 5% of the socket thread on the
 * MeterValues profile (1,000 chargers × 8 in flight). Here a child is a Float64Array of
 * bucket counts, and observe() is a bounded loop and two additions.
 */
export class FrameHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly name: string;
  readonly help: string;
  readonly #label: string;
  readonly #bounds: number[];
  readonly #children = new Map<string, { counts: Float64Array; sum: number; observe(v: number): void }>();

  constructor(o: { name: string; help: string; labelName: string; buckets: number[]; registry: Registry }) {
    this.name = o.name;
    this.help = o.help;
    this.#label = o.labelName;
    this.#bounds = [...o.buckets].sort((a, b) => a - b);
    o.registry.registerMetric(this as never);
  }

  labels(value: string): { observe(v: number): void } {
    let c = this.#children.get(value);
    if (!c) {
      const bounds = this.#bounds;
      const child = {
        counts: new Float64Array(bounds.length + 1), // the last one: above every bound (+Inf)
        sum: 0,
        observe(v: number): void {
          if (!Number.isFinite(v)) return;
          let i = 0;
          while (i < bounds.length && v > bounds[i]) i++;
          child.counts[i]++;
          child.sum += v;
        },
      };
      this.#children.set(value, (c = child));
    }
    return c;
  }

  /** prom-client's metric shape (Registry#metrics and #getMetricsAsJSON read it). */
  get(): {
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }>;
  } {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    for (const [lv, c] of this.#children) {
      let acc = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        acc += c.counts[i];
        values.push({
          labels: { le: this.#bounds[i], [this.#label]: lv },
          value: acc,
          metricName: `${this.name}_bucket`,
        });
      }
      acc += c.counts[this.#bounds.length];
      values.push({ labels: { le: '+Inf', [this.#label]: lv }, value: acc, metricName: `${this.name}_bucket` });
      values.push({ labels: { [this.#label]: lv }, value: c.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { [this.#label]: lv }, value: acc, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** Zeroes every child (children stay bound: callers cache them). */
  reset(): void {
    for (const c of this.#children.values()) {
      c.counts.fill(0);
      c.sum = 0;
    }
  }
}
