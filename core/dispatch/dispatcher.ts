/**
 * Dispatcher: batches frames from the socket thread to the piscina worker pool and applies
 * the replies.
 *
 * Owns: per-charger ordering across batches (lanes), batch size and flush timing, bounded
 * queues and load shedding, and answering every item of a batch lost to a worker crash.
 * Must not: parse frames (only peek results are used) or run plugins.
 *
 *   socket thread                                   workers (piscina)
 *   frame ─► lane Idle? ─► current batch ─flush─►  [batch] ─► lanes in order ─► results
 *            lane busy? ─► backlog (bounded)    ◄───────────── replies (bytes) ◄┘
 *   batch done ─► send replies, lanes Idle, backlog ─► next batch
 *
 * Flow control: at most `threads × concurrentTasksPerWorker` batches are in flight; more
 * would only wait in piscina's queue while adding per-task overhead. A batch goes out at
 * setImmediate (after uWS has delivered every frame readable in this loop turn) or at once
 * when `batchSize` items are waiting, provided a slot is free; otherwise the current batch
 * keeps growing and goes out when a batch comes back. So at low load a frame waits at most one
 * loop turn, and under load batches grow by themselves (fewer worker wake-ups per frame).
 * Saturation is counted in frames waiting, not batches: with N chargers and one request in
 * flight each, the router never holds more than N frames and never sheds load
 * (bench/repro/pool-saturated.ts).
 *
 * Inline batches: a batch may instead run on this thread (setInline: a BatchRuntime with the
 * `inline` plugins), with the same lanes and result path but no encoding (the runtime reads
 * the writer's frames in place and answers in JS; the buffer is reused), when (1) every item is
 * one the inline plugins handle completely (InlineSupport), (2) it holds at most
 * `inline.maxBatch` items, and (3) this thread's event loop was less than `inline.maxLoad`
 * busy over the last LOAD_SAMPLE_MS, or the batch has fewer than `inline.minOffload` items:
 * handing a handful of frames to a worker costs this thread about what running them does, and
 * the worker as much again (bench/RESULTS.md, "`pool.inline.minOffload`"). Why run batches
 * here at all: a worker batch costs two thread wake-ups, and waking a thread on another core
 * is expensive (most of all on a VM): at fleet rates that is most of a message's cost
 * (bench/RESULTS.md, "Inline batches"). Under load the socket thread is busy and batches are
 * large, so work goes to the workers; (3) keeps the sockets' own work first.
 *
 * Worker threads stop when idle: after `idleTimeoutMs` without a batch for them, every worker
 * runs its plugins' close hooks and flushes its analytics (the same drain as at shutdown), then
 * the pool is destroyed; the next batch that needs a worker starts the pool again. A worker's
 * isolate, modules and plugins are most of an idle router's memory (bench/RESULTS.md,
 * "Reconnect storm and hold"), while at fleet rates inline batches leave the workers idle.
 *
 *   Stopped ──batch for a worker, or load ≥ maxLoad──► Warming ──every ping answered──► Running
 *   Running ──idle idleTimeoutMs, nothing in flight──► Stopping ──drained, destroyed──► Stopped
 *
 * While the pool is not Running, inline-able batches run inline whatever the load (a cold start
 * loads every plugin in every worker: queueing them would turn it into latency); the others wait
 * in the batch being built (Stopping) or in piscina's queue until their worker is up (Warming).
 */
import { Piscina } from 'piscina';
import { BatchWriter, readBatch, type DecodedBatch } from '../thread-contract/codec.js';
import {
  ItemFlag,
  ItemKind,
  Outcome,
  type FrameResultMeta,
  type ItemMeta,
  type PingResult,
} from '../thread-contract/envelope.js';
import type { Connection, PendingCall } from '../registry/connection-registry.js';
import { CallError } from '../protocol/call-error.js';
import { serializeCallError } from '../protocol/frame.js';
import { isKnownAction } from '../protocol/schemas.js';
import { compiled } from '../paths.js';
import type { Metrics } from '../metrics.js';
import type { PinoLogger } from '../log.js';
import type { WorkerData } from '../worker/entry.js';
import type { InlineSupport } from '../worker/plugin-loader.js';
import type { OcppVersion } from '../protocol/dialect.js';
import { SendStatus } from '../transport/transport.js';
import { randomBytes } from 'node:crypto';
import { performance, type EventLoopUtilization } from 'node:perf_hooks';

