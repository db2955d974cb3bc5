/**
 * InlinePolicy: whether a batch runs on the socket thread (inline) or goes to a worker.
 *
 * Owns: the socket thread's runner for inline batches and what it supports, the decision for
 * each batch, the count of inline batches in flight, and the socket thread's load sample that
 * the decision reads. Must not: build, send or settle batches (batcher.ts), or stop workers
 * (worker-pool.ts); it only wakes them when the load says they are needed.
 *
 * A batch may run on this thread (enable(): a BatchRuntime with the `inline` plugins), with the
 * same lanes and result path but no encoding (the runtime reads the writer's frames in place
 * and answers in JS; the buffer is reused), when (1) every item is one the inline plugins
 * handle completely (InlineSupport; inlineable()), (2) it holds at most `maxBatch` items, and
 * (3) this thread's event loop was less than `maxLoad` busy over the last LOAD_SAMPLE_MS, or
 * the batch has fewer than `minOffload` items: handing a handful of frames to a worker costs
 * this thread about what running them does, and the worker as much again (bench/RESULTS.md,
 * "`pool.inline.minOffload`"). Why run batches here at all: a worker batch costs two thread
 * wake-ups, and waking a thread on another core is expensive (most of all on a VM): at fleet
 * rates that is most of a message's cost (bench/RESULTS.md, "Inline batches"). Under load the
 * socket thread is busy and batches are large, so work goes to the workers; (3) keeps the
 * sockets' own work first. While the workers are not Running, (3) does not apply
 * (worker-pool.ts).
 */
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { ItemKind } from '../thread-contract/envelope.js';
import type { DecodedBatch } from '../thread-contract/codec.js';
import type { OcppVersion } from '../protocol/dialect.js';
import type { InlineSupport } from '../worker/plugin-loader.js';
import type { Metrics } from '../metrics.js';
import { Workers, type WorkerPool } from './worker-pool.js';

/** Interval of the socket thread's load sample (event loop utilization) for inline batches. */
const LOAD_SAMPLE_MS = 50;

/** The socket thread's own runtime for inline batches (core/worker/runtime.ts). */
export interface InlineRunner {
  run(batch: DecodedBatch): Promise<{ metas: (unknown[] | null)[]; replies: (string | undefined)[] }>;
}

export interface InlineOptions {
  enabled: boolean;
  maxBatch: number;
  maxLoad: number;
  minOffload: number;
}

export class InlinePolicy {
  /** Set by enable(); null: every batch goes to a worker. */
  runner: InlineRunner | null = null;
  /** Inline batches running. */
  inFlight = 0;
  /** Socket thread load over the last sample (see LOAD_SAMPLE_MS). */
  load = 0;
  private actions = new Map<OcppVersion, Set<string>>();
  private connection = new Set<OcppVersion>();
  private replies = new Set<OcppVersion>();
  private loadTimer: NodeJS.Timeout | null = null;
  private lastElu: EventLoopUtilization | null = null;

  /** `maxInFlight`: inline batches are bounded like worker batches. */
  constructor(
    private readonly opts: InlineOptions,
    private readonly maxInFlight: number,
    private readonly workers: WorkerPool,
    private readonly metrics: Metrics,
  ) {}

  /**
   * Lets this thread run batches itself (see the file header). `support` comes from the
   * workers (they load every plugin); `runner` has the inline plugins set up on this thread.
   */
  enable(runner: InlineRunner, support: InlineSupport): void {
    if (!this.opts.enabled) return;
    this.runner = runner;
    this.actions = new Map(Object.entries(support.actions).map(([v, a]) => [v as OcppVersion, new Set(a)]));
    this.connection = new Set(support.connection);
    this.replies = new Set(support.replies);
    this.lastElu = performance.eventLoopUtilization();
    this.loadTimer = setInterval(() => {
      const now = performance.eventLoopUtilization();
      this.load = performance.eventLoopUtilization(now, this.lastElu!).utilization;
      this.lastElu = now;
      this.metrics.socketLoad.set(this.load);
    }, LOAD_SAMPLE_MS);
    this.loadTimer.unref();
  }

  /** From here on every batch goes to a worker (shutdown). */
  stop(): void {
    if (this.loadTimer) clearInterval(this.loadTimer);
    this.runner = null;
  }

  /** Whether the inline plugins handle this item completely (InlineSupport). */
  inlineable(kind: ItemKind, version: OcppVersion, action: string | null): boolean {
    if (kind === ItemKind.Frame) return action !== null && this.actions.get(version)?.has(action) === true;
    if (kind === ItemKind.Reply) return this.replies.has(version);
    return this.connection.has(version);
  }

  /**
   * Whether a batch of `count` items runs on this thread (file header: (1)-(3); (3) only while
   * the workers are up). `allInlineable`: (1) holds for each of its items. Starts stopped
   * workers when the load says they are needed.
   */
  runsInline(allInlineable: boolean, count: number): boolean {
    if (this.runner === null || !allInlineable || count > this.opts.maxBatch || this.inFlight >= this.maxInFlight)
      return false;
    // maxLoad 1: whatever the load (a busy loop's utilization reads exactly 1). A batch below
    // minOffload runs here whatever the load: see the file header.
    if (this.load < this.opts.maxLoad || this.opts.maxLoad >= 1 || count < this.opts.minOffload) return true;
    if (this.workers.state === Workers.Running) return false;
    this.workers.wake('load', this.load);
    return true;
  }
}
