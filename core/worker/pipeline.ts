/**
 * Pipeline: runs one charger's frame through validation, hooks and its handler, and builds
 * the reply. Lives in the worker.
 *
 * Owns: the order of hooks, isolation and attribution of plugin errors, the hook deadline,
 * and the single place where a non-CallError becomes an OCPP `InternalError` with an
 * opaque reference (STYLE.md §6). Must not: touch sockets or know about batching.
 *
 *   text ─► parseFrame ─┬─ bad ──────────────────────────────► CALLERROR (or none: 1.6 unreadable id)
 *                       ├─ CALL ─► known? ─► owner? ─► validate ─► room for its analytics rows? ─► onCall* ─► handler ─► onResult*
 *                       │                                             │
 *                       │          validate response ◄────────────────┘ ─► CALLRESULT
 *                       │                                                  └► after* (detached)
 *                       └─ SEND (2.1) ─► same, no reply
 */
import { randomBytes } from 'node:crypto';
import { CallError, isCallError } from '../protocol/call-error.js';
import {
  CALLERROR,
  CALLRESULT,
  CALLRESULTERROR,
  SEND,
  parseFrame,
  serializeCallError,
  serializeCallResult,
  unreadableIdReply,
} from '../protocol/frame.js';
import { validatorFor } from '../protocol/validate.js';
import { isKnownAction } from '../protocol/schemas.js';
import type { OcppVersion } from '../protocol/dialect.js';
import type { ActionTable, HookTable, Registered } from './plugin-loader.js';
import type { CallContext, Logger } from '../plugin-api.js';
import { ContextFactory, type ConnMeta } from './context.js';
import { Deadlines } from './deadlines.js';
import { errors } from '../errors.js';
import { wireCode } from '../protocol/call-error.js';
import type { AnalyticsSink } from '../analytics/sink.js';

export type Outcome = 'ok' | 'error' | 'ignored';

export interface FrameResult {
  /** Frame text to send back, if any. */
  reply?: string;
  action: string;
  outcome: Outcome;
  /** Semantic CallError code when outcome is 'error'. */
  errorCode?: string;
  deviations?: string[];
  /** For replies that the main thread must route (CALLRESULT/CALLERROR it could not peek). */
  unmatched?: { id: string; type: number };
  /** Learnt from BootNotification: lets the main thread pick the lenient profile. */
  identity?: { vendor: string; model: string };
}

export interface ReplyResult {
  ok: boolean;
  payload?: Record<string, unknown>;
  error?: { code: string; description: string; details: Record<string, unknown> };
}

function newRef(): string {
  return randomBytes(6).toString('hex');
}

const NO_TABLE: ActionTable = Object.freeze({ onCall: [], onResult: [], after: [], learnt: { writesRows: false } });

/**
 * The answer to a CALL whose analytics rows could not be stored now (the sink's memory bound
 * is nearly reached: ClickHouse and the spool do not take rows). InternalError, because
 * chargers retry transaction messages (MeterValues, StartTransaction, TransactionEvent…)
 * that fail with it, where a CALLRESULT would have made them discard what we then lose.
 */
const ANALYTICS_FULL = new CallError('InternalError', 'Analytics storage is full; retry later');

export class Pipeline {
  constructor(
    private readonly table: HookTable,
    private readonly contexts: ContextFactory,
    private readonly log: Logger,
    private readonly defaultTimeoutMs: number,
    private readonly sink: AnalyticsSink,
    private readonly nodeId: string,
  ) {}

  /** A call_errors row: every CALLERROR we send ('out') or receive ('in'), for analysts. */
  private recordError(
    conn: ConnMeta,
    direction: 'in' | 'out',
    action: string,
    messageId: string | null,
    code: string,
    description: string,
    ref: unknown,
    receivedAt: number,
  ): void {
    this.sink.write(
      'call_errors',
      {
        ts: receivedAt,
        received_at: receivedAt,
        cp_id: conn.cpId,
        ocpp_version: conn.version,
        node_id: this.nodeId,
        direction,
        action,
        message_id: messageId ?? '',
        error_code: code,
        error_description: description,
        ref: typeof ref === 'string' ? ref : '',
      },
      true,
    );
  }

