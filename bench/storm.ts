/**
 * storm: connect storm and hold (issue #3). N chargers connect and send BootNotification as
 * fast as ≤ `concurrency` pending handshakes allow (a fleet reconnecting after an outage),
 * then stay idle for H seconds: none may be dropped, memory should stay flat. Each server in
 * its own fresh process(es); the fleet is split over G generator processes
 * (bench/lib/storm-gen.ts, ≤ --per-generator sockets each), each binding its sockets to its
 * own source addresses 127.0.0.2, 127.0.0.3, … (≤ --per-address sockets per address), so N can
 * go past one process's file descriptors and one address's ephemeral ports.
 *
 *   node --import tsx bench/storm.ts [--servers=uws-bare,ws-json,ocpp-rpc,router,router-mp]
 *        [--chargers=2000 | --chargers=router-mp:100000,ocpp-rpc:18000] [--hold=20] [--concurrency=256]
 *        [--version=1.6|2.0.1|mixed] [--threads=0] [--processes=6] [--process-threads=1]
 *        [--per-generator=16000] [--per-address=10000] [--warmup=0] [--router-config='{json}'] [--profile]
 *        [--out=bench/results/storm-latest.json]
 *
 * Servers: those of the e2e matrix (SERVERS of bench/lib/matrix.ts: one process each, `router` is
 * createRouter() in-process with in-memory state), and `router-mp`: the real CLI in multi-process
 * mode (`bin/ocpp-router.js --processes P`, pool.threads per process, state in a throwaway Redis;
 * bench/lib/router-processes.ts).
 *
 * Phases per server: warm-up storm (a few chargers per generator, closed: code paths loaded, so
 * the idle figure is not "before the first connection ever") ─► 2 s ─► idle sample ─► storm,
 * all generators started at one instant ─► hold (1 s ticks: open connections, drops, RSS) ─►
 * close all (bounded) ─► stop.
 *
 * Outputs per server: connects/s and boots/s (over all generators: first connect to last 101 /
 * last boot), time to boot all, failures by kind, handshake and boot latency (histograms merged
 * across generators), server RSS summed over its process tree (supervisor + router processes;
 * VmRSS covers every thread of a process) and PSS (shared pages counted once): idle, at hold
 * start and end; RSS per connection as total ÷ N and as (total − idle) ÷ N; per-process
 * connections (file descriptors at hold − idle) for multi-process servers; Redis RSS and CPU;
 * server, generator and other CPU; generator event-loop delay (its own ceiling); drops in the
 * hold. Markdown on stdout, JSON to --out.
 *
 * Limits: one process may have 20,000 file descriptors here, so a single-process server holds
 * at most ~18,000 chargers and router-mp at most ~18,000 per process.
 *
 * Owns: server processes of the storm, the generator processes' coordination, aggregation and
 * the report. Must not: generate load itself (storm-gen.ts does, in its own processes).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Histogram, type HistogramSummary } from './lib/histogram.js';
import {
  machineCpuMs,
  processCpuMs,
  processTree,
  rssKB,
  sampleTree,
  track,
  treeCpuMs,
  type TreeSample,
} from './lib/proc.js';
import { startRouterProcesses } from './lib/router-processes.js';
import { redisInfo } from './lib/redis-server.js';
import type { FromGen, GenConfig, GenPhase, StormVersion, ToGen } from './lib/storm-gen.js';
import {
  SERVERS,
  commandLine,
  exitAfter,
  flagSpec,
  fmtErrors,
  isMain,
  log,
  machineInfo,
  parseFlags,
  requireKnown,
  root,
  shortCommit,
  sleep,
  splitList,
  startServerOf,
  writeReport,
} from './lib/matrix.js';

const FD_LIMIT_PER_PROCESS = 18_000;

interface Options {
  servers: string[];
  /** Chargers per server (one value for all, or per server). */
  chargers: Record<string, number>;
  hold: number;
  concurrency: number;
  version: StormVersion;
  threads: number;
  processes: number;
  processThreads: number;
  perGenerator: number;
  perAddress: number;
  /** Warm-up chargers per generator (0: ⌈50 ÷ generators⌉, at least 8, × P for router-mp so every process gets some). */
  warmup: number;
  routerConfig: Record<string, unknown>;
  /** router-mp: every router process (and its workers) runs with --cpu-prof into a new bench/results/profiles/storm-<time>/. */
  profile: boolean;
  out: string;
}

const ALL_SERVERS = [...Object.keys(SERVERS), 'router-mp'];

