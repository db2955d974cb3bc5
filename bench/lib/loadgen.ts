/**
 * Closed-loop OCPP load generator: N simulated chargers over loopback, each keeping k CALLs
 * of one action in flight. Meant to run in its own process, apart from the server.
 *
 *   node --import tsx bench/lib/loadgen.ts '<LoadOptions JSON>'   → one line: RESULT {json}
 *
 * Phases: connect all chargers (bounded concurrency) ─► BootNotification once each ─►
 * load for warmupSec (JIT, caches; not measured) ─► load for durationSec (the window: round
 * trips, latency, errors, server and generator CPU) ─► stop sending, wait for the CALLs
 * still in flight (bounded) ─► close.
 *
 * Owns: the simulated chargers and what is measured in the window. Must not: start servers.
 *
 * Two clients, same load:
 *  - `raw` (default): net.Socket, hand-written RFC 6455 client framing. Each charger's frame
 *    is built once, masked once with a per-connection key, and only the 10 message-id
 *    digits are patched per CALL; every frame received in one read is answered with one
 *    write. This is the cheapest client we know how to write, so that on a small machine the
 *    generator steals as little CPU from the server as possible. (RFC 6455 wants a fresh
 *    mask per frame; the server's unmasking work is the same either way.)
 *  - `ws`: the `ws` package, one ws.send(string) per CALL, what most test tools use.
 * Both parse replies from the bytes: `[3,"<10 digits>",…]` or `[4,…]` (CALLERROR).
 *
 * Latency is measured from just before the write to the read of the reply, so it includes
 * the generator's own queueing; on a saturated machine that is part of the figure.
 */
import { connect, type Socket } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { cpus, loadavg } from 'node:os';
import WebSocket from 'ws';
import { Histogram, type HistogramSummary } from './histogram.js';
import { cpuFigures, resultChildMain, startCpuWindow } from './proc.js';
import {
  actionPayload,
  bootPayload,
  ID_WIDTH,
  SUBPROTOCOL,
  type BenchAction,
  type BenchVersion,
} from './ocpp-payloads.js';

export type ClientKind = 'raw' | 'ws';

export interface LoadOptions {
  port: number;
  /** Server process to account CPU to (omit to skip server CPU). */
  serverPid?: number;
  /** Services the server uses (e.g. `{ redis: pid }`): CPU measured over the same window, reported apart. */
  sidePids?: Record<string, number>;
  version: BenchVersion;
  action: BenchAction;
  chargers: number;
  inflight: number;
  warmupSec: number;
  durationSec: number;
  client: ClientKind;
  /** A CALL unanswered this long counts as a timeout (its slot is refilled). */
  timeoutMs: number;
  connectConcurrency: number;
  /** Charge point ids are `<idPrefix>-<i>`; make it unique per run. */
  idPrefix: string;
  /** Longest wait for the CALLs still in flight after the window. */
  drainMs: number;
}

export const DEFAULT_LOAD: Omit<LoadOptions, 'port' | 'action'> = {
  version: '1.6',
  chargers: 200,
  inflight: 1,
  warmupSec: 1.5,
  durationSec: 5,
  client: 'raw',
  timeoutMs: 5000,
  connectConcurrency: 50,
  idPrefix: `bench-${process.pid}`,
  drainMs: 5000,
};