  /** Maps anything thrown to a CallError; non-CallErrors are logged with attribution. */
  private toCallError(
    err: unknown,
    where: { plugin?: string; hook: string; conn: ConnMeta; messageId?: string; action?: string },
  ): CallError {
    if (isCallError(err)) return err;
    const ref = newRef();
    const cause = err ?? new errors.OCR_ERR_UNDEFINED_REJECTION(where.plugin ?? 'core', where.hook);
    this.log.error(
      {
        err: cause,
        ref,
        plugin: where.plugin,
        hook: where.hook,
        cpId: where.conn.cpId,
        messageId: where.messageId,
        action: where.action,
      },
      'plugin error',
    );
    return new CallError('InternalError', `Internal error (ref ${ref})`, { ref });
  }

  /** Runs one hook with its deadline; a hook that throws synchronously rejects. */
  private async invoke<R>(reg: Registered<(...a: never[]) => unknown>, ctx: CallContext, args: unknown[]): Promise<R> {
    const p = (reg.fn as (...a: unknown[]) => unknown)(ctx, ...args);
    if (!(p instanceof Promise)) return p as R;
    return this.withDeadline<R>(reg, ctx, p);
  }

  /**
   * The per-frame variant of invoke (onCall, handler, onResult): a hook that returns a plain
   * value costs no promise and no timer, and one that throws synchronously throws here.
   */
  private invokeSync<R>(
    reg: Registered<(...a: never[]) => unknown>,
    ctx: CallContext,
    a: unknown,
    b?: unknown,
  ): R | Promise<R> {
    const p = (reg.fn as (...a: unknown[]) => unknown)(ctx, a, b);
    if (!(p instanceof Promise)) return p as R;
    return this.withDeadline<R>(reg, ctx, p);
  }

  /** See deadlines.ts: one timer for every pending hook call of this pipeline. */
  private readonly deadlines = new Deadlines();

  private withDeadline<R>(
    reg: Registered<(...a: never[]) => unknown>,
    ctx: CallContext,
    p: Promise<unknown>,
  ): Promise<R> {
    const timeoutMs = reg.timeoutMs ?? this.defaultTimeoutMs;
    return new Promise<R>((resolve, reject) => {
      const d = this.deadlines.add(timeoutMs, () => {
        (ctx as unknown as { abort?(): void }).abort?.();
        reject(new errors.OCR_ERR_PLUGIN_TIMEOUT(reg.plugin, 'call', timeoutMs));
      });
      p.then(
        (v) => {
          this.deadlines.settle(d);
          resolve(v as R);
        },
        (err: unknown) => {
          this.deadlines.settle(d);
          reject(err);
        },
      );
    });
  }

