/**
 * OCPP request payloads the load generator sends, per (version, action). Realistic and
 * schema-valid: the router validates every CALL, so a payload that does not validate shows
 * up as a CALLERROR in the results, never as a silently cheaper path.
 *
 * Owns: what a simulated charger says. Must not: know about sockets or timing.
 * Growing the matrix: add an action here and name it on the command line.
 */

export type BenchVersion = '1.6' | '2.0.1';
export type BenchAction = 'Heartbeat' | 'StatusNotification' | 'MeterValues' | 'Authorize';
export const BENCH_ACTIONS: readonly BenchAction[] = ['Heartbeat', 'StatusNotification', 'MeterValues', 'Authorize'];

/**
 * The id token every simulated charger presents in Authorize (an RFID card UID; fits 1.6's
 * 20-character idTag). The router's bench fixture plugin (bench/fixtures/authorize-plugin.ts)
 * is seeded with it as a known token; any other token is answered Invalid.
 */
export const BENCH_ID_TOKEN = 'BENCH04A1B2C3D4E5F6';

export const SUBPROTOCOL: Record<BenchVersion, string> = { '1.6': 'ocpp1.6', '2.0.1': 'ocpp2.0.1' };

export function bootPayload(version: BenchVersion, i: number): Record<string, unknown> {
  return version === '1.6'
    ? {
        chargePointVendor: 'BenchVendor',
        chargePointModel: 'BenchModel-22',
        chargePointSerialNumber: `SN-${i}`,
        firmwareVersion: '1.2.3',
      }
    : {
        reason: 'PowerUp',
        chargingStation: {
          vendorName: 'BenchVendor',
          model: 'BenchModel-22',
          serialNumber: `SN-${i}`,
          firmwareVersion: '1.2.3',
        },
      };
}

/**
 * A realistic periodic sample of a 3-phase AC charger mid-session: energy register, power,
 * current and voltage per phase, SoC, temperature. Ten sampled values, ~1 KB of JSON.
 */
function meterValues16(timestamp: string): Record<string, unknown> {
  const ctx = { context: 'Sample.Periodic', location: 'Outlet' };
  const sampledValue = [
    { value: '123456.7', ...ctx, measurand: 'Energy.Active.Import.Register', unit: 'Wh' },
    { value: '11040.0', ...ctx, measurand: 'Power.Active.Import', unit: 'W' },
    { value: '16.02', ...ctx, measurand: 'Current.Import', phase: 'L1', unit: 'A' },
    { value: '15.97', ...ctx, measurand: 'Current.Import', phase: 'L2', unit: 'A' },
    { value: '16.05', ...ctx, measurand: 'Current.Import', phase: 'L3', unit: 'A' },
    { value: '230.4', ...ctx, measurand: 'Voltage', phase: 'L1-N', unit: 'V' },
    { value: '229.8', ...ctx, measurand: 'Voltage', phase: 'L2-N', unit: 'V' },
    { value: '231.1', ...ctx, measurand: 'Voltage', phase: 'L3-N', unit: 'V' },
    { value: '64', context: 'Sample.Periodic', location: 'EV', measurand: 'SoC', unit: 'Percent' },
    { value: '38.5', context: 'Sample.Periodic', location: 'Body', measurand: 'Temperature', unit: 'Celsius' },
  ];
  return { connectorId: 1, transactionId: 5, meterValue: [{ timestamp, sampledValue }] };
}