export interface LoadResult {
  options: LoadOptions;
  connect: { ms: number; connected: number; failed: number; failures: string[] };
  window: {
    seconds: number;
    roundTrips: number;
    /** Round trips per second over the window. */
    rps: number;
    /** Completed round trips per whole second of the window (a stall shows as a dip). */
    perSecond: number[];
    latencyUs: HistogramSummary;
  };
  errors: {
    callError: number;
    timeout: number;
    unparsed: number;
    closed: number;
    late: number;
    total: number;
    samples: string[];
  };
  server?: {
    cpuMs: number;
    /** Server CPU microseconds (all threads) per completed round trip. */
    cpuUsPerRoundTrip: number;
    /** Average cores busy in the window. */
    cores: number;
    threads: { name: string; ms: number; threads: number }[];
  };
  /** Per entry of `sidePids`, over the same window (not part of `server`). */
  side?: Record<string, { cpuMs: number; cpuUsPerRoundTrip: number; cores: number }>;
  generator: { cpuMs: number; cpuUsPerRoundTrip: number; cores: number; eventLoopUtilization: number };
  /**
   * The machine in the window: cores it has, cores busy in total, and cores busy with
   * neither the server nor the generator (other processes: a shared machine is noisy).
   */
  machine: { cores: number; busyCores: number; foreignCores: number; loadavg: number[] };
  drain: { ms: number; leftInFlight: number };
}

// ── the shared closed loop ────────────────────────────────────────────────────────────────

class Run {
  readonly hist = new Histogram();
  measuring = false;
  running = false;
  windowStart = 0;
  roundTrips = 0;
  perSecond: number[] = [];
  readonly errors = { callError: 0, timeout: 0, unparsed: 0, closed: 0, late: 0, total: 0, samples: [] as string[] };

  constructor(readonly opts: LoadOptions) {}

  error(kind: 'callError' | 'timeout' | 'unparsed' | 'closed' | 'late', sample?: string): void {
    this.errors[kind]++;
    if (kind !== 'late') this.errors.total++;
    if (sample !== undefined && this.errors.samples.length < 5)
      this.errors.samples.push(`${kind}: ${sample.slice(0, 400)}`);
  }

  complete(now: number, t0: number): void {
    if (!this.measuring) return;
    this.hist.record((now - t0) * 1000);
    this.roundTrips++;
    const s = Math.floor((now - this.windowStart) / 1000);
    this.perSecond[s] = (this.perSecond[s] ?? 0) + 1;
  }
}

/** Per charger: outstanding CALLs in a ring indexed by sequence number. */
abstract class Charger {
  protected seq = 0;
  private readonly ringMask: number;
  private readonly t0: Float64Array;
  private readonly pend: Float64Array;
  outstanding = 0;
  toSend = 0;
  booted!: Promise<void>;
  protected bootDone!: () => void;
  protected bootFail!: (err: Error) => void;
  protected phase: 'connect' | 'boot' | 'run' | 'closed' = 'connect';
  closedOnPurpose = false;

  constructor(
    readonly run: Run,
    readonly cpId: string,
  ) {
    let size = 16;
    while (size < run.opts.inflight * 4) size <<= 1;
    this.ringMask = size - 1;
    this.t0 = new Float64Array(size);
    this.pend = new Float64Array(size).fill(-1);
    this.booted = new Promise((resolve, reject) => {
      this.bootDone = resolve;
      this.bootFail = reject;
    });
    this.booted.catch(() => undefined); // a charger closed before anyone awaits its boot
  }

  abstract open(port: number): Promise<void>;
  /** Writes `n` CALLs with ids seq+1..seq+n (the subclass calls `sent` for each). */
  protected abstract writeCalls(n: number): void;
  protected abstract writeBoot(): void;
  abstract close(): void;

  protected sent(seq: number, now: number): void {
    const slot = seq & this.ringMask;
    if (this.pend[slot] >= 0) {
      // The ring wrapped over a CALL that never came back: it is lost.
      this.run.error('timeout');
      this.outstanding--;
    }
    this.pend[slot] = seq;
    this.t0[slot] = now;
    this.outstanding++;
  }

  startBoot(): void {
    this.phase = 'boot';
    this.writeBoot();
  }

  startLoad(): void {
    this.phase = 'run';
    this.toSend = this.run.opts.inflight;
    this.flush();
  }

  /** Sends what the replies of the last read freed up. */
  flush(): void {
    if (this.toSend > 0 && this.phase === 'run') {
      const n = this.toSend;
      this.toSend = 0;
      this.writeCalls(n);
    }
  }

