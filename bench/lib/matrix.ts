/**
 * The harness the drivers share (e2e-throughput, open-loop, fleet-mix, fanout, storm): their
 * command line, the servers under test, the repetition loop that measures every server in the
 * same repetition, the wait for a quiet machine before a run, what a report records about the
 * machine, Node and git, and the pieces of JSON, markdown and log lines the reports have in
 * common. A driver keeps what is its own: its options, its generator, its cells, its figures.
 *
 *   runRepetitions:
 *   for each repetition:  [FLUSHALL the driver's redis-server]
 *     start every server fresh, in order, each checked by `ready` (the pre-flight)
 *     for each cell:  for each server, the order rotated per repetition:
 *       settle (servers idle, machine quiet; bounded) ─► run (the driver's generator) ─► still alive?
 *     afterRepetition, then stop the servers (also on failure)
 *
 * Owns: flag parsing (`--name=value`, and for e2e-throughput also `--name value`, bare flags and
 * BENCH_<NAME>), SERVERS (the scripts, their arguments, whether they keep state in Redis),
 * settle(), runRepetitions(), the router's batch figures, the report's machine / versions / git
 * records, writing the JSON. Must not: generate load (each driver's generator runs in its own
 * process), reach into core/ (the router is bench/reference/router.ts, through createRouter
 * only), or touch any Redis but the throwaway ones of bench/lib/redis-server.ts.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { mergeConfig } from '../../core/index.js';
import { redisCommand, type BenchRedis } from './redis-server.js';
import { machineCpuMs, processCpuMs, runResultChild, startServer, type ServerHandle } from './proc.js';
import { fmtSpread, spread, type Spread } from './stats.js';
import type { PreflightResult } from './preflight.js';

/** The repository's root: servers and generators run with it as their working directory. */
export const root = join(import.meta.dirname, '../..');
export const rel = (p: string): string => relative(root, p);

export const sleep = (ms: number): Promise<void> => new Promise<void>((r) => setTimeout(r, ms));

/** Progress and diagnostics go to stderr; stdout carries the markdown report only. */
export const log = (s: string): void => {
  process.stderr.write(s + '\n');
};

/** True when the module at `url` is the script node was started with. */
export const isMain = (url: string): boolean => url === `file://${process.argv[1]}`;

/** The command line a report records as the one that produced it. */
export const commandLine = (script: string, argv: readonly string[]): string =>
  `node --import tsx ${script} ${argv.join(' ')}`.trim();

/** Ends the process with `code` after `ms`, whatever is still running: a run must stay bounded. */
export function exitAfter(ms: number, message: string, code: number): void {
  setTimeout(() => {
    process.stderr.write(message + '\n');
    process.exit(code);
  }, ms).unref();
}

// ── command line ──────────────────────────────────────────────────────────────────────────

/** How a flag's text becomes its option value. */
export type FlagKind = 'str' | 'num' | 'nums' | 'list' | 'json' | 'path' | 'bool';

/** Flag name → [option field, kind]. Every flag a driver accepts is listed here (or in `extra`). */
export type FlagSpec<O> = Record<string, readonly [keyof O & string, FlagKind]>;

export interface FlagStyle {
  /**
   * Also `--name value` and a bare `--flag` (= true), and BENCH_<NAME> from the environment
   * when the flag is absent (e2e-throughput, so that `npm run bench` takes BENCH_CHARGERS=500).
   * Otherwise every argument is `--name=value`, except the `booleans`.
   */
  loose?: boolean;
  /** Flags that may stand alone (= true). */
  booleans?: readonly string[];
  /** Flags the driver reads itself through `get` (not copied into an option field). */
  extra?: readonly string[];
}

/** Flags several drivers take, each with the option field it sets. */
const SHARED_FLAGS = {
  servers: ['servers', 'list'],
  actions: ['actions', 'list'],
  chargers: ['chargers', 'num'],
  reps: ['reps', 'num'],
  duration: ['duration', 'num'],
  warmup: ['warmup', 'num'],
  drain: ['drain', 'num'],
  threads: ['threads', 'num'],
  version: ['version', 'str'],
  'router-state': ['routerState', 'str'],
  'router-config': ['routerConfig', 'json'],
  'quiet-cores': ['quietCores', 'num'],
  'quiet-wait': ['quietWaitSec', 'num'],
  out: ['out', 'path'],
} as const;

