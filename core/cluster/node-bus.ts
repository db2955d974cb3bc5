/**
 * Node bus: request/response between router nodes over Redis pub/sub.
 *
 * Owns: the wire format between nodes and the per-request timeouts. Must not: decide where a
 * charger is (route.ts reads the registry) or talk to chargers (the owning node's CommandApi).
 *
 *   node A: request(B, msg) ──PUBLISH ocr:node:B──► node B: handler(msg) ──► result
 *   node A ◄── PUBLISH ocr:node:A {t:'res', id} ─────┘
 *
 * A PUBLISH that reaches no subscriber means the node is gone (crashed, or the registry still
 * names it after an outage): the request fails at once with OCR_ERR_CMD_NOT_CONNECTED rather
 * than waiting for its timeout. Pub/sub channels are not subject to ioredis' keyPrefix, so the
 * prefix is applied here.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { errors, fromSerialized, toSerialized, type SerializedError } from '../errors.js';
import type { PinoLogger } from '../log.js';

export interface BusRequest {
  cpId: string;
  action: string;
  payload: Record<string, unknown>;
  timeoutMs: number;
}

type Wire =
  | { t: 'req'; id: string; from: string; req: BusRequest }
  | { t: 'res'; id: string; ok: true; result: Record<string, unknown> }
  | { t: 'res'; id: string; ok: false; error: SerializedError };

export class NodeBus {
  private readonly pub: Redis;
  private readonly sub: Redis;
  private readonly pending = new Map<
    string,
    { req: BusRequest; resolve(v: Record<string, unknown>): void; reject(e: Error): void; timer: NodeJS.Timeout }
  >();
  private handler: ((req: BusRequest) => Promise<Record<string, unknown>>) | null = null;

  constructor(
    url: string,
    private readonly prefix: string,
    readonly nodeId: string,
    private readonly log: PinoLogger,
  ) {
    // A request that cannot be published now fails now: the API caller gets an error, not a hang.
    const opts = { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true } as const;
    this.pub = new Redis(url, opts);
    this.sub = new Redis(url, { lazyConnect: true });
    for (const c of [this.pub, this.sub])
      c.on('error', (err) => this.log.warn({ err }, 'node bus: redis connection error'));
  }

  private channel(nodeId: string): string {
    return `${this.prefix}ocr:node:${nodeId}`;
  }

  /**
   * Subscribes to this node's channel. Does not wait for Redis: a router must start (and
   * serve its chargers) while Redis is away; ioredis subscribes once connected and again after
   * every reconnect.
   */
  start(handler: (req: BusRequest) => Promise<Record<string, unknown>>): void {
    this.handler = handler;
    this.sub.on('message', (_channel: string, text: string) => this.onMessage(text));
    this.pub.connect().catch((err: Error) => this.log.warn({ err }, 'node bus: publisher not connected yet'));
    this.sub.connect().catch((err: Error) => this.log.warn({ err }, 'node bus: subscriber not connected yet'));
    this.sub
      .subscribe(this.channel(this.nodeId))
      .catch((err: Error) => this.log.warn({ err }, 'node bus: subscribe failed'));
  }

  private onMessage(text: string): void {
    let msg: Wire;
    try {
      msg = JSON.parse(text) as Wire;
    } catch {
      return;
    }
    if (msg.t === 'res') {
      const p = this.pending.get(msg.id);
      if (!p) return; // timed out already
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(fromSerialized(msg.error));
      return;
    }
    const { id, from, req } = msg;
    const answer = (w: Wire) =>
      this.pub
        .publish(this.channel(from), JSON.stringify(w))
        .catch((err: Error) => this.log.warn({ err, to: from }, 'node bus: could not answer'));
    this.handler!(req).then(
      (result) => answer({ t: 'res', id, ok: true, result }),
      (e: unknown) => {
        let err = e as (Error & Omit<SerializedError, 'message' | 'name'>) | null | undefined;
        // An error without a code (a bug on this node) still reaches the caller with one.
        if (err?.code === undefined) err = new errors.OCR_ERR_CMD_REMOTE(this.nodeId, err?.message ?? String(e));
        return answer({
          t: 'res',
          id,
          ok: false,
          error: toSerialized(err),
        });
      },
    );
  }

  /** Asks node `nodeId` to send a CALL to a charger it holds. */
  async request(nodeId: string, req: BusRequest): Promise<Record<string, unknown>> {
    const id = randomUUID();
    const result = new Promise<Record<string, unknown>>((resolve, reject) => {
      // The remote node times the CALL out itself; this margin only covers a lost answer.
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new errors.OCR_ERR_CMD_TIMEOUT(req.cpId, req.action, req.timeoutMs, { details: { nodeId } }));
      }, req.timeoutMs + 2000);
      this.pending.set(id, { req, resolve, reject, timer });
    });
    let receivers: number;
    try {
      receivers = await this.pub.publish(
        this.channel(nodeId),
        JSON.stringify({ t: 'req', id, from: this.nodeId, req } satisfies Wire),
      );
    } catch (err) {
      this.settleLocally(id);
      throw new errors.OCR_ERR_STATE_UNAVAILABLE(`node bus: ${(err as Error).message}`, { cause: err });
    }
    if (receivers === 0) {
      this.settleLocally(id);
      // The node that holds it by the registry is gone (crashed, or the registry is stale).
      throw new errors.OCR_ERR_CMD_NOT_CONNECTED(req.cpId, { details: { nodeId } });
    }
    return result;
  }

  private settleLocally(id: string): void {
    const p = this.pending.get(id);
    if (p) {
      clearTimeout(p.timer);
      this.pending.delete(id);
    }
  }

  async close(): Promise<void> {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new errors.OCR_ERR_CMD_DISCONNECTED(p.req.cpId, p.req.action, 'this router is shutting down'));
      this.pending.delete(id);
    }
    await Promise.all([
      this.sub.quit().catch(() => this.sub.disconnect()),
      this.pub.quit().catch(() => this.pub.disconnect()),
    ]);
  }
}
