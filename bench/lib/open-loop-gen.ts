/**
 * Open-loop OCPP load generator: N simulated chargers over loopback sending CALLs of one action
 * on a fixed schedule, R CALLs per second in all, whatever the server does. Meant to run in its
 * own process, apart from the server (bench/open-loop.ts starts it).
 *
 *   node --import tsx bench/lib/open-loop-gen.ts '<OpenLoopOptions JSON>'   → one line: RESULT {json}
 *
 * Schedule: every charger sends one CALL every N/R seconds, at its own random phase in
 * [0, N/R), so the fleet's CALLs are spread evenly over time (1,000 chargers at 10,000/s: each
 * charger every 100 ms). Nothing waits for a reply: a charger may have several CALLs
 * outstanding when the server is slow (OCPP-J wants one at a time; a real fleet at a stalled
 * server queues on the charger instead, which hides the stall from the charger's own clock,
 * not from its user). One timer walks the schedule (all chargers sorted by phase) and writes
 * every CALL whose intended time has come, each charger's due CALLs in one write.
 *
 * Latency is measured from the CALL's **intended** send time, not from the write, to the read
 * of its reply: when the generator or the server falls behind, the delay counts (no
 * coordinated omission). The generator's own lateness (write time − intended time) is
 * reported apart as `sendLagUs`: a server's latency is only meaningful well above it, and the
 * bare uWS responder at the same rate shows the floor of generator + transport.
 *
 * Phases: connect all chargers (bounded concurrency) ─► BootNotification once each ─► the
 * schedule runs for warmupSec (not measured) then durationSec (the window) ─► sending stops ─►
 * replies to the window's CALLs are waited for (≤ drainMs) ─► close. The window's figures are
 * over the CALLs whose intended time fell in it: every one either has a latency, got a
 * CALLERROR (errors.callError), or is `missing` at the end (no reply, or its charger had closed
 * and it was never written). Rates (sent/s, replies/s) and CPU are over the window's wall time.
 *
 * Reuses the raw RFC 6455 client of bench/lib/loadgen.ts (rawConnect, readServerFrames,
 * maskedFrame): same handshake, same framing, same per-connection mask, the 10 id digits
 * patched per CALL.
 *
 * Owns: the schedule and what is measured in the window. Must not: start servers, wait for a
 * reply before sending.
 */
import { performance } from 'node:perf_hooks';
import { cpus, loadavg } from 'node:os';
import { Histogram, type HistogramSummary } from './histogram.js';
import { cpuFigures, resultChildMain, startCpuWindow } from './proc.js';
import { connectAll, frameText, maskedFrame } from './loadgen.js';
import { OpenLoopCharger, WindowRun } from './open-loop-client.js';
import { actionPayload, ID_WIDTH, type BenchAction, type BenchVersion } from './ocpp-payloads.js';

export interface OpenLoopOptions {
  port: number;
  /** Server process to account CPU to (omit to skip server CPU). */
  serverPid?: number;
  version: BenchVersion;
  action: BenchAction;
  chargers: number;
  /** Offered load: CALLs per second over all chargers (each charger: rate ÷ chargers). */
  rate: number;
  warmupSec: number;
  durationSec: number;
  /** Longest wait, after the window, for replies to the window's CALLs. */
  drainMs: number;
  connectConcurrency: number;
  /** Charge point ids are `<idPrefix>-<i>`; make it unique per run. */
  idPrefix: string;
}

export const DEFAULT_OPEN_LOOP: Omit<OpenLoopOptions, 'port' | 'action'> = {
  version: '1.6',
  chargers: 1000,
  rate: 10_000,
  warmupSec: 2,
  durationSec: 5,
  drainMs: 5000,
  connectConcurrency: 50,
  idPrefix: `open-${process.pid}`,
};

