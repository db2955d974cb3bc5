/**
 * Dispatcher: the facade of core/dispatch/. It takes the socket thread's items (a charger's
 * frames, its connect and disconnect events, its answers to our CALLs), has them run in
 * batches by the worker pool or on this thread, and applies the results.
 *
 * Owns: the entry points that createRouter, the Gateway and the CommandApi use; load shedding
 * at entry (the bounded queues below); wiring the parts, and starting and stopping them in
 * order. Must not: parse frames (only peek results are used), run plugins, or do a part's job.
 *
 *   socket thread                                            workers (piscina)
 *   frame ─► lane Idle? ─► batch being built ─flush─►  [batch] ─► lanes in order ─► results
 *            lane busy? ─► backlog (bounded)     ◄───────────── replies (bytes) ◄───┘
 *   batch done ─► send replies, lanes Idle, backlog ─► next batch
 *
 *   lanes.ts           each charger's order across batches: lane states, backlogs, idle sweep
 *   batcher.ts         the batch being built, flow control and flush, settling a batch
 *   inline-policy.ts   whether a batch runs on this thread or on a worker; the load sample
 *   worker-pool.ts     the piscina pool: start, idle stop after a drain, restart, destroy
 *   apply-results.ts   a batch's results: metrics, Gateway hooks, replies corked per socket
 *   error-answers.ts   the fast InternalError answer to a CALL that will not be processed
 *   send.ts            writing to a charger's socket and reading the send status
 *
 * Load shedding: saturation is counted in frames waiting, not batches: with N chargers and one
 * request in flight each, the router never holds more than N frames and never sheds load
 * (bench/repro/pool-saturated.ts). One charger must not fill the shared queue: its items in the
 * batch being built and behind its batch in flight are bounded by `backlogPerCharger`.
 */
import { ItemKind, type PingResult } from '../thread-contract/envelope.js';
import type { Connection, PendingCall } from '../registry/connection-registry.js';
import type { Metrics } from '../metrics.js';
import type { PinoLogger } from '../log.js';
import type { InlineSupport } from '../worker/plugin-loader.js';
import { Lanes } from './lanes.js';
import { Batcher, type BatchHooks } from './batcher.js';
import { InlinePolicy, type InlineOptions, type InlineRunner } from './inline-policy.js';
import { WorkerPool, type WorkerPoolOptions } from './worker-pool.js';
import { ResultApplier, type ResultHooks } from './apply-results.js';
import { answerInternalError } from './error-answers.js';
import { sendFrame } from './send.js';

export type { InlineRunner } from './inline-policy.js';

export interface DispatcherOptions extends WorkerPoolOptions {
  batchSize: number;
  maxPendingFrames: number;
  backlogPerCharger: number;
  inline: InlineOptions;
}

/** Calls back into the Gateway and the state journal (wired by createRouter). */
export interface DispatchHooks extends BatchHooks, ResultHooks {}

export class Dispatcher {
  private readonly lanes = new Lanes();
  private readonly workers: WorkerPool;
  private readonly policy: InlinePolicy;
  private readonly batcher: Batcher;

  constructor(
    private readonly opts: DispatcherOptions,
    hooks: DispatchHooks,
    private readonly metrics: Metrics,
    private readonly log: PinoLogger,
  ) {
    // After an idle stop, the batches that waited for the workers go out.
    this.workers = new WorkerPool(opts, metrics, log, () => this.batcher.flush());
    this.policy = new InlinePolicy(opts.inline, this.workers.maxInFlight, this.workers, metrics);
    this.batcher = new Batcher(
      opts.batchSize,
      this.lanes,
      this.workers,
      this.policy,
      new ResultApplier(hooks, metrics, log),
      hooks,
      metrics,
      log,
    );
  }

  /** Starts every worker and surfaces plugin load errors before the router listens. */
  start(): Promise<PingResult[]> {
    return this.workers.start();
  }

  /** Stops the workers at once, without draining (startup failed). */
  async destroy(): Promise<void> {
    this.lanes.close();
    await this.workers.destroy();
  }

  /**
   * Lets this thread run batches itself (inline-policy.ts). `support` comes from the workers
   * (they load every plugin); `runner` has the inline plugins set up on this thread.
   */
  setInline(runner: InlineRunner, support: InlineSupport): void {
    this.policy.enable(runner, support);
  }

  /** True when new work would only grow queues: shed load (503 upgrades, fast errors). */
  get saturated(): boolean {
    return this.batcher.count >= this.opts.maxPendingFrames;
  }

  get stats() {
    return {
      inFlight: this.workers.inFlight,
      inlineInFlight: this.policy.inFlight,
      pendingFrames: this.batcher.count,
      queued: this.workers.queued,
      backlog: this.lanes.backlogFrames,
      threads: this.workers.threads,
    };
  }

  /** True when the charger has nothing queued or in flight (socket-thread answers are safe). */
  isIdle(cpId: string): boolean {
    return this.lanes.isIdle(cpId);
  }

  /**
   * Resolves once the charger's current batch (if any) has come back and its replies are
   * sent. A CSMS CALL made from an `after` hook waits for this, so it never reaches the
   * charger before the reply to the message that caused it.
   */
  afterLane(cpId: string): Promise<void> {
    return this.lanes.after(cpId);
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
      return answerInternalError(conn, peekId, 'OCR_ERR_POOL_SATURATED', this.metrics, this.log);
    }
    const existing = this.lanes.get(conn.cpId);
    // One charger must not fill the shared queue: the bound covers its items waiting in the
    // batch being built as well as behind its in-flight batch. (No lane is created on this
    // path: a refused frame needs none.)
    if (existing && existing.inBatch + existing.backlog.length >= this.opts.backlogPerCharger) {
      this.metrics.dropped.inc({ reason: 'backlog_full' });
      return answerInternalError(conn, peekId, 'OCR_ERR_LANE_BACKLOG_FULL', this.metrics, this.log);
    }
    this.batcher.enqueue(existing ?? this.lanes.open(conn.cpId), {
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
    this.batcher.enqueue(this.lanes.open(conn.cpId), {
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
    this.batcher.addReply(conn, bytes, pending);
  }

  /** Sends the current batch if a slot is free (`force`: regardless, at shutdown). */
  flush(force = false): void {
    this.batcher.flush(force);
  }

  /** Sends and reads the status (STYLE.md §9): backpressure is counted; drops too. */
  send(conn: Connection, bytes: Uint8Array | string): void {
    sendFrame(conn, bytes, this.metrics);
  }

  /** Fast InternalError for a frame we could not process (id from the peek). */
  answerInternal(conn: Connection, peekId: string | null, reason: string): void {
    answerInternalError(conn, peekId, reason, this.metrics, this.log);
  }

  /** Waits (bounded) until no batch is in flight or waiting: their replies are then sent. */
  async quiesce(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.workers.inFlight > 0 || this.policy.inFlight > 0 || this.batcher.count > 0) && Date.now() < deadline) {
      this.batcher.flush(true);
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
      (this.workers.inFlight > 0 || this.policy.inFlight > 0 || this.batcher.count > 0 || this.lanes.busy() > 0) &&
      Date.now() < deadline
    ) {
      this.batcher.flush(true);
      await new Promise((r) => setTimeout(r, 5));
    }
    // From here on every batch goes to a worker (none should come: the sockets are closed).
    this.policy.stop();
    this.lanes.close();
    await this.workers.close(deadline);
  }
}
