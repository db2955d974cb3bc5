/**
 * Batch codec between the socket thread and the workers.
 *
 * Part of the thread contract (core/thread-contract/, see envelope.ts): imported by both
 * sides, the socket thread's dispatcher and the workers' runtime.
 *
 * Owns: the byte layout of a batch. Must not: know what items mean (envelope.ts).
 *
 *   ┌───────────┬────────────┬─────────┬───────┬─────────┬───────┬───┬───────────────────────┬╌╌╌╌╌╌╌╌╌
 *   │ u32 metaAt│ u32 metaLen│ u32 len │ bytes │ u32 len │ bytes │ … │ meta (msgpackr array) │ unused
 *   └───────────┴────────────┴─────────┴───────┴─────────┴───────┴───┴───────────────────────┴╌╌╌╌╌╌╌╌╌
 *
 * Why this layout: frame text is carried as raw UTF-8 bytes, length-prefixed, in one
 * ArrayBuffer that is *transferred* (not cloned) to the other thread, which costs less than
 * posting string arrays or a msgpackr-encoded array of strings (bench/RESULTS.md, "Figures
 * behind the dispatcher and the batch codec"); msgpackr is the codec for the structured
 * metadata only. The socket thread never decodes or re-encodes frame text: it copies uWS's
 * bytes in and sends the reply bytes out.
 * The meta is copied out of msgpackr's shared output buffer (never transfer `packed.buffer`,
 * STYLE.md §9).
 *
 * Why the meta goes last: finish() then transfers the writer's own buffer as it is (its
 * unused tail included) instead of copying every frame into a right-sized one; with the
 * initial size taken from the previous batch (`initial`), a batch's frames are copied once,
 * from uWS's buffer into this one, where growing the buffer and a final copy would copy them
 * again (bench/RESULTS.md, "Changes this session").
 */
import { Packr } from 'msgpackr';

const packr = new Packr({ structuredClone: false, useRecords: false });
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Growable byte buffer for frames; one per batch under construction. */
export class BatchWriter {
  private buf: Uint8Array;
  private len = HEADER;
  readonly metas: unknown[] = [];

  /**
   * `initial`: expected bytes of the frames (e.g. the previous batch's `bytes`). `reuse`: a
   * buffer of an earlier writer (see recycle()), used when it is large enough.
   */
  constructor(initial = 16 * 1024, reuse?: Uint8Array) {
    const size = HEADER + Math.max(64, initial);
    this.buf = reuse && reuse.length >= size ? reuse : new Uint8Array(size);
  }

  get count(): number {
    return this.metas.length;
  }

  /** Bytes of the frames and their length prefixes so far. */
  get bytes(): number {
    return this.len - HEADER;
  }

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  private writeLen(n: number): void {
    this.buf[this.len++] = n >>> 24;
    this.buf[this.len++] = (n >>> 16) & 0xff;
    this.buf[this.len++] = (n >>> 8) & 0xff;
    this.buf[this.len++] = n & 0xff;
  }

  /** Appends an item; `bytes` (copied) may be empty for items without a frame. */
  add(meta: unknown, bytes?: Uint8Array): void {
    this.metas.push(meta);
    const n = bytes ? bytes.length : 0;
    this.reserve(4 + n);
    this.writeLen(n);
    if (n) {
      this.buf.set(bytes!, this.len);
      this.len += n;
    }
  }

  /** Appends an item whose frame is a JS string (worker side: replies). */
  addText(meta: unknown, text: string | undefined): void {
    this.metas.push(meta);
    if (text === undefined) {
      this.reserve(4);
      this.writeLen(0);
      return;
    }
    // UTF-8 needs at most 3 bytes per UTF-16 code unit.
    this.reserve(4 + text.length * 3);
    const at = this.len;
    this.len += 4;
    const { written } = encoder.encodeInto(text, this.buf.subarray(this.len));
    this.buf[at] = written >>> 24;
    this.buf[at + 1] = (written >>> 16) & 0xff;
    this.buf[at + 2] = (written >>> 8) & 0xff;
    this.buf[at + 3] = written & 0xff;
    this.len += written;
  }

  /**
   * The batch as the reading side sees it, without encoding: for a batch run on this thread
   * (dispatch/inline-policy.ts). The writer must not be added to afterwards; its buffer may be
   * reused (recycle()) once the batch is done with.
   */
  view(): DecodedBatch {
    return frameView(this.buf, this.metas);
  }

  /** The writer's buffer, for a later writer (`reuse`); the writer and its view are dead after. */
  recycle(): Uint8Array {
    return this.buf;
  }

  /**
   * One ArrayBuffer holding frames and meta, ready to transfer: the writer's own buffer,
   * unused tail included. The writer must not be used afterwards.
   */
  finish(): ArrayBuffer {
    const meta = packr.pack(this.metas);
    const at = this.len;
    this.reserve(meta.length);
    this.buf.set(meta, at);
    this.len += meta.length;
    writeU32(this.buf, 0, at);
    writeU32(this.buf, 4, meta.length);
    return this.buf.buffer as ArrayBuffer;
  }
}

const HEADER = 8;

function writeU32(b: Uint8Array, at: number, n: number): void {
  b[at] = n >>> 24;
  b[at + 1] = (n >>> 16) & 0xff;
  b[at + 2] = (n >>> 8) & 0xff;
  b[at + 3] = n & 0xff;
}

function readU32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) >>> 0) + (b[at + 1] << 16) + (b[at + 2] << 8) + b[at + 3];
}

export interface DecodedBatch {
  metas: unknown[];
  /** Frame bytes of item i (empty when the item has none). */
  frame(i: number): Uint8Array;
  text(i: number): string;
}

export function readBatch(buffer: ArrayBuffer): DecodedBatch {
  const u8 = new Uint8Array(buffer);
  const metaAt = readU32(u8, 0);
  const metas = packr.unpack(u8.subarray(metaAt, metaAt + readU32(u8, 4))) as unknown[];
  return frameView(u8, metas);
}

/** Frames of a batch: the length-prefixed run after the header, one per meta. */
function frameView(u8: Uint8Array, metas: unknown[]): DecodedBatch {
  const offsets = new Array<number>(metas.length);
  const lengths = new Array<number>(metas.length);
  let p = HEADER;
  for (let i = 0; i < metas.length; i++) {
    const n = readU32(u8, p);
    offsets[i] = p + 4;
    lengths[i] = n;
    p += 4 + n;
  }
  return {
    metas,
    frame: (i) => u8.subarray(offsets[i], offsets[i] + lengths[i]),
    text: (i) => decoder.decode(u8.subarray(offsets[i], offsets[i] + lengths[i])),
  };
}