/** Interval of the socket thread's load sample (event loop utilization) for inline batches. */
const LOAD_SAMPLE_MS = 50;
/** Smallest batch buffer: a few frames (a MeterValues of 10 values is ≈ 1.3 KB). */
const MIN_BATCH_BYTES = 4 * 1024;
/** Buffers of finished inline batches kept for the next batches, and the largest one kept. */
const MAX_SPARE_BUFFERS = 4;
const MAX_SPARE_BYTES = 256 * 1024;

/** A reply as a worker returns it (UTF-8 bytes) or as the socket thread's runtime does (text). */
type Reply = Uint8Array | string;

/**
 * Lane states of one charger:
 *   Idle ──frame──► InBatch (items in the batch being built) ──flush──► InFlight
 *   InFlight ──frame──► backlog   InFlight ──batch done──► Idle, or InBatch with the backlog
 */
const enum Lane {
  Idle = 0,
  InBatch = 1,
  InFlight = 2,
}

interface ItemCtx {
  conn: Connection;
  kind: ItemKind;
  peekId: string | null;
}

/**
 * A charger's ordered lane. Keyed by charge point id, not by connection: when a charger
 * reconnects, the old connection's in-flight work, its Disconnect and the new connection's
 * Connect and frames stay in one order.
 */
interface LaneState {
  /** Idle: no item in the batch being built or in flight, and so none in the backlog or waiters (release() empties both). */
  state: Lane;
  /** Items of this lane in the batch being built (bounded by backlogPerCharger with the backlog). */
  inBatch: number;
  backlog: BacklogItem[];
  /** Resolved when the lane's in-flight batch has come back and its replies are sent. */
  waiters: Array<() => void>;
  /** Given an item since the last sweep of idle lanes (see LANE_SWEEP_MS). */
  used: boolean;
}

/**
 * How long an idle lane stays in the map before it is swept (between one and two periods).
 * Why not delete a lane once idle: a charger sending every 100 ms would add and delete its
 * lane for every message, and the map's rehashed tables, each alive a few hundred
 * milliseconds, are promoted garbage on the socket thread, whose old generation's growth sets
 * the rate of mark-compacts (bench/RESULTS.md, "Where the 10,000 msg/s tail comes from"). A
 * lane is a few dozen bytes; those of chargers quiet for a period go.
 */
const LANE_SWEEP_MS = 1000;

interface BacklogItem {
  conn: Connection;
  kind: ItemKind;
  bytes: Uint8Array | undefined;
  receivedAt: number;
  peekId: string | null;
  /** Action of a CALL/SEND frame (from the peek), else null. */
  action: string | null;
  extra: unknown;
}

/** The socket thread's own runtime for inline batches (core/worker/runtime.ts). */
export interface InlineRunner {
  run(batch: DecodedBatch): Promise<{ metas: (unknown[] | null)[]; replies: (string | undefined)[] }>;
}

export interface DispatcherOptions {
  threads: number;
  /** Worker threads stop after this long without a batch for them; 0: never (file header). */
  idleTimeoutMs: number;
  batchSize: number;
  concurrentTasksPerWorker: number;
  maxPendingFrames: number;
  backlogPerCharger: number;
  workerData: WorkerData;
  inline: { enabled: boolean; maxBatch: number; maxLoad: number; minOffload: number };
}

export interface DispatchHooks {
  /** A BootNotification told us the charger's model (lenient profile by model). */
  identity(conn: Connection, vendor: string, model: string): void;
  /** An invalid frame (bad JSON/framing): the gateway closes repeat offenders. */
  badFrame(conn: Connection): void;
  /** Whether the charger has writes waiting in the state journal. */
  journalPending(cpId: string): boolean;
}

