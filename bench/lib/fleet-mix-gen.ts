/**
 * Fleet-mix OCPP load generator (issue #3, "a realistic fleet mix"): N simulated chargers over
 * loopback, each living its own life on a per-charger schedule: heartbeats, sessions, meter
 * values, status changes, now and then a fault. The open-loop generator's method
 * (bench/lib/open-loop-gen.ts) with a mix of actions instead of one: nothing waits for a reply,
 * and latency is measured from each CALL's **intended** send time (no coordinated omission),
 * the generator's own lateness reported apart. Meant to run in its own process (bench/fleet-mix.ts
 * starts it).
 *
 *   node --import tsx bench/lib/fleet-mix-gen.ts '<FleetMixOptions JSON>'   → one line: RESULT {json}
 *
 * One charger, in simulated seconds (real time × speedup):
 *  - a Heartbeat every heartbeatSec, at a random phase;
 *  - idle (Available): every checkSec it starts a session with probability sessionProb, or
 *    faults with probability faultProb;
 *  - a session **without Start/StopTransaction** (the router has no transaction plugin yet;
 *    they would be answered NotSupported): StatusNotification Preparing, preparingSec later
 *    Charging, MeterValues every meterSec while charging (charging lasts sessionSec × U(0.5,
 *    1.5)), then Finishing, finishingSec later Available. 2.0.1: Occupied … Available (its
 *    Charging / Finishing are TransactionEvents, not sent);
 *  - a fault: StatusNotification Faulted (1.6: one of FLEET_ERROR_CODES), faultSec later
 *    Available.
 * At the start every charger is put in the steady state: charging with probability
 * sessionSec ÷ (sessionSec + checkSec ÷ sessionProb), at a random point of its session; else idle.
 * All times are divided by `speedup`, so 1,000 chargers at the defaults × 300 offer about
 * 3,000 msg/s (each charger: a heartbeat every second, meter values every 200 ms).
 *
 * Frames: per charger one pre-masked frame per message kind (timestamps fixed per run, as in
 * the other generators), the 10 id digits patched per CALL; each charger's due CALLs of a
 * timer tick in one write. Reuses the raw RFC 6455 client of bench/lib/loadgen.ts.
 *
 * Phases: connect (bounded concurrency) ─► BootNotification once each ─► the schedule runs
 * for warmupSec (not measured) then durationSec (the window) ─► sending stops ─► replies to the
 * window's CALLs are waited for (≤ drainMs) ─► close. Figures per action and overall.
 *
 * Owns: the fleet's schedule and what is measured in the window. Must not: start servers,
 * wait for a reply before sending, send transaction messages.
 */
import { performance } from 'node:perf_hooks';
import { cpus, loadavg } from 'node:os';
import { Histogram, type HistogramSummary } from './histogram.js';
import { cpuFigures, resultChildMain, startCpuWindow } from './proc.js';
import { connectAll, frameText, maskedFrame } from './loadgen.js';
import { OpenLoopCharger, WindowRun } from './open-loop-client.js';
import {
  FLEET_ERROR_CODES,
  ID_WIDTH,
  sessionMeterValuesPayload,
  statusNotificationPayload,
  type BenchVersion,
  type FleetStatus,
} from './ocpp-payloads.js';

export interface FleetMixOptions {
  port: number;
  serverPid?: number;
  version: BenchVersion;
  chargers: number;
  /** Simulated seconds per real second. */
  speedup: number;
  /** The per-charger schedule, in simulated seconds (probabilities per idle check). */
  heartbeatSec: number;
  meterSec: number;
  checkSec: number;
  sessionProb: number;
  faultProb: number;
  sessionSec: number;
  preparingSec: number;
  finishingSec: number;
  faultSec: number;
  warmupSec: number;
  durationSec: number;
  drainMs: number;
  connectConcurrency: number;
  idPrefix: string;
  /** Seed of the schedule's random numbers: the same seed, the same fleet life (compare servers on it). */
  seed: number;
}

