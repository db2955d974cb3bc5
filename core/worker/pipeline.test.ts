/** Pipeline semantics through the harness: hook kinds, isolation, deadlines, response checks. */
import t from 'tap';
import { createHarness } from '../testing/harness.js';
import { CallError, definePlugin } from '../plugin-api.js';
import { until } from '../../test/helpers/wait.js';

const plugin = (name: string, setup: Parameters<typeof definePlugin>[0]['setup']) => ({
  name,
  plugin: definePlugin({ name, version: '1.0.0', core: '^0.1.0', setup }) as never,
});

t.test('onCall short-circuits; onResult reduces; after is detached and sees the result', async (t) => {
  const seen: string[] = [];
  const h = await createHarness({
    plugins: [
      { name: 'core' },
      plugin('gate', (api) => {
        api.hook('onCall', {
          actions: ['DataTransfer'],
          handler: (_ctx, p) => (p.vendorId === 'gate' ? { status: 'Accepted', data: 'from-hook' } : undefined),
        });
        api.hook('onCall', { actions: ['Heartbeat'], handler: (ctx) => ctx.fail('SecurityError', 'not you') });
      }),
      plugin('shaper', (api) => {
        api.hook('onResult', {
          actions: ['DataTransfer'],
          handler: (_ctx, _p, r) => ({ ...r, data: `${String(r.data ?? '')}+shaped` }),
        });
        api.hook('after', {
          actions: ['DataTransfer'],
          handler: (ctx, _p, o) => {
            seen.push(`${ctx.plugin}:${JSON.stringify(o.result)}`);
            throw new Error('after errors never reach the charger');
          },
        });
      }),
    ],
  });
  t.teardown(() => h.close());
  t.same((await h.call('1.6', 'DataTransfer', { vendorId: 'gate' })).result, {
    status: 'Accepted',
    data: 'from-hook+shaped',
  });
  t.same((await h.call('1.6', 'DataTransfer', { vendorId: 'other' })).result, {
    status: 'UnknownVendorId',
    data: '+shaped',
  });
  t.same(seen, [
    'shaper:{"status":"Accepted","data":"from-hook+shaped"}',
    'shaper:{"status":"UnknownVendorId","data":"+shaped"}',
  ]);
  t.match(await h.call('1.6', 'Heartbeat', {}), { callError: { code: 'SecurityError', description: 'not you' } });
});

t.test('isolation: invalid result, throw, falsy rejection, deadline → InternalError with ref', async (t) => {
  const h = await createHarness({
    hookTimeoutMs: 50,
    plugins: [
      plugin('bad', (api) => {
        api.handle('1.6', 'Heartbeat', () => ({ currentTime: 42 }) as never);
        api.handle('1.6', 'Authorize', () => {
          throw new TypeError('db password is hunter2');
        });
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- what is tested
        api.handle('1.6', 'StatusNotification', () => Promise.reject(undefined));
        api.handle('1.6', 'MeterValues', async (ctx) => {
          // The subject: a handler slower than its 50 ms deadline.
          await new Promise((r) => setTimeout(r, 500));
          return ctx.signal.aborted ? {} : {};
        });
        api.handle('1.6', 'StartTransaction', () => {
          throw new CallError('PropertyConstraintViolation', 'plugin says so', { field: 'idTag' });
        });
      }),
    ],
  });
  t.teardown(() => h.close());
  for (const [action, payload] of [
    ['Heartbeat', {}],
    ['Authorize', { idTag: 'A' }],
    ['StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Available' }],
    [
      'MeterValues',
      { connectorId: 1, meterValue: [{ timestamp: '2026-01-01T00:00:00Z', sampledValue: [{ value: '1' }] }] },
    ],
  ] as const) {
    const r = await h.call('1.6', action, payload);
    t.equal(r.callError?.code, 'InternalError', action);
    t.match(r.callError?.description, /^Internal error \(ref [0-9a-f]{12}\)$/);
    t.notMatch(r.frame, /hunter2/);
  }
  t.match(
    await h.call('1.6', 'StartTransaction', {
      connectorId: 1,
      idTag: 'A',
      meterStart: 0,
      timestamp: '2026-01-01T00:00:00Z',
    }),
    { callError: { code: 'PropertyConstraintViolation', details: { field: 'idTag' } } },
  );
  t.match(
    await h.call('1.6', 'StopTransaction', { meterStop: 1, timestamp: '2026-01-01T00:00:00Z', transactionId: 1 }),
    { callError: { code: 'NotSupported' } },
  );
});