const DEFAULTS: Options = {
  servers: ['uws-bare', 'ws-json', 'ocpp-rpc', 'router'],
  chargers: {},
  hold: 20,
  concurrency: 256,
  version: '1.6',
  threads: 0,
  processes: 6,
  processThreads: 1,
  perGenerator: 16_000,
  perAddress: 10_000,
  warmup: 0,
  routerConfig: {},
  profile: false,
  out: join(root, 'bench/results/storm-latest.json'),
};

// --chargers (one number, or per server) is read apart: it fills `chargers` per server.
const FLAGS = flagSpec<Options>(['servers', 'version', 'threads', 'warmup', 'router-config', 'out'], {
  hold: ['hold', 'num'],
  concurrency: ['concurrency', 'num'],
  processes: ['processes', 'num'],
  'process-threads': ['processThreads', 'num'],
  'per-generator': ['perGenerator', 'num'],
  'per-address': ['perAddress', 'num'],
  profile: ['profile', 'bool'],
});

function parse(argv: string[]): Options {
  const { o, get } = parseFlags(argv, DEFAULTS, FLAGS, { booleans: ['profile'], extra: ['chargers'] });
  o.chargers = {};
  const chargers = get('chargers') ?? '2000';
  requireKnown('server', o.servers, ALL_SERVERS);
  const perServer = new Map<string, number>();
  let all: number | undefined;
  for (const part of splitList(chargers)) {
    const [a, b] = part.includes(':') ? (part.split(':') as [string, string]) : [undefined, part];
    const n = Number(b);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--chargers: "${part}" is not a positive integer`);
    if (a === undefined) all = n;
    else perServer.set(a, n);
  }
  for (const s of o.servers) {
    const n = perServer.get(s) ?? all ?? 2000;
    const cap = s === 'router-mp' ? o.processes * FD_LIMIT_PER_PROCESS : FD_LIMIT_PER_PROCESS;
    if (n > cap)
      throw new Error(
        `--chargers for ${s} must be ≤ ${cap} (${s === 'router-mp' ? `${o.processes} processes × ` : ''}${FD_LIMIT_PER_PROCESS} sockets: 20,000 file descriptors per process here)`,
      );
    o.chargers[s] = n;
  }
  if (!['1.6', '2.0.1', 'mixed'].includes(o.version)) throw new Error('--version must be 1.6, 2.0.1 or mixed');
  if (o.hold < 1 || o.hold > 600) throw new Error('--hold must be 1..600 seconds');
  if (!Number.isInteger(o.concurrency) || o.concurrency < 1 || o.concurrency > 8192)
    throw new Error('--concurrency must be 1..8192');
  if (!Number.isInteger(o.processes) || o.processes < 1 || o.processes > 32)
    throw new Error('--processes must be 1..32');
  if (!Number.isInteger(o.processThreads) || o.processThreads < 1 || o.processThreads > 16)
    throw new Error('--process-threads must be 1..16');
  if (o.perGenerator < 100 || o.perGenerator > FD_LIMIT_PER_PROCESS)
    throw new Error(`--per-generator must be 100..${FD_LIMIT_PER_PROCESS}`);
  if (o.perAddress < 100 || o.perAddress > 25_000)
    throw new Error('--per-address must be 100..25000 (ephemeral ports per source address: 28,232 by default)');
  if (o.warmup > 1000) throw new Error('--warmup must be at most 1000 per generator');
  return o;
}

// ── source addresses ──────────────────────────────────────────────────────────────────────

/** 127.0.0.2, 127.0.0.3, …, 127.0.0.253, 127.0.1.1, … (octets 0, 254 and 255 skipped). k counts from 0. */
function loopbackAddress(k: number): string {
  const per = 253; // last octet 1..254 except the first block, which starts at 2
  const i = k + 1; // 127.0.0.1 is the server's; we start at .2
  const third = Math.floor(i / per);
  const fourth = (i % per) + 1;
  if (third > 254) throw new Error('out of loopback source addresses');
  return `127.0.${third}.${fourth}`;
}

// ── generator processes ───────────────────────────────────────────────────────────────────

class Gen {
  private waiting = new Map<string, { resolve: (m: FromGen) => void; timer: NodeJS.Timeout }>();
  readonly exited: Promise<number | null>;
  readonly stderr: string[] = [];
  pid = 0;
  constructor(
    readonly child: ChildProcess,
    readonly cfg: GenConfig,
    readonly chargers: number,
  ) {
    track(child);
    this.exited = new Promise((r) => child.once('exit', (code) => r(code)));
    child.stderr?.on('data', (d: Buffer) => {
      if (this.stderr.length < 50) this.stderr.push(d.toString().slice(0, 500));
    });
    child.on('message', (m: FromGen) => {
      const w = this.waiting.get(m.op === 'closed' ? 'close' : m.op);
      if (!w) return;
      this.waiting.delete(m.op === 'closed' ? 'close' : m.op);
      clearTimeout(w.timer);
      w.resolve(m);
    });
    void this.exited.then((code) => {
      for (const [op, w] of this.waiting) {
        clearTimeout(w.timer);
        w.resolve({ op: 'closed', ms: -1 });
        this.waiting.delete(op);
      }
      if (code !== 0 && code !== null)
        process.stderr.write(`storm-gen ${this.pid} exited with ${code}: ${this.stderr.join('')}\n`);
    });
  }
  /** Sends `m` and waits (≤ timeoutMs) for the reply of the same op; rejects on timeout or exit. */
  request<T extends FromGen>(op: 'ready' | 'storm' | 'tick' | 'close', m: ToGen | null, timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(op);
        reject(new Error(`storm-gen ${this.pid}: no "${op}" reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(op, {
        resolve: (r) =>
          r.op === 'closed' && r.ms === -1 && op !== 'close'
            ? reject(new Error(`storm-gen ${this.pid} exited: ${this.stderr.join('')}`))
            : resolve(r as T),
        timer,
      });
      if (m) this.child.send(m);
    });
  }
  async exit(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    try {
      this.child.send({ op: 'exit' } satisfies ToGen);
    } catch {
      /* channel gone */
    }
    const t = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await this.exited;
    clearTimeout(t);
  }
}

