/**
 * Bare uWebSockets.js responder: the transport's limit, the floor every router figure is
 * compared with (issue #2, STYLE.md §8).
 *
 *   node --import tsx bench/reference/uws-bare.ts
 *
 * Accepts WebSockets at /ocpp/* with the subprotocol the client asks for (first offered),
 * and answers each CALL by peeking its message id and action from the bytes and sending a
 * pre-built CALLRESULT for that action: no validation, no JSON.parse, no state, no workers.
 * Everything else is ignored. Replies (uws-common.ts): Heartbeat {currentTime} (refreshed once
 * a second), BootNotification {status, currentTime, interval}, Authorize
 * {idTagInfo:{status:'Accepted'}} (ocpp1.6) or {idTokenInfo:{status:'Accepted'}} (2.x, by
 * the connection's subprotocol), any other action {} (StatusNotification, MeterValues).
 *
 * Prints one JSON line on stdout once listening: {"ready":true,"port":N,"pid":P,"threads":0}.
 * Exits on SIGTERM / SIGINT / stdin closing.
 */
import { chosenProtocol, listenAndServe, reply, uWS, WS_OPTIONS, type Conn } from './uws-common.js';

const app = uWS.App();
app.ws<Conn>('/ocpp/*', {
  ...WS_OPTIONS,
  upgrade: (res, req, context) => {
    const { protocol, v16 } = chosenProtocol(req.getHeader('sec-websocket-protocol'));
    res.upgrade<Conn>(
      { v16 },
      req.getHeader('sec-websocket-key'),
      protocol,
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  message: (ws, message) => {
    // Synchronous, inside uWS's callback: the send is corked with the others of this read.
    const out = reply(new Uint8Array(message), ws.getUserData());
    if (out) ws.send(out, false);
  },
});
listenAndServe(app, 'uws-bare');