export const DEFAULT_FLEET_MIX: Omit<FleetMixOptions, 'port'> = {
  version: '1.6',
  chargers: 1000,
  speedup: 300,
  heartbeatSec: 300,
  meterSec: 60,
  checkSec: 60,
  sessionProb: 0.02,
  faultProb: 0.001,
  sessionSec: 1800,
  preparingSec: 30,
  finishingSec: 30,
  faultSec: 300,
  warmupSec: 2,
  durationSec: 10,
  drainMs: 5000,
  connectConcurrency: 50,
  idPrefix: `fleet-${process.pid}`,
  seed: 1,
};

/** The actions of the mix, in report order. */
export const FLEET_ACTIONS = ['Heartbeat', 'StatusNotification', 'MeterValues'] as const;
export type FleetAction = (typeof FLEET_ACTIONS)[number];

/** Message kinds: one pre-built frame each. Kind → action index. */
const KINDS: { name: string; action: number }[] = [
  { name: 'Heartbeat', action: 0 },
  { name: 'MeterValues', action: 2 },
  ...(['Available', 'Preparing', 'Charging', 'Finishing'] as FleetStatus[]).map((s) => ({
    name: `StatusNotification:${s}`,
    action: 1,
  })),
  ...FLEET_ERROR_CODES.map((e) => ({ name: `StatusNotification:Faulted:${e}`, action: 1 })),
];
const K_HEARTBEAT = 0;
const K_METER = 1;
const K_STATUS: Record<Exclude<FleetStatus, 'Faulted'>, number> = {
  Available: 2,
  Preparing: 3,
  Charging: 4,
  Finishing: 5,
};
const K_FAULT0 = 6;

/** The CALL text of every kind for `version` (null: the version has no such message). */
export function fleetCallTexts(version: BenchVersion, timestamp: string): (string | null)[] {
  const call = (action: string, p: unknown) => JSON.stringify([2, '0'.repeat(ID_WIDTH), action, p]);
  const status = (s: FleetStatus, e?: string) => {
    const p = statusNotificationPayload(version, s, timestamp, e);
    return p && call('StatusNotification', p);
  };
  return [
    call('Heartbeat', {}),
    call('MeterValues', sessionMeterValuesPayload(version, timestamp)),
    status('Available'),
    status('Preparing'),
    status('Charging'),
    status('Finishing'),
    ...FLEET_ERROR_CODES.map((e) => status('Faulted', e)),
  ];
}

export interface ActionFigures {
  /** CALLs whose intended time fell in the window. */
  scheduled: number;
  /** Written during the window ÷ its length; replies read during the window ÷ its length. */
  sendRate: number;
  replyRate: number;
  answered: number;
  callError: number;
  missing: number;
  latencyUs: HistogramSummary;
  sendLagUs: HistogramSummary;
}

export interface FleetMixResult {
  options: FleetMixOptions;
  connect: { ms: number; connected: number; failed: number; failures: string[] };
  window: {
    seconds: number;
    /** The mix's expected rate at steady state (msg/s over the connected chargers). */
    expectedRate: number;
    all: ActionFigures;
    perAction: Record<FleetAction, ActionFigures>;
    /** Window CALLs per message kind (StatusNotification per status / errorCode). */
    perKind: Record<string, number>;
    /** Sessions started (Preparing) and faults in the window. */
    sessions: number;
    faults: number;
    perSecond: { sent: number[]; replies: number[] };
  };
  missing: number;
  errors: { callError: number; unparsed: number; closed: number; late: number; total: number; samples: string[] };
  server?: {
    cpuMs: number;
    cpuUsPerMessage: number;
    cores: number;
    threads: { name: string; ms: number; threads: number }[];
  };
  generator: { cpuMs: number; cpuUsPerMessage: number; cores: number; eventLoopUtilization: number };
  machine: { cores: number; busyCores: number; foreignCores: number; loadavg: number[] };
  drain: { ms: number; leftOutstanding: number };
}