/** Forks the generators into `gens` as it goes (so the caller stops them all, even if one never gets ready). */
async function startGenerators(
  gens: Gen[],
  n: number,
  port: number,
  o: Options,
  nextAddress: { k: number },
  budgetMs: number,
): Promise<void> {
  const count = Math.max(1, Math.ceil(n / o.perGenerator));
  for (let g = 0; g < count; g++) {
    const share = Math.floor(n / count) + (g < n % count ? 1 : 0);
    const addrs: string[] = [];
    for (let a = 0; a < Math.max(1, Math.ceil(share / o.perAddress)); a++) addrs.push(loopbackAddress(nextAddress.k++));
    const cfg: GenConfig = {
      port,
      localAddresses: addrs,
      concurrency: Math.max(1, Math.round(o.concurrency / count)),
      version: o.version,
      handshakeTimeoutMs: 10_000,
      bootTimeoutMs: 10_000,
      budgetMs,
    };
    const child = fork(join(root, 'bench/lib/storm-gen.ts'), [JSON.stringify(cfg)], {
      cwd: root,
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    gens.push(new Gen(child, cfg, share));
  }
  await Promise.all(
    gens.map(async (g) => {
      g.pid = (await g.request<{ op: 'ready'; pid: number }>('ready', null, 30_000)).pid;
    }),
  );
}

interface StormAgg {
  attempted: number;
  connected: number;
  booted: number;
  connectAllMs: number;
  bootAllMs: number;
  connectsPerSec: number;
  bootsPerSec: number;
  handshakeUs: HistogramSummary;
  bootUs: HistogramSummary;
  failures: Record<string, number>;
  failureSamples: string[];
  bootStatus: Record<string, number>;
  serverCpuMs: number;
  generatorCpuMs: number;
  redisCpuMs: number | null;
  /** Cores busy with neither the server, Redis, the generators nor this process, averaged over the storm. */
  otherCores: number;
}

/** All generators storm together (start at one instant); the phases merged. */
async function stormAll(
  gens: Gen[],
  sizes: number[],
  prefix: string,
  budgetMs: number,
): Promise<{ agg: Omit<StormAgg, 'serverCpuMs' | 'redisCpuMs' | 'otherCores'>; phases: GenPhase[] }> {
  const startAt = Date.now() + 300;
  const phases = (
    await Promise.all(
      gens.map((g, i) =>
        g.request<{ op: 'storm'; phase: GenPhase }>(
          'storm',
          { op: 'storm', n: sizes[i], prefix: `${prefix}-g${i}`, startAt },
          budgetMs,
        ),
      ),
    )
  ).map((r) => r.phase);
  const hs = new Histogram();
  const bt = new Histogram();
  const failures: Record<string, number> = {};
  const bootStatus: Record<string, number> = {};
  const failureSamples: string[] = [];
  let attempted = 0,
    connected = 0,
    booted = 0,
    cpu = 0;
  let t0 = Infinity,
    lastOpen = 0,
    lastBoot = 0;
  for (const p of phases) {
    hs.mergeData(p.handshakeUs);
    bt.mergeData(p.bootUs);
    for (const [k, v] of Object.entries(p.failures)) failures[k] = (failures[k] ?? 0) + v;
    for (const [k, v] of Object.entries(p.bootStatus)) bootStatus[k] = (bootStatus[k] ?? 0) + v;
    for (const s of p.failureSamples) if (failureSamples.length < 12) failureSamples.push(s);
    attempted += p.attempted;
    connected += p.connected;
    booted += p.booted;
    cpu += p.cpuMs;
    t0 = Math.min(t0, p.tStart);
    lastOpen = Math.max(lastOpen, p.tLastOpen);
    lastBoot = Math.max(lastBoot, p.tLastBoot);
  }
  const connectAllMs = Math.max(0, lastOpen - t0),
    bootAllMs = Math.max(0, lastBoot - t0);
  return {
    phases,
    agg: {
      attempted,
      connected,
      booted,
      connectAllMs: Math.round(connectAllMs),
      bootAllMs: Math.round(bootAllMs),
      connectsPerSec: connectAllMs > 0 ? Math.round(connected / (connectAllMs / 1000)) : 0,
      bootsPerSec: bootAllMs > 0 ? Math.round(booted / (bootAllMs / 1000)) : 0,
      handshakeUs: hs.summary(),
      bootUs: bt.summary(),
      failures,
      failureSamples,
      bootStatus,
      generatorCpuMs: cpu,
    },
  };
}

// ── one server ────────────────────────────────────────────────────────────────────────────

interface Target {
  name: string;
  describe: string;
  port: number;
  rootPid: number;
  /** Worker threads per process, processes. */
  threads: number;
  processes: number;
  routerPids: number[];
  redisPid: number | null;
  redisPort: number | null;
  alive(): boolean;
  restarts(): number[];
  output(): string[];
  stop(): Promise<void>;
}

async function startTarget(name: string, o: Options): Promise<Target> {
  if (name === 'router-mp') {
    const r = await startRouterProcesses({
      processes: o.processes,
      threads: o.processThreads,
      config: o.routerConfig,
      root,
      nodeArgs: o.profile
        ? ['--cpu-prof', `--cpu-prof-dir=${join(root, 'bench/results/profiles', `storm-${Date.now().toString(36)}`)}`]
        : [],
    });
    return {
      name,
      describe: `the ocpp-router CLI, --processes ${o.processes} (SO_REUSEPORT), pool.threads ${o.processThreads} per process, state in a throwaway Redis`,
      port: r.port,
      rootPid: r.pid,
      threads: o.processThreads,
      processes: o.processes,
      routerPids: r.routerPids,
      redisPid: r.redis.pid,
      redisPort: r.redis.port,
      alive: () => r.alive(),
      restarts: () => r.restarts(),
      output: () => r.output,
      stop: () => r.stop(),
    };
  }
  const def = SERVERS[name];
  const h = await startServerOf(name, {
    threads: o.threads,
    routerState: 'memory',
    routerConfig: o.routerConfig,
    profile: false,
  });
  let gone = false;
  void h.exited.then(() => {
    gone = true;
  });
  return {
    name,
    describe: def.describe,
    port: h.port,
    rootPid: h.pid,
    threads: h.threads,
    processes: 1,
    routerPids: [h.pid],
    redisPid: null,
    redisPort: null,
    alive: () => !gone,
    restarts: () => [],
    output: () => h.stderr,
    stop: () => h.stop(),
  };
}

/** The process's name (/proc/<pid>/comm), e.g. `esbuild` for tsx's transform service. */
function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return 'gone';
  }
}

