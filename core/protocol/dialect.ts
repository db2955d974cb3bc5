/**
 * OCPP dialects: which versions exist, their WebSocket subprotocols, and which actions a
 * charging station initiates.
 *
 * Owns: the version table. Must not: know any schema contents (schemas.ts) or wire spelling
 * of error codes (call-error.ts).
 *
 * The initiator lists are spec knowledge, not schemas: the schema packages say what a message
 * looks like but not who sends it. We need them to refuse, at the operator API, a
 * charger-initiated action (say BootNotification) sent *to* a charger. DataTransfer goes both
 * ways. For 2.1 the list follows OCPP 2.1 Part 2 (use cases) as published; an action missing
 * here is treated as CSMS-initiated, which only makes the API more permissive.
 */

export type OcppVersion = '1.6' | '2.0.1' | '2.1';

export const OCPP_VERSIONS: readonly OcppVersion[] = ['1.6', '2.0.1', '2.1'];

/** WebSocket subprotocol (OCPP-J §3.1) → version. */
export const SUBPROTOCOLS: Readonly<Record<string, OcppVersion>> = {
  'ocpp1.6': '1.6',
  'ocpp2.0.1': '2.0.1',
  'ocpp2.1': '2.1',
};

export const SUBPROTOCOL_OF: Readonly<Record<OcppVersion, string>> = {
  '1.6': 'ocpp1.6',
  '2.0.1': 'ocpp2.0.1',
  '2.1': 'ocpp2.1',
};

export function versionOfSubprotocol(name: string): OcppVersion | undefined {
  return SUBPROTOCOLS[name.trim().toLowerCase()];
}

export function isOcppVersion(v: unknown): v is OcppVersion {
  return v === '1.6' || v === '2.0.1' || v === '2.1';
}

const CP_16 = [
  'Authorize',
  'BootNotification',
  'DataTransfer',
  'DiagnosticsStatusNotification',
  'FirmwareStatusNotification',
  'Heartbeat',
  'MeterValues',
  'StartTransaction',
  'StatusNotification',
  'StopTransaction',
  // Security extension (OCPP 1.6 security whitepaper edition 3)
  'LogStatusNotification',
  'SecurityEventNotification',
  'SignCertificate',
  'SignedFirmwareStatusNotification',
];

const CP_201 = [
  'Authorize',
  'BootNotification',
  'ClearedChargingLimit',
  'DataTransfer',
  'FirmwareStatusNotification',
  'Get15118EVCertificate',
  'GetCertificateStatus',
  'Heartbeat',
  'LogStatusNotification',
  'MeterValues',
  'NotifyChargingLimit',
  'NotifyCustomerInformation',
  'NotifyDisplayMessages',
  'NotifyEVChargingNeeds',
  'NotifyEVChargingSchedule',
  'NotifyEvent',
  'NotifyMonitoringReport',
  'NotifyReport',
  'PublishFirmwareStatusNotification',
  'ReportChargingProfiles',
  'ReservationStatusUpdate',
  'SecurityEventNotification',
  'SignCertificate',
  'StatusNotification',
  'TransactionEvent',
];

const CP_21 = [
  ...CP_201,
  'BatterySwap',
  'ClosePeriodicEventStream',
  'GetCertificateChainStatus',
  'NotifyDERAlarm',
  'NotifyDERStartStop',
  'NotifyPeriodicEventStream',
  'NotifyPriorityCharging',
  'NotifyQRCodeScanned',
  'NotifySettlement',
  'OpenPeriodicEventStream',
  'PullDynamicScheduleUpdate',
  'ReportDERControl',
  'VatNumberValidation',
];

const CP_INITIATED: Readonly<Record<OcppVersion, ReadonlySet<string>>> = {
  '1.6': new Set(CP_16),
  '2.0.1': new Set(CP_201),
  '2.1': new Set(CP_21),
};

/** True when the charging station may send this action to the CSMS. */
export function isChargerInitiated(version: OcppVersion, action: string): boolean {
  return CP_INITIATED[version].has(action);
}

/** True when the CSMS may send this action to the charging station. */
export function isCsmsInitiated(version: OcppVersion, action: string): boolean {
  return action === 'DataTransfer' || !CP_INITIATED[version].has(action);
}