  /** A text frame from the server; payload is bytes [s, s+len) of b. */
  onFrame(b: Uint8Array, s: number, len: number, now: number): void {
    const run = this.run;
    const seq = replySeq(b, s, len);
    if (seq < 0) return run.error('unparsed', frameText(b, s, len));
    const kind = b[s + 1];
    if (this.phase === 'boot') return settleBoot(seq, kind, b, s, len, this.bootDone, this.bootFail);
    const slot = seq & this.ringMask;
    if (this.pend[slot] !== seq) {
      run.error('late');
      return;
    }
    this.pend[slot] = -1;
    this.outstanding--;
    if (kind === 0x34) run.error('callError', frameText(b, s, len));
    else run.complete(now, this.t0[slot]);
    if (run.running) this.toSend++;
  }

  /** Counts CALLs older than the timeout as lost and refills their slots. */
  expire(now: number): void {
    const limit = now - this.run.opts.timeoutMs;
    for (let i = 0; i <= this.ringMask; i++) {
      if (this.pend[i] >= 0 && this.t0[i] < limit) {
        this.run.error('timeout', `${this.cpId} seq ${this.pend[i]} unanswered for ${this.run.opts.timeoutMs} ms`);
        this.pend[i] = -1;
        this.outstanding--;
        if (this.run.running) this.toSend++;
      }
    }
    this.flush();
  }

  onClosed(detail: string): void {
    if (this.phase === 'closed') return;
    const was = this.phase;
    this.phase = 'closed';
    if (!this.closedOnPurpose) this.run.error('closed', `${this.cpId} (${was}): ${detail}`);
    this.bootFail(new Error(`closed: ${detail}`));
  }
}

// ── shared by every raw client of the bench (open-loop-gen.ts, fanout-gen.ts) ─────────────

/** Bytes [s, s+len) of b as text (error samples). */
export function frameText(b: Uint8Array, s: number, len: number): string {
  return Buffer.from(b.buffer, b.byteOffset + s, len).toString();
}

/**
 * The sequence number of a reply frame `[3,"<ID_WIDTH digits>",…]` (CALLRESULT) or `[4,…]`
 * (CALLERROR) in bytes [s, s+len) of b, or -1 when the frame is not one. Its kind is b[s+1]
 * (0x33 or 0x34).
 */
export function replySeq(b: Uint8Array, s: number, len: number): number {
  const kind = b[s + 1];
  if (
    len < ID_WIDTH + 6 ||
    b[s] !== 0x5b ||
    (kind !== 0x33 && kind !== 0x34) ||
    b[s + 2] !== 0x2c ||
    b[s + 3] !== 0x22 ||
    b[s + 4 + ID_WIDTH] !== 0x22
  )
    return -1;
  let seq = 0;
  for (let k = s + 4; k < s + 4 + ID_WIDTH; k++) seq = seq * 10 + (b[k] - 0x30);
  return seq;
}

/** In the boot phase: the reply with id 0 settles the BootNotification (others are ignored). */
export function settleBoot(
  seq: number,
  kind: number | undefined,
  b: Uint8Array,
  s: number,
  len: number,
  done: () => void,
  fail: (err: Error) => void,
): void {
  if (seq !== 0) return;
  if (kind === 0x33) done();
  else fail(new Error(`BootNotification answered with ${frameText(b, s, len)}`));
}

/** The BootNotification CALL every simulated charger sends first (message id: ID_WIDTH zeros). */
export function bootCallText(version: BenchVersion): string {
  return JSON.stringify([2, '0'.repeat(ID_WIDTH), 'BootNotification', bootPayload(version, 0)]);
}

/** Closes a raw client socket: a close frame (1000), then destroy after 1 s at the latest. */
export function closeRaw(sock: Socket | undefined, mask: Uint8Array): void {
  if (!sock || sock.destroyed) return;
  const p = Buffer.alloc(2);
  p.writeUInt16BE(1000, 0);
  sock.end(maskedFrame(p, 0x8, mask));
  setTimeout(() => sock.destroy(), 1000).unref();
}