t.test('a handler that never settles is answered InternalError at its deadline', async (t) => {
  // Nothing but the deadline's own timer keeps this process up while the call waits.
  const h = await createHarness({
    hookTimeoutMs: 50,
    plugins: [plugin('stuck', (api) => api.handle('1.6', 'Heartbeat', () => new Promise<never>(() => {})))],
  });
  t.teardown(() => h.close());
  const r = await h.call('1.6', 'Heartbeat', {});
  t.equal(r.callError?.code, 'InternalError');
});

t.test('ctx.state is scoped per plugin and charger; ctx.send goes through the command path', async (t) => {
  const h = await createHarness({
    onSend: (s) =>
      s.action === 'GetConfiguration' ? { configurationKey: [{ key: 'K', readonly: false, value: '1' }] } : {},
    plugins: [
      plugin('cfg', (api) => {
        api.hook('after', {
          actions: ['BootNotification'],
          handler: async (ctx) => {
            const r = await ctx.send('GetConfiguration', { key: ['K'] });
            await ctx.state.set('config', JSON.stringify(r));
          },
        });
        api.handle('1.6', 'BootNotification', () => ({
          status: 'Accepted',
          currentTime: new Date().toISOString(),
          interval: 10,
        }));
      }),
    ],
  });
  t.teardown(() => h.close());
  const r = await h.call('1.6', 'BootNotification', { chargePointVendor: 'V', chargePointModel: 'M' }, { cp: 'CP9' });
  t.same(r.sent, [{ cpId: 'CP9', action: 'GetConfiguration', payload: { key: ['K'] } }]);
  // The after hook is detached: it stores the answer once the charger's reply came back.
  const stored = await until(() => h.store.get('ocr:{CP9}:cfg:config'), { what: 'the after hook to store the config' });
  t.match(JSON.parse(stored), { configurationKey: [{ key: 'K' }] });
});

t.test(
  'analytics storage full: calls of actions that write rows are refused before any hook, others served',
  async (t) => {
    let onCalls = 0;
    const h = await createHarness({
      plugins: [
        { name: 'core' },
        plugin('counter', (api) => {
          api.hook('onCall', () => {
            onCalls++;
            return undefined;
          });
        }),
      ],
    });
    t.teardown(() => h.close());
    const mv = {
      connectorId: 1,
      meterValue: [
        {
          timestamp: '2026-01-01T00:00:00Z',
          sampledValue: [{ value: '1' }, { value: '2', measurand: 'Power.Active.Import', unit: 'W' }],
        },
      ],
    };
    const status = { connectorId: 1, errorCode: 'NoError', status: 'Available' };
    h.sink.full = true;
    // Which actions write rows is learnt from their calls: the first one is admitted.
    t.equal((await h.call('1.6', 'MeterValues', mv)).emitted.length, 2, 'first MeterValues admitted: 2 rows');
    t.equal(onCalls, 1);
    const refused = await h.call('1.6', 'MeterValues', mv);
    t.match(
      refused.callError,
      { code: 'InternalError', description: 'Analytics storage is full; retry later' },
      'the next one is refused',
    );
    t.same(refused.emitted, [], 'no row written for it (the call_errors row of the refusal is shed while full)');
    t.equal(onCalls, 1, 'no hook ran for the refused call');
    t.same((await h.call('1.6', 'Heartbeat', {})).result !== undefined, true, 'Heartbeat (writes no rows) answered');
    t.equal(
      (await h.call('1.6', 'StatusNotification', status)).emitted.length,
      1,
      'StatusNotification: first call admitted',
    );
    t.equal((await h.call('1.6', 'StatusNotification', status)).callError?.code, 'InternalError', 'then refused');
    t.equal(
      (
        await h.call('2.0.1', 'MeterValues', {
          evseId: 1,
          meterValue: [{ timestamp: '2026-01-01T00:00:00Z', sampledValue: [{ value: 1 }] }],
        })
      ).emitted.length,
      1,
      'learnt per version',
    );
    t.equal(h.sink.stats().refused, 2, 'refusals counted');
    h.sink.full = false;
    t.equal((await h.call('1.6', 'MeterValues', mv)).emitted.length, 2, 'room again: admitted');
  },
);
