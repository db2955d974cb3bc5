/**
 * Batcher: gathers the socket thread's items into batches, sends each batch when a slot is
 * free, and settles it when it comes back.
 *
 * Owns: the batch being built (its writer, each item's context, the lanes in it), when a batch
 * goes out (flow control below), the lane transitions as batches are built, sent and come back
 * (lanes.ts), re-adding a lane's backlog in order, and a failed batch, whose frames are each
 * answered, never dropped silently. Must not: refuse items (the Dispatcher sheds load before
 * they get here), decide where a batch runs (inline-policy.ts), start or stop the pool other
 * than waking it (worker-pool.ts), or read results (apply-results.ts).
 *
 *   item ─► lane InFlight? ─► backlog
 *        └► batch being built ─flush─► inline runner, or a worker ─► results
 *   results ─► apply ─► lanes Idle ─► backlogs ─► batch being built ─► next flush
 *
 * Flow control: at most `maxInFlight` batches on the workers (worker-pool.ts), and as many
 * inline. A batch goes out at setImmediate (after uWS has delivered every frame readable in
 * this loop turn) or at once when `batchSize` items are waiting, provided a slot is free;
 * otherwise the current batch keeps growing and goes out when a batch comes back. So at low
 * load a frame waits at most one loop turn, and under load batches grow by themselves (fewer
 * worker wake-ups per frame).
 */
import { performance } from 'node:perf_hooks';
import { BatchWriter, readBatch } from '../thread-contract/codec.js';
import { ItemFlag, ItemKind, type ItemMeta } from '../thread-contract/envelope.js';
import type { Connection, PendingCall } from '../registry/connection-registry.js';
import type { Metrics } from '../metrics.js';
import type { PinoLogger } from '../log.js';
import { Lane, type BacklogItem, type LaneState, type Lanes } from './lanes.js';
import { Workers, type WorkerPool } from './worker-pool.js';
import type { InlinePolicy } from './inline-policy.js';
import type { ItemCtx, ResultApplier } from './apply-results.js';
import { answerInternalError } from './error-answers.js';
import type { Reply } from './send.js';

/** Smallest batch buffer: a few frames (a MeterValues of 10 values is ≈ 1.3 KB). */
const MIN_BATCH_BYTES = 4 * 1024;
/** Buffers of finished inline batches kept for the next batches, and the largest one kept. */
const MAX_SPARE_BUFFERS = 4;
const MAX_SPARE_BYTES = 256 * 1024;

export interface BatchHooks {
  /** Whether the charger has writes waiting in the state journal. */
  journalPending(cpId: string): boolean;
}

export class Batcher {
  private writer = new BatchWriter();
  private ctxs: ItemCtx[] = [];
  /** Lanes (charge point ids) with items in the batch being built. */
  private laneKeys: string[] = [];
  /** Whether every item of the batch being built may run inline. */
  private batchInline = true;
  private flushScheduled = false;
  /** Buffers of finished inline batches, for the next writers (see flush()). */
  private readonly spare: Uint8Array[] = [];

  constructor(
    private readonly batchSize: number,
    private readonly lanes: Lanes,
    private readonly workers: WorkerPool,
    private readonly policy: InlinePolicy,
    private readonly results: ResultApplier,
    private readonly hooks: BatchHooks,
    private readonly metrics: Metrics,
    private readonly log: PinoLogger,
  ) {}

  /** Items in the batch being built. */
  get count(): number {
    return this.writer.count;
  }

  /** A lane's item: into the batch being built, or behind the lane's batch in flight. */
  enqueue(l: LaneState, it: BacklogItem): void {
    if (l.state === Lane.InFlight) {
      l.backlog.push(it);
      this.lanes.backlogFrames++;
      return;
    }
    this.addLane(l, it);
  }

  /** A charger's answer to our CALL: outside the lanes (Dispatcher.reply). */
  addReply(conn: Connection, bytes: Uint8Array, pending: PendingCall): void {
    this.writer.add(
      this.meta(conn, ItemKind.Reply, Date.now(), { action: pending.action, request: pending.payload }),
      bytes,
    );
    this.ctxs.push({ conn, kind: ItemKind.Reply, peekId: null });
    if (this.batchInline && !this.policy.inlineable(ItemKind.Reply, conn.version, null)) this.batchInline = false;
    this.scheduleFlush();
  }

  private addLane(l: LaneState, it: BacklogItem): void {
    this.writer.add(this.meta(it.conn, it.kind, it.receivedAt, it.extra), it.bytes);
    this.ctxs.push({ conn: it.conn, kind: it.kind, peekId: it.peekId });
    if (this.batchInline && !this.policy.inlineable(it.kind, it.conn.version, it.action)) this.batchInline = false;
    l.inBatch++;
    l.used = true;
    if (l.state === Lane.Idle) {
      l.state = Lane.InBatch;
      this.laneKeys.push(it.conn.cpId);
    }
    this.scheduleFlush();
  }

  private meta(conn: Connection, kind: ItemKind, receivedAt: number, extra: unknown): ItemMeta {
    const flags = (conn.lenient ? ItemFlag.Lenient : 0) | (this.hooks.journalPending(conn.cpId) ? ItemFlag.Journal : 0);
    return [kind, conn.id, conn.cpId, conn.version, flags, receivedAt, extra ?? null];
  }