/** What connectAll needs of a simulated charger. */
export interface Connectable {
  readonly cpId: string;
  /** Settles with the BootNotification's answer (rejects on CALLERROR or close). */
  readonly booted: Promise<void>;
  open(port: number): Promise<void>;
  startBoot(): void;
  close(): void;
}

export interface ConnectSummary {
  ms: number;
  connected: number;
  failed: number;
  failures: string[];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Connects and boots `chargers`, at most `concurrency` at a time, each bounded (10 s handshake
 * in rawConnect, 10 s for the BootNotification's answer). A charger that fails is closed.
 * Returns the booted ones, in boot order, and a summary (the first 5 failures' messages).
 */
export async function connectAll<C extends Connectable>(
  chargers: readonly C[],
  port: number,
  concurrency: number,
): Promise<{ ok: C[]; connect: ConnectSummary }> {
  const t0 = performance.now();
  const failures: string[] = [];
  const ok: C[] = [];
  let next = 0;
  const worker = async () => {
    while (next < chargers.length) {
      const c = chargers[next++];
      let timer: NodeJS.Timeout | undefined;
      try {
        await c.open(port);
        c.startBoot();
        await Promise.race([
          c.booted,
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`${c.cpId}: BootNotification unanswered`)), 10_000);
          }),
        ]);
        ok.push(c);
      } catch (err) {
        if (failures.length < 5) failures.push((err as Error).message);
        c.close();
      } finally {
        clearTimeout(timer);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, chargers.length) }, worker));
  return {
    ok,
    connect: {
      ms: Math.round(performance.now() - t0),
      connected: ok.length,
      failed: chargers.length - ok.length,
      failures,
    },
  };
}

// ── raw RFC 6455 client ───────────────────────────────────────────────────────────────────

function frameHeader(len: number, opcode: number, mask: Uint8Array): Buffer {
  const h = len < 126 ? Buffer.alloc(6) : Buffer.alloc(8);
  h[0] = 0x80 | opcode;
  if (len < 126) {
    h[1] = 0x80 | len;
    h.set(mask, 2);
  } else {
    h[1] = 0x80 | 126;
    h.writeUInt16BE(len, 2);
    h.set(mask, 4);
  }
  return h;
}

/** A complete masked client frame for `text`. */
export function maskedFrame(text: string | Buffer, opcode: number, mask: Uint8Array): Buffer {
  const p = typeof text === 'string' ? Buffer.from(text) : text;
  if (p.length >= 65536) throw new Error('frame too large for the bench client');
  const h = frameHeader(p.length, opcode, mask);
  const out = Buffer.allocUnsafe(h.length + p.length);
  h.copy(out, 0);
  for (let i = 0; i < p.length; i++) out[h.length + i] = p[i] ^ mask[i & 3];
  return out;
}

/**
 * Opens a raw RFC 6455 client connection to ws://127.0.0.1:<port>/ocpp/<cpId> offering the
 * version's subprotocol. `sock` is there at once (so a caller can close it while the handshake
 * is pending); `ready` settles with the handshake (checked: 101, Sec-WebSocket-Accept, the
 * subprotocol). After it, every chunk goes to `onData` (bytes that came with the 101 too);
 * `onClosed` hears of errors and the socket's close. Shared by every raw client of the bench.
 */
