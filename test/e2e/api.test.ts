/**
 * The operator API as an operator uses it: authentication, charger list/detail/provisioning,
 * and CSMS-initiated commands answered by a real test charger over WebSocket.
 */
import t from 'tap';
import { startRouter } from '../helpers/router.js';
import { TestCharger } from '../helpers/charger.js';
import { until } from '../helpers/wait.js';
import { OPENAPI } from '../../core/api/openapi.js';

// Tests that need nothing but a router with the default options share one (started once, closed
// after the last of them): each uses its own charger ids, and none changes the configuration.
t.test('on one router with the default options', async (t) => {
  const r = await startRouter(t);

  t.test('every API route needs a key; probes and the OpenAPI document do not', async (t) => {
    for (const [m, p] of [
      ['GET', '/metrics'],
      ['GET', '/api/v1/chargers'],
      ['GET', '/api/v1/chargers/X'],
      ['PUT', '/api/v1/chargers/X'],
      ['DELETE', '/api/v1/chargers/X'],
      ['POST', '/api/v1/chargers/X/calls/Reset'],
    ] as const) {
      const noKey = await r.api(m, p, undefined, { authorization: '' });
      t.equal(noKey.status, 401, `${m} ${p} without key`);
      t.equal(noKey.body.error, 'unauthorized');
      const badKey = await r.api(m, p, undefined, { authorization: 'Bearer ocr_wrong' });
      t.equal(badKey.status, 401, `${m} ${p} with a wrong key`);
    }
    t.equal(
      (await r.api('GET', '/api/v1/chargers', undefined, { authorization: '', 'x-api-key': r.apiKey })).status,
      200,
      'X-API-Key works too',
    );
    t.equal((await r.api('GET', '/health', undefined, { authorization: '' })).status, 200);
    const ready = await r.api('GET', '/ready', undefined, { authorization: '' });
    t.equal(ready.status, 200);
    t.match(ready.body, {
      ready: true,
      checks: { listening: { ok: true }, state: { ok: true }, workers: { ok: true } },
    });
    const doc = await r.api('GET', '/openapi.json', undefined, { authorization: '' });
    t.equal(doc.status, 200);
    t.equal(doc.body.openapi, '3.1.0');
    t.same(Object.keys(doc.body.paths).sort(), Object.keys(OPENAPI.paths).sort());
    const metrics = await r.api('GET', '/metrics');
    t.equal(metrics.status, 200);
    t.match(metrics.body, /ocr_connections/);
    t.equal((await r.api('GET', '/nope')).status, 404);
  });

  t.test('API keys are stored hashed', async (t) => {
    const { readFileSync } = await import('node:fs');
    const file = readFileSync(`${r.dir}/api-keys.json`, 'utf8');
    t.notOk(file.includes(r.apiKey), 'the key itself is not in the file');
    t.match(JSON.parse(file), { keys: [{ sha256: /^[0-9a-f]{64}$/ }] });
  });

  t.test('commands to a 2.0.1 charger; one CALL in flight per charger, the rest queued', async (t) => {
    let inFlight = 0;
    let maxInFlight = 0;
    const c = await TestCharger.connect(r.url('CMD-201'), {
      protocols: 'ocpp2.0.1',
      onCall: async (action) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        // The subject: a charger slow to answer (30 ms), so a second CALL sent meanwhile would show.
        await new Promise((res) => setTimeout(res, 30));
        inFlight--;
        return action === 'GetVariables'
          ? {
              getVariableResult: [
                {
                  attributeStatus: 'Accepted',
                  attributeValue: '42',
                  component: { name: 'OCPPCommCtrlr' },
                  variable: { name: 'HeartbeatInterval' },
                },
              ],
            }
          : { status: 'Accepted' };
      },
    });
    t.teardown(() => c.close());
    const results = await Promise.all([
      r.api('POST', '/api/v1/chargers/CMD-201/calls/Reset', { type: 'OnIdle' }),
      r.api('POST', '/api/v1/chargers/CMD-201/calls/GetVariables', {
        getVariableData: [{ component: { name: 'OCPPCommCtrlr' }, variable: { name: 'HeartbeatInterval' } }],
      }),
      r.api('POST', '/api/v1/chargers/CMD-201/calls/Reset', { type: 'Immediate' }),
    ]);
    t.same(
      results.map((x) => x.status),
      [200, 200, 200],
    );
    t.equal(results[1].body.result.getVariableResult[0].attributeValue, '42');
    t.equal(maxInFlight, 1, 'never two CSMS CALLs in flight to one charger');
  });

  t.test('a command to a charger that disconnects fails at once', async (t) => {
    const c = await TestCharger.connect(r.url('CMD-GONE'), {
      onCall: () => {
        c.ws.terminate();
        return undefined;
      },
    });
    const res = await r.api('POST', '/api/v1/chargers/CMD-GONE/calls/Reset?timeoutMs=20000', { type: 'Soft' });
    t.equal(res.status, 502);
    t.equal(res.body.error, 'disconnected');
  });

  t.test('bootPolicy from the registry decides the BootNotification status', async (t) => {
    t.equal((await r.api('PUT', '/api/v1/chargers/BOOT-R', { bootPolicy: 'Rejected' })).status, 201);
    t.match((await r.api('PUT', '/api/v1/chargers/BOOT-R', { bootPolicy: 'Maybe' })).body, { field: 'bootPolicy' });
    const c = await TestCharger.connect(r.url('BOOT-R'));
    t.teardown(() => c.close());
    const boot = await c.call('BootNotification', { chargePointVendor: 'V', chargePointModel: 'M' });
    t.match(boot[2], { status: 'Rejected', interval: 60 });
  });
});

