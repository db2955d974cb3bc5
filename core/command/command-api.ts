/**
 * Command API: CSMS-initiated CALLs (RemoteStartTransaction, Reset, SetChargingProfile, …)
 * to a charger connected to this node.
 *
 * Owns: the outbound half of OCPP-J's one-in-flight rule per charger [mobilityhouse lock,
 * ocpp-go ClientState]: one CALL in flight, later ones queued (bounded), each with a timeout;
 * replies matched by id and validated here; late and unknown replies logged and dropped.
 * Must not: run plugin hooks (onCallResult / onCallError run in workers, as observers).
 */
import { randomUUID } from 'node:crypto';
import { errors } from '../errors.js';
import { serializeCall } from '../protocol/frame.js';
import { isCsmsInitiated } from '../protocol/dialect.js';
import { validatorFor } from '../protocol/validate.js';
import type { Connection, ConnectionRegistry, PendingCall } from '../registry/connection-registry.js';
import { CALLERROR, CALLRESULT, parseFrame } from '../protocol/frame.js';

const decoder = new TextDecoder();
import type { Dispatcher } from '../dispatch/dispatcher.js';
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
  call(
    cpId: string,
    action: string,
    payload: Record<string, unknown>,
    opts: CommandOptions = {},
  ): Promise<Record<string, unknown>> {
    const conn = this.connections.get(cpId);
    if (!conn || conn.closed) return Promise.reject(new errors.OCR_ERR_CMD_NOT_CONNECTED(cpId));
    const v = validatorFor(conn.version);
    if (!v.has(action, 'request') || !isCsmsInitiated(conn.version, action)) {
      return Promise.reject(new errors.OCR_ERR_CMD_UNKNOWN_ACTION(action, `OCPP ${conn.version}`));
    }
    if (!opts.prevalidated) {
      const check = v.validate(action, 'request', payload);
      if (!check.ok) {
        const details = { path: check.error.details.path, keyword: check.error.details.keyword };
        return Promise.reject(new errors.OCR_ERR_CMD_INVALID_PAYLOAD(action, check.error.description, { details }));
      }
    }
    if (conn.outInFlight && (conn.outQueue?.length ?? 0) >= this.maxQueued)
      return Promise.reject(new errors.OCR_ERR_CMD_BUSY(cpId));
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
      if (conn.outInFlight) (conn.outQueue ??= []).push(pending);
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
    const n = conn.outQueue?.shift();
    if (conn.outQueue?.length === 0) conn.outQueue = null;
    if (n && !conn.closed) this.start(conn, n);
  }

  /**
   * A CALLRESULT / CALLERROR arrived (peeked id). Returns the pending call when it matches
   * the one in flight; the caller then settles it with settleFrame().
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

  /**
   * The charger's CALLRESULT / CALLERROR for `p`: parsed and validated against the response
   * schema here, on the socket thread, and the caller settled at once. Answers are rare (one
   * per CSMS CALL), so the cost does not matter, and no caller ever waits for a worker.
   * Returns true when the call succeeded (a CALLRESULT valid against the response schema).
   */
  settleFrame(conn: Connection, p: PendingCall, bytes: Uint8Array): boolean {
    const f = parseFrame(decoder.decode(bytes), conn.version);
    let error: { code: string; description: string; details: Record<string, unknown> } | undefined;
    let invalidWhy = 'not a CALLRESULT or CALLERROR frame';
    if (f.type === CALLRESULT) {
      const check = validatorFor(conn.version).validate(p.action, 'response', f.payload, conn.lenient);
      if (check.ok) {
        this.metrics.commands.inc({ action: p.action, outcome: 'ok' });
        p.resolve(f.payload);
        return true;
      }
      invalidWhy = check.error.description;
      error = {
        code: 'InvalidResponse',
        description: `Charger answered ${p.action} with an invalid payload: ${check.error.description}`,
        details: { schemaError: check.error.code, ...check.error.details },
      };
    } else if (f.type === CALLERROR) {
      error = { code: f.code, description: f.description, details: f.details };
    } else {
      error = { code: 'InvalidResponse', description: 'Charger answered with a malformed frame', details: {} };
    }
    const invalid = error.code === 'InvalidResponse';
    this.metrics.commands.inc({ action: p.action, outcome: invalid ? 'invalid_response' : 'call_error' });
    const err: CommandError = invalid
      ? new errors.OCR_ERR_CMD_INVALID_RESPONSE(conn.cpId, p.action, invalidWhy)
      : new errors.OCR_ERR_CMD_CALL_ERROR(conn.cpId, p.action, error.code, error.description);
    err.callError = error;
    p.reject(err);
    return false;
  }

  /** The connection closed: every pending and queued CALL fails now, not at its timeout. */
  disconnected(conn: Connection): void {
    const all = [...(conn.outInFlight ? [conn.outInFlight] : []), ...(conn.outQueue ?? [])];
    conn.outInFlight = null;
    conn.outQueue = null;
    for (const p of all) {
      if (p.timer) clearTimeout(p.timer);
      this.metrics.commands.inc({ action: p.action, outcome: 'disconnected' });
      p.reject(new errors.OCR_ERR_CMD_DISCONNECTED(conn.cpId, p.action, 'it disconnected'));
    }
  }
}
