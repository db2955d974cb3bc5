/**
 * DataTransfer: vendor-specific messages. No vendor is known to the core, so it answers
 * UnknownVendorId (OCPP 1.6 §4.3, 2.0.1 P01.FR.06 "SHALL respond with status UnknownVendorId"
 * when it has no implementation for the vendor) and records the message. A plugin that knows
 * a vendor answers first with an `onCall` hook filtered to DataTransfer.
 */
import type { CallContext } from '../../../core/plugin-api.js';
import { eventRow } from './common.js';

export function onDataTransfer(ctx: CallContext, p: Record<string, unknown>): { status: 'UnknownVendorId' } {
  ctx.emit(
    'ocpp_events',
    eventRow(ctx, ctx.msg.receivedAt, 'data_transfer', 'DataTransfer', JSON.stringify(p).slice(0, 65536)),
  );
  return { status: 'UnknownVendorId' };
}
