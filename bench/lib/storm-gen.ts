/**
 * Connect-storm generator, one process of several (bench/storm.ts forks them and drives them
 * over the IPC channel): this process's share of the fleet connects as fast as its bound on
 * pending handshakes allows, each charger sends one BootNotification as soon as it is open;
 * then they stay idle while the coordinator asks every second how many are still open; then
 * all are closed. Meant to run apart from the server under test.
 *
 *   fork('bench/lib/storm-gen.ts', ['<GenConfig JSON>'], { execArgv: ['--import', 'tsx'] })
 *
 * Protocol (parent ─► child ─► parent, one reply per request):
 *   {op:'storm', n, prefix, startAt}  ─► {op:'storm', phase: GenPhase}   a storm of n chargers,
 *                                        started at epoch ms startAt (all generators together)
 *   {op:'tick', holding}              ─► {op:'tick', open, drops}       hold check
 *   {op:'close'}                      ─► {op:'closed', ms}              close every charger (bounded)
 *   {op:'exit'}                       ─► exits
 *   On start: {op:'ready', pid}. The channel closing (parent gone) ends the process.
 *
 * Source addresses: charger i binds its socket to localAddresses[i % k] (net.connect
 * `localAddress`; Linux routes all of 127/8 to lo), so one generator can go past one
 * address's ephemeral port range, and generators never compete for the same ports.
 *
 * Its own ceiling: the phase reports this process's CPU and event-loop delay over the storm;
 * a generator near one core busy is the bottleneck, not the server.
 *
 * Client: net.Socket with hand-written RFC 6455 framing, like the raw client of loadgen.ts;
 * it answers server pings with pongs and nothing else while idle. Server CALLs (none
 * expected) are counted, not answered. Timestamps are epoch ms (performance.timeOrigin +
 * now()), comparable across the generators of one host.
 *
 * Owns: the simulated chargers of one process. Must not: start servers, read the server's
 * /proc, or aggregate across generators (storm.ts does).
 */
import { connect, type Socket } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Histogram, type HistogramData } from './histogram.js';
import { bootPayload, SUBPROTOCOL, type BenchVersion } from './ocpp-payloads.js';

export type StormVersion = BenchVersion | 'mixed';

export interface GenConfig {
  port: number;
  /** Source addresses, e.g. ['127.0.0.2', '127.0.0.3']; [] = let the kernel pick (127.0.0.1). */
  localAddresses: string[];
  /** Most handshakes pending at once in this process (TCP connect + HTTP upgrade not yet answered). */
  concurrency: number;
  /** OCPP version of the chargers; 'mixed' alternates 1.6 and 2.0.1. */
  version: StormVersion;
  handshakeTimeoutMs: number;
  bootTimeoutMs: number;
  /** Hard limit on this process's life; it exits with code 3 after it. */
  budgetMs: number;
}

export interface GenPhase {
  /** Chargers attempted / open (101 received) / booted (BootNotification CALLRESULT). */
  attempted: number;
  connected: number;
  booted: number;
  /** Epoch ms: the first connect(), the last 101, the last boot CALLRESULT. */
  tStart: number;
  tLastOpen: number;
  tLastBoot: number;
  handshakeUs: HistogramData;
  bootUs: HistogramData;
  /** By kind: refused, error:<code> (socket error before 101), http-<status>, handshake-timeout, boot-timeout, callerror, closed, unparsed. */
  failures: Record<string, number>;
  failureSamples: string[];
  bootStatus: Record<string, number>;
  /** This process's CPU over the storm (user + system, ms) and the storm's wall time here. */
  cpuMs: number;
  /** Of cpuMs, in the kernel (sockets; on loopback also much of the server's TCP receive work). */
  sysMs: number;
  wallMs: number;
  /** Event-loop delay over the storm, ms: how late this process ran its callbacks. */
  loopDelayMs: { p50: number; p99: number; max: number };
}

export type ToGen =
  | { op: 'storm'; n: number; prefix: string; startAt: number }
  | { op: 'tick'; holding: boolean }
  | { op: 'close' }
  | { op: 'exit' };
export type FromGen =
  | { op: 'ready'; pid: number }
  | { op: 'storm'; phase: GenPhase }
  | { op: 'tick'; open: number; drops: number; dropSamples: string[]; pings: number; serverCalls: number }
  | { op: 'closed'; ms: number };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const epoch = () => performance.timeOrigin + performance.now();

