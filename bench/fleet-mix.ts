/**
 * fleet-mix: a realistic fleet mix at a fixed offered load (issue #3): N chargers each on its own
 * schedule (heartbeats, sessions with status changes and meter values, a few faults), time
 * compressed by --speedup, open loop (bench/lib/fleet-mix-gen.ts, its own process): latency from
 * each CALL's intended send time, per action and overall. Sessions are **without
 * Start/StopTransaction until the transaction plugin exists** (the router answers them
 * NotSupported): a session is its StatusNotifications (Preparing → Charging → Finishing →
 * Available) with MeterValues while charging. Each server of the e2e matrix (SERVERS of
 * bench/lib/matrix.ts) in its own fresh process, measured in the same repetition; the router
 * with its state in process, as in bench/open-loop.ts.
 *
 *   node --import tsx bench/fleet-mix.ts [--servers=uws-bare,ocpp-rpc,router] [--chargers=1000]
 *        [--speedup=300] [--reps=3] [--duration=10] [--warmup=2] [--drain=5] [--threads=0] [--version=1.6]
 *        [--heartbeat=300] [--meter=60] [--session=1800] [--session-prob=0.02] [--fault-prob=0.001]
 *        [--router-config='{json}'] [--quiet-cores=0.3] [--quiet-wait=5] [--out=bench/results/fleet-mix-latest.json]
 *
 * Outputs per (server, action) and per server over all actions, median (min–max) over the
 * repetitions: sent/s, replies/s, p50 / p99 / p99.9 / max latency, missing replies after the
 * drain, errors (CALLERRORs, closes), server CPU µs per reply and cores, generator cores and
 * send lag, other load. Markdown on stdout, JSON (every run, every option) to --out.
 *
 * Owns: the mix's options, aggregation (per action and over all) and the report; the servers
 * and the repetition loop are bench/lib/matrix.ts's. Must not: generate load itself, or reach
 * into core/.
 */
import { join } from 'node:path';
import { preflight } from './lib/preflight.js';
import { fmtSpread, type Spread } from './lib/stats.js';
import {
  DEFAULT_FLEET_MIX,
  FLEET_ACTIONS,
  fleetCallTexts,
  type FleetMixOptions,
  type FleetMixResult,
} from './lib/fleet-mix-gen.js';
import type { BenchVersion } from './lib/ocpp-payloads.js';
import {
  SERVERS,
  commandLine,
  flagSpec,
  generatorBudgetMs,
  isMain,
  log,
  logSamples,
  parseFlags,
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
  writeReport,
  type ReportHead,
  type ServerOptions,
  type Settled,
} from './lib/matrix.js';

export interface FleetMixMatrix {
  servers: string[];
  chargers: number;
  speedup: number;
  reps: number;
  duration: number;
  warmup: number;
  drain: number;
  threads: number;
  version: BenchVersion;
  /** The per-charger schedule (simulated seconds; probabilities per idle minute). */
  heartbeatSec: number;
  meterSec: number;
  sessionSec: number;
  sessionProb: number;
  faultProb: number;
  routerConfig: Record<string, unknown>;
  quietCores: number;
  quietWaitSec: number;
  out: string;
}

const DEFAULTS: FleetMixMatrix = {
  servers: ['uws-bare', 'ocpp-rpc', 'router'],
  chargers: 1000,
  speedup: DEFAULT_FLEET_MIX.speedup,
  reps: 3,
  duration: 10,
  warmup: 2,
  drain: 5,
  threads: 0,
  version: '1.6',
  heartbeatSec: DEFAULT_FLEET_MIX.heartbeatSec,
  meterSec: DEFAULT_FLEET_MIX.meterSec,
  sessionSec: DEFAULT_FLEET_MIX.sessionSec,
  sessionProb: DEFAULT_FLEET_MIX.sessionProb,
  faultProb: DEFAULT_FLEET_MIX.faultProb,
  routerConfig: {},
  quietCores: 0.3,
  quietWaitSec: 5,
  out: join(root, 'bench/results/fleet-mix-latest.json'),
};

