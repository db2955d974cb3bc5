/**
 * fleet-mix: a realistic fleet mix at a fixed offered load (issue #3): N chargers each on its own
 * schedule (heartbeats, sessions with status changes and meter values, a few faults), time
 * compressed by --speedup, open loop (bench/lib/fleet-mix-gen.ts, its own process): latency from
 * each CALL's intended send time, per action and overall. Sessions are **without
 * Start/StopTransaction until the transaction plugin exists** (the router answers them
 * NotSupported): a session is its StatusNotifications (Preparing → Charging → Finishing →
 * Available) with MeterValues while charging. Each server of the e2e matrix (SERVERS of
 * e2e-throughput.ts) in its own fresh process, measured in the same repetition; the router with
 * its state in process, as in bench/open-loop.ts.
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
 * Owns: the servers × repetitions loop, aggregation and the report. Must not: generate load
 * itself, or reach into core/.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem, release } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { DEFAULT_MATRIX, SERVERS, gitInfo, packageVersion, settle, type MatrixOptions } from './e2e-throughput.js';
import { preflight } from './lib/preflight.js';
import { runResultChild, startServer, type ServerHandle } from './lib/proc.js';
import { spread, fmtSpread, type Spread } from './lib/stats.js';
import type { BenchVersion } from './lib/ocpp-payloads.js';
import {
  DEFAULT_FLEET_MIX,
  FLEET_ACTIONS,
  fleetCallTexts,
  type ActionFigures,
  type FleetMixOptions,
  type FleetMixResult,
} from './lib/fleet-mix-gen.js';

const root = join(import.meta.dirname, '..');

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

function parse(argv: string[]): FleetMixMatrix {
  const o: FleetMixMatrix = { ...DEFAULTS };
  const list = (v: string) =>
    v
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  for (const a of argv) {
    const m = /^--([a-z-]+)=(.*)$/.exec(a);
    if (!m) throw new Error(`expected --name=value, got ${a}`);
    const [, k, v] = m as unknown as [string, string, string];
    const num = () => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw new Error(`--${k} must be a non-negative number, got "${v}"`);
      return n;
    };
    if (k === 'servers') o.servers = list(v);
    else if (k === 'chargers') o.chargers = num();
    else if (k === 'speedup') o.speedup = num();
    else if (k === 'reps') o.reps = num();
    else if (k === 'duration') o.duration = num();
    else if (k === 'warmup') o.warmup = num();
    else if (k === 'drain') o.drain = num();
    else if (k === 'threads') o.threads = num();
    else if (k === 'version') o.version = v as BenchVersion;
    else if (k === 'heartbeat') o.heartbeatSec = num();
    else if (k === 'meter') o.meterSec = num();
    else if (k === 'session') o.sessionSec = num();
    else if (k === 'session-prob') o.sessionProb = num();
    else if (k === 'fault-prob') o.faultProb = num();
    else if (k === 'router-config') o.routerConfig = JSON.parse(v) as Record<string, unknown>;
    else if (k === 'quiet-cores') o.quietCores = num();
    else if (k === 'quiet-wait') o.quietWaitSec = num();
    else if (k === 'out') o.out = resolve(v);
    else
      throw new Error(
        `unknown option --${k} (known: servers, chargers, speedup, reps, duration, warmup, drain, threads, version, heartbeat, meter, session, session-prob, fault-prob, router-config, quiet-cores, quiet-wait, out)`,
      );
  }
  for (const s of o.servers)
    if (!SERVERS[s]) throw new Error(`unknown server "${s}" (known: ${Object.keys(SERVERS).join(', ')})`);
  if (!['1.6', '2.0.1'].includes(o.version)) throw new Error('--version must be 1.6 or 2.0.1');
  if (!Number.isInteger(o.chargers) || o.chargers < 1 || o.chargers > 5000)
    throw new Error('--chargers must be 1..5000 (one generator process)');
  if (o.speedup < 1 || o.speedup > 10_000) throw new Error('--speedup must be 1..10000');
  if (o.reps < 1 || o.reps > 20) throw new Error('--reps must be 1..20');
  if (o.duration < 1 || o.duration > 120) throw new Error('--duration must be 1..120 seconds');
  if (o.warmup > 60) throw new Error('--warmup must be at most 60 seconds');
  if (o.drain < 0.1 || o.drain > 60) throw new Error('--drain must be 0.1..60 seconds');
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

function matrixFor(o: FleetMixMatrix): MatrixOptions {
  return {
    ...DEFAULT_MATRIX,
    threads: o.threads,
    version: o.version,
    routerConfig: o.routerConfig,
    routerState: 'memory',
    quietCores: o.quietCores,
    quietWaitSec: o.quietWaitSec,
    profile: process.env.BENCH_PROFILE === '1',
  };
}

function runGenerator(
  opts: Partial<FleetMixOptions> & Pick<FleetMixOptions, 'port'>,
  o: FleetMixMatrix,
): Promise<FleetMixResult> {
  const budgetMs = 120_000 + (o.warmup + o.duration + o.drain) * 1000;
  return runResultChild<FleetMixResult>(join(root, 'bench/lib/fleet-mix-gen.ts'), opts, budgetMs, root);
}

// ── aggregation ───────────────────────────────────────────────────────────────────────────

export interface FleetMixRun {
  rep: number;
  server: string;
  settle: { waitedMs: number; foreignCores: number };
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
      const f = (g: (x: ActionFigures) => number) => spread(figs.map(g));
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
        const g = (h: (x: FleetMixResult) => number | undefined) => spread(rs.map((r) => h(r.result) ?? NaN));
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
          errorSamples: rs.flatMap((r) => [...r.result.connect.failures, ...r.result.errors.samples]).slice(0, 5),
        });
      }
      cells.push(cell);
    }
  }
  return cells;
}

interface FleetMixReport {
  kind: 'fleet-mix';
  date: string;
  command: string;
  machine: { cpu: string; cores: number; memGiB: number; kernel: string; loadavgStart: number[]; loadavgEnd: number[] };
  node: { version: string; uws: string; ws: string; ocppRpc: string };
  git: { commit: string; dirty: boolean; changedDuringRun: boolean } | null;
  options: FleetMixMatrix;
  servers: Record<string, { describe: string; threads: number }>;
  preflight: Record<string, unknown>;
  runs: FleetMixRun[];
  cells: FleetMixCell[];
  wallSeconds: number;
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

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function main(o: FleetMixMatrix, command: string, log: (s: string) => void): Promise<FleetMixReport> {
  const started = Date.now();
  const gitStart = gitInfo();
  const loadStart = loadavg().map((x) => +x.toFixed(2));
  const m = matrixFor(o);
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
  const total = o.reps * o.servers.length;
  let n = 0;
  for (let rep = 1; rep <= o.reps; rep++) {
    const servers: ServerHandle[] = [];
    try {
      for (const name of o.servers) {
        const def = SERVERS[name];
        const h = await startServer(name, join(root, def.script), def.args(m), {
          nodeArgs: def.nodeArgs?.(m),
          cwd: root,
        });
        servers.push(h);
        serverInfo[name] ??= {
          describe: def.describe + (name === 'router' ? '; state in process' : ''),
          threads: h.threads,
        };
        const p = await preflight(h.port, o.version, [], 5000, extra);
        pre[`${name}#${rep}`] = p;
        if (!p.ok)
          throw new Error(
            `pre-flight failed for ${name}: ${JSON.stringify({ problems: p.problems, answers: p.answers })}`,
          );
      }
      const order = servers.map((_, i) => servers[(i + rep - 1) % servers.length]);
      for (const h of order) {
        const s = await settle(
          servers.map((x) => x.pid),
          m,
        );
        const result = await runGenerator(
          {
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
          },
          o,
        );
        runs.push({ rep, server: h.kind, settle: s, result });
        n++;
        const w = result.window;
        const pa = FLEET_ACTIONS.map(
          (a) => `${a} ${w.perAction[a].sendRate}/s p99 ${(w.perAction[a].latencyUs.p99 / 1000).toFixed(2)}`,
        ).join(', ');
        log(
          `[${n}/${total}] rep ${rep} ${h.kind.padEnd(8)} sent ${w.all.sendRate}/s (expected ${w.expectedRate})  replies ${w.all.replyRate}/s  p50 ${(w.all.latencyUs.p50 / 1000).toFixed(2)}  p99 ${(w.all.latencyUs.p99 / 1000).toFixed(2)}  p99.9 ${(w.all.latencyUs.p999 / 1000).toFixed(2)} ms  [${pa}]  missing ${result.missing}  server ${result.server?.cpuUsPerMessage ?? '?'} µs/msg (${result.server?.cores ?? '?'} cores)  gen ${result.generator.cores} cores  other ${result.machine.foreignCores}  sessions ${w.sessions} faults ${w.faults}  errors ${result.errors.total + result.connect.failed}`,
        );
        if (result.connect.failed || result.errors.total)
          log(`    ${[...result.connect.failures, ...result.errors.samples].join('\n    ')}`);
        if (await Promise.race([h.exited.then(() => true), sleep(0).then(() => false)]))
          throw new Error(`${h.kind} exited during the run; stderr:\n${h.stderr.join('\n')}`);
      }
    } finally {
      for (const h of servers) await h.stop();
    }
  }
  return {
    kind: 'fleet-mix',
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
    cells: summarize(runs, o.servers),
    wallSeconds: Math.round((Date.now() - started) / 1000),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const o = parse(process.argv.slice(2));
  const command = `node --import tsx bench/fleet-mix.ts ${process.argv.slice(2).join(' ')}`.trim();
  const log = (s: string) => process.stderr.write(s + '\n');
  const report = await main(o, command, log);
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(o.out, JSON.stringify(report, null, 2) + '\n');
  log(`wrote ${relative(root, o.out)}`);
  process.stdout.write(markdown(report) + '\n');
}