type SharedFlags = typeof SHARED_FLAGS;
/** The shared flags whose option field `O` has. */
type SharedFlagOf<O> = { [K in keyof SharedFlags]: SharedFlags[K][0] extends keyof O ? K : never }[keyof SharedFlags];

/** A driver's flags: the `shared` ones it takes, then its own (an own entry overrides a shared one). */
export function flagSpec<O extends object>(shared: readonly SharedFlagOf<O>[], own: FlagSpec<O> = {}): FlagSpec<O> {
  return { ...Object.fromEntries(shared.map((k) => [k, SHARED_FLAGS[k]])), ...own } as FlagSpec<O>;
}

export const splitList = (s: string): string[] =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);

function nonNegative(flag: string, s: string): number {
  const n = Number(s);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${flag} must be a non-negative number, got "${s}"`);
  return n;
}

function convert(flag: string, kind: FlagKind, v: string): unknown {
  switch (kind) {
    case 'str':
      return v;
    case 'num':
      return nonNegative(flag, v);
    case 'nums':
      return splitList(v).map((x) => nonNegative(flag, x));
    case 'list':
      return splitList(v);
    case 'json':
      return JSON.parse(v) as unknown;
    case 'path':
      return resolve(v);
    case 'bool':
      return v === 'true' || v === '1';
  }
}

/**
 * `defaults` with the flags of `argv` applied as `spec` says; unknown flags are an error that
 * lists the known ones. An empty value (`--out=`) counts as absent. Range checks are the
 * driver's, after this.
 */
export function parseFlags<O extends object>(
  argv: readonly string[],
  defaults: O,
  spec: FlagSpec<O>,
  style: FlagStyle = {},
): { o: O; get: (flag: string) => string | undefined } {
  const raw = new Map<string, string>();
  const booleans = new Set(style.booleans ?? []);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (style.loose) {
      if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
      const eq = a.indexOf('=');
      if (eq > 0) raw.set(a.slice(2, eq), a.slice(eq + 1));
      else if (argv[i + 1] !== undefined && !argv[i + 1].startsWith('--')) raw.set(a.slice(2), argv[++i]);
      else raw.set(a.slice(2), 'true');
      continue;
    }
    const m = /^--([a-z-]+)(?:=(.*))?$/s.exec(a);
    if (m?.[2] !== undefined) raw.set(m[1], m[2]);
    else if (m && booleans.has(m[1])) raw.set(m[1], 'true');
    else throw new Error(`expected --name=value, got ${a}`);
  }
  const known = [...Object.keys(spec), ...(style.extra ?? [])];
  for (const k of raw.keys())
    if (!known.includes(k)) throw new Error(`unknown option --${k} (known: ${known.join(', ')})`);
  const get = (flag: string): string | undefined => {
    const v =
      raw.get(flag) ?? (style.loose ? process.env[`BENCH_${flag.replace(/-/g, '_').toUpperCase()}`] : undefined);
    return v === '' ? undefined : v;
  };
  const o = { ...defaults };
  for (const [flag, [field, kind]] of Object.entries(spec)) {
    const v = get(flag);
    if (v !== undefined) (o as Record<string, unknown>)[field] = convert(flag, kind, v);
  }
  return { o, get };
}

/** Throws unless every name is one of `known` (`what`: "server", "action"). */
export function requireKnown(what: string, names: readonly string[], known: readonly string[]): void {
  for (const n of names) if (!known.includes(n)) throw new Error(`unknown ${what} "${n}" (known: ${known.join(', ')})`);
}

export function requireVersion(version: string): void {
  if (!['1.6', '2.0.1'].includes(version)) throw new Error('--version must be 1.6 or 2.0.1');
}

/** The bounds every repeated driver puts on its repetitions and time windows (seconds). */
export function requireTiming(t: { reps: number; duration?: number; warmup?: number; drain?: number }): void {
  if (t.reps < 1 || t.reps > 20) throw new Error('--reps must be 1..20');
  if (t.duration !== undefined && (t.duration < 1 || t.duration > 120))
    throw new Error('--duration must be 1..120 seconds');
  if (t.warmup !== undefined && t.warmup > 60) throw new Error('--warmup must be at most 60 seconds');
  if (t.drain !== undefined && (t.drain < 0.1 || t.drain > 60)) throw new Error('--drain must be 0.1..60 seconds');
}

/** One generator process holds the fleet: its file descriptors bound it. */
export function requireOneGeneratorFleet(chargers: number): void {
  if (!Number.isInteger(chargers) || chargers < 1 || chargers > 5000)
    throw new Error('--chargers must be 1..5000 (one generator process)');
}

/**
 * The router's Redis is always a throwaway redis-server the driver starts, never one given by
 * URL: the shared Redis on 6379 must not be written to or flushed by a benchmark.
 */
export function refuseRedisUrl(routerConfig: Record<string, unknown>): void {
  if ((routerConfig.redis as { url?: unknown } | undefined)?.url !== undefined)
    throw new Error(
      '--router-config must not set redis.url: use --router-state=redis (a throwaway redis-server) or memory',
    );
}

// ── servers ───────────────────────────────────────────────────────────────────────────────

export type RouterState = 'redis' | 'memory';

/** What SERVERS read of a driver's options. */
export interface ServerOptions {
  /** Router worker threads (pool.threads; 0 = one per core). */
  threads: number;
  /** `redis`: in the driver's throwaway redis-server (its URL in ServerEnv); `memory`: in process. */
  routerState: RouterState;
  /** Extra router configuration, merged over the bench defaults (never `redis.url`). */
  routerConfig: Record<string, unknown>;
  /** Run the router under --cpu-prof (profiles in bench/results/profiles). */
  profile: boolean;
  /** Checkout of another commit that `router-base` runs (bench/lib/baseline.ts). */
  baselineDir?: string;
}

/** What a driver provides to the servers it starts. */
export interface ServerEnv {
  /** URL of the driver's redis-server, when one runs. */
  redisUrl: string | null;
}

export interface ServerDef {
  script: string;
  /** Where the script and its code are (default: this checkout). */
  root?(o: ServerOptions): string;
  describe: string;
  /** `env` omitted: no Redis runs, the router keeps its state in process. */
  args(o: ServerOptions, env?: ServerEnv): string[];
  nodeArgs?(o: ServerOptions): string[];
  /** Keeps its state in the driver's Redis under these options (its CPU is then measured beside). */
  usesRedis?(o: ServerOptions): boolean;
}

/** How bench/reference/router.ts is run, whichever commit's it is. */
const ROUTER_RUN: Pick<ServerDef, 'args' | 'usesRedis' | 'nodeArgs'> = {
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
};

/**
 * The servers every WebSocket driver compares (a script printing its ready line, see
 * bench/lib/proc.ts); fanout has operator-route variants of the references beside these.
 */
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
    ...ROUTER_RUN,
  },
  'router-base': {
    script: 'bench/reference/router.ts',
    describe:
      "the router of the --baseline commit, run by its own bench/reference/router.ts, with this checkout's options",
    root: (o) => {
      if (!o.baselineDir) throw new Error('server router-base needs --baseline=<git revision>');
      return o.baselineDir;
    },
    ...ROUTER_RUN,
  },
};

/** Whether any of `servers` keeps its state in Redis under `o` (the driver then starts one). */
export const needsRedis = (servers: readonly string[], o: ServerOptions): boolean =>
  servers.some((s) => SERVERS[s].usesRedis?.(o));

/** Starts `script` (relative to the root) as server `name`, fresh, and waits for its ready line. */
export const startScript = (
  name: string,
  script: string,
  args: string[],
  nodeArgs?: string[],
  dir: string = root,
): Promise<ServerHandle> => startServer(name, join(dir, script), args, { nodeArgs, cwd: dir });

/** Starts SERVERS[name] under `o`; the router keeps its state in `redis` when `o` says so. */
export function startServerOf(name: string, o: ServerOptions, redis: BenchRedis | null = null): Promise<ServerHandle> {
  const def = SERVERS[name];
  return startScript(name, def.script, def.args(o, { redisUrl: redis?.url ?? null }), def.nodeArgs?.(o), def.root?.(o));
}

/**
 * Records a server's pre-flight under `<server>#<rep>` and stops the run if it failed: a
 * server whose answers are wrong measures something else.
 */
export function requirePreflight(
  record: Record<string, unknown>,
  h: ServerHandle,
  rep: number,
  p: PreflightResult,
): void {
  record[`${h.kind}#${rep}`] = p;
  if (!p.ok)
    throw new Error(`pre-flight failed for ${h.kind}: ${JSON.stringify({ problems: p.problems, answers: p.answers })}`);
}

/** One RESP command on a driver's own redis-server; its reply line, or an error. */
export async function redisCall(redis: BenchRedis, command: string, expect: RegExp): Promise<string> {
  const reply = await redisCommand(redis.port, command, 5000);
  if (!expect.test(reply)) throw new Error(`redis-server on port ${redis.port}: ${command} answered "${reply}"`);
  return reply;
}

export function redisVersion(pid: number): string {
  try {
    return /v=(\S+)/.exec(execFileSync(`/proc/${pid}/exe`, ['--version'], { encoding: 'utf8' }))?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

// ── the repetition loop ───────────────────────────────────────────────────────────────────

export interface Quiet {
  /** Wait (bounded) before each run until other processes use less than this many cores. */
  quietCores: number;
  quietWaitSec: number;
}

export interface Settled {
  waitedMs: number;
  /** Cores busy with neither the servers, their Redis nor this process, last seen. */
  foreignCores: number;
}

/**
 * Before a run: the servers (and the driver's Redis) idle, so the previous run's disconnects
 * are processed, and the rest of the machine quiet, each waited for within a bound.
 */
export async function settle(pids: readonly number[], q: Quiet): Promise<Settled> {
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
    if ((serversIdle && foreign <= q.quietCores) || Date.now() - t0 > q.quietWaitSec * 1000) break;
  }
  return { waitedMs: Date.now() - t0, foreignCores: +foreign.toFixed(2) };
}

export interface RunContext<C> {
  h: ServerHandle;
  cell: C;
  rep: number;
  settle: Settled;
  /** `[n/total]`, for the run's log line. */
  progress: string;
}

export interface RepetitionPlan<C> {
  reps: number;
  servers: readonly string[];
  cells: readonly C[];
  quiet: Quiet;
  /**
   * The driver's redis-server, if one runs: emptied before every repetition (the router seeds
   * what it needs at start) and, like the servers, idle before every run.
   */
  redis?: BenchRedis | null;
  /** Starts one server, fresh. */
  start(name: string, rep: number): Promise<ServerHandle>;
  /** Checks a started server before anything is measured (the pre-flight); throws to stop. */
  ready?(h: ServerHandle, rep: number): Promise<void>;
  /** One measurement: `cell` on server `h`. */
  run(x: RunContext<C>): Promise<void>;
  /** After the repetition's last run, before its servers stop. */
  afterRepetition?(rep: number): Promise<void>;
}

/**
 * Every server is started fresh per repetition and all are measured in it, cell by cell, so a
 * ratio between two servers compares runs minutes apart at most; the order is rotated per
 * repetition so slow drift (thermal, neighbours) spreads evenly over the servers.
 */
export async function runRepetitions<C>(p: RepetitionPlan<C>): Promise<void> {
  const total = p.reps * p.cells.length * p.servers.length;
  let n = 0;
  for (let rep = 1; rep <= p.reps; rep++) {
    if (p.redis) await redisCall(p.redis, 'FLUSHALL', /^\+OK/);
    const servers: ServerHandle[] = [];
    try {
      for (const name of p.servers) {
        const h = await p.start(name, rep);
        servers.push(h);
        await p.ready?.(h, rep);
      }
      for (const cell of p.cells) {
        const order = servers.map((_, i) => servers[(i + rep - 1) % servers.length]);
        for (const h of order) {
          const s = await settle([...servers.map((x) => x.pid), ...(p.redis ? [p.redis.pid] : [])], p.quiet);
          await p.run({ h, cell, rep, settle: s, progress: `[${++n}/${total}]` });
          if (await Promise.race([h.exited.then(() => true), sleep(0).then(() => false)]))
            throw new Error(`${h.kind} exited during the run; stderr:\n${h.stderr.join('\n')}`);
        }
      }
      await p.afterRepetition?.(rep);
    } finally {
      for (const h of servers) await h.stop();
    }
  }
}

/** Runs a generator script (relative to the root) in its own process; see runResultChild. */
export const runGenerator = <T>(script: string, opts: unknown, budgetMs: number): Promise<T> =>
  runResultChild<T>(join(root, script), opts, budgetMs, root);

/** A generator's budget: its timed phases plus two minutes for connecting and closing. */
export const generatorBudgetMs = (timedSec: number): number => 120_000 + timedSec * 1000;

// ── the router's batches ──────────────────────────────────────────────────────────────────

/**
 * The router's batches over a run (warm-up and wind-down included; ServerHandle.stats): how
 * many frames each batch carried and the share run inline on the socket thread; analytics
 * rows dropped (a run that drops rows did less work than it answered for) and messages refused
 * for want of analytics room (InternalError, counted in the errors too).
 */
export interface BatchFigures {
  batches: number;
  itemsPerBatch: number;
  inlineShare: number;
  analyticsDropped: number;
  analyticsRefused: number;
}

/** Batch figures between two ServerHandle.stats() readings of the router. */
export function batchFigures(a: Record<string, number>, b: Record<string, number>): BatchFigures {
  const worker = (b.workerBatches ?? 0) - (a.workerBatches ?? 0);
  const socket = (b.socketBatches ?? 0) - (a.socketBatches ?? 0);
  const batches = worker + socket;
  const items = (b.items ?? 0) - (a.items ?? 0);
  return {
    batches,
    itemsPerBatch: batches ? +(items / batches).toFixed(1) : 0,
    inlineShare: batches ? +(socket / batches).toFixed(3) : 0,
    analyticsDropped: (b.analytics_dropped ?? 0) - (a.analytics_dropped ?? 0),
    analyticsRefused: (b.analytics_refused ?? 0) - (a.analytics_refused ?? 0),
  };
}

/** `measure()` with the server's batch counters read around it (undefined for the references). */
export async function withBatches<T>(
  h: ServerHandle,
  measure: () => Promise<T>,
): Promise<{ result: T; batches?: BatchFigures }> {
  const st0 = await h.stats();
  const result = await measure();
  const st1 = st0 ? await h.stats() : null;
  return st0 && st1 ? { result, batches: batchFigures(st0, st1) } : { result };
}

/** The log line's batch note, '' without batches. */
export const batchNote = (b: BatchFigures | undefined): string =>
  b ? `  batches ${b.itemsPerBatch} items, ${Math.round(b.inlineShare * 100)} % inline` : '';

/** Markdown: frames per batch and the share run inline, one row per router cell. */
export function batchTable(
  intro: string,
  cellColumn: string,
  rows: readonly { action: string; cell: string; server: string; itemsPerBatch: Spread; inlineShare: Spread }[],
): string[] {
  return [
    '',
    intro,
    '',
    `| action | ${cellColumn} | server | items per batch | inline share |`,
    '|---|---:|---|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.action} | ${r.cell} | ${r.server} | ${fmtSpread(r.itemsPerBatch, 1)} | ${fmtSpread(r.inlineShare, 2)} |`,
    ),
  ];
}

// ── aggregation ───────────────────────────────────────────────────────────────────────────

/** `items` grouped by `key`, groups in order of first appearance. */
export function groupBy<T>(items: readonly T[], key: (t: T) => string): T[][] {
  const groups = new Map<string, T[]>();
  for (const t of items) {
    const k = key(t);
    const g = groups.get(k);
    if (g) g.push(t);
    else groups.set(k, [t]);
  }
  return [...groups.values()];
}

/** Median and range over the repetitions of one figure (absent values are left out). */
export const spreadOf =
  <R>(rs: readonly R[]) =>
  (g: (r: R) => number | undefined): Spread =>
    spread(rs.map((r) => g(r) ?? NaN));

/**
 * The run of `baseline` in the same repetition and cell as `r`: ratios are taken per
 * repetition, between runs minutes apart, not between medians of different hours.
 */
export const baselineOf = <R extends { server: string; rep: number }>(
  runs: readonly R[],
  r: R,
  baseline: string,
  sameCell: (a: R, b: R) => boolean,
): R | undefined => runs.find((x) => x.server === baseline && x.rep === r.rep && sameCell(x, r));

/** Counts by kind summed over runs; kinds that never occurred are left out. */
export function countKinds<R>(rs: readonly R[], kinds: (r: R) => readonly (readonly [string, number])[]) {
  const out: Record<string, number> = {};
  for (const r of rs) for (const [k, v] of kinds(r)) if (v) out[k] = (out[k] ?? 0) + v;
  return out;
}

/** A generator result's connect failures and error samples. */
export const samplesOf = (r: { connect: { failures: string[] }; errors: { samples: string[] } }): string[] => [
  ...r.connect.failures,
  ...r.errors.samples,
];

/** `3 CALLERROR, 1 closed`. */
export const fmtKinds = (kinds: Record<string, number>): string =>
  Object.entries(kinds)
    .map(([k, v]) => `${v} ${k}`)
    .join(', ');

/** `0`, or `4 (3 CALLERROR, 1 closed)`. */
export const fmtErrors = (n: number, kinds: Record<string, number>): string => (n ? `${n} (${fmtKinds(kinds)})` : '0');

/** A run's connect failures and error samples, indented under its log line. */
export function logSamples(
  result: { connect: { failed: number; failures: string[] }; errors: { total: number; samples: string[] } },
  out: (s: string) => void = log,
): void {
  if (result.connect.failed || result.errors.total) out(`    ${samplesOf(result).join('\n    ')}`);
}

// ── what a report records ─────────────────────────────────────────────────────────────────

export interface MachineInfo {
  cpu: string;
  cores: number;
  memGiB: number;
  kernel: string;
}

export function machineInfo(): MachineInfo {
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
  };
}