const FLAGS = flagSpec<FleetMixMatrix>(
  [
    'servers',
    'chargers',
    'reps',
    'duration',
    'warmup',
    'drain',
    'threads',
    'version',
    'router-config',
    'quiet-cores',
    'quiet-wait',
    'out',
  ],
  {
    speedup: ['speedup', 'num'],
    heartbeat: ['heartbeatSec', 'num'],
    meter: ['meterSec', 'num'],
    session: ['sessionSec', 'num'],
    'session-prob': ['sessionProb', 'num'],
    'fault-prob': ['faultProb', 'num'],
  },
);

function parse(argv: string[]): FleetMixMatrix {
  const { o } = parseFlags(argv, DEFAULTS, FLAGS);
  requireKnown('server', o.servers, Object.keys(SERVERS));
  requireVersion(o.version);
  requireOneGeneratorFleet(o.chargers);
  if (o.speedup < 1 || o.speedup > 10_000) throw new Error('--speedup must be 1..10000');
  requireTiming(o);
  // At most 2 CALLs per charger per 10 ms of real time from each periodic stream.
  for (const [k, v] of [
    ['heartbeat', o.heartbeatSec],
    ['meter', o.meterSec],
    ['session', o.sessionSec],
  ] as const)
    if (!(v > 0) || (v * 1000) / o.speedup < 10)
      throw new Error(`--${k} ÷ --speedup must be at least 10 ms of real time`);
  if (o.sessionProb > 1 || o.faultProb > 1 || o.sessionProb + o.faultProb > 1)
    throw new Error('--session-prob + --fault-prob must be at most 1');
  return o;
}

/** What SERVERS read: the router's threads and extra config, state in process; BENCH_PROFILE=1 profiles it. */
const serverOptions = (o: FleetMixMatrix): ServerOptions => ({
  threads: o.threads,
  routerState: 'memory',
  routerConfig: o.routerConfig,
  profile: process.env.BENCH_PROFILE === '1',
});

// ── aggregation ───────────────────────────────────────────────────────────────────────────

export interface FleetMixRun {
  rep: number;
  server: string;
  settle: Settled;
  result: FleetMixResult;
}

/** One row: a server and an action ('all': every action of the mix). */
export interface FleetMixCell {
  server: string;
  action: string;
  sendRate: Spread;
  replyRate: Spread;
  p50Ms: Spread;
  p99Ms: Spread;
  p999Ms: Spread;
  maxMs: Spread;
  sendLagP99Ms: Spread;
  /** Sums over the repetitions. */
  scheduled: number;
  missing: number;
  callErrors: number;
  /** 'all' rows only (per run, not per action): server and generator CPU, other load, closes. */
  serverCpuUsPerMsg?: Spread;
  serverCores?: Spread;
  generatorCores?: Spread;
  foreignCores?: Spread;
  expectedRate?: Spread;
  sessions?: Spread;
  faults?: Spread;
  otherErrors?: number;
  errorSamples?: string[];
}

function summarize(runs: FleetMixRun[], servers: string[]): FleetMixCell[] {
  const cells: FleetMixCell[] = [];
  for (const server of servers) {
    const rs = runs.filter((r) => r.server === server);
    if (!rs.length) continue;
    for (const action of ['all', ...FLEET_ACTIONS] as const) {
      const figs = rs.map((r) => (action === 'all' ? r.result.window.all : r.result.window.perAction[action]));
      const f = spreadOf(figs);
      const cell: FleetMixCell = {
        server,
        action,
        sendRate: f((x) => x.sendRate),
        replyRate: f((x) => x.replyRate),
        p50Ms: f((x) => x.latencyUs.p50 / 1000),
        p99Ms: f((x) => x.latencyUs.p99 / 1000),
        p999Ms: f((x) => x.latencyUs.p999 / 1000),
        maxMs: f((x) => x.latencyUs.max / 1000),
        sendLagP99Ms: f((x) => x.sendLagUs.p99 / 1000),
        scheduled: figs.reduce((n, x) => n + x.scheduled, 0),
        missing: figs.reduce((n, x) => n + x.missing, 0),
        callErrors: figs.reduce((n, x) => n + x.callError, 0),
      };
      if (action === 'all') {
        const g = spreadOf(rs.map((r) => r.result));
        Object.assign(cell, {
          serverCpuUsPerMsg: g((x) => x.server?.cpuUsPerMessage),
          serverCores: g((x) => x.server?.cores),
          generatorCores: g((x) => x.generator.cores),
          foreignCores: g((x) => x.machine.foreignCores),
          expectedRate: g((x) => x.window.expectedRate),
          sessions: g((x) => x.window.sessions),
          faults: g((x) => x.window.faults),
          otherErrors: rs.reduce(
            (n, r) => n + r.result.errors.closed + r.result.errors.unparsed + r.result.connect.failed,
            0,
          ),
          errorSamples: rs.flatMap((r) => samplesOf(r.result)).slice(0, 5),
        });
      }
      cells.push(cell);
    }
  }
  return cells;
}