interface PerProcess {
  pid: number;
  role: string;
  rssKB: { idle: number; holdStart: number; holdEnd: number };
  pssKB: { idle: number; holdStart: number; holdEnd: number };
  fds: { idle: number; holdStart: number };
  connections: number;
  cpuStormMs: number;
}

export interface StormServerResult {
  server: string;
  describe: string;
  chargers: number;
  processes: number;
  threadsPerProcess: number;
  /** All generators together over the storm (each one: `generators`); the field older storm reports have too. */
  generator: { cpuMs: number };
  generators: {
    pid: number;
    chargers: number;
    localAddresses: string[];
    concurrency: number;
    cpuMs: number;
    sysMs: number;
    cores: number;
    loopDelayMs: GenPhase['loopDelayMs'];
  }[];
  warmup: { booted: number; failures: number };
  /** Sums over the server's process tree. */
  rssKB: { idle: number; holdStart: number; holdEnd: number; afterClose: number; perSecond: number[] };
  pssKB: { idle: number; holdStart: number; holdEnd: number };
  storm: StormAgg;
  hold: {
    seconds: number;
    openPerSecond: number[];
    drops: number;
    dropSamples: string[];
    pingsReceived: number;
    serverCalls: number;
    serverCpuMs: number;
    redisCpuMs: number | null;
  };
  /**
   * KB per booted charger. rssKB / rssKBEnd: (RSS at hold start / end − idle RSS) ÷ booted, the
   * cost of a connection; totalKB: RSS at hold start ÷ booted, everything included (the
   * issue's "RSS per idle connected charger, total of all router processes"); pss*: the same
   * with PSS (shared pages once).
   */
  perConnection: {
    rssKB: number;
    rssKBEnd: number;
    totalKB: number;
    totalKBEnd: number;
    pssKB: number;
    pssTotalKB: number;
    pssTotalKBEnd: number;
    rssDriftMB: number;
  };
  perProcess: PerProcess[];
  /** Connections per router process (fds at hold − idle): min, max, max ÷ mean. */
  spread: { min: number; max: number; maxOverMean: number } | null;
  /** commandsPerCharger: Redis calls by command (INFO commandstats at hold end) ÷ chargers booted (warm-up included). */
  redis: {
    rssKB: { idle: number; holdStart: number; holdEnd: number };
    cpuMs: { storm: number; hold: number };
    keys: number;
    commandsPerCharger: Record<string, number>;
  } | null;
  restarts: number[];
}