export interface OpenLoopResult {
  options: OpenLoopOptions;
  connect: { ms: number; connected: number; failed: number; failures: string[] };
  window: {
    seconds: number;
    /** The rate asked for, scaled to the chargers that connected. */
    offeredRate: number;
    /** CALLs whose intended send time fell in the window. */
    scheduled: number;
    /** CALLs written during the window (wall time) ÷ its length. */
    sendRate: number;
    /** Replies (to any CALL) read during the window ÷ its length. */
    replyRate: number;
    /** CALLRESULTs to the window's CALLs, whenever they came (window or drain). */
    answered: number;
    /** From intended send time to the read of the reply, the window's CALLs (µs). */
    latencyUs: HistogramSummary;
    /** Generator lateness: write time − intended time, the window's CALLs (µs). */
    sendLagUs: HistogramSummary;
    /** Per whole second of the window: CALLs written, replies read. */
    perSecond: { sent: number[]; replies: number[] };
    /**
     * Where in the window the slow replies were: per TIMELINE_MS of intended send time, the
     * longest latency (µs) and how many CALLs took over SLOW_US. A stall of the server shows
     * as a run of buckets with many slow CALLs; a scattered tail as single ones.
     * `startEpochMs`: the window's start on the wall clock, to line up with a server trace
     * (bench/reference/router.ts, BENCH_ROUTER_TRACE).
     */
    timeline: {
      bucketMs: number;
      slowUs: number;
      startEpochMs: number;
      maxUs: number[];
      slow: number[];
      maxSendLagUs: number[];
    };
  };
  /** The window's CALLs without a reply when the drain ended, or never written (their charger had closed). */
  missing: number;
  errors: { callError: number; unparsed: number; closed: number; late: number; total: number; samples: string[] };
  server?: {
    cpuMs: number;
    /** Server CPU microseconds (all threads) per reply read in the window. */
    cpuUsPerMessage: number;
    cores: number;
    threads: { name: string; ms: number; threads: number }[];
  };
  generator: { cpuMs: number; cpuUsPerMessage: number; cores: number; eventLoopUtilization: number };
  machine: { cores: number; busyCores: number; foreignCores: number; loadavg: number[] };
  /** After the window: how long we waited, and CALLs still outstanding then (warm-up ones included). */
  drain: { ms: number; leftOutstanding: number };
}

// ── the run ───────────────────────────────────────────────────────────────────────────────

const TIMELINE_MS = 50;
const SLOW_US = 10_000;

class Run extends WindowRun<OpenLoopOptions> {
  readonly latency = new Histogram();
  readonly sendLag = new Histogram();
  scheduled = 0;
  answered = 0;
  readonly maxUs: number[] = [];
  readonly slow: number[] = [];
  readonly maxLag: number[] = [];

  /** Send lag of a window CALL intended at `at`. */
  lag(at: number, us: number): void {
    this.sendLag.record(us);
    const b = Math.floor((at - this.wStart) / TIMELINE_MS);
    if (us > (this.maxLag[b] ?? 0)) this.maxLag[b] = us;
  }

  /** Latency of a window CALL intended at `at`. */
  record(at: number, us: number): void {
    this.latency.record(us);
    this.answered++;
    const b = Math.floor((at - this.wStart) / TIMELINE_MS);
    if (us > (this.maxUs[b] ?? 0)) this.maxUs[b] = us;
    if (us > SLOW_US) this.slow[b] = (this.slow[b] ?? 0) + 1;
  }
}

/** One simulated charger: a pre-built masked CALL, sent whenever the schedule says. */
class OpenCharger extends OpenLoopCharger<Run> {
  private readonly template: Buffer;
  private readonly idOffset: number;
  /** CALLs due but not yet written (their intended times), flushed by the scheduler. */
  private due: number[] = [];

  constructor(run: Run, cpId: string, callText: string, ringSize: number) {
    super(run, cpId, ringSize);
    this.template = maskedFrame(callText, 0x1, this.mask);
    this.idOffset = this.template.length - Buffer.byteLength(callText) + 4; // [2,"
  }

  /** A CALL of this charger is due (intended time `t`); written by flush(). */
  queue(t: number): void {
    this.due.push(t);
  }