// Compiled code starts workers on the compiled entry; the sources under tsx need worker.mjs to
// register tsx inside each worker thread (Node 20's --import hooks do not reach them).
const entryUrl = new URL(compiled ? '../worker/entry.js' : '../worker/worker.mjs', import.meta.url);

interface FrameMetric {
  messages: { inc(n?: number): void };
  seconds: { observe(v: number): void };
  /** Frames counted since the last countFrames(). */
  pending: number;
}

/** Worker pool states (file header). */
const enum Workers {
  Stopped = 0,
  Warming = 1,
  Running = 2,
  Stopping = 3,
}

export class Dispatcher {
  private pool: Piscina | null = null;
  private workers = Workers.Stopped;
  /** When a batch last went to (or came back from) a worker, performance.now(). */
  private lastWorkerUse = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  private stopping: Promise<void> | null = null;
  private writer = new BatchWriter();
  private ctxs: ItemCtx[] = [];
  /** Lanes (charge point ids) with items in the batch being built. */
  private laneKeys: string[] = [];
  private readonly lanes = new Map<string, LaneState>();
  private flushScheduled = false;
  private inFlight = 0;
  private backlogFrames = 0;
  private readonly maxInFlight: number;
  /** Set by setInline(); null: every batch goes to a worker. */
  private inlineRunner: InlineRunner | null = null;
  private inlineActions = new Map<OcppVersion, Set<string>>();
  private inlineConnection = new Set<OcppVersion>();
  private inlineReplies = new Set<OcppVersion>();
  /** Whether every item of the batch being built may run inline. */
  private batchInline = true;
  private inlineInFlight = 0;
  /** Socket thread load over the last sample (see LOAD_SAMPLE_MS). */
  private load = 0;
  private loadTimer: NodeJS.Timeout | null = null;
  private lastElu: EventLoopUtilization | null = null;
  /** Buffers of finished inline batches, for the next writers (see flush()). */
  private readonly spare: Uint8Array[] = [];

  private readonly laneSweep: NodeJS.Timeout;

  constructor(
    private readonly opts: DispatcherOptions,
    private readonly hooks: DispatchHooks,
    private readonly metrics: Metrics,
    private readonly log: PinoLogger,
  ) {
    this.maxInFlight = opts.threads * opts.concurrentTasksPerWorker;
    this.laneSweep = setInterval(() => this.sweepLanes(), LANE_SWEEP_MS);
    this.laneSweep.unref();
  }

  private createPool(): Piscina {
    const pool = new Piscina({
      filename: entryUrl.href,
      minThreads: this.opts.threads,
      maxThreads: this.opts.threads,
      // Idle workers are stopped by us, all together and after a drain (stopWorkers): piscina's
      // own idleTimeout would terminate them without running the plugins' close hooks.
      idleTimeout: Infinity,
      concurrentTasksPerWorker: this.opts.concurrentTasksPerWorker,
      // Batches already amortise the wake-up; atomics would spin a core per idle worker.
      atomics: 'disabled',
      // We never run more than maxInFlight tasks, so piscina's queue only fills while a crashed
      // worker is being replaced or the pool is warming; it must hold them all then, with one
      // ping per thread ('auto' would be threads²).
      maxQueue: this.opts.threads * (this.opts.concurrentTasksPerWorker + 1),
      workerData: this.opts.workerData,
      // Nothing reads piscina's run/wait-time histograms (our own metrics time batches); they
      // cost two HDR histograms (≈ 1 MB of native memory) per pool and a record per task.
      recordTiming: false,
    });
    pool.on('error', (err: Error) => this.log.error({ err }, 'worker pool error'));
    this.lastWorkerUse = performance.now();
    this.metrics.threads.set(this.opts.threads);
    return pool;
  }

  private ping(pool: Piscina): Promise<PingResult[]> {
    const pings: Promise<PingResult>[] = [];
    for (let i = 0; i < this.opts.threads; i++) pings.push(pool.run({ op: 'ping' }) as Promise<PingResult>);
    return Promise.all(pings);
  }

