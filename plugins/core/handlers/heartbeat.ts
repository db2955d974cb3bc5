/** Heartbeat: answers the current time and records when the charger was last seen. */
import type { CallContext } from '../../../core/plugin-api.js';

export async function onHeartbeat(ctx: CallContext): Promise<{ currentTime: string }> {
  const now = new Date().toISOString();
  await ctx.chargers.update(ctx.cp.id, { lastSeenAt: now });
  return { currentTime: now };
}
