/**
 * Connect-storm and hold generator: N chargers connect as fast as a bounded number of
 * pending handshakes allows, each sends one BootNotification as soon as it is open; then all
 * of them stay idle for holdSec while we check every second that none was dropped and sample
 * the server's RSS. Meant to run in its own process, apart from the server (bench/storm.ts).
 *
 *   node --import tsx bench/lib/storm-gen.ts '<StormOptions JSON>'   → one line: RESULT {json}
 *
 * Phases: warm-up storm of a few chargers, closed (the server's code paths loaded, so the
 * idle RSS is not "before the first connection ever") ─► idle RSS ─► storm (connect + boot,
 * ≤ `concurrency` handshakes pending) ─► hold (1 s ticks: open connections, drops, RSS) ─►
 * close all (bounded) ─► RESULT.
 *
 * Client: net.Socket with hand-written RFC 6455 framing, like the raw client of loadgen.ts;
 * it answers server pings with pongs and nothing else while idle. Server CALLs (none
 * expected) are counted, not answered.
 *
 * RSS: VmRSS of /proc/<serverPid>/status: the whole process, every thread (the router's
 * worker threads live in the same process).
 *
 * Owns: the simulated fleet of one storm. Must not: start servers.
 */
import { connect, type Socket } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Histogram, type HistogramSummary } from './histogram.js';
import { processCpuMs } from './proc.js';
import { bootPayload, SUBPROTOCOL } from './ocpp-payloads.js';

export interface StormOptions {
  port: number;
  serverPid: number;
  chargers: number;
  /** Most handshakes pending at once (TCP connect + HTTP upgrade not yet answered). */
  concurrency: number;
  holdSec: number;
  /** Chargers of the warm-up storm before the idle RSS is taken (0: none). */
  warmupChargers: number;
  handshakeTimeoutMs: number;
  bootTimeoutMs: number;
  idPrefix: string;
}

export const DEFAULT_STORM: Omit<StormOptions, 'port' | 'serverPid'> = {
  chargers: 2000, concurrency: 256, holdSec: 20, warmupChargers: 50, handshakeTimeoutMs: 10_000, bootTimeoutMs: 10_000, idPrefix: `storm-${process.pid}`,
};

export interface StormPhase {
  /** Chargers attempted / open (101 received) / booted (BootNotification CALLRESULT). */
  attempted: number;
  connected: number;
  booted: number;
  /** From the first connect() to the last 101, and to the last boot CALLRESULT. */
  connectAllMs: number;
  bootAllMs: number;
  connectsPerSec: number;
  bootsPerSec: number;
  handshakeUs: HistogramSummary;
  bootUs: HistogramSummary;
  /** By kind: refused / error (socket error before 101), http (not 101), handshake-timeout, boot-timeout, callerror, closed. */
  failures: Record<string, number>;
  failureSamples: string[];
  bootStatus: Record<string, number>;
  serverCpuMs: number;
  /** The generator's own CPU in the storm (it shares the 2 cores). */
  generatorCpuMs: number;
}

export interface StormResult {
  options: StormOptions;
  warmup: { booted: number; failures: number };
  rssKB: { idle: number; holdStart: number; holdEnd: number; afterClose: number; perSecond: number[] };
  storm: StormPhase;
  hold: {
    seconds: number;
    /** Open connections at each 1 s tick. */
    openPerSecond: number[];
    drops: number;
    dropSamples: string[];
    pingsReceived: number;
    serverCalls: number;
    serverCpuMs: number;
  };
  /**
   * rssKB: (RSS at the start of the hold − idle RSS) ÷ booted; includes what the storm left
   * for the GC. rssKBEnd: the same at the end of the hold (after the hold's GCs).
   */
  perConnection: { rssKB: number; rssKBEnd: number; rssDriftMB: number };
  generator: { cpuMs: number };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function rssKB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

function maskedFrame(payload: Buffer, opcode: number): Buffer {
  if (payload.length >= 65536) throw new Error('frame too large');
  const mask = randomBytes(4);
  const h = payload.length < 126 ? 6 : 8;
  const out = Buffer.allocUnsafe(h + payload.length);
  out[0] = 0x80 | opcode;
  if (payload.length < 126) out[1] = 0x80 | payload.length;
  else { out[1] = 0x80 | 126; out.writeUInt16BE(payload.length, 2); }
  mask.copy(out, h - 4);
  for (let i = 0; i < payload.length; i++) out[h + i] = payload[i]! ^ mask[i & 3]!;
  return out;
}

class Fleet {
  readonly handshake = new Histogram();
  readonly boot = new Histogram();
  readonly failures: Record<string, number> = {};
  readonly failureSamples: string[] = [];
  readonly bootStatus: Record<string, number> = {};
  drops = 0;
  readonly dropSamples: string[] = [];
  pings = 0;
  serverCalls = 0;
  holding = false;
  fail(kind: string, sample: string): void {
    this.failures[kind] = (this.failures[kind] ?? 0) + 1;
    if (this.failureSamples.length < 8) this.failureSamples.push(`${kind}: ${sample.slice(0, 300)}`);
  }
}

type State = 'handshake' | 'boot' | 'open' | 'done';

class StormCharger {
  sock!: Socket;
  state: State = 'handshake';
  closing = false;
  private rest: Buffer | null = null;
  private t0 = 0;
  private tBoot = 0;
  private timer: NodeJS.Timeout | undefined;
  tOpen = 0;
  tBooted = 0;

