/**
 * What the open-loop generators share (lib/open-loop-gen.ts: one action at a fixed rate;
 * lib/fleet-mix-gen.ts: a fleet's mix): the run's window bookkeeping and a simulated charger
 * that writes CALLs on a schedule without waiting for replies.
 *
 * Owns: the measured window (bounds, per-second counters, errors), the charger's socket
 * plumbing (connect, boot, frame reading, close) and its ring of outstanding CALLs (message
 * id → intended send time), from which latency is taken: from the intended time, so a late
 * generator or a slow server cannot hide behind each other (no coordinated omission).
 * Must not: decide what is sent or when (the generators do), or aggregate results.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Socket } from 'node:net';
import {
  bootCallText,
  closeRaw,
  frameText,
  maskedFrame,
  rawConnect,
  readServerFrames,
  replySeq,
  settleBoot,
  type ServerFrameSink,
} from './loadgen.js';
import { ID_WIDTH, type BenchVersion } from './ocpp-payloads.js';

export type WindowError = 'callError' | 'unparsed' | 'closed' | 'late';

/** The measured window of one run, and what happened in it. */
export class WindowRun<O extends { version: BenchVersion } = { version: BenchVersion }> {
  /** Window bounds on the performance.now() clock (intended time for CALLs, wall time for rates). */
  wStart = Infinity;
  wEnd = Infinity;
  /** The window's CALLs that were due on a charger already closed (never written). */
  unsent = 0;
  sentPerSecond: number[] = [];
  repliesPerSecond: number[] = [];
  readonly errors = { callError: 0, unparsed: 0, closed: 0, late: 0, total: 0, samples: [] as string[] };

  constructor(readonly opts: O) {}

  error(kind: WindowError, sample?: string): void {
    this.errors[kind]++;
    if (kind !== 'late') this.errors.total++;
    if (sample !== undefined && this.errors.samples.length < 5)
      this.errors.samples.push(`${kind}: ${sample.slice(0, 400)}`);
  }

  inWindow(t: number): boolean {
    return t >= this.wStart && t < this.wEnd;
  }

  /** Counts one event in its second of the window; false when `now` is outside it. */
  bump(perSecond: number[], now: number): boolean {
    if (!this.inWindow(now)) return false;
    const s = Math.floor((now - this.wStart) / 1000);
    perSecond[s] = (perSecond[s] ?? 0) + 1;
    return true;
  }
}

/**
 * One simulated charger of an open-loop generator: a raw socket and a ring of outstanding
 * CALLs, each slot holding its message number and intended send time. Subclasses build the
 * frames (`nextSlot` + `writeId` per CALL) and say what a reply means (`onReply`).
 */
export abstract class OpenLoopCharger<R extends WindowRun> implements ServerFrameSink {
  protected sock!: Socket;
  protected readonly mask = randomBytes(4);
  private rest: Buffer | null = null;
  private seq = 0;
  protected readonly ringMask: number;
  /** Intended send time and message number per slot (-1: free). */
  protected readonly intended: Float64Array;
  protected readonly pend: Float64Array;
  outstanding = 0;
  phase: 'connect' | 'boot' | 'run' | 'closed' = 'connect';
  closedOnPurpose = false;
  booted: Promise<void>;
  private bootDone!: () => void;
  private bootFail!: (err: Error) => void;

  constructor(
    readonly run: R,
    readonly cpId: string,
    ringSize: number,
  ) {
    this.ringMask = ringSize - 1;
    this.intended = new Float64Array(ringSize);
    this.pend = new Float64Array(ringSize).fill(-1);
    this.booted = new Promise((resolve, reject) => {
      this.bootDone = resolve;
      this.bootFail = reject;
    });
    this.booted.catch(() => undefined);
  }

  open(port: number): Promise<void> {
    const c = rawConnect(
      port,
      this.cpId,
      this.run.opts.version,
      (d) => this.onData(d),
      (detail) => this.onClosed(detail),
    );
    this.sock = c.sock;
    return c.ready;
  }

  startBoot(): void {
    this.phase = 'boot';
    this.sock.write(maskedFrame(bootCallText(this.run.opts.version), 0x1, this.mask));
  }

  /**
   * Takes the next message number for a CALL intended at `at`; returns its ring slot.
   * The ring is sized for every CALL of the run, so a wrap would mean a reply never came.
   */
  protected nextSlot(at: number): { seq: number; slot: number } {
    const seq = ++this.seq;
    const slot = seq & this.ringMask;
    if (this.pend[slot] >= 0) this.outstanding--;
    this.pend[slot] = seq;
    this.intended[slot] = at;
    this.outstanding++;
    return { seq, slot };
  }

  /** Writes message number `seq` (masked) into the id digits of a frame copied at `off`. */
  protected writeId(out: Buffer, off: number, seq: number): void {
    const m = this.mask;
    for (let d = ID_WIDTH - 1; d >= 0; d--) {
      const digit = seq % 10;
      seq = (seq - digit) / 10;
      out[off + d] = (0x30 + digit) ^ m[(4 + d) & 3];
    }
  }

  private onData(chunk: Buffer): void {
    const b = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    this.rest = null;
    const i = readServerFrames(b, performance.now(), this.sock, this.mask, this);
    if (i < 0) return;
    if (i < b.length) this.rest = Buffer.from(b.subarray(i));
  }

  onFrame(b: Uint8Array, s: number, len: number, now: number): void {
    const seq = replySeq(b, s, len);
    if (seq < 0) return this.run.error('unparsed', frameText(b, s, len));
    const kind = b[s + 1];
    if (this.phase === 'boot') return settleBoot(seq, kind, b, s, len, this.bootDone, this.bootFail);
    const slot = seq & this.ringMask;
    if (this.pend[slot] !== seq) return this.run.error('late');
    this.pend[slot] = -1;
    this.outstanding--;
    this.onReply(slot, this.intended[slot], kind === 0x34, now, b, s, len);
  }

  /** A reply to the CALL of `slot`, intended at `at`; `callError`: a CALLERROR (frame at b[s, s+len)). */
  protected abstract onReply(
    slot: number,
    at: number,
    callError: boolean,
    now: number,
    b: Uint8Array,
    s: number,
    len: number,
  ): void;

  /** Outstanding CALLs whose intended time fell in the window. */
  missingInWindow(): number {
    let n = 0;
    for (let i = 0; i <= this.ringMask; i++) if (this.pend[i] >= 0 && this.run.inWindow(this.intended[i])) n++;
    return n;
  }

  unparsed(sample: string): void {
    this.run.error('unparsed', sample);
  }

  onClosed(detail: string): void {
    if (this.phase === 'closed') return;
    const was = this.phase;
    this.phase = 'closed';
    if (!this.closedOnPurpose) this.run.error('closed', `${this.cpId} (${was}): ${detail}`);
    this.bootFail(new Error(`closed: ${detail}`));
  }

  close(): void {
    this.closedOnPurpose = true;
    closeRaw(this.sock, this.mask);
  }
}
