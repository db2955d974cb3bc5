/**
 * open-loop: latency at a fixed offered load (issue #3). N chargers send CALLs of one action on
 * a fixed schedule, R per second in all, without waiting for replies (bench/lib/open-loop-gen.ts,
 * its own process); latency is counted from each CALL's intended send time, so a stall of the
 * server shows in full (no coordinated omission). Each server of the e2e matrix (SERVERS of
 * e2e-throughput.ts) in its own fresh process, measured in the same repetition. The target of
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
 * Owns: the rates × actions × servers × repetitions loop, aggregation and the report. Must
 * not: generate load itself, or reach into core/ (servers are SERVERS of e2e-throughput.ts).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem, release } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import {
  DEFAULT_MATRIX,
  SERVERS,
  batchFigures,
  gitInfo,
  packageVersion,
  settle,
  type MatrixOptions,
  type RouterState,
} from './e2e-throughput.js';
import { redisCommand, startRedis } from './lib/redis-server.js';
import { preflight } from './lib/preflight.js';
import { runResultChild, startServer, type ServerHandle } from './lib/proc.js';
import { spread, fmtSpread, type Spread } from './lib/stats.js';
import { BENCH_ACTIONS, type BenchAction, type BenchVersion } from './lib/ocpp-payloads.js';
import type { OpenLoopOptions, OpenLoopResult } from './lib/open-loop-gen.js';

const root = join(import.meta.dirname, '..');

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

function parse(argv: string[]): OpenLoopMatrix {
  const o: OpenLoopMatrix = { ...DEFAULTS };
  const list = (v: string) =>
    v
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  for (const a of argv) {
    const m = /^--([a-z-]+)=(.*)$/.exec(a);
    if (!m) throw new Error(`expected --name=value, got ${a}`);
    const [, k, v] = m as unknown as [string, string, string];
    const num = (s = v) => {
      const n = Number(s);
      if (!Number.isFinite(n) || n < 0) throw new Error(`--${k} must be a non-negative number, got "${s}"`);
      return n;
    };
    if (k === 'servers') o.servers = list(v);
    else if (k === 'actions') o.actions = list(v) as BenchAction[];
    else if (k === 'rates') o.rates = list(v).map((x) => num(x));
    else if (k === 'chargers') o.chargers = num();
    else if (k === 'reps') o.reps = num();
    else if (k === 'duration') o.duration = num();
    else if (k === 'warmup') o.warmup = num();
    else if (k === 'drain') o.drain = num();
    else if (k === 'threads') o.threads = num();
    else if (k === 'version') o.version = v as BenchVersion;
    else if (k === 'router-config') o.routerConfig = JSON.parse(v) as Record<string, unknown>;
    else if (k === 'router-state') {
      if (v !== 'memory' && v !== 'redis') throw new Error('--router-state must be memory or redis');
      o.routerState = v;
    } else if (k === 'quiet-cores') o.quietCores = num();
    else if (k === 'quiet-wait') o.quietWaitSec = num();
    else if (k === 'out') o.out = resolve(v);
    else
      throw new Error(
        `unknown option --${k} (known: servers, actions, rates, chargers, reps, duration, warmup, drain, threads, version, router-config, router-state, quiet-cores, quiet-wait, out)`,
      );
  }
  for (const s of o.servers)
    if (!SERVERS[s]) throw new Error(`unknown server "${s}" (known: ${Object.keys(SERVERS).join(', ')})`);
  for (const a of o.actions)
    if (!BENCH_ACTIONS.includes(a)) throw new Error(`unknown action "${a}" (known: ${BENCH_ACTIONS.join(', ')})`);
  if (!['1.6', '2.0.1'].includes(o.version)) throw new Error('--version must be 1.6 or 2.0.1');
  if (!Number.isInteger(o.chargers) || o.chargers < 1 || o.chargers > 5000)
    throw new Error('--chargers must be 1..5000 (one generator process)');
  for (const r of o.rates) if (r < 1 || r > 200_000) throw new Error('--rates values must be 1..200000 messages/s');
  if (o.reps < 1 || o.reps > 20) throw new Error('--reps must be 1..20');
  if (o.duration < 1 || o.duration > 120) throw new Error('--duration must be 1..120 seconds');
  if (o.warmup > 60) throw new Error('--warmup must be at most 60 seconds');
  if (o.drain < 0.1 || o.drain > 60) throw new Error('--drain must be 0.1..60 seconds');
  if ((o.routerConfig.redis as { url?: unknown } | undefined)?.url !== undefined)
    throw new Error('--router-config must not set redis.url: use --router-state=redis (a throwaway redis-server)');
  return o;
}

/** The e2e matrix options SERVERS and settle() read. */
function matrixFor(o: OpenLoopMatrix): MatrixOptions {
  return {
    ...DEFAULT_MATRIX,
    threads: o.threads,
    version: o.version,
    routerConfig: o.routerConfig,
    routerState: o.routerState,
    quietCores: o.quietCores,
    quietWaitSec: o.quietWaitSec,
    profile: process.env.BENCH_PROFILE === '1',
  };
}