  constructor(readonly fleet: Fleet, readonly cpId: string, readonly o: StormOptions,
    /** Called once: the handshake is over (either way). */ private readonly onHandshakeSettled: () => void,
    /** Called once: booted, or failed at any step. */ private readonly onSettled: (ok: boolean) => void) {}

  start(): void {
    this.t0 = performance.now();
    const key = randomBytes(16).toString('base64');
    const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
    const sock = connect({ host: '127.0.0.1', port: this.o.port, noDelay: true });
    this.sock = sock;
    let head = '';
    this.timer = setTimeout(() => this.failNow('handshake-timeout', `${this.cpId}: no 101 within ${this.o.handshakeTimeoutMs} ms`), this.o.handshakeTimeoutMs);
    const onHead = (chunk: Buffer) => {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      sock.off('data', onHead);
      clearTimeout(this.timer);
      const lines = head.slice(0, end).split('\r\n');
      const hdr = new Map(lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      if (!/^HTTP\/1\.1 101/.test(lines[0]!)) return this.failNow('http', `${this.cpId}: ${lines[0]}`);
      if (hdr.get('sec-websocket-accept') !== accept) return this.failNow('http', `${this.cpId}: bad Sec-WebSocket-Accept`);
      if (hdr.get('sec-websocket-protocol') !== SUBPROTOCOL['1.6']) return this.failNow('http', `${this.cpId}: subprotocol "${hdr.get('sec-websocket-protocol')}"`);
      const now = performance.now();
      this.tOpen = now;
      this.fleet.handshake.record((now - this.t0) * 1000);
      this.state = 'boot';
      this.onHandshakeSettled();
      sock.on('data', (d: Buffer) => this.onData(d));
      this.tBoot = performance.now();
      this.timer = setTimeout(() => this.failNow('boot-timeout', `${this.cpId}: BootNotification unanswered for ${this.o.bootTimeoutMs} ms`), this.o.bootTimeoutMs);
      sock.write(maskedFrame(Buffer.from(JSON.stringify([2, 'boot', 'BootNotification', bootPayload('1.6', 0)])), 0x1));
      const leftover = Buffer.from(head.slice(end + 4), 'latin1');
      if (leftover.length) this.onData(leftover);
    };
    sock.on('data', onHead);
    sock.on('error', (err: NodeJS.ErrnoException) => this.lost(err.code === 'ECONNREFUSED' ? 'refused' : 'error', `${this.cpId}: ${err.code ?? ''} ${err.message}`));
    sock.once('close', () => this.lost('closed', `${this.cpId}: socket closed`));
    sock.write(
      `GET /ocpp/${encodeURIComponent(this.cpId)} HTTP/1.1\r\nHost: 127.0.0.1:${this.o.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${SUBPROTOCOL['1.6']}\r\n\r\n`,
    );
  }

  /** A failure before the charger was booted. */
  private failNow(kind: string, sample: string): void {
    if (this.state === 'done' || this.state === 'open') return;
    clearTimeout(this.timer);
    const wasHandshake = this.state === 'handshake';
    this.state = 'done';
    this.fleet.fail(kind, sample);
    this.sock.destroy();
    if (wasHandshake) this.onHandshakeSettled();
    this.onSettled(false);
  }

  /** The connection went away (error, close frame, socket close). */
  private lost(kind: string, detail: string): void {
    if (this.closing) return;
    if (this.state === 'open') {
      this.state = 'done';
      this.fleet.drops++;
      if (this.fleet.dropSamples.length < 8) this.fleet.dropSamples.push(`${this.fleet.holding ? 'hold' : 'storm'}: ${detail}`);
      this.sock.destroy();
      return;
    }
    this.failNow(kind, detail);
  }

  private onData(chunk: Buffer): void {
    let b = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    this.rest = null;
    let i = 0;
    while (b.length - i >= 2) {
      const b0 = b[i]!;
      let len = b[i + 1]! & 0x7f;
      let h = 2;
      if (len === 126) { if (b.length - i < 4) break; len = b.readUInt16BE(i + 2); h = 4; }
      else if (len === 127) { if (b.length - i < 10) break; len = Number(b.readBigUInt64BE(i + 2)); h = 10; }
      if (b.length - i < h + len) break;
      const op = b0 & 0x0f;
      const p = b.subarray(i + h, i + h + len);
      if (op === 0x1) this.onText(p.toString());
      else if (op === 0x9) { this.fleet.pings++; this.sock.write(maskedFrame(Buffer.from(p), 0xa)); }
      else if (op === 0x8) {
        const code = len >= 2 ? p.readUInt16BE(0) : 1005;
        this.lost('closed', `${this.cpId}: close frame ${code} ${p.subarray(2).toString()}`);
        return;
      }
      i += h + len;
    }
    if (i < b.length) this.rest = Buffer.from(b.subarray(i));
  }

  private onText(text: string): void {
    let msg: unknown;
    try { msg = JSON.parse(text); } catch { msg = null; }
    if (!Array.isArray(msg)) return this.fleet.fail('unparsed', `${this.cpId}: ${text}`);
    if (msg[0] === 2) { this.fleet.serverCalls++; return; }
    if (msg[1] !== 'boot' || this.state !== 'boot') return;
    if (msg[0] === 4) return this.failNow('callerror', `${this.cpId}: ${text}`);
    if (msg[0] !== 3) return this.failNow('unparsed', `${this.cpId}: ${text}`);
    clearTimeout(this.timer);
    const now = performance.now();
    this.tBooted = now;
    this.fleet.boot.record((now - this.tBoot) * 1000);
    const status = String((msg[2] as { status?: unknown } | undefined)?.status);
    this.fleet.bootStatus[status] = (this.fleet.bootStatus[status] ?? 0) + 1;
    this.state = 'open';
    this.onSettled(true);
  }

  /** Close on purpose (close frame, then destroy after a grace period). Resolves when the socket is gone. */
  close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.timer);
    if (this.sock.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.sock.destroy(); resolve(); }, 2000);
      this.sock.once('close', () => { clearTimeout(t); resolve(); });
      const p = Buffer.alloc(2);
      p.writeUInt16BE(1000, 0);
      this.sock.end(maskedFrame(p, 0x8));
    });
  }
}