interface FleetMixReport extends ReportHead {
  kind: 'fleet-mix';
  node: { version: string; uws: string; ws: string; ocppRpc: string };
  options: FleetMixMatrix;
  preflight: Record<string, unknown>;
  runs: FleetMixRun[];
  cells: FleetMixCell[];
}

function markdown(rep: FleetMixReport): string {
  const o = rep.options;
  const L: string[] = [];
  L.push(
    `Fleet mix: N = ${o.chargers} chargers (OCPP ${o.version}, raw client), time × ${o.speedup}: a Heartbeat every ${o.heartbeatSec} s, sessions (p = ${o.sessionProb} per idle minute, ~${o.sessionSec} s of charging) with MeterValues every ${o.meterSec} s, faults (p = ${o.faultProb} per idle minute). Sessions without Start/StopTransaction until the transaction plugin exists (StatusNotification ${o.version === '1.6' ? 'Preparing → Charging → Finishing → Available' : 'Occupied → Available'}). Open loop, latency from the intended send time. ${o.reps} repetition${o.reps > 1 ? 's' : ''} × ${o.duration} s after ${o.warmup} s warm-up, drain ≤ ${o.drain} s; median (min–max).`,
    '',
  );
  L.push(
    '| server | action | sent/s | replies/s | p50 ms | p99 ms | p99.9 ms | max ms | missing | CALLERRORs | server CPU µs/msg | server cores | generator cores | send lag p99 ms | other load (cores) |',
  );
  L.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const c of rep.cells) {
    const all = c.action === 'all';
    const opt = (s: Spread | undefined, d: number) => (s ? fmtSpread(s, d) : '');
    L.push(
      `| ${all ? `**${c.server}**` : c.server} | ${all ? '**all**' : c.action} | ${fmtSpread(c.sendRate)} | ${fmtSpread(c.replyRate)} | ${fmtSpread(c.p50Ms, 2)} | ${fmtSpread(c.p99Ms, 2)} | ${fmtSpread(c.p999Ms, 1)} | ${fmtSpread(c.maxMs, 1)} | ${c.missing ? `${c.missing} of ${c.scheduled}` : 0} | ${c.callErrors} | ${opt(c.serverCpuUsPerMsg, 1)} | ${opt(c.serverCores, 2)} | ${opt(c.generatorCores, 2)} | ${fmtSpread(c.sendLagP99Ms, 2)} | ${opt(c.foreignCores, 2)} |`,
    );
  }
  const alls = rep.cells.filter((c) => c.action === 'all');
  if (alls.length) {
    const a = alls[0];
    L.push(
      '',
      `Expected rate at steady state ${fmtSpread(a.expectedRate!)} msg/s; in the window, sessions started ${fmtSpread(a.sessions!)} and faults ${fmtSpread(a.faults!)} per run (${a.server}). The schedule is seeded by the repetition: every server gets the same fleet life in a repetition (send times differ only by the generator's lateness).`,
    );
  }
  for (const c of alls)
    if (c.otherErrors)
      L.push(
        '',
        `${c.server}: ${c.otherErrors} other errors (closes, unparsed, connect failures): ${c.errorSamples?.join(' | ')}`,
      );
  return L.join('\n');
}

