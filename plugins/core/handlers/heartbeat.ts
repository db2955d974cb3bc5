/**
 * Heartbeat: answers the current time and records when the charger was last seen.
 *
 * The lastSeenAt write is best-effort and not awaited: the answer does not depend on it, the
 * socket thread tracks liveness of connected chargers itself, and a Redis outage must not turn
 * every heartbeat of the fleet into an InternalError (chargers may then reconnect en masse).
 */
import type { CallContext } from '../../../core/plugin-api.js';

export function onHeartbeat(ctx: CallContext): { currentTime: string } {
  const now = new Date().toISOString();
  ctx.chargers
    .update(ctx.cp.id, { lastSeenAt: now })
    .catch((err: Error) => ctx.log.warn({ err }, 'could not record lastSeenAt'));
  return { currentTime: now };
}
