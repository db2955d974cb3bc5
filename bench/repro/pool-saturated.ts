/**
 * Reproducer: the router answers InternalError (OCR_ERR_POOL_SATURATED) under a closed-loop
 * load of only N chargers × 1 CALL in flight, found by bench/e2e-throughput.ts.
 *
 *   node --import tsx bench/repro/pool-saturated.ts [action=Heartbeat] [inflight=1] [chargers=200] [seconds=5]
 *
 * Starts the router in this process through createRouter() (public API only), drives it
 * from bench/lib/loadgen.ts in a child process, samples dispatcher.stats every 5 ms and
 * prints: round trips, CALLERRORs, the drop reasons, the largest piscina queue seen, and
 * the batches (count, mean items per batch) from the router's own metrics.
 *
 * What it showed (before fa078a3): with at most N frames outstanding, the dispatcher
 * flushed a new batch on every loop turn however many batches were already in flight, so
 * batches stayed small (≈ 11 items for MeterValues) and their *number* reached
 * pool.maxQueue (64); every CALL arriving then got a fast InternalError
 * (OCR_ERR_POOL_SATURATED), although the router held only N requests. Since fa078a3 at
 * most threads × concurrentTasksPerWorker batches are in flight and shedding counts
 * pending frames; kept as a regression check: callErrors must be 0.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createRouter } from '../../core/index.js';
import type { LoadResult } from '../lib/loadgen.js';

const [action = 'Heartbeat', inflight = '1', chargers = '200', seconds = '5'] = process.argv.slice(2);
const dir = mkdtempSync(join(tmpdir(), 'ocr-repro-'));
const router = await createRouter(
  {
    server: { host: '127.0.0.1', port: 0 },
    log: { level: 'silent' },
    dataDir: dir,
    analytics: { spoolDir: join(dir, 'spool') },
  },
  { onGeneratedApiKey: () => undefined },
);

let maxQueued = 0;
let maxInFlight = 0;
const sampler = setInterval(() => {
  const s = router.dispatcher.stats;
  if (s.queued > maxQueued) maxQueued = s.queued;
  if (s.inFlight > maxInFlight) maxInFlight = s.inFlight;
}, 5);

const result = await new Promise<LoadResult>((resolve, reject) => {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(import.meta.dirname, '../lib/loadgen.ts'),
      JSON.stringify({
        port: router.port,
        action,
        inflight: Number(inflight),
        chargers: Number(chargers),
        durationSec: Number(seconds),
        warmupSec: 0.5,
        idPrefix: `repro-${Date.now()}`,
      }),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let r: LoadResult | undefined;
  createInterface({ input: child.stdout }).on('line', (l) => {
    if (l.startsWith('RESULT ')) r = JSON.parse(l.slice(7)) as LoadResult;
  });
  child.once('exit', (code) => (r ? resolve(r) : reject(new Error(`loadgen exited ${code}`))));
});
clearInterval(sampler);

const metrics = await router.metrics.registry.getMetricsAsJSON();
const pick = (name: string) =>
  metrics.find((m) => m.name === name) as unknown as
    { values: { value: number; labels: Record<string, string>; metricName?: string }[] } | undefined;
const batches = pick('ocr_batch_items')?.values ?? [];
const batchCount = batches.find((v) => v.metricName === 'ocr_batch_items_count')?.value ?? 0;
const batchSum = batches.find((v) => v.metricName === 'ocr_batch_items_sum')?.value ?? 0;
console.log(
  JSON.stringify(
    {
      load: { action, inflight: Number(inflight), chargers: Number(chargers), seconds: Number(seconds) },
      roundTripsPerSec: result.window.rps,
      latencyMs: { p50: result.window.latencyUs.p50 / 1000, p99: result.window.latencyUs.p99 / 1000 },
      callErrors: result.errors.callError,
      errorSample: result.errors.samples[0],
      droppedByReason: Object.fromEntries(
        (pick('ocr_frames_dropped_total')?.values ?? []).map((v) => [v.labels.reason, v.value]),
      ),
      pool: {
        maxPendingFrames: router.config.pool.maxPendingFrames,
        maxQueuedSeen: maxQueued,
        maxBatchesInFlightSeen: maxInFlight,
        threads: router.dispatcher.stats.threads,
        concurrentTasksPerWorker: router.config.pool.concurrentTasksPerWorker,
      },
      batches: { count: batchCount, meanItems: batchCount ? +(batchSum / batchCount).toFixed(1) : 0 },
    },
    null,
    2,
  ),
);
await router.close();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