  async runFrame(conn: ConnMeta, text: string, receivedAt: number): Promise<FrameResult> {
    const v = conn.version;
    const parsed = parseFrame(text, v);
    if (parsed.type === 0) {
      const id = parsed.id ?? unreadableIdReply(v);
      const reply = parsed.answer && id !== null ? serializeCallError(id, parsed.error, v) : undefined;
      this.recordError(
        conn,
        'out',
        '(invalid)',
        parsed.id,
        wireCode(parsed.error.code, v),
        parsed.error.description,
        '',
        receivedAt,
      );
      return { reply, action: '(invalid)', outcome: 'error', errorCode: parsed.error.code };
    }
    if (parsed.type === CALLRESULT || parsed.type === CALLERROR || parsed.type === CALLRESULTERROR) {
      // The main thread matches replies by peeked id; this one could not be peeked.
      return { action: '(reply)', outcome: 'ignored', unmatched: { id: parsed.id, type: parsed.type } };
    }
    const { id, action, payload } = parsed as Extract<typeof parsed, { action: string }>;
    const noReply = parsed.type === SEND;

    if (!isKnownAction(v, action))
      return this.failFrame(
        conn,
        action,
        id,
        noReply,
        receivedAt,
        new CallError('NotImplemented', `Unknown action ${action}`),
      );
    const entry = this.table.byAction[v].get(action) ?? NO_TABLE;
    if (!entry.handler && entry.onCall.length === 0)
      return this.failFrame(
        conn,
        action,
        id,
        noReply,
        receivedAt,
        new CallError('NotSupported', `${action} is not supported by this CSMS`),
      );

    const validator = validatorFor(v);
    const check = validator.validate(action, 'request', payload, conn.lenient);
    if (!check.ok) return this.failFrame(conn, action, id, noReply, receivedAt, check.error);

    // Refused before any hook runs, so that a refused call has no effect at all. Which actions
    // write rows is learnt from their calls (entry.learnt); the first call of an action
    // after a start is admitted regardless, into the sink's reserve above its admission mark.
    if (entry.learnt.writesRows && !this.sink.admit())
      return this.failFrame(conn, action, id, noReply, receivedAt, ANALYTICS_FULL);

    const ctx = this.contexts.call(conn, { messageId: id, action, receivedAt }, check.deviations ?? []);
    let result: Record<string, unknown> | undefined;
    let plugin: string | undefined;
    let hook = 'onCall';
    try {
      for (const reg of entry.onCall) {
        plugin = reg.plugin;
        let r = this.invokeSync<unknown>(reg, this.contexts.forPlugin(ctx, reg.plugin), payload);
        if (r instanceof Promise) r = await r;
        if (r !== undefined) {
          result = r as Record<string, unknown>;
          break;
        }
      }
      if (result === undefined) {
        if (!entry.handler) throw new CallError('NotSupported', `${action} is not supported by this CSMS`);
        hook = 'handler';
        plugin = entry.handler.plugin;
        const h = this.invokeSync<Record<string, unknown>>(
          entry.handler,
          this.contexts.forPlugin(ctx, plugin),
          payload,
        );
        result = h instanceof Promise ? await h : h;
      }
      hook = 'onResult';
      for (const reg of entry.onResult) {
        plugin = reg.plugin;
        let r = this.invokeSync<unknown>(reg, this.contexts.forPlugin(ctx, reg.plugin), payload, result);
        if (r instanceof Promise) r = await r;
        if (r !== undefined) result = r as Record<string, unknown>;
      }
      hook = 'response-validation';
      const out = validator.validate(action, 'response', result, false);
      if (!out.ok)
        throw new errors.OCR_ERR_PLUGIN_INVALID_RESPONSE(action, out.error.description, { details: out.error.details });
    } catch (err) {
      this.learnRows(entry, ctx);
      const ce = this.toCallError(err, { plugin, hook, conn, messageId: id, action });
      this.runAfter(entry, ctx, payload, { error: ce });
      this.runOnError(v, ctx, ce, err);
      return { ...this.failFrame(conn, action, id, noReply, receivedAt, ce), deviations: check.deviations };
    }
    this.learnRows(entry, ctx);
    this.runAfter(entry, ctx, payload, { result });
    const res: FrameResult = {
      reply: noReply ? undefined : serializeCallResult(id, result),
      action,
      outcome: 'ok',
      deviations: check.deviations,
    };
    if (action === 'BootNotification') res.identity = bootIdentity(v, payload);
    return res;
  }

  /** Marks the action as one whose calls write analytics rows, once a call of it did (see runFrame). */
  private learnRows(entry: ActionTable, ctx: CallContext): void {
    if (!entry.learnt.writesRows && this.contexts.wroteRows(ctx)) entry.learnt.writesRows = true;
  }

  /**
   * A CALLERROR for this CALL (none for a SEND), recorded for analysts. A method rather than
   * a closure in runFrame: that would be created for every frame.
   */
  private failFrame(
    conn: ConnMeta,
    action: string,
    id: string,
    noReply: boolean,
    receivedAt: number,
    err: CallError,
  ): FrameResult {
    this.recordError(
      conn,
      'out',
      action,
      id,
      wireCode(err.code, conn.version),
      err.description,
      err.details.ref,
      receivedAt,
    );
    return {
      reply: noReply ? undefined : serializeCallError(id, err, conn.version),
      action,
      outcome: 'error',
      errorCode: err.code,
    };
  }

  /** after-hooks: detached; errors logged, never affecting the reply [mobilityhouse @after]. */
  private runAfter(
    entry: ActionTable,
    ctx: CallContext,
    payload: Record<string, unknown>,
    outcome: { result?: Record<string, unknown>; error?: CallError },
  ): void {
    for (const reg of entry.after) {
      this.invoke(reg as Registered<never>, this.contexts.forPlugin(ctx, reg.plugin, true), [payload, outcome]).catch(
        (err: unknown) => {
          this.log.error(
            {
              err,
              plugin: reg.plugin,
              hook: 'after',
              cpId: ctx.cp.id,
              messageId: ctx.msg.messageId,
              action: ctx.msg.action,
            },
            'after hook failed',
          );
        },
      );
    }
  }