t.test('commands: sent to the charger, answered, validated both ways', async (t) => {
  const r = await startRouter(t, { calls: { timeoutMs: 2000 } });
  const seen: Array<[string, unknown]> = [];
  const c16 = await TestCharger.connect(r.url('CMD-16'), {
    onCall: (action, payload) => {
      seen.push([action, payload]);
      if (action === 'Reset') return { status: 'Accepted' };
      if (action === 'ChangeConfiguration') return ['NotSupported', 'no such key'];
      if (action === 'GetConfiguration') return { bogus: true };
      if (action === 'UnlockConnector') return undefined; // never answers
      return { status: 'Rejected' };
    },
  });
  t.teardown(() => c16.close());

  const ok = await r.api('POST', '/api/v1/chargers/CMD-16/calls/Reset', { type: 'Soft' });
  t.equal(ok.status, 200);
  t.match(ok.body, { chargerId: 'CMD-16', action: 'Reset', result: { status: 'Accepted' } });
  t.same(seen[0], ['Reset', { type: 'Soft' }], 'the charger got exactly the payload');

  const remote = await r.api('POST', '/api/v1/chargers/CMD-16/calls/RemoteStartTransaction', {
    idTag: 'TAG1',
    connectorId: 1,
  });
  t.equal(remote.status, 200);
  t.same(remote.body.result, { status: 'Rejected' });

  const badPayload = await r.api('POST', '/api/v1/chargers/CMD-16/calls/Reset', { type: 'Sideways' });
  t.equal(badPayload.status, 400);
  t.match(badPayload.body, { error: 'invalid_payload', field: 'body.type', keyword: 'enum' });
  const missing = await r.api('POST', '/api/v1/chargers/CMD-16/calls/Reset', {});
  t.match(missing.body, { error: 'invalid_payload', keyword: 'required' });

  t.match(
    (await r.api('POST', '/api/v1/chargers/CMD-16/calls/BootNotification', {})).body,
    { error: 'unknown_action', field: 'action' },
    'charger-initiated action refused',
  );
  t.match(
    (
      await r.api('POST', '/api/v1/chargers/CMD-16/calls/RequestStartTransaction', {
        idToken: { idToken: 'x', type: 'ISO14443' },
        remoteStartId: 1,
      })
    ).body,
    { error: 'unknown_action' },
    '2.0.1 action refused for a 1.6 charger',
  );
  t.equal((await r.api('POST', '/api/v1/chargers/NOPE/calls/Reset', { type: 'Soft' })).status, 404);
  t.match((await r.api('POST', '/api/v1/chargers/CMD-16/calls/Reset', 'not json')).body, {
    error: 'invalid_json',
    field: 'body',
  });
  t.match((await r.api('POST', '/api/v1/chargers/CMD-16/calls/Reset?timeoutMs=5', { type: 'Soft' })).body, {
    error: 'invalid_parameter',
    field: 'timeoutMs',
  });

  const callError = await r.api('POST', '/api/v1/chargers/CMD-16/calls/ChangeConfiguration', { key: 'K', value: 'V' });
  t.equal(callError.status, 502);
  t.match(callError.body, { error: 'call_error', callError: { code: 'NotSupported', description: 'no such key' } });

  const invalid = await r.api('POST', '/api/v1/chargers/CMD-16/calls/GetConfiguration', {});
  t.equal(invalid.status, 502);
  t.match(invalid.body, { error: 'invalid_response' });

  const timeout = await r.api('POST', '/api/v1/chargers/CMD-16/calls/UnlockConnector?timeoutMs=300', {
    connectorId: 1,
  });
  t.equal(timeout.status, 504);
  t.equal(timeout.body.error, 'timeout');
  // A late answer to the timed-out CALL is dropped, and the next command still works.
  const unlock = c16.incomingCalls.find((f) => f[2] === 'UnlockConnector')!;
  c16.ws.send(JSON.stringify([3, unlock[1], { status: 'Unlocked' }]));
  t.equal((await r.api('POST', '/api/v1/chargers/CMD-16/calls/Reset', { type: 'Hard' })).status, 200);
  const m = await r.api('GET', '/metrics');
  t.match(m.body, /ocr_frames_dropped_total\{reason="unmatched_reply"\} 1/);
});

