/**
 * StatusNotification: stores the connector / EVSE status in the registry and emits a
 * status_events row. 1.6 keys the status by connectorId ("0" is the whole charge point);
 * 2.x by "<evseId>/<connectorId>".
 */
import type { CallContext } from '../../../core/plugin-api.js';
import { statusRow, timeOf } from './common.js';

export async function onStatusNotification(
  ctx: CallContext,
  p: Record<string, unknown>,
): Promise<Record<string, never>> {
  const ts = timeOf(ctx, p.timestamp);
  const timestamp = new Date(ts).toISOString();
  if (ctx.cp.ocppVersion === '1.6') {
    const connectorId = p.connectorId as number;
    const status = {
      status: p.status as string,
      errorCode: p.errorCode as string,
      info: p.info as string | undefined,
      vendorId: p.vendorId as string | undefined,
      vendorErrorCode: p.vendorErrorCode as string | undefined,
      timestamp,
    };
    await ctx.chargers.setStatus(ctx.cp.id, String(connectorId), status);
    ctx.emit(
      'status_events',
      statusRow(
        ctx,
        ts,
        connectorId,
        connectorId,
        status.status,
        status.errorCode,
        status.info ?? '',
        status.vendorId ?? '',
        status.vendorErrorCode ?? '',
      ),
    );
  } else {
    const evseId = p.evseId as number;
    const connectorId = p.connectorId as number;
    await ctx.chargers.setStatus(ctx.cp.id, `${evseId}/${connectorId}`, {
      status: p.connectorStatus as string,
      timestamp,
    });
    ctx.emit('status_events', statusRow(ctx, ts, evseId, connectorId, p.connectorStatus as string, '', '', '', ''));
  }
  return {};
}