/** Expected msg/s of one charger at steady state (simulated seconds), and its charging share. */
export function expectedPerCharger(o: Omit<FleetMixOptions, 'port'>): { rate: number; charging: number } {
  const idle = o.checkSec / (o.sessionProb + o.faultProb);
  const session = o.preparingSec + o.sessionSec + o.finishingSec;
  const cycles =
    1 /
    (idle +
      (o.sessionProb / (o.sessionProb + o.faultProb)) * session +
      (o.faultProb / (o.sessionProb + o.faultProb)) * o.faultSec);
  const sessionsPerSec = (cycles * o.sessionProb) / (o.sessionProb + o.faultProb);
  const faultsPerSec = (cycles * o.faultProb) / (o.sessionProb + o.faultProb);
  const charging = sessionsPerSec * o.sessionSec;
  return { rate: 1 / o.heartbeatSec + charging / o.meterSec + 4 * sessionsPerSec + 2 * faultsPerSec, charging };
}

// ── the run ───────────────────────────────────────────────────────────────────────────────

class Stats {
  readonly latency = new Histogram();
  readonly sendLag = new Histogram();
  scheduled = 0;
  answered = 0;
  callError = 0;
  missing = 0;
  sent = 0;
  replies = 0;
}

class Run extends WindowRun<FleetMixOptions> {
  readonly all = new Stats();
  readonly perAction = FLEET_ACTIONS.map(() => new Stats());
  readonly perKind = new Array<number>(KINDS.length).fill(0);
  sessions = 0;
  faults = 0;
}

type State = 'idle' | 'preparing' | 'charging' | 'finishing' | 'faulted';
/** What a scheduled event of a charger does. */
const Ev = { Heartbeat: 0, Check: 1, Plugin: 2, Meter: 3, Stop: 4, Unplug: 5, Recover: 6 } as const;

class FleetCharger extends OpenLoopCharger<Run> {
  private readonly templates: (Buffer | null)[];
  private readonly idOffsets: number[];
  private readonly kindOf: Uint8Array;
  /** CALLs due but not written: intended time and kind. */
  private dueT: number[] = [];
  private dueK: number[] = [];
  state: State = 'idle';
  chargeEnd = 0;

  constructor(run: Run, cpId: string, texts: (string | null)[], ringSize: number) {
    super(run, cpId, ringSize);
    this.templates = texts.map((t) => (t === null ? null : maskedFrame(t, 0x1, this.mask)));
    this.idOffsets = texts.map((t, i) => (t ? this.templates[i]!.length - Buffer.byteLength(t) + 4 : 0));
    this.kindOf = new Uint8Array(ringSize);
  }

  /** A CALL of kind `k` is due at `t` (skipped when the version has no such message). */
  queue(k: number, t: number): boolean {
    if (!this.templates[k]) return false;
    this.dueT.push(t);
    this.dueK.push(k);
    return true;
  }

  flush(now: number): void {
    const n = this.dueT.length;
    if (n === 0) return;
    const run = this.run;
    if (this.phase !== 'run') {
      for (let f = 0; f < n; f++) {
        if (!run.inWindow(this.dueT[f])) continue;
        const a = KINDS[this.dueK[f]].action;
        run.all.scheduled++;
        run.perAction[a].scheduled++;
        run.all.missing++;
        run.perAction[a].missing++;
        run.unsent++;
      }
      this.dueT.length = 0;
      this.dueK.length = 0;
      return;
    }
    let total = 0;
    for (let f = 0; f < n; f++) total += this.templates[this.dueK[f]]!.length;
    const out = Buffer.allocUnsafe(total);
    let base = 0;
    for (let f = 0; f < n; f++) {
      const at = this.dueT[f];
      const k = this.dueK[f];
      const t = this.templates[k]!;
      const a = KINDS[k].action;
      t.copy(out, base);
      const { seq, slot } = this.nextSlot(at);
      this.kindOf[slot] = k;
      if (run.inWindow(at)) {
        const lag = (now - at) * 1000;
        run.all.scheduled++;
        run.all.sendLag.record(lag);
        const s = run.perAction[a];
        s.scheduled++;
        s.sendLag.record(lag);
        run.perKind[k]++;
      }
      if (run.bump(run.sentPerSecond, now)) {
        run.all.sent++;
        run.perAction[a].sent++;
      }
      this.writeId(out, base + this.idOffsets[k], seq);
      base += t.length;
    }
    this.dueT.length = 0;
    this.dueK.length = 0;
    this.sock.write(out);
  }

