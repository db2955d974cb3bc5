/**
 * uWebSockets.js transport: charger WebSockets and the HTTP API on one event loop.
 *
 * Owns: the uWS App/SSLApp, upgrade/open/message/drain/close handlers and HTTP body reading.
 * Must not: interpret OCPP. Hot-path rules (STYLE.md §9): headers are copied before the
 * async upgrade decision; every write after an await is corked; frame bytes are copied out
 * of uWS's buffer before the handler returns (uWS reuses it); send() status is returned to
 * the caller; limits are explicit.
 */
import { createRequire } from 'node:module';
import {
  SendStatus,
  type HttpRequest,
  type Transport,
  type TransportHandlers,
  type TransportOptions,
} from './transport.js';
import { SocketBase } from './socket-base.js';

// uWebSockets.js is a CommonJS native addon.
const uWS = createRequire(import.meta.url)('uWebSockets.js') as typeof import('uWebSockets.js');
type WebSocket<U> = import('uWebSockets.js').WebSocket<U>;
type UwsHttpResponse = import('uWebSockets.js').HttpResponse;

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK',
  201: '201 Created',
  202: '202 Accepted',
  204: '204 No Content',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  405: '405 Method Not Allowed',
  409: '409 Conflict',
  413: '413 Payload Too Large',
  415: '415 Unsupported Media Type',
  422: '422 Unprocessable Entity',
  429: '429 Too Many Requests',
  500: '500 Internal Server Error',
  502: '502 Bad Gateway',
  503: '503 Service Unavailable',
  504: '504 Gateway Timeout',
};

function statusLine(s: number): string {
  return STATUS_TEXT[s] ?? `${s} Status`;
}

const decoder = new TextDecoder();

/**
 * Copies a frame out of uWS's reused buffer into a shared slab and returns a view of it.
 * Why not `message.slice(0)`: that allocates an ArrayBuffer (a malloc'd backing store, and
 * external memory that makes V8 collect more often) per frame; on the MeterValues profile
 * at 1,000 chargers × 8 in flight the message handler was 15% of the socket thread. A slab
 * stays alive while a view of it does (a frame waiting in a lane). Slabs are filled one after
 * the other, so what waiting frames keep alive is at most the bytes received since the oldest
 * of them arrived, plus one slab. Frames over a slab's eighth get their own buffer.
 */
const SLAB_BYTES = 256 * 1024;
let slab = new Uint8Array(SLAB_BYTES);
let slabAt = 0;
function copyFrame(message: ArrayBuffer): Uint8Array {
  const n = message.byteLength;
  if (n > SLAB_BYTES >>> 3) return new Uint8Array(message.slice(0));
  if (slabAt + n > SLAB_BYTES) {
    slab = new Uint8Array(SLAB_BYTES);
    slabAt = 0;
  }
  const view = slab.subarray(slabAt, slabAt + n);
  view.set(new Uint8Array(message));
  slabAt += n;
  return view;
}

/**
 * uWS.js copies the user data's own properties onto its WebSocket object (getUserData()
 * returns that object, not ours), so the user data is this one property: our socket, which
 * holds the router's data. Not the socket itself: its methods would be lost in the copy, and
 * uWS's own send/cork/close would answer in their place.
 */
interface UserData<U> {
  s: UwsSocket<U>;
}

/**
 * uWS socket behind the shared closed-socket guards (socket-base.ts), created at upgrade with
 * the router's data and attached to its uWS socket at open.
 */
class UwsSocket<U> extends SocketBase<U> {
  ws: WebSocket<UserData<U>> | null = null;
  protected rawSend(bytes: Uint8Array | string): SendStatus {
    return this.ws!.send(bytes, false);
  }
  protected rawCork(fn: () => void): void {
    this.ws!.cork(fn);
  }
  protected rawClose(code: number, reason: string): void {
    this.ws!.end(code, reason);
  }
  protected rawBuffered(): number {
    return this.ws!.getBufferedAmount();
  }
}

export class UwsTransport<U> implements Transport {
  private app: import('uWebSockets.js').TemplatedApp;
  private listenSocket: import('uWebSockets.js').us_listen_socket | null = null;

