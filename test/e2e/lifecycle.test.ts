/**
 * Ordering across reconnects and CSMS calls from hooks (defects found in review, each
 * reproduced before the fix).
 */
import t from 'tap';
import { startRouter } from '../helpers/router.js';
import { TestCharger } from '../helpers/charger.js';
import { until } from '../helpers/wait.js';

const plugin = (options: Record<string, unknown> = {}) => ({
  plugins: [{ name: 'core' }, { name: './test/fixtures/plugins/lifecycle.ts', options }],
});

t.test("a reconnect never runs the old connection's work beside the new one's", async (t) => {
  // a's onConnect takes 500 ms in a worker; b replaces a while it runs.
  const r = await startRouter(t, plugin({ hookMs: 500 }));
  const a = await TestCharger.connect(r.url('LC-1'));
  // b connects once a's onConnect went out: the first worker batch.
  await until(
    async () => /^ocr_batches_total\{thread="worker"\} [1-9]/m.test((await r.api('GET', '/metrics')).body as string),
    { what: "a's onConnect to be sent to a worker", everyMs: 5 },
  );
  const b = await TestCharger.connect(r.url('LC-1'));
  t.teardown(() => b.close());
  t.equal(
    await r.router.registry.store.get('ocr:{LC-1}:lifecycle:events'),
    null,
    "b connected while a's onConnect was still running (it writes when it ends)",
  );
  await a.closed;
  await b.call('Heartbeat', {});
  const events = await until(
    async () => {
      const list = JSON.parse((await r.router.registry.store.get('ocr:{LC-1}:lifecycle:events')) ?? '[]') as string[];
      return list.length >= 6 && list;
    },
    { what: 'six lifecycle events of LC-1' },
  );
  const ids = [...new Set(events.map((e) => e.split('#')[1]))];
  t.equal(ids.length, 2, 'two connections');
  const [first, second] = ids;
  t.same(
    events,
    [
      `connect:start#${first}`,
      `connect:end#${first}`,
      `disconnect:start#${first}`,
      `disconnect:end#${first}`,
      `connect:start#${second}`,
      `connect:end#${second}`,
    ],
    'strictly one after the other, nothing lost',
  );
});

t.test('a hook awaiting ctx.send is answered even when every worker slot is taken', async (t) => {
  const r = await startRouter(t, {
    ...plugin({ sendOnConnect: true }),
    pool: { threads: 1, concurrentTasksPerWorker: 1, hookTimeoutMs: 5000 },
  });
  const started = Date.now();
  const c = await TestCharger.connect(r.url('LC-SEND'), {
    onCall: (action) => (action === 'GetConfiguration' ? { configurationKey: [] } : undefined),
  });
  t.teardown(() => c.close());
  const cfg = await until(() => r.router.registry.store.get('ocr:{LC-SEND}:lifecycle:config'), {
    what: "onConnect to store the charger's GetConfiguration answer",
    everyMs: 10,
  });
  t.same(JSON.parse(cfg), { configurationKey: [] });
  t.ok(Date.now() - started < 2000, `answered in ${Date.now() - started} ms, not at the hook deadline`);
});

t.test('a CALL made by an after hook reaches the charger after the reply it follows', async (t) => {
  const r = await startRouter(t, plugin({ sendAfterBoot: true }));
  for (let i = 0; i < 10; i++) {
    const c = await TestCharger.connect(r.url(`LC-AFTER-${i}`), { onCall: () => ({ configurationKey: [] }) });
    await c.call('BootNotification', { chargePointVendor: 'V', chargePointModel: 'M' }, `boot-${i}`);
    await until(() => c.incomingCalls.length > 0, { what: `the after hook's CALL to charger ${i}`, everyMs: 5 });
    const order = c.received.map((f) => (f[0] === 3 ? 'reply' : f[0] === 2 ? `call:${f[2] as string}` : String(f[0])));
    t.same(order.slice(0, 2), ['reply', 'call:GetConfiguration'], `charger ${i}`);
    await c.close();
  }
});

t.test('Basic auth for a charger id that contains ":"', async (t) => {
  const r = await startRouter(t, { security: { requireAuth: true } });
  const id = 'AA:BB:CC:01';
  t.equal(
    (await r.api('PUT', `/api/v1/chargers/${encodeURIComponent(id)}`, { password: 'sixteen-chars-pass' })).status,
    201,
  );
  const c = await TestCharger.connect(r.url(id), {
    headers: { authorization: `Basic ${Buffer.from(`${id}:sixteen-chars-pass`).toString('base64')}` },
  });
  t.equal((await c.call('Heartbeat', {}))[0], 3);
  await c.close();
});