function meterValues201(timestamp: string): Record<string, unknown> {
  const ctx = { context: 'Sample.Periodic', location: 'Outlet' };
  const sampledValue = [
    { value: 123456.7, ...ctx, measurand: 'Energy.Active.Import.Register', unitOfMeasure: { unit: 'Wh' } },
    { value: 11040.0, ...ctx, measurand: 'Power.Active.Import', unitOfMeasure: { unit: 'W' } },
    { value: 16.02, ...ctx, measurand: 'Current.Import', phase: 'L1', unitOfMeasure: { unit: 'A' } },
    { value: 15.97, ...ctx, measurand: 'Current.Import', phase: 'L2', unitOfMeasure: { unit: 'A' } },
    { value: 16.05, ...ctx, measurand: 'Current.Import', phase: 'L3', unitOfMeasure: { unit: 'A' } },
    { value: 230.4, ...ctx, measurand: 'Voltage', phase: 'L1-N', unitOfMeasure: { unit: 'V' } },
    { value: 229.8, ...ctx, measurand: 'Voltage', phase: 'L2-N', unitOfMeasure: { unit: 'V' } },
    { value: 231.1, ...ctx, measurand: 'Voltage', phase: 'L3-N', unitOfMeasure: { unit: 'V' } },
    { value: 64, context: 'Sample.Periodic', location: 'EV', measurand: 'SoC', unitOfMeasure: { unit: 'Percent' } },
    // 2.0.1 has no Temperature measurand; the offered current is the usual tenth value.
    { value: 32, ...ctx, measurand: 'Current.Offered', unitOfMeasure: { unit: 'A' } },
  ];
  return { evseId: 1, meterValue: [{ timestamp, sampledValue }] };
}

/** The payload of one CALL. `timestamp` is fixed per run so every frame has the same size. */
export function actionPayload(version: BenchVersion, action: BenchAction, timestamp: string): Record<string, unknown> {
  switch (action) {
    case 'Heartbeat':
      return {};
    case 'StatusNotification':
      return version === '1.6'
        ? { connectorId: 1, errorCode: 'NoError', status: 'Charging', timestamp }
        : { timestamp, connectorStatus: 'Occupied', evseId: 1, connectorId: 1 };
    case 'MeterValues':
      return version === '1.6' ? meterValues16(timestamp) : meterValues201(timestamp);
    case 'Authorize':
      return version === '1.6' ? { idTag: BENCH_ID_TOKEN } : { idToken: { idToken: BENCH_ID_TOKEN, type: 'ISO14443' } };
  }
}

/** Width of the message ids the generator uses: fixed, so frames can be patched in place. */
export const ID_WIDTH = 10;

// ── the fleet mix (bench/fleet-mix.ts) ────────────────────────────────────────────────────

/**
 * Connector statuses the fleet mix walks through, named as in 1.6. A session without a
 * transaction (the router has no transaction plugin yet): Preparing → Charging → Finishing →
 * Available; a fault: Faulted (with an errorCode) → Available.
 */
export type FleetStatus = 'Available' | 'Preparing' | 'Charging' | 'Finishing' | 'Faulted';
export const FLEET_STATUSES: readonly FleetStatus[] = ['Available', 'Preparing', 'Charging', 'Finishing', 'Faulted'];
/** 1.6 errorCodes a faulted charger reports (one picked per fault). */
export const FLEET_ERROR_CODES: readonly string[] = [
  'GroundFailure',
  'OverCurrentFailure',
  'HighTemperature',
  'PowerMeterFailure',
];

/**
 * StatusNotification of connector 1 with `status`, or null when the version has no such
 * notification. 1.6: the status itself (errorCode NoError unless given). 2.0.1 knows only
 * connector states: Preparing → Occupied (the cable is in), Charging and Finishing → null (in
 * 2.0.1 they are TransactionEvents, not sent here), Available, Faulted (no errorCode field).
 */
export function statusNotificationPayload(
  version: BenchVersion,
  status: FleetStatus,
  timestamp: string,
  errorCode = 'NoError',
): Record<string, unknown> | null {
  if (version === '1.6')
    return { connectorId: 1, errorCode: status === 'Faulted' ? errorCode : 'NoError', status, timestamp };
  const connectorStatus =
    status === 'Preparing' ? 'Occupied' : status === 'Available' || status === 'Faulted' ? status : null;
  return connectorStatus && { timestamp, connectorStatus, evseId: 1, connectorId: 1 };
}

/**
 * The MeterValues of a session without a transaction: the same ten sampled values as
 * actionPayload's, without 1.6's optional transactionId (no StartTransaction gave one).
 */
export function sessionMeterValuesPayload(version: BenchVersion, timestamp: string): Record<string, unknown> {
  if (version === '1.6') {
    const { transactionId: _, ...rest } = meterValues16(timestamp);
    return rest;
  }
  return meterValues201(timestamp);
}