  /** Starts every worker and surfaces plugin load errors before the router listens. */
  async start(): Promise<PingResult[]> {
    const pool = (this.pool = this.createPool());
    this.workers = Workers.Warming;
    const pings = await this.ping(pool);
    this.workers = Workers.Running;
    // Idle from now: a pool that took longer than idleTimeoutMs to load its plugins (a loaded
    // host) was otherwise stopped on its first idle check, before any batch could use it.
    this.lastWorkerUse = performance.now();
    if (this.opts.idleTimeoutMs > 0) {
      this.idleTimer = setInterval(() => this.checkIdle(), Math.max(10, Math.min(1000, this.opts.idleTimeoutMs / 4)));
      this.idleTimer.unref();
    }
    return pings;
  }

  /** Starts the pool again after an idle stop (file header); batches queue until it is up. */
  private wakeWorkers(reason: 'load' | 'batch'): void {
    if (this.workers !== Workers.Stopped) return;
    this.log.info(
      { threads: this.opts.threads, reason, load: Math.round(this.load * 100) / 100 },
      'starting worker threads',
    );
    this.metrics.workerStarts.inc();
    const pool = (this.pool = this.createPool());
    this.workers = Workers.Warming;
    this.ping(pool).then(
      () => {
        if (this.pool === pool && this.workers === Workers.Warming) {
          this.workers = Workers.Running;
          this.lastWorkerUse = performance.now();
        }
      },
      (err: Error) => {
        // Marked Running all the same: batches sent to a pool that cannot start fail like
        // this ping and every item is answered (failed()), and piscina replaces dead workers.
        this.log.error({ err }, 'worker threads failed to start');
        if (this.pool === pool && this.workers === Workers.Warming) this.workers = Workers.Running;
      },
    );
  }

  private checkIdle(): void {
    if (this.workers !== Workers.Running || this.inFlight > 0) return;
    const idleMs = performance.now() - this.lastWorkerUse;
    if (idleMs < this.opts.idleTimeoutMs) return;
    this.log.info({ threads: this.opts.threads, idleMs: Math.round(idleMs) }, 'stopping idle worker threads');
    this.stopping = this.stopWorkers(Date.now() + 10_000).finally(() => {
      this.stopping = null;
      // Batches that needed a worker waited in the batch being built.
      this.flush();
    });
  }

  /** Drains (close hooks, analytics flushed) and destroys the pool. */
  private async stopWorkers(deadline: number): Promise<void> {
    const pool = this.pool;
    if (!pool) return;
    this.workers = Workers.Stopping;
    const control = new BroadcastChannel(`${this.opts.workerData.channel}:control`);
    const threads = pool.threads.length;
    await new Promise<void>((resolve) => {
      let acks = 0;
      const timer = setTimeout(resolve, Math.max(100, deadline - Date.now()));
      control.onmessage = (ev: MessageEvent) => {
        if ((ev.data as { op?: string })?.op === 'drained' && ++acks >= threads) {
          clearTimeout(timer);
          resolve();
        }
      };
      control.postMessage({ op: 'drain' });
    });
    control.close();
    await pool.close({ force: false }).catch(() => undefined);
    await pool.destroy().catch(() => undefined);
    this.pool = null;
    this.workers = Workers.Stopped;
    this.metrics.threads.set(0);
  }

  /** Stops the workers at once, without draining (startup failed). */
  async destroy(): Promise<void> {
    if (this.idleTimer) clearInterval(this.idleTimer);
    clearInterval(this.laneSweep);
    await this.pool?.destroy().catch(() => undefined);
    this.pool = null;
    this.workers = Workers.Stopped;
  }