  protected onReply(
    slot: number,
    at: number,
    callError: boolean,
    now: number,
    b: Uint8Array,
    s: number,
    len: number,
  ): void {
    const run = this.run;
    const st = run.perAction[KINDS[this.kindOf[slot]].action];
    if (run.bump(run.repliesPerSecond, now)) {
      run.all.replies++;
      st.replies++;
    }
    if (callError) {
      run.error('callError', frameText(b, s, len));
      if (run.inWindow(at)) {
        run.all.callError++;
        st.callError++;
      }
    } else if (run.inWindow(at)) {
      const us = (now - at) * 1000;
      run.all.latency.record(us);
      run.all.answered++;
      st.latency.record(us);
      st.answered++;
    }
  }

  /** Counts the window's CALLs still outstanding as missing (per action and overall). */
  countMissing(): number {
    let n = 0;
    for (let i = 0; i <= this.ringMask; i++) {
      if (this.pend[i] >= 0 && this.run.inWindow(this.intended[i])) {
        n++;
        this.run.perAction[KINDS[this.kindOf[i]].action].missing++;
      }
    }
    this.run.all.missing += n;
    return n;
  }
}

/** A binary min-heap of (time, charger, event), on parallel arrays. */
class EventHeap {
  private t: number[] = [];
  private c: number[] = [];
  private e: number[] = [];
  get size(): number {
    return this.t.length;
  }
  topT(): number {
    return this.t[0] ?? Infinity;
  }
  push(t: number, c: number, e: number): void {
    let i = this.t.length;
    this.t.push(t);
    this.c.push(c);
    this.e.push(e);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.t[p] <= t) break;
      this.t[i] = this.t[p]!;
      this.c[i] = this.c[p]!;
      this.e[i] = this.e[p]!;
      i = p;
    }
    this.t[i] = t;
    this.c[i] = c;
    this.e[i] = e;
  }
  /** Removes the earliest event; its charger and kind land in `out`. */
  pop(out: { t: number; c: number; e: number }): void {
    out.t = this.t[0]!;
    out.c = this.c[0]!;
    out.e = this.e[0]!;
    const lt = this.t.pop()!,
      lc = this.c.pop()!,
      le = this.e.pop()!;
    const n = this.t.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const m = r < n && this.t[r] < this.t[l] ? r : l;
      if (this.t[m] >= lt) break;
      this.t[i] = this.t[m]!;
      this.c[i] = this.c[m]!;
      this.e[i] = this.e[m]!;
      i = m;
    }
    this.t[i] = lt;
    this.c[i] = lc;
    this.e[i] = le;
  }
}

