/**
 * BootNotification: records the charger's identity and answers Accepted, Pending or Rejected.
 * The status comes from the registry's per-charger `bootPolicy` (set through the API) or the
 * plugin's `defaultBootStatus`. OCPP 1.6 §4.2 / 2.0.1 B01: `interval` is the heartbeat
 * interval when Accepted, the retry delay otherwise.
 */
import type { CallContext, Handler } from '../../../core/plugin-api.js';
import { eventRow } from './common.js';

interface Opts {
  defaultBootStatus: 'Accepted' | 'Pending';
  heartbeatIntervalSec: number;
  retryIntervalSec: number;
}

export function onBootNotification(opts: Opts): Handler {
  return async (ctx: CallContext, p: Record<string, unknown>) => {
    const v16 = ctx.cp.ocppVersion === '1.6';
    const cs = (p.chargingStation ?? {}) as Record<string, string | undefined>;
    const identity = v16
      ? {
          vendor: p.chargePointVendor as string,
          model: p.chargePointModel as string,
          serialNumber: (p.chargePointSerialNumber ?? p.chargeBoxSerialNumber) as string | undefined,
          firmwareVersion: p.firmwareVersion as string | undefined,
        }
      : { vendor: cs.vendorName, model: cs.model, serialNumber: cs.serialNumber, firmwareVersion: cs.firmwareVersion };
    const record = await ctx.chargers.get(ctx.cp.id);
    const policy = record?.bootPolicy;
    const status =
      policy === 'Rejected' || policy === 'Pending' || policy === 'Accepted' ? policy : opts.defaultBootStatus;
    const now = new Date();
    await ctx.chargers.update(ctx.cp.id, {
      ...identity,
      ocppVersion: ctx.cp.ocppVersion,
      lastBootAt: now.toISOString(),
      lastSeenAt: now.toISOString(),
      bootStatus: status,
      bootReason: v16 ? undefined : (p.reason as string),
    });
    ctx.emit(
      'ocpp_events',
      eventRow(ctx, ctx.msg.receivedAt, 'boot', 'BootNotification', JSON.stringify({ ...p, status })),
    );
    return {
      status,
      currentTime: now.toISOString(),
      interval: status === 'Accepted' ? opts.heartbeatIntervalSec : opts.retryIntervalSec,
    };
  };
}
