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
 *
 * Why the action comes from a table and the id from one native slice: built a character at
 * a time, the two strings were the socket thread's second-largest allocation site (≈ 790
 * bytes of garbage per StatusNotification at 10,000 msg/s, bench/trace-report.ts), and took
 * 330 ns per frame where the table and the slice take 150 (bench/RESULTS.md, "Socket thread
 * allocation"). The action of a CALL is an OCPP action name in practice: the table returns
 * the one string every frame shares, with no allocation.
 */
import { OCPP_VERSIONS } from './dialect.js';
import { actionCatalog } from './schemas.js';

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
  while (i < b.length && WS(b[i])) i++;
  return i;
}

// Node's and Bun's Buffer both have it, and it takes any Uint8Array as `this`.
const latin1Slice = (
  Buffer.prototype as unknown as { latin1Slice: (this: Uint8Array, start: number, end: number) => string }
).latin1Slice;

/** Action names of every OCPP version by length (built on first use). */
let actionsByLength: string[][] | null = null;

function knownActions(): string[][] {
  const byLength: string[][] = [];
  for (const v of OCPP_VERSIONS) {
    for (const a of actionCatalog(v).request) {
      const list = (byLength[a.length] ??= []);
      if (!list.includes(a)) list.push(a);
    }
  }
  return byLength;
}

/** The known action name spelt by b[start, end), or a new string when none is. */
function readAction(b: Uint8Array, start: number, end: number): string {
  const candidates = (actionsByLength ??= knownActions())[end - start];
  if (candidates !== undefined) {
    next: for (const a of candidates) {
      for (let k = 0; k < a.length; k++) if (a.charCodeAt(k) !== b[start + k]) continue next;
      return a;
    }
  }
  return latin1Slice.call(b, start, end);
}

/** Where the string read by the last readPlainString() ended (just past its closing quote). */
let stringEnd = 0;

/**
 * Reads a JSON string without escapes starting at the opening quote; sets stringEnd. Ids and
 * action names are printable ASCII in practice: anything else (and an escape) is left to the
 * worker's full parser.
 */
function readPlainString(b: Uint8Array, i: number, max: number, action: boolean): string | undefined {
  if (b[i] !== 0x22) return undefined;
  const start = ++i;
  const end = Math.min(b.length, start + max + 1);
  while (i < end) {
    const c = b[i];
    if (c === 0x22) {
      stringEnd = i + 1;
      return action ? readAction(b, start, i) : latin1Slice.call(b, start, i);
    }
    if (c === 0x5c || c > 0x7e || c < 0x20) return undefined;
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
  while (i < b.length && b[i] >= 0x30 && b[i] <= 0x39 && i - digitsStart < 3) type = type * 10 + (b[i++] - 0x30);
  if (i === digitsStart) return undefined;
  i = skipWs(b, i);
  if (b[i] !== 0x2c) return undefined;
  i = skipWs(b, i + 1);
  const id = readPlainString(b, i, MAX_ID, false);
  if (id === undefined) return undefined;
  i = stringEnd;
  if (type !== 2 && type !== 6) return { type, id };
  i = skipWs(b, i);
  if (b[i] !== 0x2c) return undefined;
  i = skipWs(b, i + 1);
  const action = readPlainString(b, i, MAX_ACTION, true);
  if (action === undefined) return undefined;
  return { type, id, action, payloadAt: stringEnd };
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