t.test('charger provisioning and Basic auth (security profile 1/2)', async (t) => {
  const r = await startRouter(t, { security: { unknownChargers: 'reject' } });
  const password = 'correct-horse-battery';
  const auth = (user: string, pw: string) => ({
    authorization: `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`,
  });

  await t.rejects(TestCharger.connect(r.url('SEC-1')), { message: 'HTTP 404' }, 'unknown charger refused');
  t.match((await r.api('PUT', '/api/v1/chargers/SEC-1', { password: 'short' })).body, {
    error: 'invalid_field',
    field: 'password',
  });
  t.match((await r.api('PUT', '/api/v1/chargers/SEC-1', { colour: 'red' })).body, {
    error: 'unknown_field',
    field: 'colour',
  });
  const created = await r.api('PUT', '/api/v1/chargers/SEC-1', { password, label: 'Depot 4' });
  t.equal(created.status, 201);
  t.match(created.body, { id: 'SEC-1', hasPassword: true, label: 'Depot 4' });
  t.notOk(JSON.stringify(created.body).includes(password));
  const stored = await r.router.registry.get('SEC-1');
  t.match(stored?.passwordHash, /^scrypt\$/, 'password stored as a scrypt hash');

  await t.rejects(TestCharger.connect(r.url('SEC-1')), { message: 'HTTP 401' }, 'no credentials');
  await t.rejects(
    TestCharger.connect(r.url('SEC-1'), { headers: auth('SEC-1', 'wrong-password-123456') }),
    { message: 'HTTP 401' },
    'wrong password',
  );
  await t.rejects(
    TestCharger.connect(r.url('SEC-1'), { headers: auth('SEC-2', password) }),
    { message: 'HTTP 401' },
    'user must be the charger id',
  );
  const c = await TestCharger.connect(r.url('SEC-1'), { headers: auth('SEC-1', password) });
  t.equal((await c.call('Heartbeat', {}))[0], 3);
  await c.close();
  const again = await TestCharger.connect(r.url('SEC-1'), { headers: auth('SEC-1', password) });
  t.equal((await again.call('Heartbeat', {}))[0], 3, 'reconnect (verified-cache path)');
  await again.close();

  t.equal((await r.api('DELETE', '/api/v1/chargers/SEC-1')).status, 204);
  t.equal((await r.api('GET', '/api/v1/chargers/SEC-1')).status, 404);
});

t.test('requireAuth refuses chargers without a password', async (t) => {
  const r = await startRouter(t, { security: { requireAuth: true } });
  await t.rejects(TestCharger.connect(r.url('NOPW')), { message: 'HTTP 401' });
});

t.test(
  "onCallResult / onCallError hooks see the chargers' answers; unobserved results stay on the socket thread",
  async (t) => {
    const r = await startRouter(t, {
      plugins: [{ name: 'core' }, { name: './test/fixtures/plugins/reply-observer.ts' }],
    });
    const c = await TestCharger.connect(r.url('OBS-1'), {
      onCall: (action) =>
        action === 'Reset'
          ? { status: 'Accepted' }
          : action === 'ChangeConfiguration'
            ? ['NotSupported', 'no such key']
            : { status: 'Unlocked' },
    });
    t.teardown(() => c.close());
    const store = r.router.registry.store;
    /** The hook stores what it saw after the API call returned: wait for its key. */
    const stored = async (key: string) =>
      JSON.parse(await until(() => store.get(key), { what: `the hook to write ${key}` })) as Record<string, unknown>;
    const batches = async () =>
      Number(/\nocr_batch_items_count (\d+)/.exec(String((await r.api('GET', '/metrics')).body))?.[1] ?? NaN);

    t.equal((await r.api('POST', '/api/v1/chargers/OBS-1/calls/Reset', { type: 'Hard' })).status, 200);
    t.same(
      await stored('ocr:{OBS-1}:reply-observer:result'),
      { action: 'Reset', request: { type: 'Hard' }, result: { status: 'Accepted' } },
      'onCallResult saw the observed action',
    );
    t.equal(
      (await r.api('POST', '/api/v1/chargers/OBS-1/calls/ChangeConfiguration', { key: 'k', value: 'v' })).status,
      502,
    );
    t.same(
      await stored('ocr:{OBS-1}:reply-observer:error'),
      { action: 'ChangeConfiguration', code: 'NotSupported' },
      'onCallError saw the CALLERROR',
    );

    // A result nobody observes (UnlockConnector here) is settled on the socket thread alone.
    const before = await batches();
    t.ok(before > 0, `${before} batches so far`);
    t.equal((await r.api('POST', '/api/v1/chargers/OBS-1/calls/UnlockConnector', { connectorId: 1 })).status, 200);
    // A batch for the result would be flushed on the socket thread's next turn (setImmediate).
    // A Heartbeat, answered there without a batch, comes back after that turn: the marker.
    t.equal((await c.call('Heartbeat', {}))[0], 3);
    t.equal(await batches(), before, 'no batch went to a worker for it');
  },
);
