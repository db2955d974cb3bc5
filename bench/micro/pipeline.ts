/**
 * micro/pipeline: the worker's cost per frame, without sockets, threads or batches: the
 * real plugin loader, pipeline, core plugin (and the bench's Authorize fixture, as the bench
 * router loads it), in-process state and the analytics sink
 * writing the local spool, driven in-process. What is left of a round trip's CPU once the
 * transport and the thread hop are taken away; e2e-throughput measures the whole.
 *
 *   node --import tsx bench/micro/pipeline.ts [--action=MeterValues] [--version=1.6] [--frames=100000] [--rounds=4] [--state=memory|redis]
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof --import tsx bench/micro/pipeline.ts   # where the time goes
 *
 * Each round runs `frames` frames, 100 chargers' frames at a time (like a batch's lanes);
 * prints wall and CPU µs per frame. The first round includes warm-up (JIT). Between rounds the
 * spool is emptied (bench/lib/spool-drain.ts); last, JSON.parse of the frame alone, for scale. `--state=redis`:
 * state in a throwaway redis-server through the store a worker uses (ioredis, journaling
 * wrapper); its CPU is not in the figure.
 *
 * Owns: nothing the product uses. Must not: stand in for an end-to-end figure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadPlugins } from '../../core/worker/plugin-loader.js';
import { Pipeline } from '../../core/worker/pipeline.js';
import { ContextFactory, type ConnMeta, type WorkerServices } from '../../core/worker/context.js';
import { MemoryStateStore } from '../../core/state/memory-store.js';
import { StoreChargerRegistry } from '../../core/state/registry.js';
import { scopeStore } from '../../core/state/scoped-store.js';
import { createAnalyticsSink } from '../../core/analytics/clickhouse-sink.js';
import type { Logger } from '../../core/plugin-api.js';
import { RedisStateStore } from '../../core/state/redis-store.js';
import { JournalingStore } from '../../core/state/journaling-store.js';
import type { StateStore } from '../../core/state/store.js';
import { startRedis } from '../lib/redis-server.js';
import {
  actionPayload,
  BENCH_ACTIONS,
  BENCH_ID_TOKEN,
  type BenchAction,
  type BenchVersion,
} from '../lib/ocpp-payloads.js';
import { drainSpool } from '../lib/spool-drain.js';
import core from '../../plugins/core/index.js';
import authorizeFixture from '../fixtures/authorize-plugin.js';

const opts = {
  action: 'MeterValues' as BenchAction,
  version: '1.6' as BenchVersion,
  frames: 100_000,
  rounds: 4,
  state: 'memory' as 'memory' | 'redis',
};
for (const a of process.argv.slice(2)) {
  const m = /^--(action|version|frames|rounds|state)=(.+)$/.exec(a);
  if (!m) throw new Error(`unknown argument ${a}`);
  if (m[1] === 'action') {
    if (!BENCH_ACTIONS.includes(m[2] as BenchAction))
      throw new Error(`--action must be one of ${BENCH_ACTIONS.join(', ')}`);
    opts.action = m[2] as BenchAction;
  } else if (m[1] === 'version') opts.version = m[2] as BenchVersion;
  else if (m[1] === 'state') {
    if (m[2] !== 'memory' && m[2] !== 'redis') throw new Error('--state must be memory or redis');
    opts.state = m[2];
  } else
    opts[m[1] as 'frames' | 'rounds'] = Math.max(1, Math.min(Number(m[2]) || 1, m[1] === 'frames' ? 1_000_000 : 20));
}

const dir = mkdtempSync(join(tmpdir(), 'ocr-micro-'));
const redis = opts.state === 'redis' ? await startRedis() : undefined;
const store: StateStore = redis
  ? new JournalingStore(
      new RedisStateStore({ url: redis.url, commandTimeoutMs: 2000 }),
      async () => {
        throw new Error('journal not expected');
      },
      { has: () => false, mark: () => undefined },
    )
  : new MemoryStateStore();
const registry = new StoreChargerRegistry(store);
const sink = createAnalyticsSink({ spoolDir: join(dir, 'spool'), nodeId: 'micro' });
await sink.start();
const log = pino({ level: 'silent' }) as unknown as Logger;
const services: WorkerServices = { store, sink, registry, log, nodeId: 'micro', send: async () => ({}) };
// The plugins of bench/reference/router.ts: core, and the Authorize fixture (one state read per
// Authorize; without it Authorize would measure the NotSupported answer).
const plugins = [
  { name: 'core', plugin: core, options: {} },
  { name: 'bench-authorize', plugin: authorizeFixture, options: { knownTokens: [BENCH_ID_TOKEN] } },
];
const table = await loadPlugins(plugins, (plugin) => ({
  log,
  globalState: scopeStore(store, `ocr:g:${plugin}:`),
  chargers: registry,
  router: { nodeId: 'micro', heartbeatIntervalSec: 300 },
}));
const pipeline = new Pipeline(table, new ContextFactory(services), log, 10_000, sink, 'micro');
const text = JSON.stringify([
  2,
  'micro-0001',
  opts.action,
  actionPayload(opts.version, opts.action, new Date().toISOString()),
]);
const LANES = 100;
const conns: ConnMeta[] = Array.from({ length: LANES }, (_, i) => ({
  connectionId: i + 1,
  cpId: `CP-${i}`,
  version: opts.version,
  lenient: false,
}));

process.stdout.write(`${opts.version} ${opts.action}, ${Buffer.byteLength(text)} bytes per frame\n`);
for (let round = 0; round < opts.rounds; round++) {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  let errors = 0;
  for (let i = 0; i < opts.frames; i += LANES) {
    const runs = [];
    for (let k = 0; k < LANES; k++) runs.push(pipeline.runFrame(conns[k], text, Date.now()));
    for (const r of await Promise.all(runs)) if (r.outcome !== 'ok') errors++;
    // A worker runs each batch as a task of its own; between them timers and setImmediate run,
    // among them the analytics flush. Without this the sink's buffer fills and drops rows
    // (they would not be encoded at all: a flattering figure).
    await new Promise((resolve) => setImmediate(resolve));
  }
  const c = process.cpuUsage(c0);
  const wall = Number(process.hrtime.bigint() - t0) / 1000 / opts.frames;
  process.stdout.write(
    `round ${round}: ${wall.toFixed(2)} µs/frame wall, ${((c.user + c.system) / opts.frames).toFixed(2)} µs/frame CPU${errors ? `, ${errors} errors` : ''}\n`,
  );
  // As a replayer would (outside the timed loop): 100,000 MeterValues write ≈ 300 MB of rows,
  // and a full spool would make the pipeline refuse them (errors, and a flattering figure).
  await drainSpool(join(dir, 'spool'));
}
// The yardstick: JSON.parse of the same frame alone, which no OCPP server written in
// JavaScript avoids (the router's parseFrame is this plus a few type checks).
{
  let n = 0;
  const c0 = process.cpuUsage();
  for (let i = 0; i < opts.frames; i++) n += (JSON.parse(text) as unknown[]).length;
  const c = process.cpuUsage(c0);
  process.stdout.write(
    `JSON.parse of the frame alone: ${((c.user + c.system) / opts.frames).toFixed(2)} µs/frame CPU (${n === opts.frames * 4 ? 'ok' : 'unexpected frame'})\n`,
  );
}
await sink.close();
const st = sink.stats();
process.stdout.write(`analytics rows: ${st.written + st.spooled} stored, ${st.dropped} dropped\n`);
await store.close();
await redis?.stop();
rmSync(dir, { recursive: true, force: true });
