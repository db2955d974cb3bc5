/**
 * What the bare uWebSockets.js reference servers share (uws-bare.ts, uws-operator.ts): the
 * addon, the byte peeking of a charger's CALL and its pre-built CALLRESULT, and the listen +
 * ready line + stop protocol of bench/lib/proc.ts.
 *
 * Replies: Heartbeat {currentTime} (refreshed once a second), BootNotification {status,
 * currentTime, interval}, Authorize {idTagInfo:{status:'Accepted'}} (ocpp1.6) or
 * {idTokenInfo:{status:'Accepted'}} (2.x, by the connection's subprotocol), any other action {}.
 *
 * Owns: those bytes. Must not: parse JSON, validate, keep state.
 */
import { createRequire } from 'node:module';
import type { TemplatedApp } from 'uWebSockets.js';
import { stopWithParent } from '../lib/proc.js';

// uWebSockets.js is a CommonJS native addon.
export const uWS = createRequire(import.meta.url)('uWebSockets.js') as typeof import('uWebSockets.js');

const enc = new TextEncoder();
const results = new Map<string, Uint8Array>();
function refresh(): void {
  const now = new Date().toISOString();
  results.set('Heartbeat', enc.encode(`{"currentTime":"${now}"}`));
  results.set('BootNotification', enc.encode(`{"status":"Accepted","currentTime":"${now}","interval":300}`));
}
refresh();
setInterval(refresh, 1000).unref();
const EMPTY = enc.encode('{}');
/** Authorize's reply differs by version; picked per connection (its subprotocol). */
const AUTHORIZE_16 = enc.encode('{"idTagInfo":{"status":"Accepted"}}');
const AUTHORIZE_2X = enc.encode('{"idTokenInfo":{"status":"Accepted"}}');
const PREFIX = enc.encode('[3,"');
const MIDDLE = enc.encode('",');

/** Index of the closing quote of a JSON string starting at `i` (the opening quote), or -1. */
export function endOfString(b: Uint8Array, i: number): number {
  if (b[i] !== 0x22) return -1;
  for (let k = i + 1; k < b.length && k < i + 200; k++) {
    if (b[k] === 0x22) return k;
    if (b[k] === 0x5c) return -1;
  }
  return -1;
}

const actionNames = new Map<string, string>();

/** Per connection: whether it speaks OCPP 1.6 (from the subprotocol it was upgraded with). */
export interface Conn {
  v16: boolean;
}

/** Builds `[3,"<id>",<result>]` around the id bytes of the CALL `b`; null when `b` is not a CALL. */
export function reply(b: Uint8Array, conn: Conn): Uint8Array | null {
  // Frames from the generator are compact: `[2,"<id>","<Action>",{...}]`.
  if (b[0] !== 0x5b || b[1] !== 0x32 || b[2] !== 0x2c) return null;
  const idEnd = endOfString(b, 3);
  if (idEnd < 0 || b[idEnd + 1] !== 0x2c) return null;
  const actEnd = endOfString(b, idEnd + 2);
  if (actEnd < 0) return null;
  let key = '';
  for (let k = idEnd + 3; k < actEnd; k++) key += String.fromCharCode(b[k]);
  const name = actionNames.get(key) ?? (actionNames.set(key, key), key);
  const result = name === 'Authorize' ? (conn.v16 ? AUTHORIZE_16 : AUTHORIZE_2X) : (results.get(name) ?? EMPTY);
  const idLen = idEnd - 4;
  const out = new Uint8Array(PREFIX.length + idLen + MIDDLE.length + result.length + 1);
  out.set(PREFIX, 0);
  out.set(b.subarray(4, idEnd), PREFIX.length);
  out.set(MIDDLE, PREFIX.length + idLen);
  out.set(result, PREFIX.length + idLen + MIDDLE.length);
  out[out.length - 1] = 0x5d;
  return out;
}

/** The WebSocket options both servers use at /ocpp/* (behaviour is added by the caller). */
export const WS_OPTIONS = {
  compression: uWS.DISABLED,
  maxPayloadLength: 65536,
  idleTimeout: 300,
  maxBackpressure: 1 << 20,
} as const;

/** The subprotocol a client asked for (first offered), and the per-connection data it implies. */
export function chosenProtocol(offered: string): { protocol: string; v16: boolean } {
  const protocol = offered.split(',')[0].trim();
  return { protocol, v16: protocol === 'ocpp1.6' };
}

/**
 * 404 for every other route, listen on 127.0.0.1 at a free port, print the ready line
 * {"ready":true,"port":N,"pid":P,"threads":0}, and stop on SIGTERM / SIGINT / stdin closing.
 */
export function listenAndServe(app: TemplatedApp, name: string): void {
  app.any('/*', (res) => {
    res.writeStatus('404 Not Found').end();
  });
  app.listen('127.0.0.1', 0, (s) => {
    if (!s) {
      process.stderr.write(`${name}: cannot listen\n`);
      process.exit(1);
    }
    process.stdout.write(
      JSON.stringify({ ready: true, port: uWS.us_socket_local_port(s), pid: process.pid, threads: 0 }) + '\n',
    );
    stopWithParent(() => {
      uWS.us_listen_socket_close(s);
      process.exit(0);
    });
  });
}
