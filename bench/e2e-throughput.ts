/**
 * e2e-throughput: N simulated chargers over loopback against each server of the matrix,
 * the router measured beside reference servers in the same run (issues #2 and #3, STYLE.md
 * §8): a bare uWebSockets.js responder (the transport's limit), a plain `ws` + JSON responder
 * and an ocpp-rpc server in strict mode (what a Node user would otherwise write or pick).
 *
 *   node --import tsx bench/e2e-throughput.ts [--servers=uws-bare,ws-json,ocpp-rpc,router]
 *        [--actions=Heartbeat,StatusNotification,MeterValues,Authorize] [--inflight=1,8] [--chargers=1000]
 *        [--reps=3] [--duration=3] [--warmup=1] [--threads=0] [--client=raw|ws] [--version=1.6]
 *        [--router-state=redis|memory] [--router-config='{json}'] [--profile] [--server-cpus=1] [--out=file.json]
 *   (every flag also reads BENCH_<NAME>, e.g. BENCH_CHARGERS=500)
 *
 * Owns: the matrix's cells (actions × in-flight), the router's throwaway redis-server under
 * --router-state=redis, CPU pinning (--server-cpus), aggregation (median, min–max, ratios
 * against the bare responder and against ocpp-rpc) and the JSON + markdown report. The
 * servers, the repetition loop and the report's records are bench/lib/matrix.ts's. Must not:
 * generate load itself (bench/lib/loadgen.ts, in its own process), reach into core/ (the
 * router is started through createRouter only) or touch any Redis but its own.
 *
 *   [--router-state=redis: start one throwaway redis-server for the whole matrix (bench/lib/redis-server.ts)]
 *   for each repetition:  [FLUSHALL]  start every server (fresh processes), pre-flight check each
 *     for each cell (action × in-flight):  for each server (order rotated per repetition):
 *       wait for the servers (and Redis) to be idle and the machine quiet (bounded)
 *       ─► spawn loadgen (server CPU, and Redis CPU for the router, over the window) ─► result
 *     stop the servers
 *   [stop redis-server]
 *
 * Growing it: a server is an entry of SERVERS (bench/lib/matrix.ts); an action is an entry of
 * bench/lib/ocpp-payloads.ts; a dimension is one more element of the cells here.
 */
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { resolve } from 'node:path';
import { preflight } from './lib/preflight.js';
import { startRedis, type BenchRedis } from './lib/redis-server.js';
import { fmtSpread, spread, type Spread } from './lib/stats.js';
import type { LoadOptions, LoadResult, ClientKind } from './lib/loadgen.js';
import { BENCH_ACTIONS, type BenchAction, type BenchVersion } from './lib/ocpp-payloads.js';
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
  redisCall,
  redisVersion,
  refuseRedisUrl,
  requireKnown,
  requirePreflight,
  requireTiming,
  requireVersion,
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
  type Quiet,
  type ReportHead,
  type ServerOptions,
  type Settled,
} from './lib/matrix.js';
import { baselineCheckout } from './lib/baseline.js';

// ── options ───────────────────────────────────────────────────────────────────────────────

export interface MatrixOptions extends ServerOptions, Quiet {
  servers: string[];
  actions: BenchAction[];
  inflight: number[];
  chargers: number;
  reps: number;
  duration: number;
  warmup: number;
  client: ClientKind;
  version: BenchVersion;
  /**
   * CPUs (indices) the servers and the router's redis-server are pinned to (taskset), the
   * generator and this process to the others: how a server's figures scale with the cores it
   * is given (docs/performance.md). null: nothing pinned, everything shares every core.
   */
  serverCpus: number[] | null;
  out: string | null;
  /** `--baseline=<git revision>`: the commit whose router `router-base` runs beside `router`. */
  baseline: string | null;
  /** Printed in the report as the command that produced it. */
  command: string;
}

