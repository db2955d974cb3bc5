/**
 * Bun transport: the same Transport contract on Bun.serve (built on uWebSockets, as the
 * uWebSockets.js addon is, which does not load on Bun).
 *
 * Owns: the Bun.serve configuration and the mapping of its callbacks and send results to the
 * Transport interface. Must not: interpret OCPP. Only loaded when running on Bun
 * (transport/create.ts), so Node never evaluates `Bun`.
 *
 * Differences from uws-transport.ts, each handled here: Bun's ws.send(bytes) would send a
 * binary frame, so reply bytes are sent with sendText (OCPP-J uses text frames); Bun reports
 * send results as a byte count, -1 (backpressure) or 0 (dropped).
 */
import {
  SendStatus,
  type HttpRequest,
  type Transport,
  type TransportHandlers,
  type TransportOptions,
} from './transport.js';
import { SocketBase } from './socket-base.js';

// Minimal typings of the Bun APIs used (no @types/bun dependency for one file).
interface BunWebSocket<D> {
  data: D;
  send(data: string | Uint8Array): number;
  sendText(data: string): number;
  close(code?: number, reason?: string): void;
  cork(fn: () => void): void;
  getBufferedAmount(): number;
}
interface BunServer {
  port: number;
  upgrade(req: Request, opts: { data: unknown; headers?: Record<string, string> }): boolean;
  requestIP(req: Request): { address: string } | null;
  stop(closeActive?: boolean): void;
}
declare const Bun: {
  serve(opts: Record<string, unknown>): BunServer;
  file(path: string): unknown;
};

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Bun socket behind the shared guards; itself the upgrade's data (`ws` attached at open), as in uws-transport.ts. */
class BunSocket<U> extends SocketBase<U> {
  ws: BunWebSocket<BunSocket<U>> | null = null;
  protected rawSend(bytes: Uint8Array | string): SendStatus {
    const n = this.ws!.sendText(typeof bytes === 'string' ? bytes : decoder.decode(bytes));
    return n > 0 ? SendStatus.Sent : n === -1 ? SendStatus.Backpressure : SendStatus.Dropped;
  }
  protected rawCork(fn: () => void): void {
    this.ws!.cork(fn);
  }
  protected rawClose(code: number, reason: string): void {
    this.ws!.close(code, reason);
  }
  protected rawBuffered(): number {
    return this.ws!.getBufferedAmount();
  }
}

export class BunTransport<U> implements Transport {
  private server: BunServer | null = null;

  constructor(
    private readonly opts: TransportOptions,
    private readonly h: TransportHandlers<U>,
  ) {}

  private headersOf(req: Request): Record<string, string> {
    const out: Record<string, string> = {};
    req.headers.forEach((v, k) => {
      out[k.toLowerCase()] = v;
    });
    return out;
  }

  private async fetch(req: Request, server: BunServer): Promise<Response | undefined> {
    const url = new URL(req.url);
    const headers = this.headersOf(req);
    const remoteAddress = server.requestIP(req)?.address ?? '';
    const prefix = this.opts.wsPath.replace(/\/$/, '') + '/';
    if (headers.upgrade?.toLowerCase() === 'websocket' && url.pathname.startsWith(prefix)) {
      const d = await this.h.upgrade({ url: url.pathname, headers, remoteAddress });
      if (!d.accept) return new Response(d.message, { status: d.status, headers: d.headers });
      const ok = server.upgrade(req, {
        data: new BunSocket(d.data),
        headers: d.protocol ? { 'Sec-WebSocket-Protocol': d.protocol } : undefined,
      });
      return ok ? undefined : new Response('Upgrade failed', { status: 400 });
    }
    const length = Number(headers['content-length'] ?? 0);
    if (length > this.opts.maxBodyBytes) {
      return new Response(
        JSON.stringify({ error: 'payload_too_large', message: `Body exceeds ${this.opts.maxBodyBytes} bytes` }),
        { status: 413, headers: { 'content-type': 'application/json' } },
      );
    }
    const body = new Uint8Array(await req.arrayBuffer());
    const request: HttpRequest = {
      method: req.method.toUpperCase(),
      path: url.pathname,
      query: url.searchParams,
      headers,
      body,
      remoteAddress,
    };
    try {
      const r = await this.h.http(request);
      return new Response(typeof r.body === 'string' || r.body === undefined ? (r.body ?? '') : r.body, {
        status: r.status,
        headers: r.headers,
      });
    } catch {
      return new Response('{"error":"internal"}', { status: 500 });
    }
  }

  async listen(): Promise<number> {
    const o = this.opts;
    this.server = Bun.serve({
      hostname: o.host,
      port: o.port,
      tls: o.tls
        ? {
            key: Bun.file(o.tls.keyFile),
            cert: Bun.file(o.tls.certFile),
            passphrase: o.tls.passphrase,
            ca: o.tls.caFile ? Bun.file(o.tls.caFile) : undefined,
          }
        : undefined,
      fetch: (req: Request, server: BunServer) => this.fetch(req, server),
      websocket: {
        maxPayloadLength: o.maxPayloadLength,
        idleTimeout: o.idleTimeoutSec,
        backpressureLimit: o.maxBackpressure,
        closeOnBackpressureLimit: true,
        sendPings: true,
        perMessageDeflate: false,
        open: (ws: BunWebSocket<BunSocket<U>>) => {
          ws.data.ws = ws;
          this.h.open(ws.data);
        },
        message: (ws: BunWebSocket<BunSocket<U>>, msg: string | Uint8Array) => {
          // Bun hands over a fresh buffer per message (no reuse as in uWS): no copy needed.
          this.h.message(ws.data, typeof msg === 'string' ? encoder.encode(msg) : msg, typeof msg !== 'string');
        },
        drain: (ws: BunWebSocket<BunSocket<U>>) => this.h.drain(ws.data),
        close: (ws: BunWebSocket<BunSocket<U>>, code: number, reason: string) => {
          const s = ws.data;
          if (!s.ws) return; // never opened
          s.closed = true;
          this.h.close(s, code, reason ?? '');
        },
      },
    });
    return this.server.port;
  }

  async stopAccepting(): Promise<void> {
    this.server?.stop(false);
  }

  async close(): Promise<void> {
    this.server?.stop(true);
    this.server = null;
  }
}