export function rawConnect(
  port: number,
  cpId: string,
  version: BenchVersion,
  onData: (chunk: Buffer) => void,
  onClosed: (detail: string) => void,
): { sock: Socket; ready: Promise<void> } {
  const key = randomBytes(16).toString('base64');
  const expectAccept = createHash('sha1')
    .update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
    .digest('base64');
  const sock = connect({ host: '127.0.0.1', port, noDelay: true });
  const ready = new Promise<void>((resolve, reject) => {
    let head = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`${cpId}: handshake timeout`));
    }, 10_000);
    const onHandshake = (chunk: Buffer) => {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      sock.off('data', onHandshake);
      clearTimeout(timer);
      const lines = head.slice(0, end).split('\r\n');
      const headers = new Map(
        lines
          .slice(1)
          .map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
      );
      if (!/^HTTP\/1\.1 101/.test(lines[0])) {
        sock.destroy();
        return reject(new Error(`${cpId}: ${lines[0]}`));
      }
      if (headers.get('sec-websocket-accept') !== expectAccept) {
        sock.destroy();
        return reject(new Error(`${cpId}: bad Sec-WebSocket-Accept`));
      }
      if (headers.get('sec-websocket-protocol') !== SUBPROTOCOL[version]) {
        sock.destroy();
        return reject(new Error(`${cpId}: server chose subprotocol "${headers.get('sec-websocket-protocol')}"`));
      }
      sock.on('data', onData);
      const leftover = Buffer.from(head.slice(end + 4), 'latin1');
      if (leftover.length) onData(leftover);
      resolve();
    };
    sock.on('data', onHandshake);
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
      onClosed(err.message);
    });
    sock.once('close', () => onClosed('socket closed'));
    sock.write(
      `GET /ocpp/${encodeURIComponent(cpId)} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${SUBPROTOCOL[version]}\r\n\r\n`,
    );
  });
  return { sock, ready };
}

/** Where a raw client's server frames go. */
export interface ServerFrameSink {
  /** A complete text or binary frame; its payload is bytes [s, s+len) of b. */
  onFrame(b: Uint8Array, s: number, len: number, now: number): void;
  /** A frame this client does not handle (masked, fragmented). */
  unparsed(sample: string): void;
  /** The server sent a close frame (the socket is destroyed after this). */
  onClosed(detail: string): void;
}

/**
 * Parses the server frames in `b` (the unconsumed rest of the previous read followed by this
 * chunk): data frames to `sink.onFrame`, pings answered with a pong, a close frame ends the
 * socket. Returns the offset of the first byte not consumed (an incomplete frame; b.length
 * when none), or -1 when the socket was ended.
 */
export function readServerFrames(
  b: Buffer,
  now: number,
  sock: Socket,
  mask: Uint8Array,
  sink: ServerFrameSink,
): number {
  let i = 0;
  while (b.length - i >= 2) {
    const b0 = b[i];
    const b1 = b[i + 1];
    let len = b1 & 0x7f;
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
    if (b1 & 0x80) {
      sink.unparsed('masked frame from server');
      sock.destroy();
      return -1;
    }
    if (b.length - i < h + len) break;
    const op = b0 & 0x0f;
    const s = i + h;
    if (op === 0x1 || op === 0x2) {
      if (!(b0 & 0x80)) sink.unparsed('fragmented frame');
      else sink.onFrame(b, s, len, now);
    } else if (op === 0x9) {
      sock.write(maskedFrame(b.subarray(s, s + len), 0xa, mask));
    } else if (op === 0x8) {
      const code = len >= 2 ? b.readUInt16BE(s) : 1005;
      sink.onClosed(`close frame ${code} ${b.subarray(s + 2, s + len).toString()}`);
      sock.destroy();
      return -1;
    }
    i = s + len;
  }
  return i;
}

class RawCharger extends Charger {
  private sock!: Socket;
  private readonly mask = randomBytes(4);
  private template!: Buffer;
  /** Offset of the first id digit in the frame, and of the payload start. */
  private idOffset = 0;
  private payloadOffset = 0;
  private rest: Buffer | null = null;

  constructor(
    run: Run,
    cpId: string,
    private readonly callText: string,
  ) {
    super(run, cpId);
  }

  open(port: number): Promise<void> {
    const { version } = this.run.opts;
    this.template = maskedFrame(this.callText, 0x1, this.mask);
    this.payloadOffset = this.template.length - Buffer.byteLength(this.callText);
    this.idOffset = this.payloadOffset + 4; // [2,"
    const c = rawConnect(
      port,
      this.cpId,
      version,
      (d) => this.onData(d),
      (detail) => this.onClosed(detail),
    );
    this.sock = c.sock;
    return c.ready;
  }

