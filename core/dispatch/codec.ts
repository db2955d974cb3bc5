/**
 * Batch codec between the socket thread and the workers.
 *
 * Owns: the byte layout of a batch. Must not: know what items mean (envelope.ts).
 *
 *   ┌────────────┬──────────────────────┬─────────┬────────┬─────────┬────────┬──
 *   │ u32 metaLen│ meta (msgpackr array) │ u32 len │ bytes  │ u32 len │ bytes  │ …
 *   └────────────┴──────────────────────┴─────────┴────────┴─────────┴────────┴──
 *
 * Why this layout: frame text is carried as raw UTF-8 bytes, length-prefixed, in one
 * ArrayBuffer that is *transferred* (not cloned) to the other thread. The issue #3 prototype
 * measured this cheaper than posting string arrays or a msgpackr-encoded array of strings;
 * msgpackr remains the codec for the structured metadata. The socket thread never decodes or
 * re-encodes frame text: it copies uWS's bytes in and sends the reply bytes out.
 * The meta is copied out of msgpackr's shared output buffer (never transfer `packed.buffer`,
 * STYLE.md §9).
 */
import { Packr } from 'msgpackr';

const packr = new Packr({ structuredClone: false, useRecords: false });
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Growable byte buffer for frames; one per batch under construction. */
export class BatchWriter {
  private buf: Uint8Array;
  private len = 0;
  readonly metas: unknown[] = [];

  constructor(initial = 16 * 1024) {
    this.buf = new Uint8Array(initial);
  }

  get count(): number {
    return this.metas.length;
  }

  get bytes(): number {
    return this.len;
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

  /** One ArrayBuffer holding meta and frames, ready to transfer. */
  finish(): ArrayBuffer {
    const meta = packr.pack(this.metas);
    const out = new Uint8Array(4 + meta.length + this.len);
    out[0] = meta.length >>> 24;
    out[1] = (meta.length >>> 16) & 0xff;
    out[2] = (meta.length >>> 8) & 0xff;
    out[3] = meta.length & 0xff;
    out.set(meta, 4);
    out.set(this.buf.subarray(0, this.len), 4 + meta.length);
    return out.buffer;
  }
}

export interface DecodedBatch {
  metas: unknown[];
  /** Frame bytes of item i (empty when the item has none). */
  frame(i: number): Uint8Array;
  text(i: number): string;
}

export function readBatch(buffer: ArrayBuffer): DecodedBatch {
  const u8 = new Uint8Array(buffer);
  const metaLen = ((u8[0]! << 24) >>> 0) + (u8[1]! << 16) + (u8[2]! << 8) + u8[3]!;
  const metas = packr.unpack(u8.subarray(4, 4 + metaLen)) as unknown[];
  const offsets = new Array<number>(metas.length);
  const lengths = new Array<number>(metas.length);
  let p = 4 + metaLen;
  for (let i = 0; i < metas.length; i++) {
    const n = ((u8[p]! << 24) >>> 0) + (u8[p + 1]! << 16) + (u8[p + 2]! << 8) + u8[p + 3]!;
    offsets[i] = p + 4;
    lengths[i] = n;
    p += 4 + n;
  }
  return {
    metas,
    frame: (i) => u8.subarray(offsets[i]!, offsets[i]! + lengths[i]!),
    text: (i) => decoder.decode(u8.subarray(offsets[i]!, offsets[i]! + lengths[i]!)),
  };
}
