/**
 * A 1.6 and a 2.0.1 charger over real WebSockets: boot, heartbeat, status, meter values.
 * Checked as an operator would: the API shows the charger and its connector status, and the
 * meter values and status changes are read back from ClickHouse.
 */
import t from 'tap';
import { createClient } from '@clickhouse/client';
import { startRouter } from '../helpers/router.js';
import { TestCharger } from '../helpers/charger.js';
import { createTestDatabase, useClickHouse } from '../helpers/services.js';
import { until } from '../helpers/wait.js';

/** Rows reach ClickHouse on the sink's flush (every 100 ms here), then its insert. */
const poll = <T>(what: string, fn: () => Promise<T | undefined>) =>
  until(fn, { what, timeoutMs: 15_000, everyMs: 100 });

t.test('1.6 and 2.0.1 chargers: boot, heartbeat, status, meter values → API and ClickHouse', async (t) => {
  const chUrl = await useClickHouse(t);
  const database = await createTestDatabase(t, chUrl);
  const r = await startRouter(t, { clickhouse: { url: chUrl, database } });
  const ch = createClient({ url: chUrl });
  t.teardown(() => ch.close());
  const now = () => new Date().toISOString();

  const c16 = await TestCharger.connect(r.url('CP-16'), { protocols: 'ocpp1.6' });
  t.teardown(() => c16.close());
  const boot16 = await c16.call('BootNotification', {
    chargePointVendor: 'Acme',
    chargePointModel: 'AC-22',
    firmwareVersion: '1.2.3',
    chargePointSerialNumber: 'SN1',
  });
  t.equal(boot16[0], 3);
  t.match(boot16[2], { status: 'Accepted', interval: 300, currentTime: String });
  const hb16 = await c16.call('Heartbeat', {});
  t.ok(
    Math.abs(Date.parse((hb16[2] as { currentTime: string }).currentTime) - Date.now()) < 5000,
    'heartbeat time is now',
  );
  t.same(
    await c16.call('StatusNotification', {
      connectorId: 1,
      errorCode: 'ConnectorLockFailure',
      status: 'Faulted',
      timestamp: now(),
      vendorErrorCode: 'E42',
    }),
    [3, (c16.received.at(-1) as unknown[])[1], {}],
  );
  const mv16 = await c16.call('MeterValues', {
    connectorId: 1,
    transactionId: 77,
    meterValue: [
      {
        timestamp: now(),
        sampledValue: [
          { value: '1234.5', measurand: 'Energy.Active.Import.Register', unit: 'Wh' },
          { value: '16.1', measurand: 'Current.Import', phase: 'L1', unit: 'A' },
          { value: 'abc', format: 'SignedData', measurand: 'Energy.Active.Import.Register' },
        ],
      },
    ],
  });
  t.equal(mv16[0], 3);
  t.equal((await c16.call('FooBar', {}, 'bad-1'))[2], 'NotImplemented');

  const c201 = await TestCharger.connect(r.url('CP-201'), { protocols: ['ocpp2.0.1', 'ocpp1.6'] });
  t.teardown(() => c201.close());
  t.equal(c201.ws.protocol, 'ocpp2.0.1', 'server prefers the newest offered version');
  const boot201 = await c201.call('BootNotification', {
    reason: 'PowerUp',
    chargingStation: { vendorName: 'Beta', model: 'DC-150', firmwareVersion: '9' },
  });
  t.match(boot201[2], { status: 'Accepted', interval: 300 });
  t.equal((await c201.call('Heartbeat', {}))[0], 3);
  t.equal(
    (
      await c201.call('StatusNotification', {
        timestamp: now(),
        connectorStatus: 'Occupied',
        evseId: 1,
        connectorId: 2,
      })
    )[0],
    3,
  );
  t.equal(
    (
      await c201.call('MeterValues', {
        evseId: 1,
        meterValue: [
          {
            timestamp: now(),
            sampledValue: [
              { value: 7.5, measurand: 'Power.Active.Import', unitOfMeasure: { unit: 'kW', multiplier: 3 } },
            ],
          },
        ],
      })
    )[0],
    3,
  );
  t.equal(
    (
      await c201.call('NotifyEvent', {
        generatedAt: now(),
        seqNo: 0,
        eventData: [
          {
            eventId: 1,
            timestamp: now(),
            trigger: 'Alerting',
            actualValue: 'true',
            eventNotificationType: 'HardWiredMonitor',
            component: { name: 'Connector' },
            variable: { name: 'Problem' },
          },
        ],
      })
    )[0],
    3,
  );
  t.same((await c201.call('DataTransfer', { vendorId: 'com.unknown' }))[2], { status: 'UnknownVendorId' });
  t.equal((await c201.call('SecurityEventNotification', { type: 'FirmwareUpdated', timestamp: now() }))[0], 3);

  // The operator API shows both chargers with their status.
  const d16 = await r.api('GET', '/api/v1/chargers/CP-16');
  t.equal(d16.status, 200);
  t.match(d16.body, {
    id: 'CP-16',
    vendor: 'Acme',
    model: 'AC-22',
    firmwareVersion: '1.2.3',
    serialNumber: 'SN1',
    ocppVersion: '1.6',
    bootStatus: 'Accepted',
    connected: true,
    connectedHere: true,
  });
  t.match(d16.body.connectors['1'], { status: 'Faulted', errorCode: 'ConnectorLockFailure', vendorErrorCode: 'E42' });
  t.notOk('passwordHash' in d16.body, 'never exposes the credentials hash');
  const d201 = await r.api('GET', '/api/v1/chargers/CP-201');
  t.match(d201.body, { vendor: 'Beta', model: 'DC-150', ocppVersion: '2.0.1' });
  t.match(d201.body.connectors['1/2'], { status: 'Occupied' });
  const list = await r.api('GET', '/api/v1/chargers?limit=10');
  t.equal(list.status, 200);
  t.same(
    list.body.items.map((i: { id: string }) => i.id),
    ['CP-16', 'CP-201'],
  );

  // Analytics land in ClickHouse.
  const q = async (query: string) =>
    await (await ch.query({ query, format: 'JSONEachRow' })).json<Record<string, unknown>>();
  const meter = await poll('3 meter values in ClickHouse', async () => {
    const rows = await q(
      `SELECT cp_id, evse_id, transaction_id, measurand, phase, unit, value FROM ${database}.meter_values ORDER BY cp_id, measurand`,
    );
    return rows.length >= 3 ? rows : undefined;
  });
  t.same(
    meter,
    [
      {
        cp_id: 'CP-16',
        evse_id: 1,
        transaction_id: '77',
        measurand: 'Current.Import',
        phase: 'L1',
        unit: 'A',
        value: 16.1,
      },
      {
        cp_id: 'CP-16',
        evse_id: 1,
        transaction_id: '77',
        measurand: 'Energy.Active.Import.Register',
        phase: '',
        unit: 'Wh',
        value: 1234.5,
      },
      {
        cp_id: 'CP-201',
        evse_id: 1,
        transaction_id: '',
        measurand: 'Power.Active.Import',
        phase: '',
        unit: 'kW',
        value: 7500,
      },
    ],
    'meter values read back (2.x multiplier applied, signed data not a number)',
  );
  const status = await poll('2 status events in ClickHouse', async () => {
    const rows = await q(
      `SELECT cp_id, evse_id, connector_id, status, error_code, vendor_error_code FROM ${database}.status_events ORDER BY cp_id`,
    );
    return rows.length >= 2 ? rows : undefined;
  });
  t.same(status, [
    {
      cp_id: 'CP-16',
      evse_id: 1,
      connector_id: 1,
      status: 'Faulted',
      error_code: 'ConnectorLockFailure',
      vendor_error_code: 'E42',
    },
    { cp_id: 'CP-201', evse_id: 1, connector_id: 2, status: 'Occupied', error_code: '', vendor_error_code: '' },
  ]);
  const events = await poll('6 OCPP events in ClickHouse', async () => {
    const rows = await q(
      `SELECT cp_id, kind FROM ${database}.ocpp_events WHERE kind NOT IN ('connected', 'disconnected') ORDER BY cp_id, kind`,
    );
    return rows.length >= 6 ? rows : undefined;
  });
  const connected = await poll('2 connections in ClickHouse', async () => {
    const rows = await q(`SELECT cp_id FROM ${database}.ocpp_events WHERE kind = 'connected' ORDER BY cp_id`);
    return rows.length >= 2 ? rows : undefined;
  });
  t.same(connected, [{ cp_id: 'CP-16' }, { cp_id: 'CP-201' }], 'connections recorded');
  const callErrors = await poll('a CALLERROR in ClickHouse', async () => {
    const rows = await q(`SELECT cp_id, direction, action, message_id, error_code FROM ${database}.call_errors`);
    return rows.length >= 1 ? rows : undefined;
  });
  t.same(
    callErrors,
    [{ cp_id: 'CP-16', direction: 'out', action: 'FooBar', message_id: 'bad-1', error_code: 'NotImplemented' }],
    'CALLERRORs recorded',
  );
  t.same(
    events.map((e) => `${String(e.cp_id)}:${String(e.kind)}`),
    [
      'CP-16:boot',
      'CP-16:signed_meter_value',
      'CP-201:boot',
      'CP-201:data_transfer',
      'CP-201:notify_event',
      'CP-201:security_event',
    ],
  );
});