export const DEFAULT_MATRIX: MatrixOptions = {
  servers: ['uws-bare', 'ws-json', 'ocpp-rpc', 'router'],
  actions: ['Heartbeat', 'StatusNotification', 'MeterValues', 'Authorize'],
  inflight: [1, 8],
  chargers: 1000,
  reps: 3,
  duration: 3,
  warmup: 1,
  threads: 0,
  client: 'raw',
  version: '1.6',
  routerState: 'redis',
  routerConfig: {},
  profile: false,
  serverCpus: null,
  quietCores: 0.3,
  // 96 runs in the standard matrix: at most 2 s of waiting each keeps `npm run bench` bounded.
  quietWaitSec: 2,
  out: null,
  baseline: null,
  command: '',
};

const FLAGS = flagSpec<MatrixOptions>(
  ['servers', 'actions', 'chargers', 'reps', 'duration', 'warmup', 'threads', 'version'],
  {
    inflight: ['inflight', 'nums'],
    client: ['client', 'str'],
    'router-state': ['routerState', 'str'],
    'router-config': ['routerConfig', 'json'],
    profile: ['profile', 'bool'],
    'server-cpus': ['serverCpus', 'nums'],
    'quiet-cores': ['quietCores', 'num'],
    'quiet-wait': ['quietWaitSec', 'num'],
    // Resolved by the command line only: run.ts passes none.
    out: ['out', 'str'],
    baseline: ['baseline', 'str'],
  },
);

/** `--name=value`, `--name value`, `--flag`, then BENCH_NAME, then the default. */
export function parseArgs(argv: string[], defaults: MatrixOptions = DEFAULT_MATRIX): MatrixOptions {
  const { o } = parseFlags(argv, defaults, FLAGS, { loose: true });
  if (o.serverCpus) {
    const n = cpus().length;
    if (o.serverCpus.length === 0 || o.serverCpus.some((c) => !Number.isInteger(c) || c >= n))
      throw new Error(`--server-cpus must list CPU indices 0..${n - 1}, got "${o.serverCpus.join(',')}"`);
    if (otherCpus(o.serverCpus).length === 0)
      throw new Error('--server-cpus must leave at least one CPU to the generator');
  }
  if (o.baseline) {
    o.baselineDir = baselineCheckout(o.baseline).dir;
    if (!o.servers.includes('router-base')) o.servers = [...o.servers, 'router-base'];
  } else if (o.servers.includes('router-base')) throw new Error('server router-base needs --baseline=<git revision>');
  requireKnown('server', o.servers, Object.keys(SERVERS));
  requireKnown('action', o.actions, BENCH_ACTIONS);
  if (!['raw', 'ws'].includes(o.client)) throw new Error('--client must be raw or ws');
  requireVersion(o.version);
  if (!['redis', 'memory'].includes(o.routerState)) throw new Error('--router-state must be redis or memory');
  refuseRedisUrl(o.routerConfig);
  if (o.chargers < 1 || o.chargers > 20000) throw new Error('--chargers must be 1..20000');
  requireTiming(o);
  for (const k of o.inflight)
    if (k < 1 || k > 256 || !Number.isInteger(k)) throw new Error('--inflight values must be integers 1..256');
  return o;
}

// ── CPU pinning (--server-cpus) ──────────────────────────────────────────────────────────

/** The CPUs not in `list`. */
export function otherCpus(list: number[]): number[] {
  return cpus()
    .map((_, i) => i)
    .filter((i) => !list.includes(i));
}

/**
 * Pins every thread of `pid` to `list` with util-linux's taskset (threads and processes
 * started later inherit it). Written here rather than with a package: one call of a tool
 * every Debian has, and no npm package sets another process's affinity without a native build.
 */
export function pinTo(pid: number, list: number[]): void {
  try {
    execFileSync('taskset', ['-a', '-cp', list.join(','), String(pid)], { stdio: 'ignore' });
  } catch (err) {
    throw new Error(
      `--server-cpus: taskset could not pin pid ${pid} to CPUs ${list.join(',')} (is util-linux installed?): ${(err as Error).message}`,
      { cause: err },
    );
  }
}

// ── records and aggregation ───────────────────────────────────────────────────────────────

export interface RunRecord {
  rep: number;
  server: string;
  action: BenchAction;
  inflight: number;
  settle: Settled;
  result: LoadResult;
  /** The router's batches over the cell (bench/lib/matrix.ts, BatchFigures). */
  batches?: BatchFigures;
}