  /**
   * Lets this thread run batches itself (see the file header). `support` comes from the
   * workers (they load every plugin); `runner` has the inline plugins set up on this thread.
   */
  setInline(runner: InlineRunner, support: InlineSupport): void {
    if (!this.opts.inline.enabled) return;
    this.inlineRunner = runner;
    this.inlineActions = new Map(Object.entries(support.actions).map(([v, a]) => [v as OcppVersion, new Set(a)]));
    this.inlineConnection = new Set(support.connection);
    this.inlineReplies = new Set(support.replies);
    this.lastElu = performance.eventLoopUtilization();
    this.loadTimer = setInterval(() => {
      const now = performance.eventLoopUtilization();
      this.load = performance.eventLoopUtilization(now, this.lastElu!).utilization;
      this.lastElu = now;
      this.metrics.socketLoad.set(this.load);
    }, LOAD_SAMPLE_MS);
    this.loadTimer.unref();
  }

  /** Whether the inline plugins handle this item completely (InlineSupport). */
  private inlineable(kind: ItemKind, version: OcppVersion, action: string | null): boolean {
    if (kind === ItemKind.Frame) return action !== null && this.inlineActions.get(version)?.has(action) === true;
    if (kind === ItemKind.Reply) return this.inlineReplies.has(version);
    return this.inlineConnection.has(version);
  }

  /** True when new work would only grow queues: shed load (503 upgrades, fast errors). */
  get saturated(): boolean {
    return this.writer.count >= this.opts.maxPendingFrames;
  }

  get stats() {
    return {
      inFlight: this.inFlight,
      inlineInFlight: this.inlineInFlight,
      pendingFrames: this.writer.count,
      queued: this.pool?.queueSize ?? 0,
      backlog: this.backlogFrames,
      threads: this.pool?.threads.length ?? 0,
    };
  }

  private meta(conn: Connection, kind: ItemKind, receivedAt: number, extra: unknown): ItemMeta {
    const flags = (conn.lenient ? ItemFlag.Lenient : 0) | (this.hooks.journalPending(conn.cpId) ? ItemFlag.Journal : 0);
    return [kind, conn.id, conn.cpId, conn.version, flags, receivedAt, extra ?? null];
  }

  private lane(cpId: string): LaneState {
    let l = this.lanes.get(cpId);
    if (!l) this.lanes.set(cpId, (l = { state: Lane.Idle, inBatch: 0, backlog: [], waiters: [], used: true }));
    return l;
  }

  /** True when the charger has nothing queued or in flight (socket-thread answers are safe). */
  isIdle(cpId: string): boolean {
    const l = this.lanes.get(cpId);
    return l === undefined || l.state === Lane.Idle;
  }

  /** Deletes the lanes that stayed idle since the last sweep (LANE_SWEEP_MS). */
  private sweepLanes(): void {
    for (const [k, l] of this.lanes) {
      if (l.used) l.used = false;
      else if (l.state === Lane.Idle) this.lanes.delete(k);
    }
  }

  /** Lanes with work queued, in a batch or in flight (idle ones wait for the sweep). */
  private busyLanes(): number {
    let n = 0;
    for (const l of this.lanes.values()) if (l.state !== Lane.Idle) n++;
    return n;
  }

  /**
   * Resolves once the charger's current batch (if any) has come back and its replies are
   * sent. A CSMS CALL made from an `after` hook waits for this, so it never reaches the
   * charger before the reply to the message that caused it.
   */
  afterLane(cpId: string): Promise<void> {
    const l = this.lanes.get(cpId);
    if (!l || l.state !== Lane.InFlight) return Promise.resolve();
    return new Promise((resolve) => l.waiters.push(resolve));
  }

