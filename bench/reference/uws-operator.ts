/**
 * Bare uWebSockets.js server with an operator endpoint: the transport's limit for CSMS-initiated
 * commands fanned out to chargers (bench/fanout.ts), as uws-bare.ts is for charger-initiated
 * CALLs. A floor, not a product: no validation, no JSON.parse, no state beyond "which socket is
 * charger X", no workers.
 *
 *   node --import tsx bench/reference/uws-operator.ts '{"apiKeySha256":"<64 hex>"}'
 *
 * Chargers: WebSockets at /ocpp/<id> with the subprotocol the client asks for (first offered).
 * A CALL from a charger is answered by peeking its id and action and sending a pre-built
 * CALLRESULT, as uws-bare.ts does (uws-common.ts: BootNotification, Heartbeat with a
 * currentTime refreshed once a second, Authorize by version, anything else `{}`).
 *
 * Operator: the router's route and contract (core/api/http-api.ts), the bytes passed through:
 *   POST /api/v1/chargers/<id>/calls/<Action>[?timeoutMs=N]   Authorization: Bearer <key>
 *   body: the CALL's payload (JSON, not parsed: copied into the frame)
 *   200 {"chargerId","action","result":<the charger's payload bytes>,"durationMs"}
 *   401 unauthorized (SHA-256 of the key ≠ the configured hash), 404 not_connected,
 *   502 call_error (the charger's CALLERROR, raw), 502 disconnected, 504 timeout (default 30 s).
 * Message ids are a counter; replies are matched by id. No one-in-flight rule per charger.
 *
 * Prints one JSON line on stdout once listening: {"ready":true,"port":N,"pid":P,"threads":0}.
 * Exits on SIGTERM / SIGINT / stdin closing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { HttpResponse, WebSocket } from 'uWebSockets.js';
import { chosenProtocol, endOfString, listenAndServe, reply, uWS, WS_OPTIONS, type Conn } from './uws-common.js';

const cfg = JSON.parse(process.argv[2] ?? '{}') as { apiKeySha256?: string };
if (!/^[0-9a-f]{64}$/.test(cfg.apiKeySha256 ?? '')) {
  process.stderr.write('uws-operator: apiKeySha256 (64 hex digits) is required\n');
  process.exit(1);
}
const keyHash = Buffer.from(cfg.apiKeySha256!, 'hex');

const latin1 = (b: Uint8Array, from: number, to: number) =>
  Buffer.from(b.buffer, b.byteOffset + from, to - from).toString('latin1');

interface Charger extends Conn {
  id: string;
}
interface Pending {
  res: HttpResponse;
  aborted: boolean;
  timer: NodeJS.Timeout;
  cpId: string;
  action: string;
  t0: number;
}

const chargers = new Map<string, WebSocket<Charger>>();
const pending = new Map<string, Pending>();
let nextId = 0;

function respond(p: Pending, status: string, body: string | Buffer): void {
  if (p.aborted) return;
  p.res.cork(() => {
    p.res.writeStatus(status).writeHeader('content-type', 'application/json; charset=utf-8').end(body);
  });
}

/** A charger's CALLRESULT / CALLERROR: the operator request waiting for it gets the bytes. */
function settle(b: Uint8Array): void {
  const idEnd = endOfString(b, 3);
  if (idEnd < 0 || b[idEnd + 1] !== 0x2c) return;
  const p = pending.get(latin1(b, 4, idEnd));
  if (!p) return;
  pending.delete(latin1(b, 4, idEnd));
  clearTimeout(p.timer);
  // Payload: after `[3,"<id>",` up to the final `]`.
  let end = b.length - 1;
  while (end > idEnd && b[end] !== 0x5d) end--;
  const payload = Buffer.from(b.buffer, b.byteOffset + idEnd + 2, end - idEnd - 2);
  if (b[1] === 0x33) {
    respond(
      p,
      '200 OK',
      Buffer.concat([
        Buffer.from(`{"chargerId":${JSON.stringify(p.cpId)},"action":"${p.action}","result":`),
        payload,
        Buffer.from(`,"durationMs":${Date.now() - p.t0}}`),
      ]),
    );
  } else {
    respond(
      p,
      '502 Bad Gateway',
      Buffer.concat([
        Buffer.from('{"error":"call_error","message":"The charger answered with a CALLERROR","callError":['),
        payload,
        Buffer.from(']}'),
      ]),
    );
  }
}

