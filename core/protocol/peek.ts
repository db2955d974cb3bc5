/**
 * Main-thread peek: messageTypeId, messageId and action of an OCPP-J frame, read from the
 * raw bytes without decoding or parsing the whole frame.
 *
 * Owns: the cheap look the socket thread needs to route a frame (CALL to the charger's
 * ordered lane, CALLRESULT/CALLERROR to the pending-call table). Must not: judge validity.
 * Anything it cannot read returns `undefined` and the frame goes to a worker, whose full
 * parser (frame.ts) produces the exact CALLERROR the spec asks for.
 *
 * Why bytes: uWS hands us an ArrayBuffer; decoding a 1.4 KB MeterValues to a string on the
 * socket thread only to read its first 40 bytes is wasted work (issue #3 profile).
 */

export interface Peek {
  /** OCPP-J messageTypeId (2 CALL, 3 CALLRESULT, 4 CALLERROR, 5 CALLRESULTERROR, 6 SEND). */
  type: number;
  id: string;
  /** Present for CALL and SEND. */
  action?: string;
  /** Index just after the action string (CALL and SEND), where `,payload]` follows. */
  payloadAt?: number;
}

const WS = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
const MAX_ID = 128;
const MAX_ACTION = 64;

function skipWs(b: Uint8Array, i: number): number {
  while (i < b.length && WS(b[i]!)) i++;
  return i;
}

/** Reads a JSON string without escapes starting at the opening quote; returns [value, next]. */
function readPlainString(b: Uint8Array, i: number, max: number): [string, number] | undefined {
  if (b[i] !== 0x22) return undefined;
  const start = ++i;
  const end = Math.min(b.length, start + max + 1);
  while (i < end) {
    const c = b[i]!;
    if (c === 0x22) {
      let s = '';
      // Ids and action names are ASCII in practice; a non-ASCII byte falls back to the worker.
      for (let k = start; k < i; k++) {
        const ch = b[k]!;
        if (ch > 0x7e || ch < 0x20) return undefined;
        s += String.fromCharCode(ch);
      }
      return [s, i + 1];
    }
    if (c === 0x5c) return undefined; // escaped id: rare; let the full parser handle it
    i++;
  }
  return undefined;
}

export function peekFrame(b: Uint8Array): Peek | undefined {
  let i = skipWs(b, 0);
  if (b[i] !== 0x5b) return undefined;
  i = skipWs(b, i + 1);
  let type = 0;
  const digitsStart = i;
  while (i < b.length && b[i]! >= 0x30 && b[i]! <= 0x39 && i - digitsStart < 3) type = type * 10 + (b[i++]! - 0x30);
  if (i === digitsStart) return undefined;
  i = skipWs(b, i);
  if (b[i] !== 0x2c) return undefined;
  i = skipWs(b, i + 1);
  const idr = readPlainString(b, i, MAX_ID);
  if (!idr) return undefined;
  const [id] = idr;
  i = idr[1];
  if (type !== 2 && type !== 6) return { type, id };
  i = skipWs(b, i);
  if (b[i] !== 0x2c) return undefined;
  i = skipWs(b, i + 1);
  const ar = readPlainString(b, i, MAX_ACTION);
  if (!ar) return undefined;
  return { type, id, action: ar[0], payloadAt: ar[1] };
}

/** True when the frame ends in `, {} ]` right after `at` (whitespace allowed): an empty payload. */
export function isEmptyPayload(b: Uint8Array, at: number): boolean {
  let i = skipWs(b, at);
  if (b[i] !== 0x2c) return false;
  i = skipWs(b, i + 1);
  if (b[i] !== 0x7b) return false;
  i = skipWs(b, i + 1);
  if (b[i] !== 0x7d) return false;
  i = skipWs(b, i + 1);
  if (b[i] !== 0x5d) return false;
  return skipWs(b, i + 1) === b.length;
}