function maskedFrame(payload: Buffer, opcode: number): Buffer {
  if (payload.length >= 65536) throw new Error('frame too large');
  const mask = randomBytes(4);
  const h = payload.length < 126 ? 6 : 8;
  const out = Buffer.allocUnsafe(h + payload.length);
  out[0] = 0x80 | opcode;
  if (payload.length < 126) out[1] = 0x80 | payload.length;
  else {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(payload.length, 2);
  }
  mask.copy(out, h - 4);
  for (let i = 0; i < payload.length; i++) out[h + i] = payload[i] ^ mask[i & 3];
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

  constructor(
    readonly fleet: Fleet,
    readonly cpId: string,
    readonly o: GenConfig,
    readonly version: BenchVersion,
    readonly localAddress: string | undefined,
    /** Called once: the handshake is over (either way). */ private readonly onHandshakeSettled: () => void,
    /** Called once: booted, or failed at any step. */ private readonly onSettled: (ok: boolean) => void,
  ) {}

  start(): void {
    this.t0 = epoch();
    const key = randomBytes(16).toString('base64');
    const accept = createHash('sha1')
      .update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
      .digest('base64');
    const sock = connect({
      host: '127.0.0.1',
      port: this.o.port,
      noDelay: true,
      ...(this.localAddress ? { localAddress: this.localAddress } : {}),
    });
    this.sock = sock;
    const subprotocol = SUBPROTOCOL[this.version];
    let head = '';
    this.timer = setTimeout(
      () => this.failNow('handshake-timeout', `${this.cpId}: no 101 within ${this.o.handshakeTimeoutMs} ms`),
      this.o.handshakeTimeoutMs,
    );
    const onHead = (chunk: Buffer) => {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      sock.off('data', onHead);
      clearTimeout(this.timer);
      const lines = head.slice(0, end).split('\r\n');
      const hdr = new Map(
        lines
          .slice(1)
          .map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
      );
      const status = /^HTTP\/1\.1 (\d{3})/.exec(lines[0])?.[1] ?? 'bad';
      // The body (the router's reason, e.g. "Overloaded" or "Registry unavailable") if it came with the head.
      const body = head
        .slice(end + 4, end + 84)
        .replace(/\s+/g, ' ')
        .trim();
      if (status !== '101')
        return this.failNow(
          `http-${status}`,
          `${this.cpId}: ${lines[0]}${hdr.get('retry-after') ? ` (retry-after ${hdr.get('retry-after')})` : ''}${body ? `: ${body}` : ''}`,
        );
      if (hdr.get('sec-websocket-accept') !== accept)
        return this.failNow('http-bad-accept', `${this.cpId}: bad Sec-WebSocket-Accept`);
      if (hdr.get('sec-websocket-protocol') !== subprotocol)
        return this.failNow('http-subprotocol', `${this.cpId}: subprotocol "${hdr.get('sec-websocket-protocol')}"`);
      const now = epoch();
      this.tOpen = now;
      this.fleet.handshake.record((now - this.t0) * 1000);
      this.state = 'boot';
      this.onHandshakeSettled();
      sock.on('data', (d: Buffer) => this.onData(d));
      this.tBoot = epoch();
      this.timer = setTimeout(
        () => this.failNow('boot-timeout', `${this.cpId}: BootNotification unanswered for ${this.o.bootTimeoutMs} ms`),
        this.o.bootTimeoutMs,
      );
      sock.write(
        maskedFrame(Buffer.from(JSON.stringify([2, 'boot', 'BootNotification', bootPayload(this.version, 0)])), 0x1),
      );
      const leftover = Buffer.from(head.slice(end + 4), 'latin1');
      if (leftover.length) this.onData(leftover);
    };
    sock.on('data', onHead);
    sock.on('error', (err: NodeJS.ErrnoException) =>
      this.lost(
        err.code === 'ECONNREFUSED' ? 'refused' : `error:${err.code ?? 'unknown'}`,
        `${this.cpId}: ${err.code ?? ''} ${err.message}`,
      ),
    );
    sock.once('close', () => this.lost('closed', `${this.cpId}: socket closed`));
    sock.write(
      `GET /ocpp/${encodeURIComponent(this.cpId)} HTTP/1.1\r\nHost: 127.0.0.1:${this.o.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${subprotocol}\r\n\r\n`,
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
      if (this.fleet.dropSamples.length < 8)
        this.fleet.dropSamples.push(`${this.fleet.holding ? 'hold' : 'storm'}: ${detail}`);
      this.sock.destroy();
      return;
    }
    this.failNow(kind, detail);
  }

  private onData(chunk: Buffer): void {
    const b = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    this.rest = null;
    let i = 0;
    while (b.length - i >= 2) {
      const b0 = b[i];
      let len = b[i + 1] & 0x7f;
      let h = 2;
      if (len === 126) {
        if (b.length - i < 4) break;
        len = b.readUInt16BE(i + 2);
        h = 4;
      } else if (len === 127) {
        if (b.length - i < 10) break;
        len = Number(b.readBigUInt64BE(i + 2));
        h = 10;
      }
      if (b.length - i < h + len) break;
      const op = b0 & 0x0f;
      const p = b.subarray(i + h, i + h + len);
      if (op === 0x1) this.onText(p.toString());
      else if (op === 0x9) {
        this.fleet.pings++;
        this.sock.write(maskedFrame(Buffer.from(p), 0xa));
      } else if (op === 0x8) {
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
    try {
      msg = JSON.parse(text);
    } catch {
      msg = null;
    }
    if (!Array.isArray(msg)) return this.fleet.fail('unparsed', `${this.cpId}: ${text}`);
    if (msg[0] === 2) {
      this.fleet.serverCalls++;
      return;
    }
    if (msg[1] !== 'boot' || this.state !== 'boot') return;
    if (msg[0] === 4) return this.failNow('callerror', `${this.cpId}: ${text}`);
    if (msg[0] !== 3) return this.failNow('unparsed', `${this.cpId}: ${text}`);
    clearTimeout(this.timer);
    const now = epoch();
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
    if (!this.sock || this.sock.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.sock.destroy();
        resolve();
      }, 2000);
      this.sock.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      const p = Buffer.alloc(2);
      p.writeUInt16BE(1000, 0);
      this.sock.end(maskedFrame(p, 0x8));
    });
  }
}

