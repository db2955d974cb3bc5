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
 * Owns: the matrix (servers × actions × in-flight × repetitions), server processes (and the
 * router's throwaway redis-server under --router-state=redis), the order of runs, aggregation
 * (median, min–max, ratios against the bare responder and against ocpp-rpc) and the JSON +
 * markdown report. Must not: generate load itself (bench/lib/loadgen.ts, in its own
 * process), reach into core/ (the router is started through createRouter only) or touch any
 * Redis but its own.
 *
 *   [--router-state=redis: start one throwaway redis-server for the whole matrix (bench/lib/redis-server.ts)]
 *   for each repetition:  [FLUSHALL]  start every server (fresh processes), pre-flight check each
 *     for each cell (action × in-flight):  for each server (order rotated per repetition):
 *       wait for the servers (and Redis) to be idle and the machine quiet (bounded)
 *       ─► spawn loadgen (server CPU, and Redis CPU for the router, over the window) ─► result
 *     stop the servers
 *   [stop redis-server]
 *
 * Growing it: a server is an entry of SERVERS (a script printing its ready line); an action
 * is an entry of bench/lib/ocpp-payloads.ts; a dimension is a loop here.
 */
import { mergeConfig } from '../core/index.js';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem, release } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { preflight } from './lib/preflight.js';
import { redisCommand, startRedis, type BenchRedis } from './lib/redis-server.js';
import { startServer, processCpuMs, machineCpuMs, runResultChild, type ServerHandle } from './lib/proc.js';
import { spread, fmtSpread, type Spread } from './lib/stats.js';
import type { LoadOptions, LoadResult, ClientKind } from './lib/loadgen.js';
import { BENCH_ACTIONS, type BenchAction, type BenchVersion } from './lib/ocpp-payloads.js';

const root = join(import.meta.dirname, '..');
const rel = (p: string) => relative(root, p);

// ── options ───────────────────────────────────────────────────────────────────────────────

export interface MatrixOptions {
  servers: string[];
  actions: BenchAction[];
  inflight: number[];
  chargers: number;
  reps: number;
  duration: number;
  warmup: number;
  /** Router worker threads (pool.threads; 0 = one per core). */
  threads: number;
  client: ClientKind;
  version: BenchVersion;
  /**
   * The router's state: `redis` (one throwaway redis-server for the whole matrix, its CPU
   * reported beside the router's) or `memory` (in-process store, no Redis).
   */
  routerState: RouterState;
  /** Extra router configuration (merged over the bench defaults; `redis.url` is refused: use routerState). */
  routerConfig: Record<string, unknown>;
  /** Start the router with --cpu-prof (profiles in bench/results/profiles). */
  profile: boolean;
  /**
   * CPUs (indices) the servers and the router's redis-server are pinned to (taskset), the
   * generator and this process to the others: how a server's figures scale with the cores it
   * is given (docs/performance.md). null: nothing pinned, everything shares every core.
   */
  serverCpus: number[] | null;
  /** Wait (bounded) before each run until other processes use less than this many cores. */
  quietCores: number;
  quietWaitSec: number;
  out: string | null;
  /** Printed in the report as the command that produced it. */
  command: string;
}

export type RouterState = 'redis' | 'memory';

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
  command: '',
};