  /**
   * A charger's frame (CALL, SEND, or anything unpeekable). Kept in the charger's order.
   * `action`: the peeked action of a CALL or SEND, else null.
   */
  frame(
    conn: Connection,
    bytes: Uint8Array,
    receivedAt: number,
    peekId: string | null,
    action: string | null = null,
  ): void {
    if (this.saturated) {
      this.metrics.dropped.inc({ reason: 'pool_saturated' });
      return this.answerInternal(conn, peekId, 'OCR_ERR_POOL_SATURATED');
    }
    const existing = this.lanes.get(conn.cpId);
    // One charger must not fill the shared queue: the bound covers its items waiting in the
    // batch being built as well as behind its in-flight batch. (No lane is created on this
    // path: a refused frame needs none.)
    if (existing && existing.inBatch + existing.backlog.length >= this.opts.backlogPerCharger) {
      this.metrics.dropped.inc({ reason: 'backlog_full' });
      return this.answerInternal(conn, peekId, 'OCR_ERR_LANE_BACKLOG_FULL');
    }
    this.enqueue(existing ?? this.lane(conn.cpId), {
      conn,
      kind: ItemKind.Frame,
      bytes,
      receivedAt,
      peekId,
      action,
      extra: null,
    });
  }

  /** Connect / disconnect events run in the charger's lane: after/before its frames. */
  event(conn: Connection, kind: ItemKind.Connect | ItemKind.Disconnect, extra: unknown): void {
    this.enqueue(this.lane(conn.cpId), {
      conn,
      kind,
      bytes: undefined,
      receivedAt: Date.now(),
      peekId: null,
      action: null,
      extra,
    });
  }

  /**
   * A charger's answer to our CALL, for the workers' onCallResult / onCallError hooks and
   * analytics. Outside the lane (a handler of this charger may be awaiting the CALL), and the
   * waiting caller was already settled on this thread (CommandApi.settleFrame), so nothing
   * waits for this item.
   */
  reply(conn: Connection, bytes: Uint8Array, pending: PendingCall): void {
    this.writer.add(
      this.meta(conn, ItemKind.Reply, Date.now(), { action: pending.action, request: pending.payload }),
      bytes,
    );
    this.ctxs.push({ conn, kind: ItemKind.Reply, peekId: null });
    if (this.batchInline && !this.inlineable(ItemKind.Reply, conn.version, null)) this.batchInline = false;
    this.scheduleFlush();
  }

  private enqueue(l: LaneState, it: BacklogItem): void {
    if (l.state === Lane.InFlight) {
      l.backlog.push(it);
      this.backlogFrames++;
      return;
    }
    this.addLane(l, it);
  }

  private addLane(l: LaneState, it: BacklogItem): void {
    this.writer.add(this.meta(it.conn, it.kind, it.receivedAt, it.extra), it.bytes);
    this.ctxs.push({ conn: it.conn, kind: it.kind, peekId: it.peekId });
    if (this.batchInline && !this.inlineable(it.kind, it.conn.version, it.action)) this.batchInline = false;
    l.inBatch++;
    l.used = true;
    if (l.state === Lane.Idle) {
      l.state = Lane.InBatch;
      this.laneKeys.push(it.conn.cpId);
    }
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.writer.count >= this.opts.batchSize && this.inFlight < this.maxInFlight) return this.flush();
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /**
   * Whether the batch being built runs on this thread (file header: (1)-(3); (3) only while the
   * workers are up). Starts stopped workers when the load says they are needed.
   */
  private runsInline(): boolean {
    if (
      this.inlineRunner === null ||
      !this.batchInline ||
      this.writer.count > this.opts.inline.maxBatch ||
      this.inlineInFlight >= this.maxInFlight
    )
      return false;
    // maxLoad 1: whatever the load (a busy loop's utilization reads exactly 1). A batch below
    // minOffload runs here whatever the load: see the file header.
    if (
      this.load < this.opts.inline.maxLoad ||
      this.opts.inline.maxLoad >= 1 ||
      this.writer.count < this.opts.inline.minOffload
    )
      return true;
    if (this.workers === Workers.Running) return false;
    this.wakeWorkers('load');
    return true;
  }

