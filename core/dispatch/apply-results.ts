/**
 * Applying a batch's results on the socket thread: result i answers item i (envelope.ts),
 * whichever thread ran the batch.
 *
 * Owns: what a frame's result means here: its metrics (messages, handler time, CALLERRORs,
 * deviations), the hooks back into the Gateway (a charger's identity, an invalid frame), the
 * log line of a reply with no pending CALL, and writing the batch's replies, corked per
 * socket. Must not: release lanes or free slots (batcher.ts), or write a batch's replies
 * outside their socket's cork.
 */
import { performance } from 'node:perf_hooks';
import type { Connection } from '../registry/connection-registry.js';
import { ItemKind, Outcome, type FrameResultMeta } from '../thread-contract/envelope.js';
import { isKnownAction } from '../protocol/schemas.js';
import type { Metrics } from '../metrics.js';
import type { PinoLogger } from '../log.js';
import { answerInternalError } from './error-answers.js';
import { sendFrame, type Reply } from './send.js';

/**
 * What the socket thread keeps of each batch item, beside the batch (none of it crosses
 * threads): where its result goes.
 */
export interface ItemCtx {
  conn: Connection;
  kind: ItemKind;
  peekId: string | null;
}

export interface ResultHooks {
  /** A BootNotification told us the charger's model (lenient profile by model). */
  identity(conn: Connection, vendor: string, model: string): void;
  /** An invalid frame (bad JSON/framing): the gateway closes repeat offenders. */
  badFrame(conn: Connection): void;
}

interface FrameMetric {
  messages: { inc(n?: number): void };
  seconds: { observe(v: number): void };
  /** Frames counted since the last countFrames(). */
  pending: number;
}

export class ResultApplier {
  /**
   * Metric children pre-bound per (version, action, outcome): prom-client's labelled inc/observe
   * hashes the label object on every call, and this runs on the socket thread for every frame
   * (bench/RESULTS.md, "Figures behind the dispatcher and the batch codec").
   */
  private readonly frameMetrics = new Map<string, FrameMetric>();
  /** Frame metrics counted in the batch being applied; added to the counters once per batch. */
  private readonly touched: FrameMetric[] = [];

  constructor(
    private readonly hooks: ResultHooks,
    private readonly metrics: Metrics,
    private readonly log: PinoLogger,
  ) {}

  /** Result i of a batch: `metas[i]` (envelope.ts) and, for a frame, `reply(i)` (empty or undefined: none). */
  apply(ctxs: ItemCtx[], metas: (unknown[] | null)[], replyOf: (i: number) => Reply | undefined, t0: number): void {
    this.metrics.batchSeconds.observe((performance.now() - t0) / 1000);
    // Replies are grouped per socket and written under one cork each: one syscall per
    // charger per batch instead of one per reply (bench/RESULTS.md, "Figures behind the
    // dispatcher and the batch codec"). Order within a charger is kept.
    const replies = new Map<Connection, Reply[]>();
    for (let i = 0; i < ctxs.length; i++) {
      const ctx = ctxs[i];
      const meta = metas[i];
      if (ctx.kind === ItemKind.Frame) {
        if (!meta) {
          answerInternalError(ctx.conn, ctx.peekId, 'OCR_ERR_WORKER_ITEM', this.metrics, this.log);
          continue;
        }
        const reply = this.applyFrame(ctx.conn, meta as FrameResultMeta, replyOf(i));
        if (reply) {
          const list = replies.get(ctx.conn);
          if (list) list.push(reply);
          else replies.set(ctx.conn, [reply]);
        }
      }
    }
    this.countFrames();
    for (const [conn, list] of replies) {
      if (conn.closed) continue;
      conn.socket.cork(() => {
        for (const bytes of list) sendFrame(conn, bytes, this.metrics);
      });
    }
  }

  private countFrames(): void {
    for (const m of this.touched) {
      m.messages.inc(m.pending);
      m.pending = 0;
    }
    this.touched.length = 0;
  }

  /** Counts the frame's outcome; returns the reply bytes to send, if any. */
  private applyFrame(conn: Connection, r: FrameResultMeta, reply: Reply | undefined): Reply | undefined {
    const [outcome, action, errorCode, deviations, identity, unmatched, micros] = r;
    const v = conn.version;
    const key = `${v}|${action}|${outcome}`;
    let m = this.frameMetrics.get(key);
    if (!m) {
      // Unknown action names from chargers are folded into one label (bounded cardinality).
      const label = action.startsWith('(') || isKnownAction(v, action) ? action : '(unknown)';
      m = {
        messages: this.metrics.messages.labels(
          v,
          label,
          outcome === Outcome.Ok ? 'ok' : outcome === Outcome.Error ? 'error' : 'ignored',
        ),
        seconds: this.metrics.handlerSeconds.labels(label),
        pending: 0,
      };
      if (label === action) this.frameMetrics.set(key, m);
    }
    // Counted here, added to the prom-client counter once per batch (countFrames): its inc()
    // validates and hashes the labels on every call.
    if (m.pending++ === 0) this.touched.push(m);
    m.seconds.observe(micros / 1e6);
    if (errorCode) this.metrics.callErrors.inc({ version: v, code: errorCode });
    if (action === '(invalid)') this.hooks.badFrame(conn);
    if (deviations) for (const d of deviations) this.metrics.deviations.inc({ kind: d });
    if (identity) this.hooks.identity(conn, identity.vendor, identity.model);
    if (unmatched) {
      this.metrics.dropped.inc({ reason: 'unmatched_reply' });
      this.log.warn({ cpId: conn.cpId, messageId: unmatched.id }, 'reply with no pending CALL dropped');
    }
    return reply !== undefined && reply.length > 0 ? reply : undefined;
  }
}
