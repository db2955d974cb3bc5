/**
 * The one place where core/dispatch/ writes to a charger's socket: batch replies, the fast
 * InternalError answers, and the frames the Gateway and the CommandApi send through the
 * Dispatcher.
 *
 * Owns: reading each send's status (STYLE.md §9) and counting backpressure and drops. Must
 * not: buffer, retry or close. uWS buffers on backpressure up to maxBackpressure and closes the
 * socket beyond it (closeOnBackpressureLimit), so a reader that stopped reading cannot grow
 * memory.
 */
import type { Connection } from '../registry/connection-registry.js';
import type { Metrics } from '../metrics.js';
import { SendStatus } from '../transport/transport.js';

/** A reply as a worker returns it (UTF-8 bytes) or as the socket thread's runtime does (text). */
export type Reply = Uint8Array | string;

/** Sends unless the connection is closed, and counts a send that was not plainly sent. */
export function sendFrame(conn: Connection, bytes: Reply, metrics: Metrics): void {
  if (conn.closed) return;
  const s = conn.socket.send(bytes);
  if (s === SendStatus.Sent) return;
  metrics.outbox.inc({ result: s === SendStatus.Backpressure ? 'backpressure' : 'dropped' });
}
