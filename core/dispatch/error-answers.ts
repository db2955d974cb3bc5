/**
 * The fast InternalError answer to a charger's CALL that the router will not process: load
 * shed (too many frames waiting, the charger's backlog full), its batch lost to a worker crash
 * or an inline failure, or its result missing from a batch.
 *
 * Owns: that answer: a CALLERROR `InternalError` with a fresh ref, sent at once (not in the
 * batch's corked replies), logged with the reason and the ref, and counted. Must not: put
 * internal messages on the wire (the ref correlates with the log line), or answer a frame whose
 * message id could not be read: no guessed ids (STYLE.md §6).
 */
import { randomBytes } from 'node:crypto';
import type { Connection } from '../registry/connection-registry.js';
import { CallError } from '../protocol/call-error.js';
import { serializeCallError } from '../protocol/frame.js';
import type { Metrics } from '../metrics.js';
import type { PinoLogger } from '../log.js';
import { sendFrame } from './send.js';

/**
 * Fast InternalError for a frame we could not process (id from the peek). `reason`: the
 * internal code, for the log only.
 */
export function answerInternalError(
  conn: Connection,
  peekId: string | null,
  reason: string,
  metrics: Metrics,
  log: PinoLogger,
): void {
  if (peekId === null) return; // unreadable id: nothing safe to answer with
  const ref = randomBytes(6).toString('hex');
  log.warn({ cpId: conn.cpId, messageId: peekId, ref, reason }, 'answering InternalError');
  metrics.callErrors.inc({ version: conn.version, code: 'InternalError' });
  sendFrame(
    conn,
    serializeCallError(peekId, new CallError('InternalError', `Internal error (ref ${ref})`, { ref }), conn.version),
    metrics,
  );
}