async function runServer(name: string, o: Options, nextAddress: { k: number }): Promise<StormServerResult> {
  const n = o.chargers[name];
  const t = await startTarget(name, o);
  const gens: Gen[] = [];
  try {
    await sleep(1000);
    const stormBudget = (Math.ceil(n / o.concurrency) + 2) * 20_000;
    const genBudget = 120_000 + stormBudget + o.hold * 1000;
    await startGenerators(gens, n, t.port, o, nextAddress, genBudget);
    const idPrefix = `storm-${name}-${Date.now().toString(36)}`;

    // Warm-up: load the server's connect/boot code paths (every router process gets some), then let it settle.
    const wPer = o.warmup || Math.max(8, Math.ceil(50 / gens.length) * (t.processes > 1 ? t.processes : 1));
    const w = await stormAll(
      gens,
      gens.map(() => wPer),
      `${idPrefix}-w`,
      120_000,
    );
    await Promise.all(gens.map((g) => g.request('close', { op: 'close' }, 30_000)));
    await sleep(2000);

    const pids = processTree(t.rootPid);
    const idle = sampleTree(pids);
    const redisIdle = t.redisPid ? rssKB(t.redisPid) : NaN;

    // Storm.
    const cpuPer0 = pids.map((p) => {
      try {
        return processCpuMs(p);
      } catch {
        return 0;
      }
    });
    const redisCpu0 = t.redisPid ? processCpuMs(t.redisPid) : 0;
    const m0 = machineCpuMs();
    const self0 = process.cpuUsage();
    const s = await stormAll(
      gens,
      gens.map((g) => g.chargers),
      idPrefix,
      stormBudget,
    );
    const cpuPer1 = pids.map((p) => {
      try {
        return processCpuMs(p);
      } catch {
        return 0;
      }
    });
    const serverCpuMs = cpuPer1.reduce((a, v, i) => a + v - cpuPer0[i], 0);
    const redisCpuMs = t.redisPid ? processCpuMs(t.redisPid) - redisCpu0 : null;
    const m1 = machineCpuMs();
    const self = process.cpuUsage(self0);
    const wall = Math.max(1, s.agg.bootAllMs, ...s.phases.map((p) => p.wallMs));
    const otherMs =
      m1.busy - m0.busy - serverCpuMs - (redisCpuMs ?? 0) - s.agg.generatorCpuMs - (self.user + self.system) / 1000;
    const storm: StormAgg = { ...s.agg, serverCpuMs, redisCpuMs, otherCores: +Math.max(0, otherMs / wall).toFixed(2) };

    // Hold: every second, how many are still open, and the server's RSS.
    const tick = (holding: boolean) =>
      Promise.all(
        gens.map((g) => g.request<Extract<FromGen, { op: 'tick' }>>('tick', { op: 'tick', holding }, 10_000)),
      );
    await tick(true);
    const holdPids = processTree(t.rootPid);
    const holdStart = sampleTree(holdPids);
    const redisHoldStart = t.redisPid ? rssKB(t.redisPid) : NaN;
    const cpuHold0 = treeCpuMs(holdPids);
    const redisHold0 = t.redisPid ? processCpuMs(t.redisPid) : 0;
    const rssPerSecond: number[] = [];
    const openPerSecond: number[] = [];
    const tHold = Date.now();
    let last = await tick(true);
    for (let sec = 1; sec <= o.hold; sec++) {
      await sleep(Math.max(0, tHold + sec * 1000 - Date.now()));
      last = await tick(true);
      openPerSecond.push(last.reduce((a, r) => a + r.open, 0));
      rssPerSecond.push(sampleTree(processTree(t.rootPid), false).totalRssKB);
    }
    const holdEnd = sampleTree(processTree(t.rootPid));
    const redisHoldEnd = t.redisPid ? rssKB(t.redisPid) : NaN;
    const holdCpu = treeCpuMs(holdPids) - cpuHold0;
    const redisHoldCpu = t.redisPid ? processCpuMs(t.redisPid) - redisHold0 : null;
    const holdSeconds = (Date.now() - tHold) / 1000;
    last = await tick(false);
    const drops = last.reduce((a, r) => a + r.drops, 0);
    const dropSamples = last.flatMap((r) => r.dropSamples).slice(0, 12);
    const restarts = t.restarts();
    const cmdstats = t.redisPort ? await redisInfo(t.redisPort, 'commandstats') : {};
    const keyspace = t.redisPort ? await redisInfo(t.redisPort, 'keyspace') : {};

    await Promise.all(gens.map((g) => g.request('close', { op: 'close' }, 60_000)));
    await sleep(1000);
    const afterClose = sampleTree(processTree(t.rootPid), false).totalRssKB;

    const booted = storm.booted || 1;
    const byPid = (smp: TreeSample, pid: number, f: 'rssKB' | 'pssKB' | 'fds') => {
      const i = smp.pids.indexOf(pid);
      return i < 0 ? NaN : smp[f][i];
    };
    const perProcess: PerProcess[] = pids.map((pid, i) => {
      const router = t.routerPids.includes(pid);
      const fdsIdle = byPid(idle, pid, 'fds'),
        fdsHold = byPid(holdStart, pid, 'fds');
      return {
        pid,
        role:
          t.processes > 1
            ? pid === t.rootPid
              ? 'supervisor'
              : router
                ? 'router'
                : commOf(pid)
            : pid === t.rootPid
              ? 'server'
              : commOf(pid),
        rssKB: {
          idle: byPid(idle, pid, 'rssKB'),
          holdStart: byPid(holdStart, pid, 'rssKB'),
          holdEnd: byPid(holdEnd, pid, 'rssKB'),
        },
        pssKB: {
          idle: byPid(idle, pid, 'pssKB'),
          holdStart: byPid(holdStart, pid, 'pssKB'),
          holdEnd: byPid(holdEnd, pid, 'pssKB'),
        },
        fds: { idle: fdsIdle, holdStart: fdsHold },
        connections: fdsHold - fdsIdle,
        cpuStormMs: cpuPer1[i] - cpuPer0[i],
      };
    });
    const conns = perProcess
      .filter((p) => p.role === 'router' || p.role === 'server')
      .map((p) => p.connections)
      .filter(Number.isFinite);
    const mean = conns.reduce((a, v) => a + v, 0) / (conns.length || 1);
    const kb = (v: number) => +(v / booted).toFixed(2);
    const gcores = (p: GenPhase) => +(p.cpuMs / Math.max(1, p.wallMs)).toFixed(2);
    return {
      server: name,
      describe: t.describe,
      chargers: n,
      processes: t.processes,
      threadsPerProcess: t.threads,
      generator: { cpuMs: s.agg.generatorCpuMs },
      generators: gens.map((g, i) => ({
        pid: g.pid,
        chargers: g.chargers,
        localAddresses: g.cfg.localAddresses,
        concurrency: g.cfg.concurrency,
        cpuMs: s.phases[i].cpuMs,
        sysMs: s.phases[i].sysMs,
        cores: gcores(s.phases[i]),
        loopDelayMs: s.phases[i].loopDelayMs,
      })),
      warmup: { booted: w.agg.booted, failures: w.agg.attempted - w.agg.booted },
      rssKB: {
        idle: idle.totalRssKB,
        holdStart: holdStart.totalRssKB,
        holdEnd: holdEnd.totalRssKB,
        afterClose,
        perSecond: rssPerSecond,
      },
      pssKB: { idle: idle.totalPssKB, holdStart: holdStart.totalPssKB, holdEnd: holdEnd.totalPssKB },
      storm,
      hold: {
        seconds: +holdSeconds.toFixed(2),
        openPerSecond,
        drops,
        dropSamples,
        pingsReceived: last.reduce((a, r) => a + r.pings, 0),
        serverCalls: last.reduce((a, r) => a + r.serverCalls, 0),
        serverCpuMs: holdCpu,
        redisCpuMs: redisHoldCpu,
      },
      perConnection: {
        rssKB: kb(holdStart.totalRssKB - idle.totalRssKB),
        rssKBEnd: kb(holdEnd.totalRssKB - idle.totalRssKB),
        totalKB: kb(holdStart.totalRssKB),
        totalKBEnd: kb(holdEnd.totalRssKB),
        pssKB: kb(holdStart.totalPssKB - idle.totalPssKB),
        pssTotalKB: kb(holdStart.totalPssKB),
        pssTotalKBEnd: kb(holdEnd.totalPssKB),
        rssDriftMB: +((holdEnd.totalRssKB - holdStart.totalRssKB) / 1024).toFixed(1),
      },
      perProcess,
      spread:
        conns.length > 1
          ? {
              min: Math.min(...conns),
              max: Math.max(...conns),
              maxOverMean: +(Math.max(...conns) / (mean || 1)).toFixed(3),
            }
          : null,
      redis: t.redisPid
        ? {
            rssKB: { idle: redisIdle, holdStart: redisHoldStart, holdEnd: redisHoldEnd },
            cpuMs: { storm: redisCpuMs ?? 0, hold: redisHoldCpu ?? 0 },
            keys: Object.values(keyspace).reduce((a, v) => a + Number(/keys=(\d+)/.exec(v)?.[1] ?? 0), 0),
            commandsPerCharger: Object.fromEntries(
              Object.entries(cmdstats)
                .map(
                  ([k, v]) =>
                    [
                      k.replace(/^cmdstat_/, ''),
                      +(Number(/calls=(\d+)/.exec(v)?.[1] ?? 0) / (storm.booted + w.agg.booted || 1)).toFixed(2),
                    ] as [string, number],
                )
                .filter(([, n]) => n >= 0.01)
                .sort((a, b) => b[1] - a[1]),
            ),
          }
        : null,
      restarts,
    };
  } catch (err) {
    throw new Error(
      `${name}: ${(err as Error).message}\nserver output (last lines):\n${t.output().slice(-30).join('\n')}`,
      { cause: err },
    );
  } finally {
    await Promise.all(gens.map((g) => g.exit()));
    await t.stop();
  }
}