  /** Writes the due CALLs in one write, `now` being the write time. */
  flush(now: number): void {
    const n = this.due.length;
    if (n === 0) return;
    const run = this.run;
    if (this.phase !== 'run') {
      // Closed under us: the window's CALLs it cannot send still count, as missing (a closed
      // charger must not silently shrink the sample; that would be coordinated omission).
      for (const at of this.due)
        if (run.inWindow(at)) {
          run.scheduled++;
          run.unsent++;
        }
      this.due.length = 0;
      return;
    }
    const t = this.template;
    const L = t.length;
    const out = Buffer.allocUnsafe(L * n);
    for (let f = 0; f < n; f++) {
      const at = this.due[f];
      const base = f * L;
      t.copy(out, base);
      const { seq } = this.nextSlot(at);
      if (run.inWindow(at)) {
        run.scheduled++;
        run.lag(at, (now - at) * 1000);
      }
      run.bump(run.sentPerSecond, now);
      this.writeId(out, base + this.idOffset, seq);
    }
    this.due.length = 0;
    this.sock.write(out);
  }

  protected onReply(
    _slot: number,
    at: number,
    callError: boolean,
    now: number,
    b: Uint8Array,
    s: number,
    len: number,
  ): void {
    const run = this.run;
    run.bump(run.repliesPerSecond, now);
    if (callError) run.error('callError', frameText(b, s, len));
    else if (run.inWindow(at)) run.record(at, (now - at) * 1000);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const sleepUntil = (t: number) => sleep(Math.max(0, t - performance.now()));

export async function runOpenLoop(
  input: Partial<OpenLoopOptions> & Pick<OpenLoopOptions, 'port' | 'action'>,
): Promise<OpenLoopResult> {
  const opts: OpenLoopOptions = { ...DEFAULT_OPEN_LOOP, ...input };
  if (!(opts.rate > 0) || !(opts.chargers >= 1)) throw new Error('rate and chargers must be positive');
  const run = new Run(opts);
  const callText = JSON.stringify([
    2,
    '0'.repeat(ID_WIDTH),
    opts.action,
    actionPayload(opts.version, opts.action, new Date().toISOString()),
  ]);
  // Every CALL of the run fits in a charger's ring, so a slot is never reused while pending.
  const perCharger = (opts.rate / opts.chargers) * (opts.warmupSec + opts.durationSec + 1);
  let ring = 16;
  while (ring < perCharger + 16 && ring < 1 << 22) ring <<= 1;
  const chargers = Array.from(
    { length: opts.chargers },
    (_, i) => new OpenCharger(run, `${opts.idPrefix}-${i}`, callText, ring),
  );

  // Connect + boot, bounded concurrency.
  const { ok, connect } = await connectAll(chargers, opts.port, opts.connectConcurrency);
  run.errors.closed = 0; // closes of chargers that failed to connect are reported under connect
  run.errors.total = 0;
  run.errors.samples = [];
  if (ok.length === 0) throw new Error(`no charger connected: ${connect.failures.join('; ')}`);

  // The schedule: charger k of `order` sends at T0 + m·period + phase[k], m = 0, 1, …
  const offeredRate = opts.rate * (ok.length / opts.chargers);
  const periodMs = (ok.length / offeredRate) * 1000;
  const phased = ok.map((c) => ({ c, phase: Math.random() * periodMs })).sort((a, b) => a.phase - b.phase);
  const order = phased.map((p) => p.c);
  const phase = Float64Array.from(phased.map((p) => p.phase));
  for (const c of ok) c.phase = 'run';
  const T0 = performance.now() + 20;
  run.wStart = T0 + opts.warmupSec * 1000;
  run.wEnd = run.wStart + opts.durationSec * 1000;
  let k = 0;
  let cycle = 0;
  let nextT = T0 + phase[0];
  // At most 20 ms of CALLs per tick, so a late generator still reads replies between bursts.
  const maxPerTick = Math.max(64, Math.ceil(offeredRate / 50));
  const touched: OpenCharger[] = [];
  let done!: () => void;
  const finished = new Promise<void>((r) => {
    done = r;
  });
  const tick = () => {
    const now = performance.now();
    let n = 0;
    while (nextT <= now && nextT < run.wEnd && n < maxPerTick) {
      const c = order[k];
      c.queue(nextT);
      touched.push(c);
      if (++k === order.length) {
        k = 0;
        cycle++;
      }
      nextT = T0 + cycle * periodMs + phase[k];
      n++;
    }
    for (const c of touched) c.flush(now);
    touched.length = 0;
    if (nextT >= run.wEnd) return done();
    const wait = nextT - performance.now();
    if (wait <= 0) setImmediate(tick);
    else setTimeout(tick, wait);
  };
  setTimeout(tick, 20);

  await sleepUntil(run.wStart);
  const endWindow = startCpuWindow(opts.serverPid);
  await sleepUntil(run.wEnd);
  const w = endWindow();
  const windowMs = w.windowMs;
  // A late generator still writes the window's last CALLs (their latency counts from the intended time).
  await finished;

  // Drain: wait (bounded) for the replies to the window's CALLs.
  const d0 = performance.now();
  const missingNow = () => ok.reduce((n, c) => n + c.missingInWindow(), 0);
  while (performance.now() - d0 < opts.drainMs && missingNow() > 0) await sleep(20);
  const missing = missingNow() + run.unsent;
  const drain = {
    ms: Math.round(performance.now() - d0),
    leftOutstanding: ok.reduce((n, c) => n + Math.max(0, c.outstanding), 0),
  };
  for (const c of ok) c.close();

  const seconds = windowMs / 1000;
  const whole = Math.floor(seconds + 0.01);
  const perSecond = {
    sent: Array.from({ length: whole }, (_, i) => run.sentPerSecond[i] ?? 0),
    replies: Array.from({ length: whole }, (_, i) => run.repliesPerSecond[i] ?? 0),
  };
  const sentInWindow = run.sentPerSecond.reduce((a, b) => a + (b ?? 0), 0);
  const repliesInWindow = run.repliesPerSecond.reduce((a, b) => a + (b ?? 0), 0);
  const cli = cpuFigures(w.generatorMs, repliesInWindow, windowMs);
  const result: OpenLoopResult = {
    options: opts,
    connect,
    window: {
      seconds: +seconds.toFixed(3),
      offeredRate: Math.round(offeredRate),
      scheduled: run.scheduled,
      sendRate: Math.round(sentInWindow / seconds),
      replyRate: Math.round(repliesInWindow / seconds),
      answered: run.answered,
      latencyUs: run.latency.summary(),
      sendLagUs: run.sendLag.summary(),
      perSecond,
      timeline: {
        bucketMs: TIMELINE_MS,
        slowUs: SLOW_US,
        startEpochMs: Math.round(performance.timeOrigin + run.wStart),
        maxUs: Array.from({ length: Math.ceil((run.wEnd - run.wStart) / TIMELINE_MS) }, (_, i) =>
          Math.round(run.maxUs[i] ?? 0),
        ),
        slow: Array.from({ length: Math.ceil((run.wEnd - run.wStart) / TIMELINE_MS) }, (_, i) => run.slow[i] ?? 0),
        maxSendLagUs: Array.from({ length: Math.ceil((run.wEnd - run.wStart) / TIMELINE_MS) }, (_, i) =>
          Math.round(run.maxLag[i] ?? 0),
        ),
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
    const f = cpuFigures(w.server.cpuMs, repliesInWindow, windowMs);
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
  const input = JSON.parse(process.argv[2] ?? '{}') as Partial<OpenLoopOptions> &
    Pick<OpenLoopOptions, 'port' | 'action'>;
  const o = { ...DEFAULT_OPEN_LOOP, ...input };
  await resultChildMain('open-loop-gen', 90_000 + (o.warmupSec + o.durationSec) * 1000 + o.drainMs, () =>
    runOpenLoop(input),
  );
}