t.test('a charger that offers no subprotocol gets the configured default', async (t) => {
  const r = await startRouter(t, { server: { defaultProtocol: 'ocpp2.0.1' } });
  const c = await TestCharger.connect(r.url('NO-PROTO'), { protocols: [] });
  t.teardown(() => c.close());
  t.equal(c.ws.protocol, '', 'no protocol echoed back');
  const boot = await c.call('BootNotification', {
    reason: 'PowerUp',
    chargingStation: { vendorName: 'V', model: 'M' },
  });
  t.equal(boot[0], 3, 'spoken as 2.0.1');
});

// Tests that need nothing but a router with the default options share one, in this order: the
// first counts upgrades and connections from zero. Each closes its chargers before the next
// (the router forgets a connection as its close frame arrives, before the charger sees it closed).
t.test('on one router with the default options', async (t) => {
  const r = await startRouter(t);

  t.test('an unsupported subprotocol is closed after the handshake (OCPP-J §3.1)', async (t) => {
    // The server completes the handshake without a Sec-WebSocket-Protocol header; a strict
    // client (ws) then aborts on its side, others get closed with 1002 right after open.
    await t.rejects(TestCharger.connect(r.url('WRONG-PROTO'), { protocols: 'ocpp1.5' }), {
      message: /no subprotocol/i,
    });
    const metrics = await r.api('GET', '/metrics');
    t.match(metrics.body, /ocr_upgrades_total\{outcome="no_protocol"\} 1/);
    t.equal(r.router.connections.size, 0);
  });

  t.test('charge point ids: URL-decoded and validated', async (t) => {
    const c = await TestCharger.connect(r.url('AB:CD.01-x'));
    t.teardown(() => c.close());
    t.equal((await c.call('Heartbeat', {}))[0], 3);
    t.equal((await r.api('GET', `/api/v1/chargers/${encodeURIComponent('AB:CD.01-x')}`)).status, 200);
    await t.rejects(TestCharger.connect(`ws://127.0.0.1:${r.router.port}/ocpp/${encodeURIComponent('a{b}')}`), {
      message: 'HTTP 400',
    });
    await t.rejects(TestCharger.connect(`ws://127.0.0.1:${r.router.port}/ocpp/${'x'.repeat(65)}`), {
      message: 'HTTP 400',
    });
    await t.rejects(TestCharger.connect(`ws://127.0.0.1:${r.router.port}/other/CP1`), { message: 'HTTP 404' });
  });

  t.test('a second connection with the same identity replaces the first', async (t) => {
    const a = await TestCharger.connect(r.url('DUP'));
    const b = await TestCharger.connect(r.url('DUP'));
    t.teardown(() => b.close());
    const closedA = await a.closed;
    t.equal(closedA.code, 4000);
    t.equal((await b.call('Heartbeat', {}))[0], 3);
    t.equal(r.router.connections.size, 1);
  });
});

t.test('duplicateConnection: reject keeps the first', async (t) => {
  const r = await startRouter(t, { server: { duplicateConnection: 'reject' } });
  const a = await TestCharger.connect(r.url('DUP2'));
  t.teardown(() => a.close());
  await t.rejects(TestCharger.connect(r.url('DUP2')), { message: 'HTTP 409' });
  t.equal((await a.call('Heartbeat', {}))[0], 3);
});