export interface CellSummary {
  server: string;
  action: BenchAction;
  inflight: number;
  rps: Spread;
  p50Ms: Spread;
  p99Ms: Spread;
  p999Ms: Spread;
  serverCpuUsPerRt: Spread;
  serverCores: Spread;
  /** The matrix's redis-server over the same window (servers that keep state there; else n = 0). */
  redisCpuUsPerRt: Spread;
  redisCores: Spread;
  generatorCores: Spread;
  generatorCpuUsPerRt: Spread;
  foreignCores: Spread;
  /** Every error of every repetition, over the whole run (warm-up, window and drain). */
  errors: number;
  errorKinds: Record<string, number>;
  errorSamples: string[];
  /** The generator was the bottleneck in at least one repetition (≥ 0.9 of a core busy). */
  generatorBound: boolean;
  /** The router's batches (RunRecord.batches; n = 0 for the references). */
  itemsPerBatch: Spread;
  inlineShare: Spread;
}

export interface RatioSummary {
  server: string;
  action: BenchAction;
  inflight: number;
  /** The reference the ratio is against (`uws-bare`, `ocpp-rpc`). */
  baseline: string;
  /** server / baseline, per repetition (same repetition, same cell), median and range. */
  throughput: Spread;
  cpuPerRoundTrip: Spread;
}

export interface MatrixReport extends ReportHead {
  kind: 'e2e-throughput';
  node: { version: string; v8: string; uws: string; ws: string; ocppRpc: string };
  options: MatrixOptions;
  servers: Record<string, { describe: string; threads: number; config?: unknown }>;
  /**
   * The router's redis-server (--router-state=redis), null otherwise: version, and per
   * repetition its keys at the end (before the servers stop; flushed before the next).
   */
  redis: { version: string; port: number; perRep: { rep: number; keys: number }[] } | null;
  preflight: Record<string, unknown>;
  runs: RunRecord[];
  cells: CellSummary[];
  ratios: RatioSummary[];
}

/** The references ratios are computed against, in the order their columns appear. */
export const RATIO_BASELINES = ['uws-bare', 'ocpp-rpc'] as const;

const sameCell = (a: RunRecord, b: RunRecord) => a.action === b.action && a.inflight === b.inflight;

export function summarize(
  runs: RunRecord[],
  baselines: readonly string[] = RATIO_BASELINES,
): { cells: CellSummary[]; ratios: RatioSummary[] } {
  const cells: CellSummary[] = groupBy(runs, (r) => `${r.server}|${r.action}|${r.inflight}`).map((rs) => {
    const f = spreadOf(rs.map((r) => r.result));
    const batched = rs.flatMap((r) => (r.batches ? [r.batches] : []));
    return {
      server: rs[0].server,
      action: rs[0].action,
      inflight: rs[0].inflight,
      rps: f((x) => x.window.rps),
      p50Ms: f((x) => x.window.latencyUs.p50 / 1000),
      p99Ms: f((x) => x.window.latencyUs.p99 / 1000),
      p999Ms: f((x) => x.window.latencyUs.p999 / 1000),
      serverCpuUsPerRt: f((x) => x.server?.cpuUsPerRoundTrip),
      serverCores: f((x) => x.server?.cores),
      redisCpuUsPerRt: f((x) => x.side?.redis?.cpuUsPerRoundTrip),
      redisCores: f((x) => x.side?.redis?.cores),
      generatorCores: f((x) => x.generator.cores),
      generatorCpuUsPerRt: f((x) => x.generator.cpuUsPerRoundTrip),
      foreignCores: f((x) => x.machine.foreignCores),
      errors: rs.reduce((n, r) => n + r.result.errors.total + r.result.connect.failed, 0),
      errorKinds: countKinds(rs, ({ result: { errors: e, connect } }) => [
        ['CALLERROR', e.callError],
        ['timeout', e.timeout],
        ['closed', e.closed],
        ['unparsed', e.unparsed],
        ['connect', connect.failed],
      ]),
      errorSamples: rs.flatMap((r) => samplesOf(r.result)).slice(0, 5),
      generatorBound: rs.some((r) => r.result.generator.cores >= 0.9),
      itemsPerBatch: spread(batched.map((b) => b.itemsPerBatch)),
      inlineShare: spread(batched.map((b) => b.inlineShare)),
    };
  });
  const ratios: RatioSummary[] = [];
  for (const baseline of baselines) {
    if (!runs.some((r) => r.server === baseline)) continue;
    for (const c of cells) {
      // A server against itself, and the bare responder against anything, say nothing.
      if (c.server === baseline || c.server === 'uws-bare') continue;
      const tp: number[] = [];
      const cpu: number[] = [];
      for (const r of runs) {
        if (r.server !== c.server || r.action !== c.action || r.inflight !== c.inflight) continue;
        const b = baselineOf(runs, r, baseline, sameCell);
        if (!b) continue;
        tp.push(r.result.window.rps / b.result.window.rps);
        if (r.result.server && b.result.server)
          cpu.push(r.result.server.cpuUsPerRoundTrip / b.result.server.cpuUsPerRoundTrip);
      }
      ratios.push({
        server: c.server,
        action: c.action,
        inflight: c.inflight,
        baseline,
        throughput: spread(tp),
        cpuPerRoundTrip: spread(cpu),
      });
    }
  }
  return { cells, ratios };
}

