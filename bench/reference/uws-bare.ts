/**
 * Bare uWebSockets.js responder: the transport's limit, the floor every router figure is
 * compared with (issue #2, STYLE.md §8).
 *
 *   node --import tsx bench/reference/uws-bare.ts
 *
 * Accepts WebSockets at /ocpp/* with the subprotocol the client asks for (first offered),
 * and answers each CALL by peeking its message id and action from the bytes and sending a
 * pre-built CALLRESULT for that action: no validation, no JSON.parse, no state, no workers.
 * Everything else is ignored. Heartbeat's currentTime is refreshed once a second.
 *
 * Prints one JSON line on stdout once listening: {"ready":true,"port":N,"pid":P,"threads":0}.
 * Exits on SIGTERM / SIGINT / stdin closing.
 */
import { createRequire } from 'node:module';
import { stopWithParent } from '../lib/proc.js';

// uWebSockets.js is a CommonJS native addon.
const uWS = createRequire(import.meta.url)('uWebSockets.js') as typeof import('uWebSockets.js');

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
const PREFIX = enc.encode('[3,"');
const MIDDLE = enc.encode('",');

/** Index of the closing quote of a JSON string starting at `i` (the opening quote), or -1. */
function endOfString(b: Uint8Array, i: number): number {
  if (b[i] !== 0x22) return -1;
  for (let k = i + 1; k < b.length && k < i + 200; k++) {
    if (b[k] === 0x22) return k;
    if (b[k] === 0x5c) return -1;
  }
  return -1;
}

const actionNames = new Map<string, string>();

/** Builds `[3,"<id>",<result>]` around the id bytes of the request. */
function reply(b: Uint8Array): Uint8Array | null {
  // Frames from the generator are compact: `[2,"<id>","<Action>",{...}]`.
  if (b[0] !== 0x5b || b[1] !== 0x32 || b[2] !== 0x2c) return null;
  const idEnd = endOfString(b, 3);
  if (idEnd < 0 || b[idEnd + 1] !== 0x2c) return null;
  const actEnd = endOfString(b, idEnd + 2);
  if (actEnd < 0) return null;
  let key = '';
  for (let k = idEnd + 3; k < actEnd; k++) key += String.fromCharCode(b[k]!);
  const name = actionNames.get(key) ?? (actionNames.set(key, key), key);
  const result = results.get(name) ?? EMPTY;
  const idLen = idEnd - 4;
  const out = new Uint8Array(PREFIX.length + idLen + MIDDLE.length + result.length + 1);
  out.set(PREFIX, 0);
  out.set(b.subarray(4, idEnd), PREFIX.length);
  out.set(MIDDLE, PREFIX.length + idLen);
  out.set(result, PREFIX.length + idLen + MIDDLE.length);
  out[out.length - 1] = 0x5d;
  return out;
}

const app = uWS.App();
app.ws('/ocpp/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 65536,
  idleTimeout: 300,
  maxBackpressure: 1 << 20,
  upgrade: (res, req, context) => {
    const protocol = req.getHeader('sec-websocket-protocol').split(',')[0]!.trim();
    res.upgrade({}, req.getHeader('sec-websocket-key'), protocol, req.getHeader('sec-websocket-extensions'), context);
  },
  message: (ws, message) => {
    // Synchronous, inside uWS's callback: the send is corked with the others of this read.
    const out = reply(new Uint8Array(message));
    if (out) ws.send(out, false);
  },
});
app.any('/*', (res) => { res.writeStatus('404 Not Found').end(); });

app.listen('127.0.0.1', 0, (s) => {
  if (!s) {
    process.stderr.write('uws-bare: cannot listen\n');
    process.exit(1);
  }
  process.stdout.write(JSON.stringify({ ready: true, port: uWS.us_socket_local_port(s), pid: process.pid, threads: 0 }) + '\n');
  stopWithParent(() => {
    uWS.us_listen_socket_close(s);
    process.exit(0);
  });
});
