/**
 * The real router as a benchmark target, in its own process, through the public API only
 * (STYLE.md §8: no benchmark-only code paths in core/).
 *
 *   node --import tsx bench/reference/router.ts ['<config JSON>']
 *
 * Prints one JSON line on stdout once listening: {"ready":true,"port":N,"pid":P,"threads":T,"stats":true,…}.
 * Local data (API key store, analytics spool) goes to a fresh temp dir, removed on exit.
 * State: in process unless the config sets `redis.url` (the matrix passes its throwaway
 * redis-server's URL under --router-state=redis). Analytics: the local spool (no ClickHouse),
 * drained once a second by deleting its closed segments, as a replayer into ClickHouse would
 * empty it: a full spool would make the router refuse MeterValues (back-pressure), and a
 * matrix run writes several GB. The deletes run on this process's main thread and count in
 * its CPU (a few unlinks a second; a real replayer costs more, in another process).
 * Code: compiled (dist/, built first when stale), as the CLI runs it.
 * Plugins: `core`, then the bench fixture bench/fixtures/authorize-plugin.ts (Authorize with
 * one state read per message; the product has no auth plugin yet), seeded with the token
 * the generator sends (BENCH_ID_TOKEN). A `plugins` key in the config replaces both.
 * SIGTERM / SIGINT / stdin closing: close the router, remove the temp dir, exit.
 * A `stats` line on stdin: one `{"stats":{...}}` line on stdout with the router's batch
 * counters so far (batches run by a worker and inline on the socket thread, items in them)
 * and its analytics rows by outcome (`analytics_spooled`, `analytics_dropped`…) and messages
 * refused for want of analytics room (`analytics_refused`), read from its own metrics
 * registry: where a cell's round trips went (ServerHandle.stats).
 * BENCH_ROUTER_TRACE=<dir> (diagnosis, off by default): the socket thread's timeline, written
 * to <dir>/router-<pid>.json on exit: per 50 ms its event-loop delay (max, µs), utilization and
 * the dispatcher's queues (batches in flight, frames waiting), and every garbage collection (wall-clock start, duration, kind), to line up with an open-loop
 * run's latency timeline (its `timeline.startEpochMs`) when asking where a p99 comes from.
 * With BENCH_ROUTER_ALLOC=1 too: where the socket thread allocates (router-<pid>.heapprofile);
 * BENCH_ROUTER_ALLOC=old: only what survived to the old generation (promoted, then collected
 * by a mark-compact or still alive at exit): what makes the mark-compacts.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import {
  monitorEventLoopDelay,
  performance,
  PerformanceObserver,
  type EventLoopUtilization,
  type PerformanceEntry,
} from 'node:perf_hooks';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { getHeapSpaceStatistics } from 'node:v8';
import { Session } from 'node:inspector/promises';
import { stopWithParent } from '../lib/proc.js';
import { drainSpool } from '../lib/spool-drain.js';
import { importRouterCore } from '../lib/router-code.js';
import { BENCH_ID_TOKEN } from '../lib/ocpp-payloads.js';

const { createRouter, mergeConfig } = await importRouterCore('bench router');

const dir = mkdtempSync(join(tmpdir(), 'ocr-bench-router-'));
const user = JSON.parse(process.argv[2] ?? '{}') as Record<string, unknown>;
const base: Record<string, unknown> = {
  server: { host: '127.0.0.1', port: 0 },
  log: { level: 'silent' },
  dataDir: dir,
  analytics: { spoolDir: join(dir, 'spool') },
  plugins: [
    { name: 'core' },
    { name: './bench/fixtures/authorize-plugin.ts', options: { knownTokens: [BENCH_ID_TOKEN] } },
  ],
};

const router = await createRouter(mergeConfig(base, user), { onGeneratedApiKey: () => undefined });
process.stdout.write(
  JSON.stringify({
    ready: true,
    port: router.port,
    pid: process.pid,
    threads: router.dispatcher.stats.threads,
    config: router.config,
    stats: true,
  }) + '\n',
);

/** Batch counters from the router's metrics (prom-client's JSON shape). */
async function batchStats(): Promise<Record<string, number>> {
  const out: Record<string, number> = { workerBatches: 0, socketBatches: 0, items: 0 };
  for (const v of (await router.metrics.batches.get()).values) {
    if (v.labels.thread === 'worker') out.workerBatches = v.value;
    else if (v.labels.thread === 'socket') out.socketBatches = v.value;
  }
  for (const v of (await router.metrics.batchSize.get()).values) {
    if (v.metricName === 'ocr_batch_items_sum') out.items = v.value;
  }
  // Analytics rows of every thread, so a run can show that none was dropped.
  const rows = router.metrics.registry.getSingleMetric('ocr_analytics_rows_total');
  for (const v of rows ? (await rows.get()).values : []) out[`analytics_${String(v.labels.outcome)}`] = v.value;
  const refused = router.metrics.registry.getSingleMetric('ocr_analytics_refused_messages_total');
  out.analytics_refused = refused ? ((await refused.get()).values[0]?.value ?? 0) : 0;
  return out;
}

