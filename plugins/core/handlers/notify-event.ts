/**
 * NotifyEvent (2.x N07): device-model events (alerting monitors, deltas). One ocpp_events
 * row per eventData entry, so analysts can filter by component and variable.
 */
import type { CallContext } from '../../../core/plugin-api.js';
import { eventRow, timeOf } from './common.js';

export function onNotifyEvent(ctx: CallContext, p: Record<string, unknown>): Record<string, never> {
  const ts = timeOf(ctx, p.generatedAt);
  for (const e of (p.eventData as Record<string, unknown>[]) ?? []) {
    ctx.emit(
      'ocpp_events',
      eventRow(
        ctx,
        timeOf(ctx, e.timestamp ?? p.generatedAt) || ts,
        'notify_event',
        'NotifyEvent',
        JSON.stringify({ seqNo: p.seqNo, tbc: p.tbc, ...e }),
      ),
    );
  }
  return {};
}
