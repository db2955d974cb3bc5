/**
 * open-loop: latency at a fixed offered load (issue #3). N chargers send CALLs of one action on
 * a fixed schedule, R per second in all, without waiting for replies (bench/lib/open-loop-gen.ts,
 * its own process); latency is counted from each CALL's intended send time, so a stall of the
 * server shows in full (no coordinated omission). Each server of the e2e matrix (SERVERS of
 * bench/lib/matrix.ts) in its own fresh process, measured in the same repetition. The target of
 * issue #3: the router's p99 at 10,000 msg/s over 1,000 chargers no worse than the bare uWS
 * responder's p99 + 5 ms. A list of rates shows where each server's latency knee is.
 *
 *   node --import tsx bench/open-loop.ts [--servers=uws-bare,ws-json,ocpp-rpc,router]
 *        [--actions=Heartbeat,StatusNotification,MeterValues] [--rates=10000] [--chargers=1000]
 *        [--reps=3] [--duration=5] [--warmup=2] [--drain=5] [--threads=0] [--version=1.6]
 *        [--router-config='{json}'] [--router-state=memory|redis] [--quiet-cores=0.3] [--quiet-wait=5] [--out=bench/results/open-loop-latest.json]
 *   e.g. the knee:  --rates=2000,10000,20000 --actions=Heartbeat,MeterValues
 *   BENCH_PROFILE=1: the router runs with --cpu-prof (profiles in bench/results/profiles)
 *
 * Outputs per (action, rate, server), median (min–max) over the repetitions: p50 / p99 / p99.9 /
 * max latency, the router's p99 minus the bare responder's (same repetition), achieved send
 * rate and reply rate, replies missing after the drain, errors, server CPU µs per message and
 * cores, generator cores and its send lag (how late it wrote; the floor under every latency),
 * other load on the machine. The bare uWS responder at the same rate is the generator's own
 * ceiling: its latency is what generator + transport cost; a figure near it measures the
 * generator. Markdown on stdout, JSON (every run, every option) to --out.
 *
 * The router's state: in process by default (as in bench/storm.ts); --router-state=redis puts
 * it in one throwaway redis-server for the run (flushed between repetitions), the product's
 * production path. The redis-server's CPU is not in the router's figure; it shows in "other
 * load" (the machine's CPU beside generator and server).
 *
 * Owns: the cells (actions × rates), aggregation and the report; the servers and the
 * repetition loop are bench/lib/matrix.ts's. Must not: generate load itself, or reach into
 * core/.
 */
import { join } from 'node:path';
import { preflight } from './lib/preflight.js';
import { startRedis } from './lib/redis-server.js';
import { fmtSpread, spread, type Spread } from './lib/stats.js';
import { BENCH_ACTIONS, type BenchAction, type BenchVersion } from './lib/ocpp-payloads.js';
import type { OpenLoopOptions, OpenLoopResult } from './lib/open-loop-gen.js';
import {
  SERVERS,
  baselineOf,
  batchNote,
  batchTable,
  commandLine,
  countKinds,
  flagSpec,
  fmtErrors,
  generatorBudgetMs,
  groupBy,
  isMain,
  log,
  logSamples,
  needsRedis,
  parseFlags,
  refuseRedisUrl,
  requireKnown,
  requireOneGeneratorFleet,
  requirePreflight,
  requireTiming,
  requireVersion,
  root,
  runGenerator,
  runRepetitions,
  samplesOf,
  spreadOf,
  startRecording,
  startServerOf,
  versions,
  withBatches,
  writeReport,
  type BatchFigures,
  type ReportHead,
  type RouterState,
  type ServerOptions,
  type Settled,
} from './lib/matrix.js';

export interface OpenLoopMatrix {
  servers: string[];
  actions: BenchAction[];
  rates: number[];
  chargers: number;
  reps: number;
  duration: number;
  warmup: number;
  drain: number;
  threads: number;
  version: BenchVersion;
  routerConfig: Record<string, unknown>;
  routerState: RouterState;
  quietCores: number;
  quietWaitSec: number;
  out: string;
}

const DEFAULTS: OpenLoopMatrix = {
  servers: ['uws-bare', 'ws-json', 'ocpp-rpc', 'router'],
  actions: ['Heartbeat', 'StatusNotification', 'MeterValues'],
  rates: [10_000],
  chargers: 1000,
  reps: 3,
  duration: 5,
  warmup: 2,
  drain: 5,
  threads: 0,
  version: '1.6',
  routerConfig: {},
  routerState: 'memory',
  quietCores: 0.3,
  quietWaitSec: 5,
  out: join(root, 'bench/results/open-loop-latest.json'),
};

