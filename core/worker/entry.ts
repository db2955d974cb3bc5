/**
 * Worker entry: the piscina task function of a worker thread.
 *
 * Owns: the worker's wiring: its state store client (Redis, or the socket thread's store over
 * thread RPC), its analytics sink, `ctx.send` over thread RPC, and the drain at shutdown.
 * Running batches is BatchRuntime's (runtime.ts), shared with the socket thread. Must not:
 * touch sockets; everything that goes to a charger is returned to the socket thread.
 */
import { threadId, workerData } from 'node:worker_threads';
import Piscina from 'piscina';
import type { PingResult, PingTask } from '../thread-contract/envelope.js';
import { ThreadRpcClient } from '../thread-contract/thread-rpc.js';
import { createLogger } from '../log.js';
import type { WorkerServices } from './context.js';
import { BatchRuntime } from './runtime.js';
import { createStores } from '../state/create.js';
import { StoreChargerRegistry } from '../state/registry.js';
import { threadSink } from '../analytics/clickhouse-sink.js';
import { sameSinkStats } from '../analytics/thread-totals.js';
import type { SinkStats } from '../analytics/sink.js';
import { validateOutgoing } from '../protocol/validate.js';
import type { RouterConfig } from '../options.js';

export interface WorkerData {
  config: RouterConfig;
  nodeId: string;
  /** Base name of this router's thread channels (see core/thread-contract/thread-rpc.ts). */
  channel: string;
}

const { config, nodeId, channel } = workerData as WorkerData;
/** How often a worker reports its analytics counters (see below). */
const STATS_INTERVAL_MS = 1000;
const log = createLogger(config.log, { nodeId, thread: threadId });
const rpc = new ThreadRpcClient({ name: channel });
const journaled: Set<string> | null = config.redis.url ? new Set() : null;
const store = createStores(config, rpc, log, journaled);
const sink = threadSink(config, nodeId, log);
await sink.start();

const services: WorkerServices = {
  store,
  sink,
  registry: new StoreChargerRegistry(store),
  log,
  nodeId,
  async send(conn, action, payload, timeoutMs, afterReply) {
    validateOutgoing(conn.version, action, payload);
    return (await rpc.call(
      'cmd',
      'send',
      [conn.cpId, conn.connectionId, action, payload, timeoutMs, afterReply === true],
      (timeoutMs ?? config.calls.timeoutMs) + 5000,
    )) as Record<string, unknown>;
  },
};
const runtime = await BatchRuntime.create({ config, services, journaled });

// Shutdown: once the socket thread has let every batch finish, it asks each worker to run its
// plugins' close hooks and flush its analytics buffer before the pool is destroyed, so rows
// buffered in memory are written (or spooled), never lost.
const control = new BroadcastChannel(`${channel}:control`);
control.onmessage = (ev: MessageEvent) => {
  if ((ev.data as { op?: string })?.op !== 'drain') return;
  void (async () => {
    await runtime.close();
    await sink.close().catch((err: Error) => log.error({ err }, 'analytics flush at shutdown failed'));
    clearInterval(reportCheck);
    await store.close().catch(() => undefined);
    rpc.close();
    control.postMessage({ op: 'drained', threadId, analytics: sink.stats() });
  })();
};
(control as unknown as { unref?: () => void }).unref?.();

// The sink's counters go to the socket thread, which serves /metrics (core/analytics/thread-totals.ts):
// checked once a second, sent when they changed (nothing while idle), and a last time in the
// 'drained' message above. A timer rather than a post per batch: nothing on the batch path.
let lastStats: SinkStats | null = null;
const reportCheck = setInterval(() => {
  const stats = sink.stats();
  if (sameSinkStats(lastStats, stats)) return;
  lastStats = stats;
  control.postMessage({ op: 'analytics', threadId, stats });
}, STATS_INTERVAL_MS);
reportCheck.unref();

/**
 * Resolves in the event loop's next check phase. Every batch waits for it before returning:
 * otherwise a loaded worker seldom gets back to its event loop. Node's MessagePort hands a
 * worker up to 1,000 messages per loop turn, and a batch answered without I/O (MeterValues)
 * has its result back at the socket thread, and the next batch in the port, before the port
 * runs dry; timers, file writes (the analytics spool) and sockets (Redis, ClickHouse) waited
 * meanwhile: loop turns of ≈ 1.3 s at MeterValues, 1,000 chargers × 8 in flight, and the
 * analytics buffers at their bound (bench/RESULTS.md, "Why MeterValues k = 8 dropped rows").
 * The cost is one setImmediate per batch, and results held until the batches in hand are
 * done (at most pool.concurrentTasksPerWorker).
 */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export default async function task(input: ArrayBuffer | PingTask): Promise<ArrayBuffer | PingResult | unknown> {
  if (!(input instanceof ArrayBuffer)) {
    if (input.op === 'ping') return runtime.info(threadId);
    throw new Error('unknown task');
  }
  const out = await runtime.runBatch(input);
  await nextTurn();
  return Piscina.move(out);
}
