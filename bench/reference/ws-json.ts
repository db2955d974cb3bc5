/**
 * Plain `ws` responder: what a Node user writes by hand before reaching for a framework
 * (issue #3, STYLE.md §8). A reference, not a floor: it pays what every Node OCPP server pays
 * (the `ws` package's framing, JSON.parse of every frame, JSON.stringify of every reply) and
 * nothing else.
 *
 *   node --import tsx bench/reference/ws-json.ts
 *
 * Accepts WebSockets at /ocpp/<id> offering ocpp1.6 or ocpp2.0.1 (the first one the client
 * offers that we know; none known: 400). Every text frame is JSON.parsed; a CALL gets a
 * JSON.stringified CALLRESULT with a schema-correct reply for its action and version:
 *
 *   Heartbeat           {currentTime}                     (a fresh Date per call)
 *   BootNotification    {status:'Accepted', currentTime, interval:300}
 *   StatusNotification  {}
 *   MeterValues         {}
 *   Authorize           1.6: {idTagInfo:{status:'Accepted'}}   2.0.1: {idTokenInfo:{status:'Accepted'}}
 *   anything else       CALLERROR NotImplemented (the generator counts it as an error)
 *
 * No validation, no state, no workers, one thread. `ws` options: its defaults (no
 * permessage-deflate, which is also its server default) except maxPayload 64 KiB, as for the
 * bare uWS responder. `bufferutil` and `utf-8-validate` are installed, so `ws` uses its
 * native masking and UTF-8 check, as it does under ocpp-rpc in the same tree.
 *
 * Prints one JSON line on stdout once listening: {"ready":true,"port":N,"pid":P,"threads":0}.
 * Exits on SIGTERM / SIGINT / stdin closing.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { stopWithParent } from '../lib/proc.js';

const PROTOCOLS = ['ocpp1.6', 'ocpp2.0.1'] as const;
type Protocol = (typeof PROTOCOLS)[number];

/** The CALLRESULT payload for `action`, or undefined when we do not answer it. */
function result(action: unknown, protocol: Protocol): unknown {
  switch (action) {
    case 'Heartbeat':
      return { currentTime: new Date().toISOString() };
    case 'BootNotification':
      return { status: 'Accepted', currentTime: new Date().toISOString(), interval: 300 };
    case 'StatusNotification':
    case 'MeterValues':
      return {};
    case 'Authorize':
      return protocol === 'ocpp1.6' ? { idTagInfo: { status: 'Accepted' } } : { idTokenInfo: { status: 'Accepted' } };
    default:
      return undefined;
  }
}

function onMessage(ws: WebSocket, protocol: Protocol, data: RawData, isBinary: boolean): void {
  if (isBinary) return;
  let msg: unknown;
  try {
    msg = JSON.parse(String(data));
  } catch {
    return;
  }
  // A CALL is [2, "<id>", "<Action>", {payload}]; CALLRESULT / CALLERROR from a charger are ignored.
  if (!Array.isArray(msg) || msg[0] !== 2 || typeof msg[1] !== 'string') return;
  const r = result(msg[2], protocol);
  ws.send(
    JSON.stringify(
      r === undefined ? [4, msg[1], 'NotImplemented', `${String(msg[2])} is not handled`, {}] : [3, msg[1], r],
    ),
  );
}

const wss = new WebSocketServer({
  noServer: true,
  maxPayload: 65536,
  handleProtocols: (offered) => {
    for (const p of offered) if ((PROTOCOLS as readonly string[]).includes(p)) return p;
    return false;
  },
});
wss.on('connection', (ws) => {
  const protocol = ws.protocol as Protocol;
  ws.on('message', (data, isBinary) => onMessage(ws, protocol, data, isBinary));
  ws.on('error', () => ws.terminate());
});

const http = createServer((_req, res) => {
  res.writeHead(404).end();
});
http.on('upgrade', (req, socket, head) => {
  socket.on('error', () => socket.destroy());
  const offered = String(req.headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((s) => s.trim());
  if (!/^\/ocpp\/[^/]+$/.test(req.url ?? '') || !offered.some((p) => (PROTOCOLS as readonly string[]).includes(p))) {
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

http.listen(0, '127.0.0.1', () => {
  process.stdout.write(
    JSON.stringify({ ready: true, port: (http.address() as AddressInfo).port, pid: process.pid, threads: 0 }) + '\n',
  );
});
http.on('error', (err) => {
  process.stderr.write(`ws-json: ${err.message}\n`);
  process.exit(1);
});

// Stops with SIGTERM/SIGINT or when the parent goes away.
stopWithParent(() => process.exit(0));