/** The machine as a report records it: with the load average at the run's start and end. */
export type RecordedMachine = MachineInfo & { loadavgStart: number[]; loadavgEnd: number[] };

/** At the start of the run; `changedDuringRun` when HEAD or the product sources differed at the end. */
export type GitRecord = { commit: string; dirty: boolean; changedDuringRun: boolean } | null;

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

/** HEAD, abbreviated as git abbreviates it; 'unknown' outside a checkout. */
export function shortCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
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

const VERSIONS = {
  version: () => process.version,
  v8: () => process.versions.v8,
  uws: () => packageVersion('uWebSockets.js'),
  ws: () => packageVersion('ws'),
  ocppRpc: () => packageVersion('ocpp-rpc'),
};

/** Node's and the compared packages' versions, the fields in the order given. */
export function versions<K extends keyof typeof VERSIONS>(...keys: K[]): Record<K, string> {
  return Object.fromEntries(keys.map((k) => [k, VERSIONS[k]()])) as Record<K, string>;
}

const loadNow = () => loadavg().map((x) => +x.toFixed(2));

/**
 * Starts recording a run: when it started, git and the load average at the start. The report
 * then takes the machine (load average at start and end), git (and whether the product
 * sources changed during the run) and the wall time from it.
 */
export function startRecording() {
  const started = Date.now();
  const gitStart = gitInfo();
  const loadavgStart = loadNow();
  return {
    machine: (): RecordedMachine => ({
      ...machineInfo(),
      loadavgStart,
      loadavgEnd: loadNow(),
    }),
    git: (): GitRecord =>
      gitStart && {
        commit: gitStart.commit,
        dirty: gitStart.dirty,
        changedDuringRun: gitInfo()?.fingerprint !== gitStart.fingerprint,
      },
    wallSeconds: () => Math.round((Date.now() - started) / 1000),
  };
}

/** What the reports of the repeated drivers (not storm) record beside their own fields. */
export interface ReportHead {
  date: string;
  /** The command line that produced the report. */
  command: string;
  machine: RecordedMachine;
  git: GitRecord;
  /** Per server: what it is, and its worker threads. */
  servers: Record<string, { describe: string; threads: number }>;
  wallSeconds: number;
}

/** Writes the report (every run, every option) as JSON to `out` and says where. */
export function writeReport(out: string, report: unknown, say: (s: string) => void = log): void {
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
  say(`wrote ${rel(out)}`);
}