/** One storm: n chargers, at most `concurrency` handshakes pending. Bounded by the timeouts. */
async function storm(o: StormOptions, n: number, prefix: string): Promise<{ fleet: Fleet; chargers: StormCharger[]; phase: StormPhase }> {
  const fleet = new Fleet();
  const chargers: StormCharger[] = [];
  const cpu0 = processCpuMs(o.serverPid);
  const gen0 = process.cpuUsage();
  let next = 0;
  let pending = 0;
  let settled = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => { done = r; });
  const t0 = performance.now();
  const pump = () => {
    while (pending < o.concurrency && next < n) {
      pending++;
      const c = new StormCharger(fleet, `${prefix}-${next++}`, o, () => { pending--; pump(); }, () => { if (++settled === n) done(); });
      chargers.push(c);
      c.start();
    }
  };
  pump();
  if (n === 0) done();
  // Each charger settles within handshake + boot timeouts of its start; this bounds the rest.
  const budget = (Math.ceil(n / o.concurrency) + 1) * (o.handshakeTimeoutMs + o.bootTimeoutMs);
  await Promise.race([all, sleep(budget)]);
  const opened = chargers.filter((c) => c.tOpen > 0);
  const booted = chargers.filter((c) => c.state === 'open');
  const lastOpen = Math.max(t0, ...opened.map((c) => c.tOpen));
  const lastBoot = Math.max(t0, ...booted.map((c) => c.tBooted));
  const connectAllMs = lastOpen - t0;
  const bootAllMs = lastBoot - t0;
  const phase: StormPhase = {
    attempted: n,
    connected: opened.length,
    booted: booted.length,
    connectAllMs: Math.round(connectAllMs),
    bootAllMs: Math.round(bootAllMs),
    connectsPerSec: connectAllMs > 0 ? Math.round(opened.length / (connectAllMs / 1000)) : 0,
    bootsPerSec: bootAllMs > 0 ? Math.round(booted.length / (bootAllMs / 1000)) : 0,
    handshakeUs: fleet.handshake.summary(),
    bootUs: fleet.boot.summary(),
    failures: fleet.failures,
    failureSamples: fleet.failureSamples,
    bootStatus: fleet.bootStatus,
    serverCpuMs: processCpuMs(o.serverPid) - cpu0,
    generatorCpuMs: 0,
  };
  const g = process.cpuUsage(gen0);
  phase.generatorCpuMs = Math.round((g.user + g.system) / 1000);
  return { fleet, chargers, phase };
}