// ── the loop ──────────────────────────────────────────────────────────────────────────────

async function main(o: FleetMixMatrix, command: string): Promise<FleetMixReport> {
  const rec = startRecording();
  const m = serverOptions(o);
  const runs: FleetMixRun[] = [];
  const serverInfo: FleetMixReport['servers'] = {};
  const pre: Record<string, unknown> = {};
  // Pre-flight every distinct CALL of the mix (each status, each errorCode, the session's MeterValues).
  const extra = fleetCallTexts(o.version, new Date().toISOString())
    .filter((t): t is string => t !== null)
    .map((t) => {
      const [, , a, p] = JSON.parse(t) as [number, string, string, unknown];
      return [a, p] as const;
    });
  await runRepetitions({
    reps: o.reps,
    servers: o.servers,
    // One cell: the mix is the workload.
    cells: [null],
    quiet: o,
    start: (name) => startServerOf(name, m),
    ready: async (h, rep) => {
      serverInfo[h.kind] ??= {
        describe: SERVERS[h.kind].describe + (h.kind === 'router' ? '; state in process' : ''),
        threads: h.threads,
      };
      const p = await preflight(h.port, o.version, [], 5000, extra);
      requirePreflight(pre, h, rep, p);
    },
    run: async ({ h, rep, settle: s, progress }) => {
      const opts: Partial<FleetMixOptions> = {
        port: h.port,
        serverPid: h.pid,
        version: o.version,
        chargers: o.chargers,
        speedup: o.speedup,
        heartbeatSec: o.heartbeatSec,
        meterSec: o.meterSec,
        sessionSec: o.sessionSec,
        sessionProb: o.sessionProb,
        faultProb: o.faultProb,
        seed: rep,
        warmupSec: o.warmup,
        durationSec: o.duration,
        drainMs: o.drain * 1000,
        idPrefix: `fm${rep}-${h.kind}-${Date.now().toString(36)}`,
      };
      const result = await runGenerator<FleetMixResult>(
        'bench/lib/fleet-mix-gen.ts',
        opts,
        generatorBudgetMs(o.warmup + o.duration + o.drain),
      );
      runs.push({ rep, server: h.kind, settle: s, result });
      const w = result.window;
      const pa = FLEET_ACTIONS.map(
        (a) => `${a} ${w.perAction[a].sendRate}/s p99 ${(w.perAction[a].latencyUs.p99 / 1000).toFixed(2)}`,
      ).join(', ');
      log(
        `${progress} rep ${rep} ${h.kind.padEnd(8)} sent ${w.all.sendRate}/s (expected ${w.expectedRate})  replies ${w.all.replyRate}/s  p50 ${(w.all.latencyUs.p50 / 1000).toFixed(2)}  p99 ${(w.all.latencyUs.p99 / 1000).toFixed(2)}  p99.9 ${(w.all.latencyUs.p999 / 1000).toFixed(2)} ms  [${pa}]  missing ${result.missing}  server ${result.server?.cpuUsPerMessage ?? '?'} µs/msg (${result.server?.cores ?? '?'} cores)  gen ${result.generator.cores} cores  other ${result.machine.foreignCores}  sessions ${w.sessions} faults ${w.faults}  errors ${result.errors.total + result.connect.failed}`,
      );
      logSamples(result);
    },
  });
  return {
    kind: 'fleet-mix',
    date: new Date().toISOString(),
    command,
    machine: rec.machine(),
    node: versions('version', 'uws', 'ws', 'ocppRpc'),
    git: rec.git(),
    options: o,
    servers: serverInfo,
    preflight: pre,
    runs,
    cells: summarize(runs, o.servers),
    wallSeconds: rec.wallSeconds(),
  };
}

if (isMain(import.meta.url)) {
  const o = parse(process.argv.slice(2));
  const report = await main(o, commandLine('bench/fleet-mix.ts', process.argv.slice(2)));
  writeReport(o.out, report);
  process.stdout.write(markdown(report) + '\n');
}