/** mulberry32: a small seeded PRNG in [0, 1). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const sleepUntil = (t: number) => sleep(Math.max(0, t - performance.now()));

export async function runFleetMix(
  input: Partial<FleetMixOptions> & Pick<FleetMixOptions, 'port'>,
): Promise<FleetMixResult> {
  const o: FleetMixOptions = { ...DEFAULT_FLEET_MIX, ...input };
  if (!(o.speedup > 0) || !(o.chargers >= 1)) throw new Error('speedup and chargers must be positive');
  for (const k of [
    'heartbeatSec',
    'meterSec',
    'checkSec',
    'sessionSec',
    'preparingSec',
    'finishingSec',
    'faultSec',
  ] as const)
    if (!(o[k] > 0)) throw new Error(`${k} must be positive`);
  if (!(o.sessionProb >= 0 && o.faultProb >= 0 && o.sessionProb + o.faultProb <= 1))
    throw new Error('sessionProb, faultProb: 0..1, sum ≤ 1');
  const run = new Run(o);
  const rnd = seeded(o.seed);
  const texts = fleetCallTexts(o.version, new Date().toISOString());
  // Ring: every CALL a charger can send in the run (heartbeats + meter values at full rate + status changes).
  const perCharger =
    o.speedup *
    (1 / o.heartbeatSec + 1 / o.meterSec + 4 / Math.min(o.preparingSec, o.finishingSec, o.faultSec, o.checkSec)) *
    (o.warmupSec + o.durationSec + 1);
  let ring = 16;
  while (ring < perCharger + 16 && ring < 1 << 20) ring <<= 1;
  const chargers = Array.from(
    { length: o.chargers },
    (_, i) => new FleetCharger(run, `${o.idPrefix}-${i}`, texts, ring),
  );

  const { ok, connect } = await connectAll(chargers, o.port, o.connectConcurrency);
  run.errors.closed = 0;
  run.errors.total = 0;
  run.errors.samples = [];
  if (ok.length === 0) throw new Error(`no charger connected: ${connect.failures.join('; ')}`);

  const ms = (simSec: number) => (simSec * 1000) / o.speedup;
  const exp = expectedPerCharger(o);
  const heap = new EventHeap();
  const T0 = performance.now() + 20;
  run.wStart = T0 + o.warmupSec * 1000;
  run.wEnd = run.wStart + o.durationSec * 1000;
  // Steady state at T0: a random heartbeat phase; charging (at a random point of the session) or idle.
  ok.forEach((c, i) => {
    c.phase = 'run';
    heap.push(T0 + rnd() * ms(o.heartbeatSec), i, Ev.Heartbeat);
    if (rnd() < exp.charging) {
      c.state = 'charging';
      c.chargeEnd = T0 + rnd() * ms(o.sessionSec * (0.5 + rnd()));
      const m = T0 + rnd() * ms(o.meterSec);
      heap.push(m < c.chargeEnd ? m : c.chargeEnd, i, m < c.chargeEnd ? Ev.Meter : Ev.Stop);
    } else {
      heap.push(T0 + rnd() * ms(o.checkSec), i, Ev.Check);
    }
  });

  const ev = { t: 0, c: 0, e: 0 };
  const touched = new Set<FleetCharger>();
  const expectedRate = exp.rate * o.speedup * ok.length;
  const maxPerTick = Math.max(64, Math.ceil(expectedRate / 50));
  /** Runs one event: queues its CALL, schedules what follows. */
  const step = () => {
    heap.pop(ev);
    const { t, c: i, e } = ev;
    const c = ok[i];
    const send = (k: number) => {
      if (c.queue(k, t)) touched.add(c);
    };
    switch (e) {
      case Ev.Heartbeat:
        send(K_HEARTBEAT);
        heap.push(t + ms(o.heartbeatSec), i, Ev.Heartbeat);
        break;
      case Ev.Check: {
        const r = rnd();
        if (r < o.faultProb) {
          c.state = 'faulted';
          send(K_FAULT0 + Math.floor(rnd() * FLEET_ERROR_CODES.length));
          if (run.inWindow(t)) run.faults++;
          heap.push(t + ms(o.faultSec), i, Ev.Recover);
        } else if (r < o.faultProb + o.sessionProb) {
          c.state = 'preparing';
          send(K_STATUS.Preparing);
          if (run.inWindow(t)) run.sessions++;
          heap.push(t + ms(o.preparingSec), i, Ev.Plugin);
        } else {
          heap.push(t + ms(o.checkSec), i, Ev.Check);
        }
        break;
      }
      case Ev.Plugin:
        c.state = 'charging';
        send(K_STATUS.Charging);
        c.chargeEnd = t + ms(o.sessionSec * (0.5 + rnd()));
        heap.push(Math.min(t + ms(o.meterSec), c.chargeEnd), i, t + ms(o.meterSec) < c.chargeEnd ? Ev.Meter : Ev.Stop);
        break;
      case Ev.Meter: {
        send(K_METER);
        const next = t + ms(o.meterSec);
        heap.push(Math.min(next, c.chargeEnd), i, next < c.chargeEnd ? Ev.Meter : Ev.Stop);
        break;
      }
      case Ev.Stop:
        c.state = 'finishing';
        send(K_STATUS.Finishing);
        heap.push(t + ms(o.finishingSec), i, Ev.Unplug);
        break;
      case Ev.Unplug:
      case Ev.Recover:
        c.state = 'idle';
        send(K_STATUS.Available);
        heap.push(t + ms(o.checkSec), i, Ev.Check);
        break;
    }
  };

  let done!: () => void;
  const finished = new Promise<void>((r) => {
    done = r;
  });
  const tick = () => {
    const now = performance.now();
    let n = 0;
    // Bounded per tick (≈ 20 ms of CALLs), so a late generator still reads replies between bursts.
    while (heap.topT() <= now && heap.topT() < run.wEnd && n < maxPerTick) {
      step();
      n++;
    }
    for (const c of touched) c.flush(now);
    touched.clear();
    if (heap.topT() >= run.wEnd) return done();
    const wait = heap.topT() - performance.now();
    if (wait <= 0) setImmediate(tick);
    else setTimeout(tick, wait);
  };
  setTimeout(tick, 20);

  await sleepUntil(run.wStart);
  const endWindow = startCpuWindow(o.serverPid);
  await sleepUntil(run.wEnd);
  const w = endWindow();
  const windowMs = w.windowMs;
  await finished;

  const d0 = performance.now();
  const missingNow = () => ok.reduce((n, c) => n + c.missingInWindow(), 0);
  while (performance.now() - d0 < o.drainMs && missingNow() > 0) await sleep(20);
  const missing = ok.reduce((n, c) => n + c.countMissing(), 0) + run.unsent;
  const drain = {
    ms: Math.round(performance.now() - d0),
    leftOutstanding: ok.reduce((n, c) => n + Math.max(0, c.outstanding), 0),
  };
  for (const c of ok) c.close();

  const seconds = windowMs / 1000;
  const whole = Math.floor(seconds + 0.01);
  const fig = (s: Stats): ActionFigures => ({
    scheduled: s.scheduled,
    sendRate: Math.round(s.sent / seconds),
    replyRate: Math.round(s.replies / seconds),
    answered: s.answered,
    callError: s.callError,
    missing: s.missing,
    latencyUs: s.latency.summary(),
    sendLagUs: s.sendLag.summary(),
  });
  const cli = cpuFigures(w.generatorMs, run.all.replies, windowMs);
  const result: FleetMixResult = {
    options: o,
    connect,
    window: {
      seconds: +seconds.toFixed(3),
      expectedRate: Math.round(expectedRate),
      all: fig(run.all),
      perAction: Object.fromEntries(FLEET_ACTIONS.map((a, i) => [a, fig(run.perAction[i])])) as Record<
        FleetAction,
        ActionFigures
      >,
      perKind: Object.fromEntries(KINDS.map((k, i) => [k.name, run.perKind[i]] as const).filter(([, n]) => n)),
      sessions: run.sessions,
      faults: run.faults,
      perSecond: {
        sent: Array.from({ length: whole }, (_, i) => run.sentPerSecond[i] ?? 0),
        replies: Array.from({ length: whole }, (_, i) => run.repliesPerSecond[i] ?? 0),
      },
    },
    missing,
    errors: run.errors,
    generator: {
      cpuMs: Math.round(cli.cpuMs),
      cpuUsPerMessage: cli.usPerUnit,
      cores: cli.cores,
      eventLoopUtilization: +w.eventLoopUtilization.toFixed(3),
    },
    machine: {
      cores: cpus().length,
      busyCores: +(w.machineBusyMs / windowMs).toFixed(3),
      foreignCores: 0,
      loadavg: loadavg().map((x) => +x.toFixed(2)),
    },
    drain,
  };
  if (w.server) {
    const f = cpuFigures(w.server.cpuMs, run.all.replies, windowMs);
    result.server = { cpuMs: f.cpuMs, cpuUsPerMessage: f.usPerUnit, cores: f.cores, threads: w.server.threads };
  }
  result.machine.foreignCores = +Math.max(
    0,
    (w.machineBusyMs - w.generatorMs - (result.server?.cpuMs ?? 0)) / windowMs,
  ).toFixed(3);
  return result;
}

// CLI: one run, result on stdout as `RESULT {json}`.
if (import.meta.url === `file://${process.argv[1]}`) {
  const input = JSON.parse(process.argv[2] ?? '{}') as Partial<FleetMixOptions> & Pick<FleetMixOptions, 'port'>;
  const o = { ...DEFAULT_FLEET_MIX, ...input };
  await resultChildMain('fleet-mix-gen', 90_000 + (o.warmupSec + o.durationSec) * 1000 + o.drainMs, () =>
    runFleetMix(input),
  );
}
