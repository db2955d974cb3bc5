/**
 * MeterValues: one meter_values row per sampled value. 1.6 sends values as decimal strings
 * (OCPP 1.6 §7.43, format "Raw"); "SignedData" values are not numbers and are kept as an
 * ocpp_events row instead. 2.x sends numbers with an optional power-of-ten multiplier in
 * unitOfMeasure. Default measurand is Energy.Active.Import.Register (both versions).
 */
import type { CallContext } from '../../../core/plugin-api.js';
import { eventRow, meterRow, timeOf } from './common.js';

interface Sampled {
  value: string | number;
  context?: string;
  format?: string;
  measurand?: string;
  phase?: string;
  location?: string;
  unit?: string;
  unitOfMeasure?: { unit?: string; multiplier?: number };
  signedMeterValue?: unknown;
}

// Synchronous on purpose: nothing here waits, and a handler that returns a plain value skips
// the promise and the deadline timer the pipeline arms for an async one.
export function onMeterValues(ctx: CallContext, p: Record<string, unknown>): Record<string, never> {
  const v16 = ctx.cp.ocppVersion === '1.6';
  const evseId = (v16 ? p.connectorId : p.evseId) as number;
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- a schema-validated integer
  const transactionId = p.transactionId === undefined ? '' : String(p.transactionId);
  for (const mv of p.meterValue as Array<{ timestamp: string; sampledValue: Sampled[] }>) {
    const ts = timeOf(ctx, mv.timestamp);
    for (const sv of mv.sampledValue) {
      let value: number;
      let unit: string;
      if (v16) {
        if (sv.format === 'SignedData') {
          ctx.emit('ocpp_events', eventRow(ctx, ts, 'signed_meter_value', 'MeterValues', JSON.stringify(sv)));
          continue;
        }
        value = Number(sv.value);
        unit = sv.unit ?? 'Wh';
      } else {
        value = (sv.value as number) * 10 ** (sv.unitOfMeasure?.multiplier ?? 0);
        unit = sv.unitOfMeasure?.unit ?? 'Wh';
      }
      if (!Number.isFinite(value)) {
        ctx.log.warn({ value: sv.value, measurand: sv.measurand }, 'non-numeric meter value skipped');
        continue;
      }
      ctx.emit(
        'meter_values',
        meterRow(
          ctx,
          ts,
          evseId,
          v16 ? evseId : 0,
          transactionId,
          sv.measurand ?? 'Energy.Active.Import.Register',
          sv.phase ?? '',
          sv.location ?? 'Outlet',
          sv.context ?? 'Sample.Periodic',
          unit,
          value,
        ),
      );
    }
  }
  return {};
}