const FLAGS = flagSpec<OpenLoopMatrix>(
  [
    'servers',
    'actions',
    'chargers',
    'reps',
    'duration',
    'warmup',
    'drain',
    'threads',
    'version',
    'router-config',
    'router-state',
    'quiet-cores',
    'quiet-wait',
    'out',
  ],
  { rates: ['rates', 'nums'] },
);

function parse(argv: string[]): OpenLoopMatrix {
  const { o } = parseFlags(argv, DEFAULTS, FLAGS);
  if (o.routerState !== 'memory' && o.routerState !== 'redis')
    throw new Error('--router-state must be memory or redis');
  requireKnown('server', o.servers, Object.keys(SERVERS));
  requireKnown('action', o.actions, BENCH_ACTIONS);
  requireVersion(o.version);
  requireOneGeneratorFleet(o.chargers);
  for (const r of o.rates) if (r < 1 || r > 200_000) throw new Error('--rates values must be 1..200000 messages/s');
  requireTiming(o);
  refuseRedisUrl(o.routerConfig);
  return o;
}

/** What SERVERS read: the router's threads, state and extra config; BENCH_PROFILE=1 profiles it. */
const serverOptions = (o: OpenLoopMatrix): ServerOptions => ({
  threads: o.threads,
  routerState: o.routerState,
  routerConfig: o.routerConfig,
  profile: process.env.BENCH_PROFILE === '1',
});

// ── aggregation ───────────────────────────────────────────────────────────────────────────

export interface OpenLoopRun {
  rep: number;
  server: string;
  action: BenchAction;
  rate: number;
  settle: Settled;
  result: OpenLoopResult;
  /** The router's batches over the cell (bench/lib/matrix.ts, BatchFigures). */
  batches?: BatchFigures;
}

export interface OpenLoopCell {
  server: string;
  action: BenchAction;
  rate: number;
  sendRate: Spread;
  replyRate: Spread;
  p50Ms: Spread;
  p99Ms: Spread;
  p999Ms: Spread;
  maxMs: Spread;
  /** p99 − the bare responder's p99, same action, rate and repetition. */
  p99OverBareMs: Spread;
  sendLagP99Ms: Spread;
  serverCpuUsPerMsg: Spread;
  serverCores: Spread;
  generatorCores: Spread;
  foreignCores: Spread;
  /** Sums over the repetitions. */
  missing: number;
  scheduled: number;
  errors: number;
  errorKinds: Record<string, number>;
  errorSamples: string[];
  /** Every repetition: replies/s ≥ 98 % of the offered rate and no reply missing. */
  keptUp: boolean;
  /** In at least one repetition the generator wrote < 98 % of the offered rate (it, or the machine, fell behind). */
  generatorBehind: boolean;
  /** The router's frames per batch and share of batches run inline (n = 0 for the references). */
  itemsPerBatch: Spread;
  inlineShare: Spread;
}

const sameCell = (a: OpenLoopRun, b: OpenLoopRun) => a.action === b.action && a.rate === b.rate;

function summarize(runs: OpenLoopRun[]): OpenLoopCell[] {
  return groupBy(runs, (r) => `${r.server}|${r.action}|${r.rate}`).map((rs) => {
    const f = spreadOf(rs.map((r) => r.result));
    const overBare = rs.map((r) => {
      const b = baselineOf(runs, r, 'uws-bare', sameCell);
      return b && r.server !== 'uws-bare'
        ? (r.result.window.latencyUs.p99 - b.result.window.latencyUs.p99) / 1000
        : NaN;
    });
    const batched = rs.flatMap((r) => (r.batches ? [r.batches] : []));
    return {
      server: rs[0].server,
      action: rs[0].action,
      rate: rs[0].rate,
      sendRate: f((x) => x.window.sendRate),
      replyRate: f((x) => x.window.replyRate),
      p50Ms: f((x) => x.window.latencyUs.p50 / 1000),
      p99Ms: f((x) => x.window.latencyUs.p99 / 1000),
      p999Ms: f((x) => x.window.latencyUs.p999 / 1000),
      maxMs: f((x) => x.window.latencyUs.max / 1000),
      p99OverBareMs: spread(overBare),
      sendLagP99Ms: f((x) => x.window.sendLagUs.p99 / 1000),
      serverCpuUsPerMsg: f((x) => x.server?.cpuUsPerMessage),
      serverCores: f((x) => x.server?.cores),
      generatorCores: f((x) => x.generator.cores),
      foreignCores: f((x) => x.machine.foreignCores),
      itemsPerBatch: spread(batched.map((b) => b.itemsPerBatch)),
      inlineShare: spread(batched.map((b) => b.inlineShare)),
      missing: rs.reduce((n, r) => n + r.result.missing, 0),
      scheduled: rs.reduce((n, r) => n + r.result.window.scheduled, 0),
      errors: rs.reduce((n, r) => n + r.result.errors.total + r.result.connect.failed, 0),
      errorKinds: countKinds(rs, ({ result: { errors: e, connect } }) => [
        ['CALLERROR', e.callError],
        ['closed', e.closed],
        ['unparsed', e.unparsed],
        ['connect', connect.failed],
      ]),
      errorSamples: rs.flatMap((r) => samplesOf(r.result)).slice(0, 5),
      keptUp: rs.every(
        (r) => r.result.missing === 0 && r.result.window.replyRate >= 0.98 * r.result.window.offeredRate,
      ),
      generatorBehind: rs.some((r) => r.result.window.sendRate < 0.98 * r.result.window.offeredRate),
    };
  });
}