const app = uWS.App();
app.ws<Charger>('/ocpp/*', {
  ...WS_OPTIONS,
  upgrade: (res, req, context) => {
    const { protocol, v16 } = chosenProtocol(req.getHeader('sec-websocket-protocol'));
    let id: string;
    try {
      id = decodeURIComponent(req.getUrl().slice('/ocpp/'.length));
    } catch {
      res.writeStatus('400 Bad Request').end();
      return;
    }
    res.upgrade<Charger>(
      { id, v16 },
      req.getHeader('sec-websocket-key'),
      protocol,
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  open: (ws) => {
    chargers.set(ws.getUserData().id, ws);
  },
  message: (ws, message) => {
    const b = new Uint8Array(message);
    if (b[0] !== 0x5b || b[2] !== 0x2c) return;
    if (b[1] === 0x32) {
      // A charger's CALL: `[3,"<id>",<pre-built result>]`, as uws-bare.ts answers it.
      const out = reply(b, ws.getUserData());
      if (out) ws.send(out, false);
    } else if (b[1] === 0x33 || b[1] === 0x34) settle(b);
  },
  close: (ws) => {
    const id = ws.getUserData().id;
    if (chargers.get(id) === ws) chargers.delete(id);
  },
});

app.post('/api/v1/chargers/:id/calls/:action', (res, req) => {
  // Everything from `req` is read now: it is only valid in this callback.
  const auth = req.getHeader('authorization');
  const key = auth.toLowerCase().startsWith('bearer ') ? auth.slice(7).trim() : req.getHeader('x-api-key');
  const rawId = req.getParameter(0) ?? '';
  const action = req.getParameter(1) ?? '';
  const t = /(?:^|&)timeoutMs=(\d+)/.exec(req.getQuery() ?? '');
  const timeoutMs = t ? Number(t[1]) : 30_000;
  const p: Pending = {
    res,
    aborted: false,
    timer: undefined as unknown as NodeJS.Timeout,
    cpId: '',
    action,
    t0: Date.now(),
  };
  res.onAborted(() => {
    p.aborted = true;
  });
  const h = createHash('sha256').update(key).digest();
  if (!key || !timingSafeEqual(h, keyHash)) {
    res
      .writeStatus('401 Unauthorized')
      .writeHeader('content-type', 'application/json')
      .end('{"error":"unauthorized","message":"A valid API key is required"}');
    return;
  }
  try {
    p.cpId = decodeURIComponent(rawId);
  } catch {
    res.writeStatus('400 Bad Request').end('{"error":"invalid_parameter"}');
    return;
  }
  const chunks: Buffer[] = [];
  res.onData((chunk, isLast) => {
    chunks.push(Buffer.from(chunk.slice(0)));
    if (!isLast) return;
    const ws = chargers.get(p.cpId);
    if (!ws)
      return respond(
        p,
        '404 Not Found',
        `{"error":"not_connected","message":"Charge point ${JSON.stringify(p.cpId).slice(1, -1)} is not connected"}`,
      );
    const body = Buffer.concat(chunks);
    const id = String(++nextId);
    pending.set(id, p);
    p.timer = setTimeout(() => {
      if (pending.get(id) !== p) return;
      pending.delete(id);
      respond(p, '504 Gateway Timeout', '{"error":"timeout","message":"The charger did not answer in time"}');
    }, timeoutMs);
    const frame = Buffer.concat([
      Buffer.from(`[2,"${id}","${action}",`),
      body.length ? body : Buffer.from('{}'),
      Buffer.from(']'),
    ]);
    ws.cork(() => {
      ws.send(frame, false);
    });
  });
});
listenAndServe(app, 'uws-operator');