  constructor(
    private readonly opts: TransportOptions,
    private readonly h: TransportHandlers<U>,
  ) {
    this.app = opts.tls
      ? uWS.SSLApp({
          key_file_name: opts.tls.keyFile,
          cert_file_name: opts.tls.certFile,
          passphrase: opts.tls.passphrase,
          ca_file_name: opts.tls.caFile,
        })
      : uWS.App();
    const prefix = opts.wsPath.replace(/\/$/, '');
    this.app.ws<UserData<U>>(`${prefix}/*`, {
      compression: uWS.DISABLED,
      maxPayloadLength: opts.maxPayloadLength,
      idleTimeout: opts.idleTimeoutSec,
      maxBackpressure: opts.maxBackpressure,
      closeOnBackpressureLimit: 1, // typed as number in this build; true = close
      sendPingsAutomatically: true,
      upgrade: (res, req, context) => {
        // Copy everything out of req before awaiting: uWS invalidates it on return.
        const headers: Record<string, string> = {};
        req.forEach((k, v) => {
          headers[k] = v;
        });
        const url = req.getUrl();
        const key = req.getHeader('sec-websocket-key');
        const extensions = req.getHeader('sec-websocket-extensions');
        const remoteAddress = decoder.decode(res.getRemoteAddressAsText());
        let aborted = false;
        res.onAborted(() => {
          aborted = true;
        });
        this.h.upgrade({ url, headers, remoteAddress }).then(
          (d) => {
            if (aborted) return;
            res.cork(() => {
              if (!d.accept) {
                res.writeStatus(statusLine(d.status));
                for (const [k, v] of Object.entries(d.headers ?? {})) res.writeHeader(k, v);
                res.end(d.message);
                return;
              }
              res.upgrade(
                { s: new UwsSocket(d.data) } satisfies UserData<U>,
                key,
                d.protocol ?? '',
                extensions,
                context,
              );
            });
          },
          () => {
            if (!aborted)
              res.cork(() => {
                res.writeStatus('500 Internal Server Error').end();
              });
          },
        );
      },
      open: (ws) => {
        const s = ws.getUserData().s;
        s.ws = ws;
        this.h.open(s);
      },
      message: (ws, message, isBinary) => {
        // Copy: uWS reuses `message` after this callback.
        this.h.message(ws.getUserData().s, copyFrame(message), isBinary);
      },
      drain: (ws) => this.h.drain(ws.getUserData().s),
      close: (ws, code, message) => {
        const s = ws.getUserData().s;
        if (!s.ws) return; // never opened
        s.closed = true;
        this.h.close(s, code, decoder.decode(message));
      },
    });
    this.app.any('/*', (res, req) => this.http(res, req));
  }

  private http(res: UwsHttpResponse, req: import('uWebSockets.js').HttpRequest): void {
    const headers: Record<string, string> = {};
    req.forEach((k, v) => {
      headers[k] = v;
    });
    const request: HttpRequest = {
      method: req.getMethod().toUpperCase(),
      path: req.getUrl(),
      query: new URLSearchParams(req.getQuery() ?? ''),
      headers,
      body: new Uint8Array(0),
      remoteAddress: decoder.decode(res.getRemoteAddressAsText()),
    };
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    const chunks: Uint8Array[] = [];
    let size = 0;
    let tooBig = false;
    res.onData((chunk, isLast) => {
      if (!tooBig) {
        size += chunk.byteLength;
        if (size > this.opts.maxBodyBytes) tooBig = true;
        else chunks.push(new Uint8Array(chunk.slice(0)));
      }
      if (!isLast) return;
      if (tooBig) {
        if (!aborted)
          res.cork(() =>
            res
              .writeStatus(statusLine(413))
              .writeHeader('content-type', 'application/json')
              .end(
                JSON.stringify({ error: 'payload_too_large', message: `Body exceeds ${this.opts.maxBodyBytes} bytes` }),
              ),
          );
        return;
      }
      const body = new Uint8Array(size);
      let o = 0;
      for (const c of chunks) {
        body.set(c, o);
        o += c.length;
      }
      request.body = body;
      this.h.http(request).then(
        (r) => {
          if (aborted) return;
          res.cork(() => {
            res.writeStatus(statusLine(r.status));
            for (const [k, v] of Object.entries(r.headers ?? {})) res.writeHeader(k, v);
            res.end(r.body ?? '');
          });
        },
        () => {
          if (!aborted) res.cork(() => res.writeStatus(statusLine(500)).end('{"error":"internal"}'));
        },
      );
    });
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.app.listen(this.opts.host, this.opts.port, (s) => {
        if (!s) return reject(new Error(`Cannot listen on ${this.opts.host}:${this.opts.port}`));
        this.listenSocket = s;
        resolve(uWS.us_socket_local_port(s));
      });
    });
  }

  async stopAccepting(): Promise<void> {
    if (this.listenSocket) uWS.us_listen_socket_close(this.listenSocket);
    this.listenSocket = null;
  }

  async close(): Promise<void> {
    await this.stopAccepting();
    // App.close() drops every open socket at once: only after the graceful steps.
    (this.app as unknown as { close?: () => void }).close?.();
  }
}