interface OpenLoopReport extends ReportHead {
  kind: 'open-loop';
  node: { version: string; uws: string; ws: string; ocppRpc: string };
  options: OpenLoopMatrix;
  preflight: Record<string, unknown>;
  runs: OpenLoopRun[];
  cells: OpenLoopCell[];
}

function markdown(rep: OpenLoopReport): string {
  const o = rep.options;
  const L: string[] = [];
  L.push(
    `Open loop: N = ${o.chargers} chargers (OCPP ${o.version}, raw client), each sending every N/R s at a random phase, no waiting for replies; latency from the intended send time. ${o.reps} repetition${o.reps > 1 ? 's' : ''} × ${o.duration} s after ${o.warmup} s warm-up, drain ≤ ${o.drain} s; median (min–max). Router state: ${o.routerState === 'redis' ? "in a throwaway redis-server (its CPU is not in the router's figures; it counts as other load)" : 'in process'}.`,
    '',
  );
  L.push(
    '| action | offered msg/s | server | sent/s | replies/s | p50 ms | p99 ms | p99.9 ms | max ms | p99 − bare ms | missing | errors | server CPU µs/msg | server cores | generator cores | send lag p99 ms | other load (cores) |',
  );
  L.push('|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  const sorted = [...rep.cells].sort(
    (a, b) =>
      o.actions.indexOf(a.action) - o.actions.indexOf(b.action) ||
      a.rate - b.rate ||
      o.servers.indexOf(a.server) - o.servers.indexOf(b.server),
  );
  for (const c of sorted) {
    const errs = fmtErrors(c.errors, c.errorKinds);
    L.push(
      `| ${c.action} | ${c.rate.toLocaleString('en-US')} | ${c.server}${c.keptUp ? '' : ' ˣ'}${c.generatorBehind ? ' ᵍ' : ''} | ${fmtSpread(c.sendRate)} | ${fmtSpread(c.replyRate)} | ${fmtSpread(c.p50Ms, 2)} | ${fmtSpread(c.p99Ms, 2)} | ${fmtSpread(c.p999Ms, 1)} | ${fmtSpread(c.maxMs, 1)} | ${fmtSpread(c.p99OverBareMs, 2)} | ${c.missing ? `${c.missing} of ${c.scheduled}` : 0} | ${errs} | ${fmtSpread(c.serverCpuUsPerMsg, 1)} | ${fmtSpread(c.serverCores, 2)} | ${fmtSpread(c.generatorCores, 2)} | ${fmtSpread(c.sendLagP99Ms, 2)} | ${fmtSpread(c.foreignCores, 2)} |`,
    );
  }
  if (!o.servers.includes('uws-bare'))
    L.push(
      '',
      'No bare uWS responder in this run: no generator ceiling at these rates, and no p99 − bare. Add `uws-bare` to --servers to know what generator + transport cost.',
    );
  if (rep.cells.some((c) => !c.keptUp))
    L.push(
      '',
      'ˣ did not keep up in at least one repetition: replies/s below 98 % of the offered rate, or replies missing after the drain. Its percentiles are over the replies that came; the missing ones are not in them.',
    );
  const batched = sorted.filter((c) => c.itemsPerBatch.n);
  if (batched.length)
    L.push(
      ...batchTable(
        'Router batches per cell (warm-up and drain included): frames per batch, and the share of batches run inline on the socket thread (the rest went to a worker), median (min–max).',
        'offered msg/s',
        batched.map((c) => ({ ...c, cell: c.rate.toLocaleString('en-US') })),
      ),
    );
  if (rep.cells.some((c) => c.generatorBehind))
    L.push(
      '',
      "ᵍ the generator wrote less than 98 % of the offered rate in at least one repetition (see send lag and other load): the server was not offered the full load, and the latency includes the generator's lateness.",
    );
  // The issue's target, per action and rate, where both servers ran.
  const targets: string[] = [];
  for (const c of sorted) {
    if (c.server !== 'router' || !c.p99OverBareMs.n) continue;
    const ok = c.keptUp && c.p99OverBareMs.median <= 5;
    targets.push(
      `- ${c.action} at ${c.rate.toLocaleString('en-US')} msg/s: router p99 − bare p99 = ${fmtSpread(c.p99OverBareMs, 2)} ms → ${ok ? 'within' : '**not within**'} the target (≤ 5 ms${c.keptUp ? '' : ', and it did not keep up'}).`,
    );
  }
  if (targets.length)
    L.push(
      '',
      'Target (issue #3): router p99 ≤ bare uWS p99 + 5 ms at the same offered load (the issue states it for 10,000 msg/s over 1,000 chargers).',
      '',
      ...targets,
    );
  return L.join('\n');
}