export async function runStorm(input: Partial<StormOptions> & Pick<StormOptions, 'port' | 'serverPid'>): Promise<StormResult> {
  const o: StormOptions = { ...DEFAULT_STORM, ...input };
  const cpuGen0 = process.cpuUsage();

  // Warm-up: load the server's connect/boot code paths, then let it settle.
  const w = await storm(o, o.warmupChargers, `${o.idPrefix}-w`);
  await Promise.all(w.chargers.map((c) => c.close()));
  await sleep(2000);
  const idle = rssKB(o.serverPid);

  const s = await storm(o, o.chargers, o.idPrefix);
  const fleet = s.fleet;

  // Hold: every second, how many are still open, and the server's RSS.
  fleet.holding = true;
  const holdStart = rssKB(o.serverPid);
  const cpuHold0 = processCpuMs(o.serverPid);
  const rssPerSecond: number[] = [];
  const openPerSecond: number[] = [];
  const tHold = performance.now();
  for (let sec = 1; sec <= o.holdSec; sec++) {
    await sleep(Math.max(0, tHold + sec * 1000 - performance.now()));
    openPerSecond.push(s.chargers.reduce((k, c) => k + (c.state === 'open' ? 1 : 0), 0));
    rssPerSecond.push(rssKB(o.serverPid));
  }
  const holdEnd = rssKB(o.serverPid);
  const holdCpu = processCpuMs(o.serverPid) - cpuHold0;
  const holdSeconds = (performance.now() - tHold) / 1000;
  fleet.holding = false;

  await Promise.all(s.chargers.map((c) => c.close()));
  await sleep(1000);
  const afterClose = rssKB(o.serverPid);
  const gen = process.cpuUsage(cpuGen0);
  const n = s.phase.booted || 1;
  return {
    options: o,
    warmup: { booted: w.phase.booted, failures: w.phase.attempted - w.phase.booted },
    rssKB: { idle, holdStart, holdEnd, afterClose, perSecond: rssPerSecond },
    storm: s.phase,
    hold: { seconds: +holdSeconds.toFixed(2), openPerSecond, drops: fleet.drops, dropSamples: fleet.dropSamples, pingsReceived: fleet.pings, serverCalls: fleet.serverCalls, serverCpuMs: holdCpu },
    perConnection: { rssKB: +((holdStart - idle) / n).toFixed(1), rssKBEnd: +((holdEnd - idle) / n).toFixed(1), rssDriftMB: +((holdEnd - holdStart) / 1024).toFixed(1) },
    generator: { cpuMs: Math.round((gen.user + gen.system) / 1000) },
  };
}

// CLI: one storm, result on stdout as `RESULT {json}`.
if (import.meta.url === `file://${process.argv[1]}`) {
  const input = JSON.parse(process.argv[2] ?? '{}') as Partial<StormOptions> & Pick<StormOptions, 'port' | 'serverPid'>;
  const o = { ...DEFAULT_STORM, ...input };
  const budgetMs = 60_000 + o.holdSec * 1000 + (Math.ceil(o.chargers / o.concurrency) + 2) * (o.handshakeTimeoutMs + o.bootTimeoutMs);
  setTimeout(() => { process.stderr.write(`storm-gen: exceeded its ${budgetMs} ms budget\n`); process.exit(3); }, budgetMs).unref();
  const result = await runStorm(input);
  process.stdout.write('RESULT ' + JSON.stringify(result) + '\n');
  setTimeout(() => process.exit(0), 200);
}