/** `--name=value`, `--name value`, `--flag`, then BENCH_NAME, then the default. */
export function parseArgs(argv: string[], defaults: MatrixOptions = DEFAULT_MATRIX): MatrixOptions {
  const raw = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const eq = a.indexOf('=');
    if (eq > 0) raw.set(a.slice(2, eq), a.slice(eq + 1));
    else if (argv[i + 1] !== undefined && !argv[i + 1].startsWith('--')) raw.set(a.slice(2), argv[++i]);
    else raw.set(a.slice(2), 'true');
  }
  const get = (name: string): string | undefined =>
    raw.get(name) ?? process.env[`BENCH_${name.replace(/-/g, '_').toUpperCase()}`];
  const list = (s: string) =>
    s
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
  const num = (name: string, s: string) => {
    const n = Number(s);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number, got "${s}"`);
    return n;
  };
  const o: MatrixOptions = { ...defaults, routerConfig: { ...defaults.routerConfig } };
  const known = new Set([
    'servers',
    'actions',
    'inflight',
    'chargers',
    'reps',
    'duration',
    'warmup',
    'threads',
    'client',
    'version',
    'router-state',
    'router-config',
    'profile',
    'server-cpus',
    'quiet-cores',
    'quiet-wait',
    'out',
  ]);
  for (const k of raw.keys())
    if (!known.has(k)) throw new Error(`unknown option --${k} (known: ${[...known].join(', ')})`);
  let v: string | undefined;
  if ((v = get('servers'))) o.servers = list(v);
  if ((v = get('actions'))) o.actions = list(v) as BenchAction[];
  if ((v = get('inflight'))) o.inflight = list(v).map((x) => num('inflight', x));
  if ((v = get('chargers'))) o.chargers = num('chargers', v);
  if ((v = get('reps'))) o.reps = num('reps', v);
  if ((v = get('duration'))) o.duration = num('duration', v);
  if ((v = get('warmup'))) o.warmup = num('warmup', v);
  if ((v = get('threads'))) o.threads = num('threads', v);
  if ((v = get('client'))) o.client = v as ClientKind;
  if ((v = get('version'))) o.version = v as BenchVersion;
  if ((v = get('router-state'))) o.routerState = v as RouterState;
  if ((v = get('router-config'))) o.routerConfig = JSON.parse(v) as Record<string, unknown>;
  if ((v = get('profile'))) o.profile = v === 'true' || v === '1';
  if ((v = get('server-cpus'))) {
    o.serverCpus = list(v).map((x) => num('server-cpus', x));
    const n = cpus().length;
    if (o.serverCpus.length === 0 || o.serverCpus.some((c) => !Number.isInteger(c) || c >= n))
      throw new Error(`--server-cpus must list CPU indices 0..${n - 1}, got "${v}"`);
    if (otherCpus(o.serverCpus).length === 0)
      throw new Error('--server-cpus must leave at least one CPU to the generator');
  }
  if ((v = get('quiet-cores'))) o.quietCores = num('quiet-cores', v);
  if ((v = get('quiet-wait'))) o.quietWaitSec = num('quiet-wait', v);
  if ((v = get('out'))) o.out = v;
  for (const s of o.servers)
    if (!SERVERS[s]) throw new Error(`unknown server "${s}" (known: ${Object.keys(SERVERS).join(', ')})`);
  for (const a of o.actions)
    if (!BENCH_ACTIONS.includes(a)) throw new Error(`unknown action "${a}" (known: ${BENCH_ACTIONS.join(', ')})`);
  if (!['raw', 'ws'].includes(o.client)) throw new Error('--client must be raw or ws');
  if (!['1.6', '2.0.1'].includes(o.version)) throw new Error('--version must be 1.6 or 2.0.1');
  if (!['redis', 'memory'].includes(o.routerState)) throw new Error('--router-state must be redis or memory');
  // The router's Redis is always the matrix's own throwaway server, never one given by URL
  // (the shared Redis on 6379 must not be written to or flushed by a benchmark).
  if ((o.routerConfig.redis as { url?: unknown } | undefined)?.url !== undefined)
    throw new Error(
      '--router-config must not set redis.url: use --router-state=redis (a throwaway redis-server) or memory',
    );
  if (o.chargers < 1 || o.chargers > 20000) throw new Error('--chargers must be 1..20000');
  if (o.reps < 1 || o.reps > 20) throw new Error('--reps must be 1..20');
  if (o.duration < 1 || o.duration > 120) throw new Error('--duration must be 1..120 seconds');
  if (o.warmup > 60) throw new Error('--warmup must be at most 60 seconds');
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

// ── servers ───────────────────────────────────────────────────────────────────────────────

/** What the matrix provides to the servers it starts. */
interface ServerEnv {
  /** URL of the matrix's redis-server, when one runs (--router-state=redis). */
  redisUrl: string | null;
}

interface ServerDef {
  script: string;
  describe: string;
  /** `env` omitted (bench/storm.ts): no Redis, the router keeps its state in process. */
  args(o: MatrixOptions, env?: ServerEnv): string[];
  nodeArgs?(o: MatrixOptions): string[];
  /** Keeps its state in the matrix's Redis under these options (its CPU is then measured beside). */
  usesRedis?(o: MatrixOptions): boolean;
}

export const SERVERS: Record<string, ServerDef> = {
  'uws-bare': {
    script: 'bench/reference/uws-bare.ts',
    describe: "bare uWebSockets.js: peek id, pre-built reply; no validation, no workers (the transport's limit)",
    args: () => [],
  },
  'ws-json': {
    script: 'bench/reference/ws-json.ts',
    describe: 'plain `ws` server: JSON.parse every frame, JSON.stringify a correct reply; no validation, no workers',
    args: () => [],
  },
  'ocpp-rpc': {
    script: 'bench/reference/ocpp-rpc.ts',
    describe: 'ocpp-rpc RPCServer, strictMode (official schemas validated both ways), per-client handlers; no workers',
    args: () => [],
  },
  router: {
    script: 'bench/reference/router.ts',
    describe:
      'this router via createRouter(): core plugin + bench Authorize fixture (one state read per message), analytics to a local spool',
    args: (o, env) => [
      JSON.stringify(
        mergeConfig(
          {
            pool: { threads: o.threads },
            ...(env?.redisUrl && o.routerState === 'redis' ? { redis: { url: env.redisUrl } } : {}),
          },
          o.routerConfig,
        ),
      ),
    ],
    usesRedis: (o) => o.routerState === 'redis',
    nodeArgs: (o) => (o.profile ? ['--cpu-prof', `--cpu-prof-dir=${join(root, 'bench/results/profiles')}`] : []),
  },
};

// ── one run ───────────────────────────────────────────────────────────────────────────────

function runLoadgen(opts: Partial<LoadOptions>): Promise<LoadResult> {
  const budgetMs = 120_000 + ((opts.warmupSec ?? 0) + (opts.durationSec ?? 0)) * 1000;
  return runResultChild<LoadResult>(join(root, 'bench/lib/loadgen.ts'), opts, budgetMs, root);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Before a run: the servers (and the matrix's Redis) idle (the previous run's disconnects
 * processed) and the rest of the machine quiet, each waited for within a bound. Returns the
 * foreign load last seen.
 */
export async function settle(pids: number[], o: MatrixOptions): Promise<{ waitedMs: number; foreignCores: number }> {
  const t0 = Date.now();
  let foreign: number;
  for (;;) {
    const s0 = pids.map((pid) => processCpuMs(pid));
    const m0 = machineCpuMs();
    const self0 = process.cpuUsage();
    await sleep(500);
    const s1 = pids.map((pid) => processCpuMs(pid));
    const m1 = machineCpuMs();
    const self = process.cpuUsage(self0);
    const serversMs = s1.reduce((n, v, i) => n + v - s0[i], 0);
    foreign = Math.max(0, (m1.busy - m0.busy - serversMs - (self.user + self.system) / 1000) / 500);
    const serversIdle = serversMs / 500 < 0.05;
    if ((serversIdle && foreign <= o.quietCores) || Date.now() - t0 > o.quietWaitSec * 1000) break;
  }
  return { waitedMs: Date.now() - t0, foreignCores: +foreign.toFixed(2) };
}

// ── the router's Redis ──────────────────────────────────────────────────────────────────

/** One RESP command on the matrix's own redis-server; its reply line, or an error. */
async function redisCall(redis: BenchRedis, command: string, expect: RegExp): Promise<string> {
  const reply = await redisCommand(redis.port, command, 5000);
  if (!expect.test(reply)) throw new Error(`redis-server on port ${redis.port}: ${command} answered "${reply}"`);
  return reply;
}

function redisVersion(pid: number): string {
  try {
    return /v=(\S+)/.exec(execFileSync(`/proc/${pid}/exe`, ['--version'], { encoding: 'utf8' }))?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

// ── the matrix ────────────────────────────────────────────────────────────────────────────

export interface RunRecord {
  rep: number;
  server: string;
  action: BenchAction;
  inflight: number;
  settle: { waitedMs: number; foreignCores: number };
  result: LoadResult;
  /**
   * The router's batches over the cell (warm-up and wind-down included; ServerHandle.stats):
   * how many frames each batch carried and the share run inline on the socket thread.
   */
  batches?: {
    batches: number;
    itemsPerBatch: number;
    inlineShare: number;
    analyticsDropped: number;
    analyticsRefused: number;
  };
}

/** Batch figures between two ServerHandle.stats() readings of the router. */
export function batchFigures(
  a: Record<string, number>,
  b: Record<string, number>,
): { batches: number; itemsPerBatch: number; inlineShare: number; analyticsDropped: number; analyticsRefused: number } {
  const worker = (b.workerBatches ?? 0) - (a.workerBatches ?? 0);
  const socket = (b.socketBatches ?? 0) - (a.socketBatches ?? 0);
  const batches = worker + socket;
  const items = (b.items ?? 0) - (a.items ?? 0);
  // Rows the router's analytics sinks dropped in the window (buffer or spool full): a run that
  // drops rows did less work than it answered for.
  const analyticsDropped = (b.analytics_dropped ?? 0) - (a.analytics_dropped ?? 0);
  // Messages it refused (InternalError, counted in the errors too) for want of analytics room.
  const analyticsRefused = (b.analytics_refused ?? 0) - (a.analytics_refused ?? 0);
  return {
    batches,
    itemsPerBatch: batches ? +(items / batches).toFixed(1) : 0,
    inlineShare: batches ? +(socket / batches).toFixed(3) : 0,
    analyticsDropped,
    analyticsRefused,
  };
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

export interface MatrixReport {
  kind: 'e2e-throughput';
  date: string;
  command: string;
  machine: { cpu: string; cores: number; memGiB: number; kernel: string; loadavgStart: number[]; loadavgEnd: number[] };
  node: { version: string; v8: string; uws: string; ws: string; ocppRpc: string };
  /** At the start of the run; `changedDuringRun` when HEAD or the working tree differed at the end. */
  git: { commit: string; dirty: boolean; changedDuringRun: boolean } | null;
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
  wallSeconds: number;
}

/** HEAD, whether the tree is dirty, and a fingerprint of the product sources (bench/ excluded). */
export function gitInfo(): { commit: string; dirty: boolean; fingerprint: string } | null {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
    const commit = git('rev-parse', 'HEAD').trim();
    const dirty = git('status', '--porcelain').trim().length > 0;
    const fingerprint = createHash('sha1')
      .update(commit)
      .update(git('diff', 'HEAD', '--', '.', ':(exclude)bench'))
      .update(git('status', '--porcelain', '--', '.', ':(exclude)bench'))
      .digest('hex');
    return { commit, dirty, fingerprint };
  } catch {
    return null;
  }
}

export function packageVersion(name: string): string {
  try {
    return execFileSync(process.execPath, ['-p', `require(${JSON.stringify(name + '/package.json')}).version`], {
      cwd: root,
      encoding: 'utf8',
    }).trim();
  } catch {
    return 'unknown';
  }
}

/** The references ratios are computed against, in the order their columns appear. */
export const RATIO_BASELINES = ['uws-bare', 'ocpp-rpc'] as const;

export function summarize(
  runs: RunRecord[],
  baselines: readonly string[] = RATIO_BASELINES,
): { cells: CellSummary[]; ratios: RatioSummary[] } {
  const key = (r: { server: string; action: string; inflight: number }) => `${r.server}|${r.action}|${r.inflight}`;
  const groups = new Map<string, RunRecord[]>();
  for (const r of runs) groups.set(key(r), [...(groups.get(key(r)) ?? []), r]);
  const cells: CellSummary[] = [];
  for (const rs of groups.values()) {
    const f = (g: (x: LoadResult) => number | undefined) => spread(rs.map((r) => g(r.result) ?? NaN));
    cells.push({
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
      errorKinds: rs.reduce(
        (k, r) => {
          const e = r.result.errors;
          for (const [name, v] of [
            ['CALLERROR', e.callError],
            ['timeout', e.timeout],
            ['closed', e.closed],
            ['unparsed', e.unparsed],
            ['connect', r.result.connect.failed],
          ] as const)
            if (v) k[name] = (k[name] ?? 0) + v;
          return k;
        },
        {} as Record<string, number>,
      ),
      errorSamples: rs.flatMap((r) => [...r.result.connect.failures, ...r.result.errors.samples]).slice(0, 5),
      generatorBound: rs.some((r) => r.result.generator.cores >= 0.9),
      itemsPerBatch: spread(rs.flatMap((r) => (r.batches ? [r.batches.itemsPerBatch] : []))),
      inlineShare: spread(rs.flatMap((r) => (r.batches ? [r.batches.inlineShare] : []))),
    });
  }
  const ratios: RatioSummary[] = [];
  for (const baseline of baselines) {
    if (!runs.some((r) => r.server === baseline)) continue;
    for (const c of cells) {
      // A server against itself, and the bare responder against anything, say nothing.
      if (c.server === baseline || c.server === 'uws-bare') continue;
      const mine = runs.filter((r) => key(r) === key(c));
      const tp: number[] = [];
      const cpu: number[] = [];
      for (const r of mine) {
        const b = runs.find(
          (x) => x.server === baseline && x.action === r.action && x.inflight === r.inflight && x.rep === r.rep,
        );
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
      `| ${c.action} | ${c.inflight} | ${c.server}${c.generatorBound ? ' ᵍ' : ''} | ${fmtSpread(c.rps)} | ${fmtSpread(c.p50Ms, 2)} | ${fmtSpread(c.p99Ms, 2)} | ${fmtSpread(c.p999Ms, 1)} | ${fmtSpread(c.serverCpuUsPerRt, 1)} |${withRedis ? ` ${fmtSpread(c.redisCpuUsPerRt, 1)} | ${fmtSpread(c.redisCores, 2)} |` : ''} ${fmtSpread(c.serverCores, 2)} | ${fmtSpread(c.generatorCores, 2)} | ${fmtSpread(c.foreignCores, 2)} | ${
        c.errors
          ? `${c.errors} (${Object.entries(c.errorKinds)
              .map(([k, v]) => `${v} ${k}`)
              .join(', ')})`
          : 0
      } |`,
    );
  }
  const batched = sorted.filter((c) => c.itemsPerBatch?.n);
  if (batched.length) {
    lines.push(
      '',
      'Router batches per cell (warm-up and wind-down included): frames per batch, and the share of batches run inline on the socket thread (the rest went to a worker), median (min–max).',
      '',
    );
    lines.push('| action | in flight | server | items per batch | inline share |', '|---|---:|---|---:|---:|');
    for (const c of batched)
      lines.push(
        `| ${c.action} | ${c.inflight} | ${c.server} | ${fmtSpread(c.itemsPerBatch, 1)} | ${fmtSpread(c.inlineShare, 2)} |`,
      );
  }
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
    const rows = new Map<string, RatioSummary[]>();
    for (const r of rep.ratios)
      rows.set(`${r.action}|${r.inflight}|${r.server}`, [
        ...(rows.get(`${r.action}|${r.inflight}|${r.server}`) ?? []),
        r,
      ]);
    const rs = [...rows.values()]
      .map((g) => g[0])
      .sort(
        (a, b) =>
          o.actions.indexOf(a.action) - o.actions.indexOf(b.action) ||
          a.inflight - b.inflight ||
          o.servers.indexOf(a.server) - o.servers.indexOf(b.server),
      );
    for (const r of rs) {
      const cols = bases.map((b) => {
        const x = rows.get(`${r.action}|${r.inflight}|${r.server}`)!.find((y) => y.baseline === b);
        return x ? `${fmtSpread(x.throughput, 2)} | ${fmtSpread(x.cpuPerRoundTrip, 2)}` : '– | –';
      });
      lines.push(`| ${r.action} | ${r.inflight} | ${r.server} | ${cols.join(' | ')} |`);
    }
  }
  return lines.join('\n');
}

export async function runMatrix(
  o: MatrixOptions,
  log: (s: string) => void = (s) => process.stderr.write(s + '\n'),
): Promise<MatrixReport> {
  const started = Date.now();
  const gitStart = gitInfo();
  const loadStart = loadavg().map((x) => +x.toFixed(2));
  const runs: RunRecord[] = [];
  const serverInfo: MatrixReport['servers'] = {};
  const pre: Record<string, unknown> = {};
  const cells = o.actions.flatMap((action) => o.inflight.map((inflight) => ({ action, inflight })));
  const total = o.reps * cells.length * o.servers.length;
  let n = 0;
  // Pinned: this process (and so every generator it spawns) to the other CPUs, each server
  // and the router's redis-server to serverCpus as they start.
  if (o.serverCpus) pinTo(process.pid, otherCpus(o.serverCpus));
  // One redis-server for the whole matrix, only when a server of it keeps its state there.
  const redis: BenchRedis | null = o.servers.some((s) => SERVERS[s].usesRedis?.(o)) ? await startRedis() : null;
  if (redis && o.serverCpus) pinTo(redis.pid, o.serverCpus);
  const redisInfo: MatrixReport['redis'] = redis && { version: redisVersion(redis.pid), port: redis.port, perRep: [] };
  if (redis) log(`redis-server ${redisInfo!.version} on port ${redis.port} (pid ${redis.pid}) for the router's state`);
  try {
    for (let rep = 1; rep <= o.reps; rep++) {
      const servers: ServerHandle[] = [];
      // Every repetition starts from an empty Redis (the router seeds what it needs at start).
      if (redis) await redisCall(redis, 'FLUSHALL', /^\+OK/);
      try {
        for (const name of o.servers) {
          const def = SERVERS[name];
          const h = await startServer(name, join(root, def.script), def.args(o, { redisUrl: redis?.url ?? null }), {
            nodeArgs: def.nodeArgs?.(o),
            cwd: root,
          });
          servers.push(h);
          if (o.serverCpus) pinTo(h.pid, o.serverCpus);
          const state = def.usesRedis
            ? def.usesRedis(o)
              ? "; state in the matrix's redis-server (its CPU reported apart)"
              : '; state in process'
            : '';
          serverInfo[name] ??= { describe: def.describe + state, threads: h.threads, config: h.info.config };
          let p = await preflight(h.port, o.version, o.actions);
          if (!p.ok && o.profile && p.problems.some((x) => x.startsWith('closed 1006'))) {
            // Seen only under --cpu-prof with state in Redis: uWS drops the first connection
            // right after the 101 (strace: shutdown + close, no close frame, no close() from
            // the router); later ones work. Not seen without the profiler; one retry.
            process.stderr.write(
              `${name}: pre-flight connection dropped under --profile (known profiler artefact); retrying once\n`,
            );
            p = await preflight(h.port, o.version, o.actions);
          }
          pre[`${name}#${rep}`] = p;
          if (!p.ok)
            throw new Error(
              `pre-flight failed for ${name}: ${JSON.stringify({ problems: p.problems, answers: p.answers })}`,
            );
        }
        for (const { action, inflight } of cells) {
          // Rotate the server order per repetition so slow drift (thermal, neighbours) spreads evenly.
          const order = servers.map((_, i) => servers[(i + rep - 1) % servers.length]);
          for (const h of order) {
            const s = await settle([...servers.map((x) => x.pid), ...(redis ? [redis.pid] : [])], o);
            const sidePids = redis && SERVERS[h.kind].usesRedis?.(o) ? { redis: redis.pid } : undefined;
            const st0 = await h.stats(); // the router's batch counters; null for the references
            const result = await runLoadgen({
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
            });
            const st1 = st0 ? await h.stats() : null;
            const batches = st0 && st1 ? batchFigures(st0, st1) : undefined;
            runs.push({ rep, server: h.kind, action, inflight, settle: s, result, ...(batches ? { batches } : {}) });
            n++;
            const w = result.window;
            log(
              `[${n}/${total}] rep ${rep} ${h.kind.padEnd(8)} ${action.padEnd(18)} k=${inflight}  ${String(w.rps).padStart(7)} rt/s  p50 ${(w.latencyUs.p50 / 1000).toFixed(2)} ms  p99 ${(w.latencyUs.p99 / 1000).toFixed(2)} ms  server ${result.server?.cpuUsPerRoundTrip ?? '?'} µs/rt (${result.server?.cores ?? '?'} cores)${result.side?.redis ? `  redis ${result.side.redis.cpuUsPerRoundTrip} µs/rt (${result.side.redis.cores} cores)` : ''}  gen ${result.generator.cores} cores  other ${result.machine.foreignCores} cores  errors ${result.errors.total + result.connect.failed}${batches ? `  batches ${batches.itemsPerBatch} items, ${Math.round(batches.inlineShare * 100)} % inline` : ''}${batches?.analyticsDropped ? `  ANALYTICS ROWS DROPPED ${batches.analyticsDropped}` : ''}${batches?.analyticsRefused ? `  REFUSED FOR ANALYTICS ROOM ${batches.analyticsRefused}` : ''}`,
            );
            if (result.connect.failed || result.errors.total)
              log(`    ${[...result.connect.failures, ...result.errors.samples].join('\n    ')}`);
            if (h.exited !== undefined && (await Promise.race([h.exited.then(() => true), sleep(0).then(() => false)])))
              throw new Error(`${h.kind} exited during the run; stderr:\n${h.stderr.join('\n')}`);
          }
        }
        if (redis) redisInfo!.perRep.push({ rep, keys: Number((await redisCall(redis, 'DBSIZE', /^:\d+$/)).slice(1)) });
      } finally {
        for (const h of servers) await h.stop();
      }
    }
  } finally {
    await redis?.stop();
  }
  const { cells: cellSummaries, ratios } = summarize(runs);
  const report: MatrixReport = {
    kind: 'e2e-throughput',
    date: new Date().toISOString(),
    command: o.command,
    machine: {
      cpu: cpus()[0]?.model ?? 'unknown',
      cores: cpus().length,
      memGiB: Math.round(totalmem() / 2 ** 30),
      kernel: release(),
      loadavgStart: loadStart,
      loadavgEnd: loadavg().map((x) => +x.toFixed(2)),
    },
    node: {
      version: process.version,
      v8: process.versions.v8,
      uws: packageVersion('uWebSockets.js'),
      ws: packageVersion('ws'),
      ocppRpc: packageVersion('ocpp-rpc'),
    },
    git: gitStart && {
      commit: gitStart.commit,
      dirty: gitStart.dirty,
      changedDuringRun: gitInfo()?.fingerprint !== gitStart.fingerprint,
    },
    options: o,
    servers: serverInfo,
    redis: redisInfo,
    preflight: pre,
    runs,
    cells: cellSummaries,
    ratios,
    wallSeconds: Math.round((Date.now() - started) / 1000),
  };
  if (o.out) {
    mkdirSync(dirname(o.out), { recursive: true });
    writeFileSync(o.out, JSON.stringify(report, null, 2) + '\n');
    log(`wrote ${rel(o.out)}`);
  }
  return report;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const o = parseArgs(process.argv.slice(2));
  o.command = `node --import tsx bench/e2e-throughput.ts ${process.argv.slice(2).join(' ')}`.trim();
  if (o.out) o.out = resolve(o.out);
  const report = await runMatrix(o);
  process.stdout.write(markdown(report) + '\n');
}
