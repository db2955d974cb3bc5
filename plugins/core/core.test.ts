/** The core plugin through the plugin harness: what a charger gets and what is stored/emitted. */
import t from 'tap';
import { createHarness } from '../../core/testing/harness.js';

t.test('BootNotification 1.6 / 2.0.1: registry updated, status by policy, event emitted', async (t) => {
  const h = await createHarness({
    plugins: [{ name: 'core', options: { defaultBootStatus: 'Pending', retryIntervalSec: 30 } }],
    heartbeatIntervalSec: 120,
  });
  t.teardown(() => h.close());
  const r = await h.call(
    '1.6',
    'BootNotification',
    { chargePointVendor: 'Acme', chargePointModel: 'X', firmwareVersion: 'fw1' },
    { cp: 'A' },
  );
  t.match(r.result, { status: 'Pending', interval: 30 });
  t.match(await h.registry.get('A'), {
    vendor: 'Acme',
    model: 'X',
    firmwareVersion: 'fw1',
    bootStatus: 'Pending',
    ocppVersion: '1.6',
  });
  t.match(r.emitted, [{ table: 'ocpp_events', row: { kind: 'boot', cp_id: 'A', ocpp_version: '1.6' } }]);
  await h.registry.update('B', { bootPolicy: 'Accepted' });
  const r2 = await h.call(
    '2.0.1',
    'BootNotification',
    { reason: 'PowerUp', chargingStation: { vendorName: 'Beta', model: 'Y', serialNumber: 'S' } },
    { cp: 'B' },
  );
  t.match(r2.result, { status: 'Accepted', interval: 120 });
  t.match(await h.registry.get('B'), { vendor: 'Beta', model: 'Y', serialNumber: 'S', bootReason: 'PowerUp' });
});

t.test('core plugin options are validated at boot', async (t) => {
  await t.rejects(createHarness({ plugins: [{ name: 'core', options: { defaultBootStatus: 'Rejected' } }] }), {
    code: 'OCR_ERR_PLUGIN_OPTIONS',
  });
});

t.test('MeterValues: one row per numeric sampled value', async (t) => {
  const h = await createHarness({ plugins: [{ name: 'core' }] });
  t.teardown(() => h.close());
  const ts = '2026-03-01T12:00:00Z';
  const r = await h.call('1.6', 'MeterValues', {
    connectorId: 2,
    transactionId: 9,
    meterValue: [
      {
        timestamp: ts,
        sampledValue: [
          { value: '10.5' },
          { value: '230', measurand: 'Voltage', phase: 'L1-N', unit: 'V' },
          { value: 'NaN-ish' },
        ],
      },
    ],
  });
  t.same(r.result, {});
  const rows = r.emitted.filter((e) => e.table === 'meter_values').map((e) => e.row);
  t.equal(rows.length, 2, 'non-numeric value skipped');
  t.match(rows[0], {
    ts: Date.parse(ts),
    evse_id: 2,
    connector_id: 2,
    transaction_id: '9',
    measurand: 'Energy.Active.Import.Register',
    unit: 'Wh',
    value: 10.5,
    location: 'Outlet',
    context: 'Sample.Periodic',
  });
  t.match(rows[1], { measurand: 'Voltage', phase: 'L1-N', unit: 'V', value: 230 });
  const r2 = await h.call('2.0.1', 'MeterValues', {
    evseId: 1,
    meterValue: [{ timestamp: ts, sampledValue: [{ value: 1.5, unitOfMeasure: { unit: 'kWh', multiplier: 3 } }] }],
  });
  t.match(r2.emitted[0]?.row, { evse_id: 1, unit: 'kWh', value: 1500 });
});

t.test('StatusNotification, Heartbeat, DataTransfer, SecurityEventNotification, NotifyEvent', async (t) => {
  const h = await createHarness({ plugins: [{ name: 'core' }] });
  t.teardown(() => h.close());
  await h.call(
    '1.6',
    'StatusNotification',
    { connectorId: 0, errorCode: 'PowerMeterFailure', status: 'Faulted', info: 'meter' },
    { cp: 'S' },
  );
  t.match(await h.registry.statuses('S'), { 0: { status: 'Faulted', errorCode: 'PowerMeterFailure', info: 'meter' } });
  const hb = await h.call('2.1', 'Heartbeat', {}, { cp: 'S' });
  t.ok(Date.parse(hb.result!.currentTime as string) > 0);
  t.ok((await h.registry.get('S'))?.lastSeenAt);
  t.same((await h.call('2.0.1', 'DataTransfer', { vendorId: 'x', messageId: 'm', data: { a: 1 } })).result, {
    status: 'UnknownVendorId',
  });
  await h.call(
    '1.6',
    'SecurityEventNotification',
    { type: 'InvalidCentralSystemCertificate', timestamp: '2026-01-01T00:00:00Z' },
    { cp: 'S' },
  );
  t.match(JSON.parse((await h.store.get('ocr:{S}:core:lastSecurityEvent'))!), {
    type: 'InvalidCentralSystemCertificate',
  });
  const ne = await h.call('2.0.1', 'NotifyEvent', {
    generatedAt: '2026-01-01T00:00:00Z',
    seqNo: 0,
    eventData: [1, 2].map((i) => ({
      eventId: i,
      timestamp: '2026-01-01T00:00:00Z',
      trigger: 'Delta',
      actualValue: 'x',
      eventNotificationType: 'CustomMonitor',
      component: { name: 'C' },
      variable: { name: 'V' },
    })),
  });
  t.equal(ne.emitted.length, 2);
  t.match(
    await h.call('1.6', 'NotifyEvent', {}),
    { callError: { code: 'NotImplemented' } },
    'NotifyEvent is not a 1.6 action',
  );
});
