/**
 * SecurityEventNotification (1.6 security extension, 2.x A04): emitted to analytics and the
 * latest event kept in the charger's state (`ocr:{cpId}:core:lastSecurityEvent`).
 */
import type { CallContext } from '../../../core/plugin-api.js';
import { eventRow, timeOf } from './common.js';

export async function onSecurityEventNotification(
  ctx: CallContext,
  p: Record<string, unknown>,
): Promise<Record<string, never>> {
  const ts = timeOf(ctx, p.timestamp);
  ctx.emit('ocpp_events', eventRow(ctx, ts, 'security_event', 'SecurityEventNotification', JSON.stringify(p)));
  await ctx.state.set('lastSecurityEvent', JSON.stringify(p));
  return {};
}