  protected writeBoot(): void {
    this.sock.write(maskedFrame(bootCallText(this.run.opts.version), 0x1, this.mask));
  }

  protected writeCalls(n: number): void {
    const t = this.template;
    const L = t.length;
    const out = Buffer.allocUnsafe(L * n);
    const now = performance.now();
    const m = this.mask;
    for (let f = 0; f < n; f++) {
      const base = f * L;
      t.copy(out, base);
      let seq = ++this.seq;
      this.sent(seq, now);
      // Patch the id digits (masked): payload offset of digit k is 4 + k.
      for (let k = ID_WIDTH - 1; k >= 0; k--) {
        const d = seq % 10;
        seq = (seq - d) / 10;
        out[base + this.idOffset + k] = (0x30 + d) ^ m[(4 + k) & 3];
      }
    }
    this.sock.write(out);
  }

  private onData(chunk: Buffer): void {
    const b = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    this.rest = null;
    const i = readServerFrames(b, performance.now(), this.sock, this.mask, this);
    if (i < 0) return;
    if (i < b.length) this.rest = Buffer.from(b.subarray(i));
    this.flush();
  }

  unparsed(sample: string): void {
    this.run.error('unparsed', sample);
  }

  close(): void {
    this.closedOnPurpose = true;
    closeRaw(this.sock, this.mask);
  }
}

// ── `ws` package client ───────────────────────────────────────────────────────────────────

class WsCharger extends Charger {
  private ws!: WebSocket;
  private head = '';
  private tail = '';

  constructor(
    run: Run,
    cpId: string,
    private readonly callText: string,
  ) {
    super(run, cpId);
    const at = callText.indexOf('"') + 1;
    this.head = callText.slice(0, at);
    this.tail = callText.slice(at + ID_WIDTH);
  }