  private runOnError(v: OcppVersion, ctx: CallContext, ce: CallError, cause: unknown): void {
    for (const reg of this.table.onError[v]) {
      this.invoke(reg as Registered<never>, this.contexts.forPlugin(ctx, reg.plugin), [ce, cause]).catch(
        (err: unknown) => {
          this.log.error({ err, plugin: reg.plugin, hook: 'onError' }, 'onError hook failed');
        },
      );
    }
  }

  /** onConnect / onDisconnect, parallel, isolated. */
  async runConnection(
    kind: 'onConnect' | 'onDisconnect',
    conn: ConnMeta,
    info: { reason?: string; code?: number },
  ): Promise<void> {
    const now = Date.now();
    this.sink.write(
      'ocpp_events',
      {
        ts: now,
        received_at: now,
        cp_id: conn.cpId,
        ocpp_version: conn.version,
        node_id: this.nodeId,
        kind: kind === 'onConnect' ? 'connected' : 'disconnected',
        action: '',
        payload: JSON.stringify(info),
      },
      true,
    );
    const regs = this.table[kind][conn.version];
    if (regs.length === 0) return;
    const ctx = this.contexts.connection(conn);
    await Promise.all(
      regs.map((reg) =>
        this.invoke(reg as Registered<never>, this.contexts.forPlugin(ctx, reg.plugin), [info]).catch(
          (err: unknown) => {
            this.log.error({ err, plugin: reg.plugin, hook: kind, cpId: conn.cpId }, `${kind} hook failed`);
          },
        ),
      ),
    );
  }

  /**
   * A charger's answer to a CSMS-initiated CALL, for its observers: validated against the
   * response schema, a call_errors row for a CALLERROR, onCallResult / onCallError hooks.
   * The waiting caller was already settled on the socket thread (CommandApi.settleFrame);
   * valid CALLRESULTs that no plugin observes do not come here at all (gateway.ts).
   */
  async runReply(conn: ConnMeta, action: string, request: Record<string, unknown>, text: string): Promise<ReplyResult> {
    const v = conn.version;
    const parsed = parseFrame(text, v);
    let result: ReplyResult;
    if (parsed.type === CALLRESULT) {
      const check = validatorFor(v).validate(action, 'response', parsed.payload, conn.lenient);
      result = check.ok
        ? { ok: true, payload: parsed.payload }
        : {
            ok: false,
            error: {
              code: 'InvalidResponse',
              description: `Charger answered ${action} with an invalid payload: ${check.error.description}`,
              details: { schemaError: check.error.code, ...check.error.details },
            },
          };
    } else if (parsed.type === CALLERROR) {
      result = { ok: false, error: { code: parsed.code, description: parsed.description, details: parsed.details } };
      this.recordError(conn, 'in', action, parsed.id, parsed.code, parsed.description, '', Date.now());
    } else {
      result = {
        ok: false,
        error: { code: 'InvalidResponse', description: 'Charger answered with a malformed frame', details: {} },
      };
    }
    const regs = (result.ok ? this.table.onCallResult : this.table.onCallError)[v].get(action) ?? [];
    if (regs.length > 0) {
      const ctx = this.contexts.call(
        conn,
        { messageId: parsed.type === 0 ? '' : parsed.id, action, receivedAt: Date.now() },
        [],
      );
      for (const reg of regs) {
        try {
          await this.invoke(reg, this.contexts.forPlugin(ctx, reg.plugin), [
            { action, request, result: result.payload, error: result.error },
          ]);
        } catch (err) {
          this.log.error(
            { err, plugin: reg.plugin, hook: result.ok ? 'onCallResult' : 'onCallError', cpId: conn.cpId },
            'reply hook failed',
          );
        }
      }
    }
    return result;
  }
}

function bootIdentity(v: OcppVersion, p: Record<string, unknown>): { vendor: string; model: string } | undefined {
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- schema-validated strings
  if (v === '1.6') return { vendor: String(p.chargePointVendor ?? ''), model: String(p.chargePointModel ?? '') };
  const cs = p.chargingStation as { vendorName?: string; model?: string } | undefined;
  return cs ? { vendor: String(cs.vendorName ?? ''), model: String(cs.model ?? '') } : undefined;
}