/** One storm: n chargers, at most `concurrency` handshakes pending. Bounded by the timeouts. */
async function storm(o: GenConfig, fleet: Fleet, n: number, prefix: string, all: StormCharger[]): Promise<GenPhase> {
  const chargers: StormCharger[] = [];
  const gen0 = process.cpuUsage();
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  let next = 0;
  let pending = 0;
  let settled = 0;
  let done!: () => void;
  const finished = new Promise<void>((r) => {
    done = r;
  });
  const t0 = epoch();
  const pump = () => {
    while (pending < o.concurrency && next < n) {
      pending++;
      const i = next++;
      const version: BenchVersion = o.version === 'mixed' ? (i % 2 ? '2.0.1' : '1.6') : o.version;
      const addr = o.localAddresses.length ? o.localAddresses[i % o.localAddresses.length] : undefined;
      const c = new StormCharger(
        fleet,
        `${prefix}-${i}`,
        o,
        version,
        addr,
        () => {
          pending--;
          setImmediate(pump);
        },
        () => {
          if (++settled === n) done();
        },
      );
      chargers.push(c);
      all.push(c);
      c.start();
    }
  };
  pump();
  if (n === 0) done();
  // Each charger settles within handshake + boot timeouts of its start; this bounds the rest.
  const budget = (Math.ceil(n / o.concurrency) + 1) * (o.handshakeTimeoutMs + o.bootTimeoutMs);
  await Promise.race([finished, sleep(budget)]);
  loop.disable();
  let connected = 0,
    booted = 0,
    tLastOpen = t0,
    tLastBoot = t0;
  for (const c of chargers) {
    if (c.tOpen > 0) {
      connected++;
      if (c.tOpen > tLastOpen) tLastOpen = c.tOpen;
    }
    if (c.state === 'open') {
      booted++;
      if (c.tBooted > tLastBoot) tLastBoot = c.tBooted;
    }
  }
  const g = process.cpuUsage(gen0);
  const ms = (v: number) => +(v / 1e6).toFixed(2);
  return {
    attempted: n,
    connected,
    booted,
    tStart: t0,
    tLastOpen,
    tLastBoot,
    handshakeUs: fleet.handshake.toData(),
    bootUs: fleet.boot.toData(),
    failures: { ...fleet.failures },
    failureSamples: [...fleet.failureSamples],
    bootStatus: { ...fleet.bootStatus },
    cpuMs: Math.round((g.user + g.system) / 1000),
    sysMs: Math.round(g.system / 1000),
    wallMs: Math.round(epoch() - t0),
    loopDelayMs: { p50: ms(loop.percentile(50)), p99: ms(loop.percentile(99)), max: ms(loop.max) },
  };
}

// Child process: driven by storm.ts over the IPC channel.
if (import.meta.url === `file://${process.argv[1]}` && process.send) {
  const o = JSON.parse(process.argv[2] ?? '{}') as GenConfig;
  setTimeout(() => {
    process.stderr.write(`storm-gen ${process.pid}: exceeded its ${o.budgetMs} ms budget\n`);
    process.exit(3);
  }, o.budgetMs).unref();
  process.on('disconnect', () => process.exit(2));
  const send = (m: FromGen) => process.send!(m);
  const chargers: StormCharger[] = [];
  let fleet = new Fleet();
  process.on('message', (m: ToGen) => {
    if (m.op === 'storm') {
      // A fresh fleet per storm: the warm-up's failures and histograms are its own.
      fleet = new Fleet();
      const f = fleet;
      void (async () => {
        await sleep(Math.max(0, m.startAt - Date.now()));
        send({ op: 'storm', phase: await storm(o, f, m.n, m.prefix, chargers) });
      })();
    } else if (m.op === 'tick') {
      fleet.holding = m.holding;
      let open = 0;
      for (const c of chargers) if (c.state === 'open' && !c.closing) open++;
      send({
        op: 'tick',
        open,
        drops: fleet.drops,
        dropSamples: fleet.dropSamples,
        pings: fleet.pings,
        serverCalls: fleet.serverCalls,
      });
    } else if (m.op === 'close') {
      const t0 = Date.now();
      void Promise.all(chargers.splice(0).map((c) => c.close())).then(() =>
        send({ op: 'closed', ms: Date.now() - t0 }),
      );
    } else if (m.op === 'exit') {
      process.exit(0);
    }
  });
  send({ op: 'ready', pid: process.pid });
}