  /** Sends the current batch if a slot is free (`force`: regardless, at shutdown). */
  flush(force = false): void {
    if (this.writer.count === 0) return;
    const inline = this.runsInline();
    if (!inline) {
      if (this.workers === Workers.Stopping) return; // flushed again once stopped (checkIdle)
      if (this.workers === Workers.Stopped) this.wakeWorkers('batch');
      if (this.inFlight >= this.maxInFlight && !force) return;
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
      this.inlineInFlight++;
      this.metrics.batches.inc({ thread: 'socket' });
      this.inlineRunner!.run(writer.view()).then(
        (res) => {
          this.done(ctxs, keys, res.metas, (i) => res.replies[i], t0, true);
          const buf = writer.recycle();
          if (this.spare.length < MAX_SPARE_BUFFERS && buf.length <= MAX_SPARE_BYTES) this.spare.push(buf);
        },
        (err) => this.failed(ctxs, keys, err as Error, true),
      );
    } else {
      const buf = writer.finish();
      this.inFlight++;
      this.metrics.batches.inc({ thread: 'worker' });
      this.metrics.inFlight.set(this.inFlight);
      this.lastWorkerUse = performance.now();
      this.pool!.run(buf, { transferList: [buf] as never }).then(
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
      this.apply(ctxs, metas, replyOf, t0);
    } catch (err) {
      // A bug here must not leave lanes in flight forever (every later frame would queue).
      this.log.error({ err }, 'applying a batch result failed');
    } finally {
      this.release(keys);
      this.settle(inline);
    }
  }

  /** Result i of a batch: `metas[i]` (envelope.ts) and, for a frame, `reply(i)` (empty or undefined: none). */
  private apply(
    ctxs: ItemCtx[],
    metas: (unknown[] | null)[],
    replyOf: (i: number) => Reply | undefined,
    t0: number,
  ): void {
    this.metrics.batchSeconds.observe((performance.now() - t0) / 1000);
    // Replies are grouped per socket and written under one cork each: one syscall per
    // charger per batch instead of one per reply (bench/RESULTS.md, "Figures behind the
    // dispatcher and the batch codec"). Order within a charger is kept.
    const replies = new Map<Connection, Reply[]>();
    for (let i = 0; i < ctxs.length; i++) {
      const ctx = ctxs[i];
      const meta = metas[i];
      if (ctx.kind === ItemKind.Frame) {
        if (!meta) {
          this.answerInternal(ctx.conn, ctx.peekId, 'OCR_ERR_WORKER_ITEM');
          continue;
        }
        const reply = this.applyFrame(ctx.conn, meta as FrameResultMeta, replyOf(i));
        if (reply) {
          const list = replies.get(ctx.conn);
          if (list) list.push(reply);
          else replies.set(ctx.conn, [reply]);
        }
      }
    }
    this.countFrames();
    for (const [conn, list] of replies) {
      if (conn.closed) continue;
      conn.socket.cork(() => {
        for (const bytes of list) this.send(conn, bytes);
      });
    }
  }

  private countFrames(): void {
    for (const m of this.touched) {
      m.messages.inc(m.pending);
      m.pending = 0;
    }
    this.touched.length = 0;
  }

  /**
   * Metric children pre-bound per (version, action, outcome): prom-client's labelled inc/observe
   * hashes the label object on every call, and this runs on the socket thread for every frame
   * (bench/RESULTS.md, "Figures behind the dispatcher and the batch codec").
   */
  private readonly frameMetrics = new Map<string, FrameMetric>();
  /** Frame metrics counted in the batch being applied; added to the counters once per batch. */
  private readonly touched: FrameMetric[] = [];

  /** Counts the frame's outcome; returns the reply bytes to send, if any. */
  private applyFrame(conn: Connection, r: FrameResultMeta, reply: Reply | undefined): Reply | undefined {
    const [outcome, action, errorCode, deviations, identity, unmatched, micros] = r;
    const v = conn.version;
    const key = `${v}|${action}|${outcome}`;
    let m = this.frameMetrics.get(key);
    if (!m) {
      // Unknown action names from chargers are folded into one label (bounded cardinality).
      const label = action.startsWith('(') || isKnownAction(v, action) ? action : '(unknown)';
      m = {
        messages: this.metrics.messages.labels(
          v,
          label,
          outcome === Outcome.Ok ? 'ok' : outcome === Outcome.Error ? 'error' : 'ignored',
        ),
        seconds: this.metrics.handlerSeconds.labels(label),
        pending: 0,
      };
      if (label === action) this.frameMetrics.set(key, m);
    }
    // Counted here, added to the prom-client counter once per batch (countFrames): its inc()
    // validates and hashes the labels on every call.
    if (m.pending++ === 0) this.touched.push(m);
    m.seconds.observe(micros / 1e6);
    if (errorCode) this.metrics.callErrors.inc({ version: v, code: errorCode });
    if (action === '(invalid)') this.hooks.badFrame(conn);
    if (deviations) for (const d of deviations) this.metrics.deviations.inc({ kind: d });
    if (identity) this.hooks.identity(conn, identity.vendor, identity.model);
    if (unmatched) {
      this.metrics.dropped.inc({ reason: 'unmatched_reply' });
      this.log.warn({ cpId: conn.cpId, messageId: unmatched.id }, 'reply with no pending CALL dropped');
    }
    return reply !== undefined && reply.length > 0 ? reply : undefined;
  }

  /** Sends and reads the status (STYLE.md §9): backpressure is counted; drops too. */
  send(conn: Connection, bytes: Uint8Array | string): void {
    if (conn.closed) return;
    const s = conn.socket.send(bytes);
    if (s === SendStatus.Sent) return;
    this.metrics.outbox.inc({ result: s === SendStatus.Backpressure ? 'backpressure' : 'dropped' });
    // uWS buffers on backpressure up to maxBackpressure and closes the socket beyond it
    // (closeOnBackpressureLimit), so a reader that stopped reading cannot grow memory.
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
        this.backlogFrames--;
        this.addLane(l, items[i]);
      }
    }
  }

  private settle(inline: boolean): void {
    if (inline) this.inlineInFlight--;
    else {
      this.inFlight--;
      this.lastWorkerUse = performance.now();
    }
    this.metrics.inFlight.set(this.inFlight);
    this.metrics.backlog.set(this.backlogFrames);
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
        this.answerInternal(ctx.conn, ctx.peekId, inline ? 'OCR_ERR_INLINE_BATCH' : 'OCR_ERR_WORKER_CRASHED');
    }
    this.release(keys);
    this.settle(inline);
  }

  /** Fast InternalError for a frame we could not process (id from the peek). */
  answerInternal(conn: Connection, peekId: string | null, reason: string): void {
    if (peekId === null) return; // unreadable id: nothing safe to answer with
    const ref = randomBytes(6).toString('hex');
    this.log.warn({ cpId: conn.cpId, messageId: peekId, ref, reason }, 'answering InternalError');
    this.metrics.callErrors.inc({ version: conn.version, code: 'InternalError' });
    this.send(
      conn,
      serializeCallError(peekId, new CallError('InternalError', `Internal error (ref ${ref})`, { ref }), conn.version),
    );
  }

  /** Waits (bounded) until no batch is in flight or waiting: their replies are then sent. */
  async quiesce(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.inFlight > 0 || this.inlineInFlight > 0 || this.writer.count > 0) && Date.now() < deadline) {
      this.flush(true);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /**
   * Shutdown: lets every queued and in-flight item finish (incl. Disconnect events of closed
   * sockets), then asks every worker to run its plugins' close hooks and flush its analytics,
   * then stops the pool. Bounded by `timeoutMs` overall.
   */
  async close(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (
      (this.inFlight > 0 || this.inlineInFlight > 0 || this.writer.count > 0 || this.busyLanes() > 0) &&
      Date.now() < deadline
    ) {
      this.flush(true);
      await new Promise((r) => setTimeout(r, 5));
    }
    if (this.loadTimer) clearInterval(this.loadTimer);
    if (this.idleTimer) clearInterval(this.idleTimer);
    clearInterval(this.laneSweep);
    // From here on every batch goes to a worker (none should come: the sockets are closed).
    this.inlineRunner = null;
    await this.stopping;
    await this.stopWorkers(deadline);
  }
}
