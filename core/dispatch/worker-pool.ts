/**
 * WorkerPool: the piscina worker threads, started, stopped when idle and started again.
 *
 * Owns: the pool's lifecycle and state (below), its options, the drain before a stop (every
 * worker runs its plugins' close hooks and flushes its analytics), and the count of batches on
 * the workers, at most `maxInFlight`. Must not: decide what goes in a batch (batcher.ts) or
 * where it runs (inline-policy.ts), or stop workers without that drain, except destroy() when
 * startup failed.
 *
 * Worker threads stop when idle: after `idleTimeoutMs` without a batch for them, every worker
 * drains (the same drain as at shutdown), then the pool is destroyed; the next batch that needs
 * a worker starts the pool again. A worker's isolate, modules and plugins are most of an idle
 * router's memory (bench/RESULTS.md, "Reconnect storm and hold"), while at fleet rates inline
 * batches leave the workers idle.
 *
 *   Stopped ──batch for a worker, or load ≥ maxLoad──► Warming ──every ping answered──► Running
 *   Running ──idle idleTimeoutMs, nothing in flight──► Stopping ──drained, destroyed──► Stopped
 *
 * While the pool is not Running, inline-able batches run inline whatever the load (a cold start
 * loads every plugin in every worker: queueing them would turn it into latency); the others wait
 * in the batch being built (Stopping) or in piscina's queue until their worker is up (Warming).
 */
import { Piscina } from 'piscina';
import { performance } from 'node:perf_hooks';
import type { PingResult } from '../thread-contract/envelope.js';
import { compiled } from '../paths.js';
import type { Metrics } from '../metrics.js';
import type { PinoLogger } from '../log.js';
import type { WorkerData } from '../worker/entry.js';

// Compiled code starts workers on the compiled entry; the sources under tsx need worker.mjs to
// register tsx inside each worker thread (Node 20's --import hooks do not reach them).
const entryUrl = new URL(compiled ? '../worker/entry.js' : '../worker/worker.mjs', import.meta.url);

export interface WorkerPoolOptions {
  threads: number;
  /** Worker threads stop after this long without a batch for them; 0: never (file header). */
  idleTimeoutMs: number;
  concurrentTasksPerWorker: number;
  workerData: WorkerData;
}

/** Worker pool states (file header). */
export const enum Workers {
  Stopped = 0,
  Warming = 1,
  Running = 2,
  Stopping = 3,
}

export class WorkerPool {
  state = Workers.Stopped;
  /** Batches on the workers. */
  inFlight = 0;
  /**
   * At most `threads × concurrentTasksPerWorker` batches are in flight; more would only wait in
   * piscina's queue while adding per-task overhead.
   */
  readonly maxInFlight: number;
  private pool: Piscina | null = null;
  /** When a batch last went to (or came back from) a worker, performance.now(). */
  private lastUse = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  /** The last warm-up of a woken pool (wake()); pending while the state is Warming. */
  private warming: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;

  /** `onStopped`: after an idle stop, for the batches that waited for it (file header). */
  constructor(
    private readonly opts: WorkerPoolOptions,
    private readonly metrics: Metrics,
    private readonly log: PinoLogger,
    private readonly onStopped: () => void,
  ) {
    this.maxInFlight = opts.threads * opts.concurrentTasksPerWorker;
  }

  /** Piscina's queue length (tasks waiting for a worker). */
  get queued(): number {
    return this.pool?.queueSize ?? 0;
  }

  get threads(): number {
    return this.pool?.threads.length ?? 0;
  }

  private create(): Piscina {
    const pool = new Piscina({
      filename: entryUrl.href,
      minThreads: this.opts.threads,
      maxThreads: this.opts.threads,
      // Idle workers are stopped by us, all together and after a drain (stop()): piscina's
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
    this.lastUse = performance.now();
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
    const pool = (this.pool = this.create());
    this.state = Workers.Warming;
    const pings = await this.ping(pool);
    this.state = Workers.Running;
    // Idle from now: a pool that took longer than idleTimeoutMs to load its plugins (a loaded
    // host) was otherwise stopped on its first idle check, before any batch could use it.
    this.lastUse = performance.now();
    if (this.opts.idleTimeoutMs > 0) {
      this.idleTimer = setInterval(() => this.checkIdle(), Math.max(10, Math.min(1000, this.opts.idleTimeoutMs / 4)));
      this.idleTimer.unref();
    }
    return pings;
  }

  /**
   * Starts the pool again after an idle stop (file header); batches queue until it is up.
   * `load`: the socket thread's, for the log line.
   */
  wake(reason: 'load' | 'batch', load: number): void {
    if (this.state !== Workers.Stopped) return;
    this.log.info(
      { threads: this.opts.threads, reason, load: Math.round(load * 100) / 100 },
      'starting worker threads',
    );
    this.metrics.workerStarts.inc();
    const pool = (this.pool = this.create());
    this.state = Workers.Warming;
    this.warming = this.ping(pool).then(
      () => {
        if (this.pool === pool && this.state === Workers.Warming) {
          this.state = Workers.Running;
          this.lastUse = performance.now();
        }
      },
      (err: Error) => {
        // Marked Running all the same: batches sent to a pool that cannot start fail like
        // this ping and every item is answered (the batcher's failed()), and piscina replaces
        // dead workers.
        this.log.error({ err }, 'worker threads failed to start');
        if (this.pool === pool && this.state === Workers.Warming) this.state = Workers.Running;
      },
    );
  }

  /** Runs a batch (transferred, not copied) on a worker; counts it in flight until settled(). */
  run(buf: ArrayBuffer): Promise<unknown> {
    this.inFlight++;
    this.lastUse = performance.now();
    return this.pool!.run(buf, { transferList: [buf] as never });
  }

  /** A batch run() gave a worker has come back (or failed). */
  settled(): void {
    this.inFlight--;
    this.lastUse = performance.now();
  }

  private checkIdle(): void {
    if (this.state !== Workers.Running || this.inFlight > 0) return;
    const idleMs = performance.now() - this.lastUse;
    if (idleMs < this.opts.idleTimeoutMs) return;
    this.log.info({ threads: this.opts.threads, idleMs: Math.round(idleMs) }, 'stopping idle worker threads');
    this.stopping = this.stop(Date.now() + 10_000).finally(() => {
      this.stopping = null;
      // Batches that needed a worker waited in the batch being built.
      this.onStopped();
    });
  }

  /** Drains (close hooks, analytics flushed) and destroys the pool. */
  private async stop(deadline: number): Promise<void> {
    const pool = this.pool;
    if (!pool) return;
    // Workers still loading their plugins listen to the control channel only once loaded: a
    // drain sent before then goes unheard and the stop waits out its whole deadline.
    if (this.state === Workers.Warming && this.warming) await untilOrDeadline(this.warming, deadline);
    this.state = Workers.Stopping;
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
    this.state = Workers.Stopped;
    this.metrics.threads.set(0);
  }

  /** Shutdown: no more idle checks; waits for an idle stop under way, then drains and stops. */
  async close(deadline: number): Promise<void> {
    if (this.idleTimer) clearInterval(this.idleTimer);
    await this.stopping;
    await this.stop(deadline);
  }

  /** Stops the workers at once, without draining (startup failed). */
  async destroy(): Promise<void> {
    if (this.idleTimer) clearInterval(this.idleTimer);
    await this.pool?.destroy().catch(() => undefined);
    this.pool = null;
    this.state = Workers.Stopped;
  }
}

/** `p` settled, or `deadline` (epoch ms) passed, whichever comes first. */
function untilOrDeadline(p: Promise<void>, deadline: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