  private scheduleFlush(): void {
    if (this.writer.count >= this.batchSize && this.workers.inFlight < this.workers.maxInFlight) return this.flush();
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Sends the current batch if a slot is free (`force`: regardless, at shutdown). */
  flush(force = false): void {
    if (this.writer.count === 0) return;
    const inline = this.policy.runsInline(this.batchInline, this.writer.count);
    if (!inline) {
      if (this.workers.state === Workers.Stopping) return; // flushed again once stopped (WorkerPool's onStopped)
      if (this.workers.state === Workers.Stopped) this.workers.wake('batch', this.policy.load);
      if (this.workers.inFlight >= this.workers.maxInFlight && !force) return;
    }
    const writer = this.writer;
    const ctxs = this.ctxs;
    const keys = this.laneKeys;
    this.batchInline = true;
    // Sized like the batch just sent: a batch of hundreds of frames then never doubles its
    // buffer (each doubling copies it; see codec.ts). The buffer of a finished inline batch is
    // reused: a new ArrayBuffer per batch is external memory, which V8 answers with full
    // mark-compacts on whichever thread allocated it (bench/RESULTS.md, "The GC finding behind
    // the p99 change").
    this.writer = new BatchWriter(Math.max(MIN_BATCH_BYTES, Math.ceil(writer.bytes * 1.25)), this.spare.pop());
    this.ctxs = [];
    this.laneKeys = [];
    for (const k of keys) {
      const l = this.lanes.get(k)!;
      l.state = Lane.InFlight;
      l.inBatch = 0;
    }
    this.metrics.batchSize.observe(ctxs.length);
    const t0 = performance.now();
    if (inline) {
      // No encoding: the runtime reads the writer's frames where they are and answers in JS.
      this.policy.inFlight++;
      this.metrics.batches.inc({ thread: 'socket' });
      this.policy.runner!.run(writer.view()).then(
        (res) => {
          this.done(ctxs, keys, res.metas, (i) => res.replies[i], t0, true);
          const buf = writer.recycle();
          if (this.spare.length < MAX_SPARE_BUFFERS && buf.length <= MAX_SPARE_BYTES) this.spare.push(buf);
        },
        (err) => this.failed(ctxs, keys, err as Error, true),
      );
    } else {
      const buf = writer.finish();
      this.metrics.batches.inc({ thread: 'worker' });
      const ran = this.workers.run(buf);
      this.metrics.inFlight.set(this.workers.inFlight);
      ran.then(
        (out) => {
          const res = readBatch(out as ArrayBuffer);
          this.done(ctxs, keys, res.metas as (unknown[] | null)[], (i) => res.frame(i), t0, false);
        },
        (err) => this.failed(ctxs, keys, err as Error, false),
      );
    }
    this.metrics.queueDepth.set(0);
  }

  private done(
    ctxs: ItemCtx[],
    keys: string[],
    metas: (unknown[] | null)[],
    replyOf: (i: number) => Reply | undefined,
    t0: number,
    inline: boolean,
  ): void {
    try {
      this.results.apply(ctxs, metas, replyOf, t0);
    } catch (err) {
      // A bug here must not leave lanes in flight forever (every later frame would queue).
      this.log.error({ err }, 'applying a batch result failed');
    } finally {
      this.release(keys);
      this.settle(inline);
    }
  }

  private release(keys: string[]): void {
    for (const k of keys) {
      const l = this.lanes.get(k)!;
      l.state = Lane.Idle;
      if (l.waiters.length) {
        for (const w of l.waiters) w();
        l.waiters = [];
      }
      const items = l.backlog;
      l.backlog = [];
      for (let i = 0; i < items.length; i++) {
        // Adding may fill the batch and flush it, putting this lane in flight again: the rest
        // must then wait in the backlog, or the charger would have frames in two batches.
        if ((l.state as Lane) === Lane.InFlight) {
          l.backlog = items.slice(i);
          break;
        }
        this.lanes.backlogFrames--;
        this.addLane(l, items[i]);
      }
    }
  }

  private settle(inline: boolean): void {
    if (inline) this.policy.inFlight--;
    else this.workers.settled();
    this.metrics.inFlight.set(this.workers.inFlight);
    this.metrics.backlog.set(this.lanes.backlogFrames);
    // A slot is free: what accumulated meanwhile goes out now, as one (larger) batch.
    this.flush();
    this.metrics.queueDepth.set(this.writer.count);
  }

  /**
   * Worker crashed (or the pool refused; inline: a bug in the runtime): every item is answered,
   * never dropped silently.
   */
  private failed(ctxs: ItemCtx[], keys: string[], err: Error, inline: boolean): void {
    if (!inline) this.metrics.workerCrashes.inc();
    this.log.error(
      { err, items: ctxs.length, thread: inline ? 'socket' : 'worker' },
      'batch failed; answering every item with InternalError',
    );
    for (const ctx of ctxs) {
      if (ctx.kind === ItemKind.Frame)
        answerInternalError(
          ctx.conn,
          ctx.peekId,
          inline ? 'OCR_ERR_INLINE_BATCH' : 'OCR_ERR_WORKER_CRASHED',
          this.metrics,
          this.log,
        );
    }
    this.release(keys);
    this.settle(inline);
  }
}
