/** Small helpers shared by the core plugin's handlers. */
import type { CallContext } from '../../../core/plugin-api.js';

/** Epoch ms of an OCPP timestamp; falls back to the receive time when absent or unparsable. */
export function timeOf(ctx: CallContext, ts: unknown): number {
  if (typeof ts === 'string') {
    const t = Date.parse(ts);
    if (Number.isFinite(t)) return t;
  }
  return ctx.msg.receivedAt;
}

/** Columns every analytics row of this charger carries. */
export function rowBase(ctx: CallContext, ts: number) {
  return { ts, received_at: ctx.msg.receivedAt, cp_id: ctx.cp.id, ocpp_version: ctx.cp.ocppVersion, node_id: ctx.cp.nodeId };
}