  open(port: number): Promise<void> {
    const { version } = this.run.opts;
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ocpp/${encodeURIComponent(this.cpId)}`, SUBPROTOCOL[version], {
        perMessageDeflate: false,
        handshakeTimeout: 10_000,
      });
      this.ws = ws;
      ws.once('open', () => {
        if (ws.protocol !== SUBPROTOCOL[version]) {
          ws.terminate();
          return reject(new Error(`${this.cpId}: server chose subprotocol "${ws.protocol}"`));
        }
        resolve();
      });
      ws.on('message', (data: Buffer) => {
        this.onFrame(data, 0, data.length, performance.now());
        this.flush();
      });
      ws.on('error', (err) => {
        reject(err);
        this.onClosed(err.message);
      });
      ws.once('close', (code, reason) => this.onClosed(`close ${code} ${String(reason)}`));
    });
  }

  protected writeBoot(): void {
    this.ws.send(bootCallText(this.run.opts.version));
  }

  protected writeCalls(n: number): void {
    const now = performance.now();
    for (let f = 0; f < n; f++) {
      const seq = ++this.seq;
      this.sent(seq, now);
      this.ws.send(this.head + String(seq).padStart(ID_WIDTH, '0') + this.tail);
    }
  }

  close(): void {
    this.closedOnPurpose = true;
    this.ws.close(1000);
    setTimeout(() => this.ws.terminate(), 1000).unref();
  }
}

// ── the run ───────────────────────────────────────────────────────────────────────────────

export async function runLoad(input: Partial<LoadOptions> & Pick<LoadOptions, 'port' | 'action'>): Promise<LoadResult> {
  const opts: LoadOptions = { ...DEFAULT_LOAD, ...input };
  const run = new Run(opts);
  const callText = JSON.stringify([
    2,
    '0'.repeat(ID_WIDTH),
    opts.action,
    actionPayload(opts.version, opts.action, new Date().toISOString()),
  ]);
  const chargers: Charger[] = [];
  for (let i = 0; i < opts.chargers; i++) {
    const id = `${opts.idPrefix}-${i}`;
    chargers.push(opts.client === 'ws' ? new WsCharger(run, id, callText) : new RawCharger(run, id, callText));
  }

  // Connect + boot, bounded concurrency.
  const { ok, connect } = await connectAll(chargers, opts.port, opts.connectConcurrency);
  run.errors.closed = 0; // closes of chargers that failed to connect are reported under connect
  run.errors.total = 0;
  run.errors.samples = [];

  // Load: warm-up, then the measured window.
  const expiry = setInterval(() => {
    const now = performance.now();
    for (const c of ok) c.expire(now);
  }, 250);
  run.running = true;
  for (const c of ok) c.startLoad();
  await sleep(opts.warmupSec * 1000);

  const endWindow = startCpuWindow(opts.serverPid, opts.sidePids);
  run.hist.reset();
  run.windowStart = performance.now();
  run.measuring = true;
  await sleep(opts.durationSec * 1000);
  run.measuring = false;
  const w = endWindow();
  const windowMs = w.windowMs;
  run.running = false;

  // Drain what is still in flight (bounded), then close.
  const d0 = performance.now();
  while (performance.now() - d0 < opts.drainMs && ok.some((c) => c.outstanding > 0)) await sleep(20);
  clearInterval(expiry);
  const left = ok.reduce((n, c) => n + Math.max(0, c.outstanding), 0);
  run.errors.timeout += left;
  run.errors.total += left;
  for (const c of ok) c.close();

  const rt = run.roundTrips;
  const seconds = windowMs / 1000;
  const perSecond = Array.from({ length: Math.floor(seconds + 0.01) }, (_, i) => run.perSecond[i] ?? 0);
  const cli = cpuFigures(w.generatorMs, rt, windowMs);
  const result: LoadResult = {
    options: opts,
    connect,
    window: {
      seconds: +seconds.toFixed(3),
      roundTrips: rt,
      rps: Math.round(rt / seconds),
      perSecond,
      latencyUs: run.hist.summary(),
    },
    errors: run.errors,
    generator: {
      cpuMs: Math.round(cli.cpuMs),
      cpuUsPerRoundTrip: cli.usPerUnit,
      cores: cli.cores,
      eventLoopUtilization: +w.eventLoopUtilization.toFixed(3),
    },
    drain: { ms: Math.round(performance.now() - d0), leftInFlight: left },
    machine: {
      cores: cpus().length,
      busyCores: +(w.machineBusyMs / windowMs).toFixed(3),
      foreignCores: 0,
      loadavg: loadavg().map((x) => +x.toFixed(2)),
    },
  };
  if (w.server) {
    const f = cpuFigures(w.server.cpuMs, rt, windowMs);
    result.server = { cpuMs: f.cpuMs, cpuUsPerRoundTrip: f.usPerUnit, cores: f.cores, threads: w.server.threads };
  }
  let sideMs = 0;
  if (Object.keys(w.side).length) {
    result.side = {};
    for (const [name, ms] of Object.entries(w.side)) {
      sideMs += ms;
      const f = cpuFigures(ms, rt, windowMs);
      result.side[name] = { cpuMs: f.cpuMs, cpuUsPerRoundTrip: f.usPerUnit, cores: f.cores };
    }
  }
  result.machine.foreignCores = +Math.max(
    0,
    (w.machineBusyMs - w.generatorMs - (result.server?.cpuMs ?? 0) - sideMs) / windowMs,
  ).toFixed(3);
  return result;
}

// CLI: one run, result on stdout as `RESULT {json}`.
if (import.meta.url === `file://${process.argv[1]}`) {
  const input = JSON.parse(process.argv[2] ?? '{}') as Partial<LoadOptions> & Pick<LoadOptions, 'port' | 'action'>;
  const o = { ...DEFAULT_LOAD, ...input };
  await resultChildMain('loadgen', 90_000 + (o.warmupSec + o.durationSec) * 1000 + o.drainMs, () => runLoad(input));
}