// ── the loop ──────────────────────────────────────────────────────────────────────────────

async function main(o: OpenLoopMatrix, command: string): Promise<OpenLoopReport> {
  const rec = startRecording();
  const m = serverOptions(o);
  const runs: OpenLoopRun[] = [];
  const serverInfo: OpenLoopReport['servers'] = {};
  const pre: Record<string, unknown> = {};
  const cells = o.actions.flatMap((action) => o.rates.map((rate) => ({ action, rate })));
  const redis = needsRedis(o.servers, m) ? await startRedis() : null;
  if (redis) log(`redis-server on port ${redis.port} (pid ${redis.pid}) for the router's state`);
  try {
    await runRepetitions({
      reps: o.reps,
      servers: o.servers,
      cells,
      quiet: o,
      redis,
      start: (name) => startServerOf(name, m, redis),
      ready: async (h, rep) => {
        serverInfo[h.kind] ??= {
          describe:
            SERVERS[h.kind].describe +
            (h.kind === 'router'
              ? redis
                ? '; state in a throwaway redis-server (its CPU not counted)'
                : '; state in process'
              : ''),
          threads: h.threads,
        };
        const p = await preflight(h.port, o.version, o.actions);
        requirePreflight(pre, h, rep, p);
      },
      run: async ({ h, cell: { action, rate }, rep, settle: s, progress }) => {
        const opts: Partial<OpenLoopOptions> = {
          port: h.port,
          serverPid: h.pid,
          version: o.version,
          action,
          chargers: o.chargers,
          rate,
          warmupSec: o.warmup,
          durationSec: o.duration,
          drainMs: o.drain * 1000,
          idPrefix: `ol${rep}-${h.kind}-${action}-${rate}-${Date.now().toString(36)}`,
        };
        const { result, batches } = await withBatches(h, () =>
          runGenerator<OpenLoopResult>(
            'bench/lib/open-loop-gen.ts',
            opts,
            generatorBudgetMs(o.warmup + o.duration + o.drain),
          ),
        );
        runs.push({ rep, server: h.kind, action, rate, settle: s, result, ...(batches ? { batches } : {}) });
        const w = result.window;
        log(
          `${progress} rep ${rep} ${h.kind.padEnd(8)} ${action.padEnd(18)} ${String(rate).padStart(6)}/s  sent ${w.sendRate}/s  replies ${w.replyRate}/s  p50 ${(w.latencyUs.p50 / 1000).toFixed(2)}  p99 ${(w.latencyUs.p99 / 1000).toFixed(2)}  p99.9 ${(w.latencyUs.p999 / 1000).toFixed(2)}  max ${(w.latencyUs.max / 1000).toFixed(1)} ms  lag p99 ${(w.sendLagUs.p99 / 1000).toFixed(2)} ms  missing ${result.missing}  server ${result.server?.cpuUsPerMessage ?? '?'} µs/msg (${result.server?.cores ?? '?'} cores)  gen ${result.generator.cores} cores  other ${result.machine.foreignCores}  errors ${result.errors.total + result.connect.failed}${batchNote(batches)}`,
        );
        logSamples(result);
      },
    });
  } finally {
    await redis?.stop();
  }
  return {
    kind: 'open-loop',
    date: new Date().toISOString(),
    command,
    machine: rec.machine(),
    node: versions('version', 'uws', 'ws', 'ocppRpc'),
    git: rec.git(),
    options: o,
    servers: serverInfo,
    preflight: pre,
    runs,
    cells: summarize(runs),
    wallSeconds: rec.wallSeconds(),
  };
}

if (isMain(import.meta.url)) {
  const o = parse(process.argv.slice(2));
  const report = await main(o, commandLine('bench/open-loop.ts', process.argv.slice(2)));
  writeReport(o.out, report);
  process.stdout.write(markdown(report) + '\n');
}