let draining = false;
setInterval(() => {
  if (draining) return;
  draining = true;
  void drainSpool(join(dir, 'spool')).finally(() => {
    draining = false;
  });
}, 1000).unref();
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'stats')
    void batchStats().then((stats) => process.stdout.write(JSON.stringify({ stats }) + '\n'));
});

function startTrace(traceDir: string): () => void {
  const BUCKET_MS = 50;
  const gc: { t: number; ms: number; kind: number }[] = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      gc.push({
        t: Math.round(performance.timeOrigin + e.startTime),
        ms: +e.duration.toFixed(2),
        kind: (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind ?? 0,
      });
  });
  obs.observe({ entryTypes: ['gc'] });
  const delay = monitorEventLoopDelay({ resolution: 2 });
  delay.enable();
  // Per sample, its own wall-clock time: interval timers drift by their lateness.
  const loop = {
    bucketMs: BUCKET_MS,
    t: [] as number[],
    maxDelayUs: [] as number[],
    utilization: [] as number[],
    dispatcher: [] as (typeof router.dispatcher.stats)[],
  };
  let elu: EventLoopUtilization = performance.eventLoopUtilization();
  const sampler = setInterval(() => {
    loop.t.push(Date.now());
    loop.dispatcher.push(router.dispatcher.stats);
    loop.maxDelayUs.push(Math.round(delay.max / 1000));
    delay.reset();
    const now = performance.eventLoopUtilization();
    loop.utilization.push(+performance.eventLoopUtilization(now, elu).utilization.toFixed(3));
    elu = now;
  }, BUCKET_MS);
  sampler.unref();
  return () => {
    clearInterval(sampler);
    obs.disconnect();
    delay.disable();
    mkdirSync(traceDir, { recursive: true });
    const heap = getHeapSpaceStatistics().map((x) => ({
      space: x.space_name,
      sizeMb: +(x.space_size / 1e6).toFixed(1),
    }));
    writeFileSync(join(traceDir, `router-${process.pid}.json`), JSON.stringify({ pid: process.pid, gc, loop, heap }));
  };
}
const writeTrace = process.env.BENCH_ROUTER_TRACE ? startTrace(process.env.BENCH_ROUTER_TRACE) : null;

/**
 * Where the socket thread allocates, garbage included (V8's sampling heap profiler with the
 * objects minor and major GCs collected): a Chrome DevTools .heapprofile on exit.
 */
async function startAllocationSampling(dir: string, includeYoungGarbage: boolean): Promise<() => Promise<void>> {
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 16_384,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: includeYoungGarbage,
  } as never);
  return async () => {
    const { profile } = await session.post('HeapProfiler.stopSampling');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `router-${process.pid}.heapprofile`), JSON.stringify(profile));
    session.disconnect();
  };
}
const alloc = process.env.BENCH_ROUTER_ALLOC;
const writeAllocations =
  process.env.BENCH_ROUTER_TRACE && (alloc === '1' || alloc === 'old')
    ? await startAllocationSampling(process.env.BENCH_ROUTER_TRACE, alloc === '1')
    : null;

let stopping = false;
async function stop(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  const hard = setTimeout(() => process.exit(code || 1), 15_000);
  hard.unref();
  try {
    writeTrace?.();
    await writeAllocations?.();
    await router.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
    process.exit(code);
  }
}
stopWithParent(() => void stop(0));