// ── report ────────────────────────────────────────────────────────────────────────────────

const fmtFail = (f: Record<string, number>) =>
  fmtErrors(
    Object.values(f).reduce((n, v) => n + v, 0),
    f,
  );
const mb = (kb: number) => (kb / 1024).toFixed(0);

function markdown(o: Options, rows: StormServerResult[]): string {
  const L: string[] = [];
  L.push(
    `OCPP ${o.version}, raw client, ≤ ${o.concurrency} handshakes pending in all, hold ${o.hold} s; one repetition. RSS/PSS summed over each server's processes.`,
    '',
  );
  L.push(
    '| server | chargers | procs × threads | generators | connects/s | boots/s | time to boot all s | handshake p50 / p99 ms | boot p50 / p99 ms | failures | drops in hold | RSS idle / hold MB | RSS/conn KB: total ÷ N, hold start / end | RSS/conn KB: (hold − idle) ÷ N, start / end | PSS/conn KB: total ÷ N, start / end; Δ start | RSS drift in hold MB | CPU in storm s: server / generators / Redis | other load, cores | generator cores max, loop p99 ms max |',
  );
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    const s = r.storm;
    const gmax = Math.max(...r.generators.map((g) => g.cores));
    const lmax = Math.max(...r.generators.map((g) => g.loopDelayMs.p99));
    L.push(
      `| ${r.server} | ${r.chargers} | ${r.processes} × ${r.threadsPerProcess} | ${r.generators.length} | ${s.connectsPerSec} | ${s.bootsPerSec} | ${(s.bootAllMs / 1000).toFixed(2)} | ${(s.handshakeUs.p50 / 1000).toFixed(1)} / ${(s.handshakeUs.p99 / 1000).toFixed(1)} | ${(s.bootUs.p50 / 1000).toFixed(1)} / ${(s.bootUs.p99 / 1000).toFixed(1)} | ${fmtFail(s.failures)} | ${r.hold.drops} | ${mb(r.rssKB.idle)} / ${mb(r.rssKB.holdStart)} | ${r.perConnection.totalKB} / ${r.perConnection.totalKBEnd} | ${r.perConnection.rssKB} / ${r.perConnection.rssKBEnd} | ${r.perConnection.pssTotalKB} / ${r.perConnection.pssTotalKBEnd}; ${r.perConnection.pssKB} | ${r.perConnection.rssDriftMB} | ${(s.serverCpuMs / 1000).toFixed(1)} / ${(s.generatorCpuMs / 1000).toFixed(1)} / ${s.redisCpuMs === null ? '–' : (s.redisCpuMs / 1000).toFixed(1)} | ${s.otherCores} | ${gmax}, ${lmax} |`,
    );
  }
  for (const r of rows.filter((x) => x.processes > 1 || x.redis)) {
    L.push(
      '',
      `${r.server}: per process (connections = file descriptors at hold − idle)${r.spread ? `; spread min ${r.spread.min}, max ${r.spread.max}, max ÷ mean ${r.spread.maxOverMean}` : ''}${r.restarts.length ? `; RESTARTED: ${r.restarts.join(', ')}` : ''}`,
      '',
    );
    L.push(
      '| pid | role | connections | fds at hold | RSS idle / hold start / hold end MB | PSS hold start / end MB | CPU in storm s |',
      '|---:|---|---:|---:|---:|---:|---:|',
    );
    for (const p of r.perProcess)
      L.push(
        `| ${p.pid} | ${p.role} | ${p.connections} | ${p.fds.holdStart} | ${mb(p.rssKB.idle)} / ${mb(p.rssKB.holdStart)} / ${mb(p.rssKB.holdEnd)} | ${mb(p.pssKB.holdStart)} / ${mb(p.pssKB.holdEnd)} | ${(p.cpuStormMs / 1000).toFixed(1)} |`,
      );
    if (r.redis) {
      L.push(
        '',
        `Redis: RSS idle ${mb(r.redis.rssKB.idle)} MB, hold start ${mb(r.redis.rssKB.holdStart)} MB, hold end ${mb(r.redis.rssKB.holdEnd)} MB; CPU ${(r.redis.cpuMs.storm / 1000).toFixed(1)} s in the storm, ${(r.redis.cpuMs.hold / 1000).toFixed(1)} s in the hold; ${r.redis.keys} keys.`,
      );
      L.push(
        `Redis commands per charger (connect + boot + hold): ${Object.entries(r.redis.commandsPerCharger)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}.`,
      );
    }
  }
  return L.join('\n');
}