function runGenerator(
  opts: Partial<OpenLoopOptions> & Pick<OpenLoopOptions, 'port' | 'action'>,
  o: OpenLoopMatrix,
): Promise<OpenLoopResult> {
  const budgetMs = 120_000 + (o.warmup + o.duration + o.drain) * 1000;
  return runResultChild<OpenLoopResult>(join(root, 'bench/lib/open-loop-gen.ts'), opts, budgetMs, root);
}

// ── aggregation ───────────────────────────────────────────────────────────────────────────

export interface OpenLoopRun {
  rep: number;
  server: string;
  action: BenchAction;
  rate: number;
  settle: { waitedMs: number; foreignCores: number };
  result: OpenLoopResult;
  /** The router's batches over the cell (e2e-throughput's batchFigures): frames per batch, share run inline. */
  batches?: ReturnType<typeof batchFigures>;
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

function summarize(runs: OpenLoopRun[]): OpenLoopCell[] {
  const key = (r: { server: string; action: string; rate: number }) => `${r.server}|${r.action}|${r.rate}`;
  const groups = new Map<string, OpenLoopRun[]>();
  for (const r of runs) groups.set(key(r), [...(groups.get(key(r)) ?? []), r]);
  const cells: OpenLoopCell[] = [];
  for (const rs of groups.values()) {
    const f = (g: (x: OpenLoopResult) => number | undefined) => spread(rs.map((r) => g(r.result) ?? NaN));
    const overBare = rs.map((r) => {
      const b = runs.find(
        (x) => x.server === 'uws-bare' && x.action === r.action && x.rate === r.rate && x.rep === r.rep,
      );
      return b && r.server !== 'uws-bare'
        ? (r.result.window.latencyUs.p99 - b.result.window.latencyUs.p99) / 1000
        : NaN;
    });
    cells.push({
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
      itemsPerBatch: spread(rs.filter((r) => r.batches).map((r) => r.batches!.itemsPerBatch)),
      inlineShare: spread(rs.filter((r) => r.batches).map((r) => r.batches!.inlineShare)),
      missing: rs.reduce((n, r) => n + r.result.missing, 0),
      scheduled: rs.reduce((n, r) => n + r.result.window.scheduled, 0),
      errors: rs.reduce((n, r) => n + r.result.errors.total + r.result.connect.failed, 0),
      errorKinds: rs.reduce(
        (k, r) => {
          const e = r.result.errors;
          for (const [name, v] of [
            ['CALLERROR', e.callError],
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
      keptUp: rs.every(
        (r) => r.result.missing === 0 && r.result.window.replyRate >= 0.98 * r.result.window.offeredRate,
      ),
      generatorBehind: rs.some((r) => r.result.window.sendRate < 0.98 * r.result.window.offeredRate),
    });
  }
  return cells;
}

interface OpenLoopReport {
  kind: 'open-loop';
  date: string;
  command: string;
  machine: { cpu: string; cores: number; memGiB: number; kernel: string; loadavgStart: number[]; loadavgEnd: number[] };
  node: { version: string; uws: string; ws: string; ocppRpc: string };
  git: { commit: string; dirty: boolean; changedDuringRun: boolean } | null;
  options: OpenLoopMatrix;
  servers: Record<string, { describe: string; threads: number }>;
  preflight: Record<string, unknown>;
  runs: OpenLoopRun[];
  cells: OpenLoopCell[];
  wallSeconds: number;
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
    const errs = c.errors
      ? `${c.errors} (${Object.entries(c.errorKinds)
          .map(([k, v]) => `${v} ${k}`)
          .join(', ')})`
      : '0';
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
  if (batched.length) {
    L.push(
      '',
      'Router batches per cell (warm-up and drain included): frames per batch, and the share of batches run inline on the socket thread (the rest went to a worker), median (min–max).',
      '',
    );
    L.push('| action | offered msg/s | server | items per batch | inline share |', '|---|---:|---|---:|---:|');
    for (const c of batched)
      L.push(
        `| ${c.action} | ${c.rate.toLocaleString('en-US')} | ${c.server} | ${fmtSpread(c.itemsPerBatch, 1)} | ${fmtSpread(c.inlineShare, 2)} |`,
      );
  }
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

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function main(o: OpenLoopMatrix, command: string, log: (s: string) => void): Promise<OpenLoopReport> {
  const started = Date.now();
  const gitStart = gitInfo();
  const loadStart = loadavg().map((x) => +x.toFixed(2));
  const m = matrixFor(o);
  const runs: OpenLoopRun[] = [];
  const serverInfo: OpenLoopReport['servers'] = {};
  const pre: Record<string, unknown> = {};
  const cells = o.actions.flatMap((action) => o.rates.map((rate) => ({ action, rate })));
  const total = o.reps * cells.length * o.servers.length;
  let n = 0;
  const redis = o.servers.some((s) => SERVERS[s].usesRedis?.(m)) ? await startRedis() : null;
  if (redis) log(`redis-server on port ${redis.port} (pid ${redis.pid}) for the router's state`);
  try {
    for (let rep = 1; rep <= o.reps; rep++) {
      const servers: ServerHandle[] = [];
      if (redis) {
        const reply = await redisCommand(redis.port, 'FLUSHALL', 5000);
        if (reply !== '+OK') throw new Error(`redis-server FLUSHALL answered ${reply}`);
      }
      try {
        for (const name of o.servers) {
          const def = SERVERS[name];
          const h = await startServer(name, join(root, def.script), def.args(m, { redisUrl: redis?.url ?? null }), {
            nodeArgs: def.nodeArgs?.(m),
            cwd: root,
          });
          servers.push(h);
          serverInfo[name] ??= {
            describe:
              def.describe +
              (name === 'router'
                ? redis
                  ? '; state in a throwaway redis-server (its CPU not counted)'
                  : '; state in process'
                : ''),
            threads: h.threads,
          };
          const p = await preflight(h.port, o.version, o.actions);
          pre[`${name}#${rep}`] = p;
          if (!p.ok)
            throw new Error(
              `pre-flight failed for ${name}: ${JSON.stringify({ problems: p.problems, answers: p.answers })}`,
            );
        }
        for (const { action, rate } of cells) {
          const order = servers.map((_, i) => servers[(i + rep - 1) % servers.length]);
          for (const h of order) {
            const s = await settle([...servers.map((x) => x.pid), ...(redis ? [redis.pid] : [])], m);
            const st0 = await h.stats(); // the router's batch counters; null for the references
            const result = await runGenerator(
              {
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
              },
              o,
            );
            const st1 = st0 ? await h.stats() : null;
            const batches = st0 && st1 ? batchFigures(st0, st1) : undefined;
            runs.push({ rep, server: h.kind, action, rate, settle: s, result, ...(batches ? { batches } : {}) });
            n++;
            const w = result.window;
            log(
              `[${n}/${total}] rep ${rep} ${h.kind.padEnd(8)} ${action.padEnd(18)} ${String(rate).padStart(6)}/s  sent ${w.sendRate}/s  replies ${w.replyRate}/s  p50 ${(w.latencyUs.p50 / 1000).toFixed(2)}  p99 ${(w.latencyUs.p99 / 1000).toFixed(2)}  p99.9 ${(w.latencyUs.p999 / 1000).toFixed(2)}  max ${(w.latencyUs.max / 1000).toFixed(1)} ms  lag p99 ${(w.sendLagUs.p99 / 1000).toFixed(2)} ms  missing ${result.missing}  server ${result.server?.cpuUsPerMessage ?? '?'} µs/msg (${result.server?.cores ?? '?'} cores)  gen ${result.generator.cores} cores  other ${result.machine.foreignCores}  errors ${result.errors.total + result.connect.failed}${batches ? `  batches ${batches.itemsPerBatch} items, ${Math.round(batches.inlineShare * 100)} % inline` : ''}`,
            );
            if (result.connect.failed || result.errors.total)
              log(`    ${[...result.connect.failures, ...result.errors.samples].join('\n    ')}`);
            if (await Promise.race([h.exited.then(() => true), sleep(0).then(() => false)]))
              throw new Error(`${h.kind} exited during the run; stderr:\n${h.stderr.join('\n')}`);
          }
        }
      } finally {
        for (const h of servers) await h.stop();
      }
    }
  } finally {
    await redis?.stop();
  }
  return {
    kind: 'open-loop',
    date: new Date().toISOString(),
    command,
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
    preflight: pre,
    runs,
    cells: summarize(runs),
    wallSeconds: Math.round((Date.now() - started) / 1000),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const o = parse(process.argv.slice(2));
  const command = `node --import tsx bench/open-loop.ts ${process.argv.slice(2).join(' ')}`.trim();
  const log = (s: string) => process.stderr.write(s + '\n');
  const report = await main(o, command, log);
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(o.out, JSON.stringify(report, null, 2) + '\n');
  log(`wrote ${relative(root, o.out)}`);
  process.stdout.write(markdown(report) + '\n');
}
