/**
 * Command API: CSMS-initiated CALLs (RemoteStartTransaction, Reset, SetChargingProfile, …)
 * to a charger connected to this node.
 *
 * Owns: the outbound half of OCPP-J's one-in-flight rule per charger [mobilityhouse lock,
 * ocpp-go ClientState]: one CALL in flight, later ones queued (bounded), each with a timeout;
 * replies matched by id; late and unknown replies logged and dropped. Must not: validate the
 * charger's answer itself: that runs in a worker (schema + onCallResult hooks) through the
 * dispatcher, like every other frame.
 */
import { randomUUID } from 'node:crypto';
import { errors } from '../errors.js';
import { serializeCall } from '../protocol/frame.js';
import { isCsmsInitiated } from '../protocol/dialect.js';
import { validatorFor } from '../protocol/validate.js';
import type { Connection, ConnectionRegistry, PendingCall } from '../registry/connection-registry.js';
import type { ReplyResultMeta } from '../dispatch/envelope.js';
import type { Dispatcher } from '../dispatch/pool.js';
import type { Metrics } from '../metrics.js';
import type { PinoLogger } from '../log.js';

export interface CommandError extends Error {
  code: string;
  statusCode?: number;
  /** The charger's CALLERROR, when it answered with one. */
  callError?: { code: string; description: string; details: Record<string, unknown> };
}

export interface CommandOptions {
  timeoutMs?: number;
  /** Skip the request schema check (the caller validated it already, e.g. in a worker). */
  prevalidated?: boolean;
}

export class CommandApi {
  constructor(
    private readonly connections: ConnectionRegistry,
    private readonly dispatcher: Dispatcher,
    private readonly metrics: Metrics,
    private readonly log: PinoLogger,
    private readonly defaultTimeoutMs: number,
    private readonly maxQueued: number,
  ) {}

  /** Sends `action` to `cpId` and resolves with the charger's validated CALLRESULT payload. */
  call(cpId: string, action: string, payload: Record<string, unknown>, opts: CommandOptions = {}): Promise<Record<string, unknown>> {
    const conn = this.connections.get(cpId);
    if (!conn || conn.closed) return Promise.reject(new errors.OCR_ERR_CMD_NOT_CONNECTED(cpId));
    const v = validatorFor(conn.version);
    if (!v.has(action, 'request') || !isCsmsInitiated(conn.version, action)) {
      return Promise.reject(new errors.OCR_ERR_CMD_UNKNOWN_ACTION(action, `OCPP ${conn.version}`));
    }
    if (!opts.prevalidated) {
      const check = v.validate(action, 'request', payload);
      if (!check.ok) {
        const err = new errors.OCR_ERR_CMD_INVALID_PAYLOAD(action, check.error.description);
        err.details = { path: check.error.details.path, keyword: check.error.details.keyword };
        return Promise.reject(err);
      }
    }
    if (conn.outInFlight && conn.outQueue.length >= this.maxQueued) return Promise.reject(new errors.OCR_ERR_CMD_BUSY(cpId));
    return new Promise((resolve, reject) => {
      const pending: PendingCall = {
        id: randomUUID(),
        action,
        payload,
        timeoutMs: opts.timeoutMs ?? this.defaultTimeoutMs,
        timer: null,
        resolve,
        reject,
      };
      if (conn.outInFlight) conn.outQueue.push(pending);
      else this.start(conn, pending);
    });
  }

  private start(conn: Connection, p: PendingCall): void {
    conn.outInFlight = p;
    p.timer = setTimeout(() => {
      if (conn.outInFlight !== p) return;
      this.metrics.commands.inc({ action: p.action, outcome: 'timeout' });
      this.log.warn({ cpId: conn.cpId, messageId: p.id, action: p.action }, 'CSMS CALL timed out');
      p.reject(new errors.OCR_ERR_CMD_TIMEOUT(conn.cpId, p.action, p.timeoutMs));
      this.next(conn);
    }, p.timeoutMs);
    this.dispatcher.send(conn, serializeCall(p.id, p.action, p.payload));
  }

  private next(conn: Connection): void {
    conn.outInFlight = null;
    const n = conn.outQueue.shift();
    if (n && !conn.closed) this.start(conn, n);
  }

  /**
   * A CALLRESULT / CALLERROR arrived (peeked id). Returns the pending call when it matches
   * the one in flight; the caller hands the frame to the dispatcher for validation.
   */
  match(conn: Connection, id: string): PendingCall | undefined {
    const p = conn.outInFlight;
    if (!p || p.id !== id) {
      this.metrics.dropped.inc({ reason: 'unmatched_reply' });
      this.log.warn({ cpId: conn.cpId, messageId: id }, 'reply with no pending CALL dropped (late or unknown id)');
      return undefined;
    }
    if (p.timer) clearTimeout(p.timer);
    // The next CALL may go out while this reply is validated: the charger has answered.
    this.next(conn);
    return p;
  }

  /** The validated reply from the worker. */
  settle(p: PendingCall, [ok, payload, error]: ReplyResultMeta): void {
    this.metrics.commands.inc({ action: p.action, outcome: ok ? 'ok' : error?.code === 'InvalidResponse' ? 'invalid_response' : 'call_error' });
    if (ok) return p.resolve(payload ?? {});
    const err = new Error(error?.description || error?.code || 'CALLERROR') as CommandError;
    err.code = error?.code === 'InvalidResponse' ? 'OCR_ERR_CMD_INVALID_RESPONSE' : 'OCR_ERR_CMD_CALL_ERROR';
    err.statusCode = 502;
    err.callError = error ?? undefined;
    p.reject(err);
  }

  /** The connection closed: every pending and queued CALL fails now, not at its timeout. */
  disconnected(conn: Connection): void {
    const all = [...(conn.outInFlight ? [conn.outInFlight] : []), ...conn.outQueue];
    conn.outInFlight = null;
    conn.outQueue = [];
    for (const p of all) {
      if (p.timer) clearTimeout(p.timer);
      this.metrics.commands.inc({ action: p.action, outcome: 'disconnected' });
      p.reject(new errors.OCR_ERR_CMD_DISCONNECTED(conn.cpId, p.action));
    }
  }
}