if (isMain(import.meta.url)) {
  const o = parse(process.argv.slice(2));
  const command = commandLine('bench/storm.ts', process.argv.slice(2));
  const started = Date.now();
  // Whole-run bound: per server its storm budget, hold and slack.
  const budgetMs = o.servers.reduce(
    (a, s) => a + 240_000 + (Math.ceil(o.chargers[s] / o.concurrency) + 2) * 20_000 + o.hold * 1000,
    0,
  );
  exitAfter(budgetMs, `storm: exceeded its ${Math.round(budgetMs / 1000)} s budget`, 3);
  const rows: StormServerResult[] = [];
  const nextAddress = { k: 0 };
  const commit = shortCommit();
  for (const name of o.servers) {
    const r = await runServer(name, o, nextAddress);
    rows.push(r);
    const s = r.storm;
    log(
      `${name.padEnd(9)} booted ${s.booted}/${s.attempted} in ${s.bootAllMs} ms  ${s.connectsPerSec} connects/s  ${s.bootsPerSec} boots/s  failures ${fmtFail(s.failures)}  RSS ${mb(r.rssKB.holdStart)} MB = ${r.perConnection.totalKB} KB/conn (Δ ${r.perConnection.rssKB})  drops ${r.hold.drops}`,
    );
    for (const x of [...s.failureSamples, ...r.hold.dropSamples]) log(`    ${x}`);
  }
  const report = {
    kind: 'storm',
    date: new Date().toISOString(),
    command,
    commit,
    options: o,
    machine: machineInfo(),
    node: process.version,
    servers: Object.fromEntries(
      rows.map((r) => [r.server, { describe: r.describe, threads: r.threadsPerProcess, processes: r.processes }]),
    ),
    results: Object.fromEntries(rows.map((r) => [r.server, r])),
    wallSeconds: Math.round((Date.now() - started) / 1000),
  };
  writeReport(o.out, report);
  process.stdout.write(markdown(o, rows) + '\n');
  process.exit(0);
}