// ── report ────────────────────────────────────────────────────────────────────────────────

export function markdown(rep: MatrixReport): string {
  const o = rep.options;
  const lines: string[] = [];
  lines.push(
    `N = ${o.chargers} chargers (OCPP ${o.version}, ${o.client} client), ${o.reps} repetitions × ${o.duration} s after ${o.warmup} s warm-up; median (min–max).`,
  );
  const withRedis = rep.cells.some((c) => c.redisCpuUsPerRt.n > 0);
  if (rep.options.servers.includes('router')) {
    lines.push(
      '',
      withRedis
        ? `Router state in Redis (one throwaway redis-server ${rep.redis?.version ?? ''} for the run, flushed between repetitions), analytics to the local spool. **server CPU µs/rt is the router process alone** (all its threads); the redis-server's CPU over the same window is reported separately (redis µs/rt, redis cores), so the full cost of a round trip is their sum. Ratios compare the router process alone.`
        : 'Router state in process (--router-state=memory), analytics to the local spool.',
    );
  }
  if (o.serverCpus)
    lines.push(
      '',
      `Servers${withRedis ? ' and the redis-server' : ''} pinned to CPU ${o.serverCpus.join(', ')} (taskset), the generator to CPU ${otherCpus(o.serverCpus).join(', ')}.`,
    );
  lines.push('');
  lines.push(
    `| action | in flight | server | round trips/s | p50 ms | p99 ms | p99.9 ms | server CPU µs/rt |${withRedis ? ' redis µs/rt | redis cores |' : ''} server cores | generator cores | other load (cores) | errors |`,
  );
  lines.push(`|---|---:|---|---:|---:|---:|---:|---:|${withRedis ? '---:|---:|' : ''}---:|---:|---:|---:|`);
  const order = (c: CellSummary) => [
    o.actions.indexOf(c.action),
    o.inflight.indexOf(c.inflight),
    o.servers.indexOf(c.server),
  ];
  const sorted = [...rep.cells].sort((a, b) => {
    const x = order(a),
      y = order(b);
    return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
  });
  for (const c of sorted) {
    lines.push(
      `| ${c.action} | ${c.inflight} | ${c.server}${c.generatorBound ? ' ᵍ' : ''} | ${fmtSpread(c.rps)} | ${fmtSpread(c.p50Ms, 2)} | ${fmtSpread(c.p99Ms, 2)} | ${fmtSpread(c.p999Ms, 1)} | ${fmtSpread(c.serverCpuUsPerRt, 1)} |${withRedis ? ` ${fmtSpread(c.redisCpuUsPerRt, 1)} | ${fmtSpread(c.redisCores, 2)} |` : ''} ${fmtSpread(c.serverCores, 2)} | ${fmtSpread(c.generatorCores, 2)} | ${fmtSpread(c.foreignCores, 2)} | ${fmtErrors(c.errors, c.errorKinds)} |`,
    );
  }
  const batched = sorted.filter((c) => c.itemsPerBatch?.n);
  if (batched.length)
    lines.push(
      ...batchTable(
        'Router batches per cell (warm-up and wind-down included): frames per batch, and the share of batches run inline on the socket thread (the rest went to a worker), median (min–max).',
        'in flight',
        batched.map((c) => ({ ...c, cell: String(c.inflight) })),
      ),
    );
  if (rep.cells.some((c) => c.generatorBound))
    lines.push(
      '',
      "ᵍ the load generator had ≥ 0.9 of a core busy in at least one repetition: that figure is (close to) the generator's ceiling, not the server's.",
    );
  if (rep.ratios.length) {
    // One row per server and cell, one pair of columns per reference present in this run.
    const label: Record<string, string> = { 'uws-bare': 'bare', 'ocpp-rpc': 'ocpp-rpc' };
    const bases = RATIO_BASELINES.filter((b) => rep.ratios.some((r) => r.baseline === b));
    const names = bases.map((b) => (b === 'uws-bare' ? 'the bare uWS responder' : b));
    lines.push(
      '',
      `Ratios against ${names.join(' and against ')}, computed per repetition (same cell, same repetition), median (min–max). Throughput ÷ reference < 1 is slower; server CPU per round trip ÷ reference > 1 is more expensive.`,
      '',
    );
    lines.push(
      `| action | in flight | server | ${bases.map((b) => `throughput ÷ ${label[b] ?? b} | server CPU per round trip ÷ ${label[b] ?? b}`).join(' | ')} |`,
    );
    lines.push(`|---|---:|---|${bases.map(() => '---:|---:').join('|')}|`);
    const rows = groupBy(rep.ratios, (r) => `${r.action}|${r.inflight}|${r.server}`).sort(
      ([a], [b]) =>
        o.actions.indexOf(a.action) - o.actions.indexOf(b.action) ||
        a.inflight - b.inflight ||
        o.servers.indexOf(a.server) - o.servers.indexOf(b.server),
    );
    for (const row of rows) {
      const cols = bases.map((b) => {
        const x = row.find((y) => y.baseline === b);
        return x ? `${fmtSpread(x.throughput, 2)} | ${fmtSpread(x.cpuPerRoundTrip, 2)}` : '– | –';
      });
      lines.push(`| ${row[0].action} | ${row[0].inflight} | ${row[0].server} | ${cols.join(' | ')} |`);
    }
  }
  return lines.join('\n');
}

