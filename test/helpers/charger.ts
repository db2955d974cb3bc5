/**
 * A test charger: a real WebSocket client speaking OCPP-J, as a charge point would.
 * `call()` sends a CALL and resolves with the reply frame; `raw()` sends any text and
 * resolves with the next frame; CSMS-initiated CALLs are answered by `onCall`.
 */
import WebSocket from 'ws';
import { randomUUID } from 'node:crypto';

export type Frame = unknown[];

export interface ChargerOptions {
  protocols?: string | string[];
  headers?: Record<string, string>;
  /** Answers CSMS-initiated CALLs: return a payload for CALLRESULT or [code, description] for CALLERROR. */
  onCall?: (action: string, payload: any) => unknown | Promise<unknown>;
}

export class TestCharger {
  readonly ws: WebSocket;
  readonly received: Frame[] = [];
  readonly incomingCalls: Frame[] = [];
  private waiters = new Map<string, (f: Frame) => void>();
  private anyWaiters: Array<(f: Frame) => void> = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;

  constructor(
    url: string,
    private readonly opts: ChargerOptions = {},
  ) {
    this.ws = new WebSocket(url, opts.protocols ?? 'ocpp1.6', { headers: opts.headers });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) =>
        reject(
          Object.assign(new Error(`HTTP ${res.statusCode}`), { statusCode: res.statusCode, headers: res.headers }),
        ),
      );
      this.ws.once('error', reject);
    });
    this.closed = new Promise((resolve) =>
      this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
    this.ws.on('message', (data) => this.onMessage(data.toString()));
  }

  static async connect(url: string, opts?: ChargerOptions): Promise<TestCharger> {
    const c = new TestCharger(url, opts);
    await c.opened;
    return c;
  }

  private async onMessage(text: string): Promise<void> {
    let f: Frame;
    try {
      f = JSON.parse(text) as Frame;
    } catch {
      f = ['unparsable', text];
    }
    this.received.push(f);
    if (f[0] === 2) {
      this.incomingCalls.push(f);
      if (this.opts.onCall) {
        const r = await this.opts.onCall(f[2] as string, f[3]);
        if (Array.isArray(r)) this.ws.send(JSON.stringify([4, f[1], r[0], r[1] ?? '', {}]));
        else if (r !== undefined) this.ws.send(JSON.stringify([3, f[1], r]));
      }
    }
    const w = typeof f[1] === 'string' ? this.waiters.get(f[1]) : undefined;
    if (w) {
      this.waiters.delete(f[1] as string);
      w(f);
      return;
    }
    this.anyWaiters.shift()?.(f);
  }

  /** Sends a CALL, resolves with the reply frame ([3,…] or [4,…]). */
  call(action: string, payload: unknown, id: string = randomUUID()): Promise<Frame> {
    const p = this.reply(id);
    this.ws.send(JSON.stringify([2, id, action, payload]));
    return p;
  }

  reply(id: string, timeoutMs = 10_000): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        reject(new Error(`no reply to ${id}`));
      }, timeoutMs);
      this.waiters.set(id, (f) => {
        clearTimeout(timer);
        resolve(f);
      });
    });
  }

  /** Sends raw text; resolves with the next frame not claimed by an id waiter (or null on timeout). */
  raw(text: string, timeoutMs = 1500): Promise<Frame | null> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.anyWaiters = this.anyWaiters.filter((w) => w !== done);
        resolve(null);
      }, timeoutMs);
      const done = (f: Frame) => {
        clearTimeout(timer);
        resolve(f);
      };
      this.anyWaiters.push(done);
      this.ws.send(text);
    });
  }

  close(): Promise<{ code: number; reason: string }> {
    this.ws.close();
    return this.closed;
  }
}