// ── the matrix ────────────────────────────────────────────────────────────────────────────

export async function runMatrix(o: MatrixOptions, say: (s: string) => void = log): Promise<MatrixReport> {
  const rec = startRecording();
  const runs: RunRecord[] = [];
  const serverInfo: MatrixReport['servers'] = {};
  const pre: Record<string, unknown> = {};
  const cells = o.actions.flatMap((action) => o.inflight.map((inflight) => ({ action, inflight })));
  // Pinned: this process (and so every generator it spawns) to the other CPUs, each server
  // and the router's redis-server to serverCpus as they start.
  if (o.serverCpus) pinTo(process.pid, otherCpus(o.serverCpus));
  // One redis-server for the whole matrix, only when a server of it keeps its state there.
  const redis: BenchRedis | null = needsRedis(o.servers, o) ? await startRedis() : null;
  if (redis && o.serverCpus) pinTo(redis.pid, o.serverCpus);
  const redisInfo: MatrixReport['redis'] = redis && { version: redisVersion(redis.pid), port: redis.port, perRep: [] };
  if (redis) say(`redis-server ${redisInfo!.version} on port ${redis.port} (pid ${redis.pid}) for the router's state`);
  try {
    await runRepetitions({
      reps: o.reps,
      servers: o.servers,
      cells,
      quiet: o,
      redis,
      start: (name) => startServerOf(name, o, redis),
      ready: async (h, rep) => {
        if (o.serverCpus) pinTo(h.pid, o.serverCpus);
        const def = SERVERS[h.kind];
        const state = def.usesRedis
          ? def.usesRedis(o)
            ? "; state in the matrix's redis-server (its CPU reported apart)"
            : '; state in process'
          : '';
        serverInfo[h.kind] ??= { describe: def.describe + state, threads: h.threads, config: h.info.config };
        let p = await preflight(h.port, o.version, o.actions);
        if (!p.ok && o.profile && p.problems.some((x) => x.startsWith('closed 1006'))) {
          // Under --cpu-prof with state in Redis uWS may drop the first connection right after
          // the 101 (no close frame, no close() from the router); later ones work.
          process.stderr.write(
            `${h.kind}: pre-flight connection dropped under --profile (known profiler artefact); retrying once\n`,
          );
          p = await preflight(h.port, o.version, o.actions);
        }
        requirePreflight(pre, h, rep, p);
      },
      run: async ({ h, cell: { action, inflight }, rep, settle: s, progress }) => {
        const sidePids = redis && SERVERS[h.kind].usesRedis?.(o) ? { redis: redis.pid } : undefined;
        const opts: Partial<LoadOptions> = {
          port: h.port,
          serverPid: h.pid,
          sidePids,
          version: o.version,
          action,
          chargers: o.chargers,
          inflight,
          warmupSec: o.warmup,
          durationSec: o.duration,
          client: o.client,
          idPrefix: `b${rep}-${h.kind}-${action}-${inflight}-${Date.now().toString(36)}`,
        };
        const { result, batches } = await withBatches(h, () =>
          runGenerator<LoadResult>('bench/lib/loadgen.ts', opts, generatorBudgetMs(o.warmup + o.duration)),
        );
        runs.push({ rep, server: h.kind, action, inflight, settle: s, result, ...(batches ? { batches } : {}) });
        const w = result.window;
        say(
          `${progress} rep ${rep} ${h.kind.padEnd(8)} ${action.padEnd(18)} k=${inflight}  ${String(w.rps).padStart(7)} rt/s  p50 ${(w.latencyUs.p50 / 1000).toFixed(2)} ms  p99 ${(w.latencyUs.p99 / 1000).toFixed(2)} ms  server ${result.server?.cpuUsPerRoundTrip ?? '?'} µs/rt (${result.server?.cores ?? '?'} cores)${result.side?.redis ? `  redis ${result.side.redis.cpuUsPerRoundTrip} µs/rt (${result.side.redis.cores} cores)` : ''}  gen ${result.generator.cores} cores  other ${result.machine.foreignCores} cores  errors ${result.errors.total + result.connect.failed}${batchNote(batches)}${batches?.analyticsDropped ? `  ANALYTICS ROWS DROPPED ${batches.analyticsDropped}` : ''}${batches?.analyticsRefused ? `  REFUSED FOR ANALYTICS ROOM ${batches.analyticsRefused}` : ''}`,
        );
        logSamples(result, say);
      },
      afterRepetition: async (rep) => {
        if (redis) redisInfo!.perRep.push({ rep, keys: Number((await redisCall(redis, 'DBSIZE', /^:\d+$/)).slice(1)) });
      },
    });
  } finally {
    await redis?.stop();
  }
  const { cells: cellSummaries, ratios } = summarize(runs);
  const report: MatrixReport = {
    kind: 'e2e-throughput',
    date: new Date().toISOString(),
    command: o.command,
    machine: rec.machine(),
    node: versions('version', 'v8', 'uws', 'ws', 'ocppRpc'),
    git: rec.git(),
    options: o,
    servers: serverInfo,
    redis: redisInfo,
    preflight: pre,
    runs,
    cells: cellSummaries,
    ratios,
    wallSeconds: rec.wallSeconds(),
  };
  if (o.out) writeReport(o.out, report, say);
  return report;
}

if (isMain(import.meta.url)) {
  const o = parseArgs(process.argv.slice(2));
  o.command = commandLine('bench/e2e-throughput.ts', process.argv.slice(2));
  if (o.out) o.out = resolve(o.out);
  const report = await runMatrix(o);
  process.stdout.write(markdown(report) + '\n');
}
