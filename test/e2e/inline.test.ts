/**
 * Inline batches (core/dispatch/inline-policy.ts): the socket thread runs messages itself when every
 * plugin taking part declares `inline`, and sends the rest to the workers. Asserted as a user
 * would see it: which thread answered (the thread-probe fixture), what was stored, what the
 * metrics say, and that nothing changes for the charger.
 */
import t from 'tap';
import { spooledRows, startRouter } from '../helpers/router.js';
import { TestCharger } from '../helpers/charger.js';
import { until } from '../helpers/wait.js';

const probes = [
  { name: 'core' },
  { name: './test/fixtures/plugins/thread-probe.ts', options: { versions: ['1.6'] } },
  { name: './test/fixtures/plugins/thread-probe-worker.ts', options: { versions: ['2.0.1'] } },
];

function batches(metrics: string): { socket: number; worker: number } {
  const n = (thread: string) =>
    Number(new RegExp(`ocr_batches_total\\{thread="${thread}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0);
  return { socket: n('socket'), worker: n('worker') };
}

/** Sends two thread probes in one socket write, so one batch of two; the threads that answered ('0': the socket thread). */
async function twoInOneBatch(c: TestCharger, a: string, b: string): Promise<string[]> {
  const replies = [c.reply(a), c.reply(b)];
  c.ws.send(JSON.stringify([2, a, 'DataTransfer', { vendorId: 'test.thread' }]));
  c.ws.send(JSON.stringify([2, b, 'DataTransfer', { vendorId: 'test.thread' }]));
  return (await Promise.all(replies)).map((f) => (f[2] as { data: string }).data);
}

// Inline whatever the load (maxLoad 1): this test process runs router and chargers in one
// thread, and in a loaded suite its event loop is often more than half busy, which would
// rightly send batches to the workers. The load rule itself: the maxLoad 0 test below.
const anyLoad = { inline: { maxLoad: 1 } };

const mv = (i: number) => ({
  connectorId: 1,
  meterValue: [
    {
      timestamp: new Date().toISOString(),
      sampledValue: Array.from({ length: 10 }, (_, k) => ({
        value: String(i * 10 + k),
        measurand: 'Energy.Active.Import.Register',
      })),
    },
  ],
});

// The first two tests share one router (same options, own charger ids); the second closes it
// to check what close() flushes, so it runs last.
t.test('on one router with inline probes', async (t) => {
  const r = await startRouter(t, { plugins: probes, pool: anyLoad });

  t.test('ctx.send from an inline after hook: the CALL reaches the charger after the reply', async (t) => {
    const c = await TestCharger.connect(r.url('INL-SEND'), { onCall: () => ({ status: 'Accepted' }) });
    t.teardown(() => c.close());
    const reply = await c.call('DataTransfer', { vendorId: 'test.thread' }, 'send');
    t.equal((reply[2] as { data: string }).data, '0', 'ran on the socket thread');
    const sent = await until(() => r.router.registry.store.get('ocr:{INL-SEND}:thread-probe:sent'), {
      what: "the plugin to store the charger's answer",
    });
    t.same(JSON.parse(sent), { status: 'Accepted' }, "the charger's answer reached the plugin");
    const order = c.received.map((f) => (f[0] === 2 ? `CALL ${f[2] as string}` : `reply ${f[1] as string}`));
    t.same(order, ['reply send', 'CALL ChangeAvailability'], 'the reply first, then the CALL it caused');
  });

  t.test(
    'inline plugins run on the socket thread, the others in a worker; effects are stored either way',
    async (t) => {
      // Counts of this test only: the router served the test before it too.
      const m0 = batches((await r.api('GET', '/metrics')).body as string);
      const c16 = await TestCharger.connect(r.url('INL-16'));
      const c201 = await TestCharger.connect(r.url('INL-201'), { protocols: 'ocpp2.0.1' });
      t.teardown(() => Promise.all([c16.close(), c201.close()]));

      const a = await c16.call('DataTransfer', { vendorId: 'test.thread' });
      t.same(
        a.slice(0, 1).concat((a[2] as { data: string }).data),
        [3, '0'],
        '1.6: answered by the socket thread (threadId 0)',
      );
      const b = await c201.call('DataTransfer', { vendorId: 'test.thread' });
      t.equal(b[0], 3);
      t.not((b[2] as { data: string }).data, '0', '2.0.1: the plugin hooking it is not inline, so a worker answered');

      t.equal(
        (await c16.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Charging' }))[0],
        3,
      );
      t.match(await r.router.registry.statuses('INL-16'), { 1: { status: 'Charging' } }, 'connector status stored');
      for (let i = 0; i < 5; i++) t.equal((await c16.call('MeterValues', mv(i)))[0], 3, `MeterValues ${i} answered`);

      const m1 = batches((await r.api('GET', '/metrics')).body as string);
      const m = { socket: m1.socket - m0.socket, worker: m1.worker - m0.worker };
      t.ok(m.socket >= 7, `socket-thread batches counted (${m.socket})`);
      t.ok(m.worker >= 1, `worker batches counted (${m.worker})`);
      t.match(
        (await r.api('GET', '/metrics')).body,
        /ocr_socket_thread_load \d/,
        'the load that decides it is exported',
      );

      await r.router.close();
      const rows = spooledRows(r.dir, 'meter_values').filter((x) => x.cp_id === 'INL-16');
      t.equal(rows.length, 50, 'every meter value written to the spool by the time close() returns');
      t.same(
        rows.map((x) => x.value).sort((x, y) => Number(x) - Number(y)),
        Array.from({ length: 50 }, (_, i) => i),
        'each exactly once',
      );
    },
  );
});

t.test('one charger mixing inline and worker messages: replies and effects in sending order', async (t) => {
  const r = await startRouter(t, {
    plugins: [{ name: 'core' }, { name: './test/fixtures/plugins/order-recorder.ts' }],
    pool: anyLoad,
  });
  const c = await TestCharger.connect(r.url('INL-MIX'));
  t.teardown(() => c.close());
  const statuses = ['Available', 'Preparing', 'Charging', 'SuspendedEV', 'Finishing'];
  const sent: Promise<unknown>[] = [];
  const ids: string[] = [];
  for (let s = 0; s < 40; s++) {
    // StatusNotification runs inline, the order-recorder's DataTransfer (random delays) in a worker.
    const id = `m${s}`;
    ids.push(id);
    sent.push(
      s % 2
        ? c.call('DataTransfer', { vendorId: 'test.order', data: String(s) }, id)
        : c.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: statuses[(s / 2) % 5] }, id),
    );
  }
  await Promise.all(sent);
  t.same(
    c.received.filter((f) => f[0] === 3).map((f) => f[1]),
    ids,
    'replies in sending order',
  );
  t.match(
    await r.router.registry.statuses('INL-MIX'),
    { 1: { status: statuses[19 % 5] } },
    'the last status sent is the one stored',
  );
  const m = batches((await r.api('GET', '/metrics')).body as string);
  t.ok(m.socket > 0 && m.worker > 0, `both kinds of batch ran (socket ${m.socket}, worker ${m.worker})`);
});

// minOffload 0 where the load decides: by default a batch this small runs inline whatever the load.
for (const [label, inline] of [
  ['turned off', { enabled: false }],
  ['socket thread busy (maxLoad 0)', { maxLoad: 0, minOffload: 0 }],
  ['batch larger than maxBatch', { maxBatch: 1 }],
] as const) {
  t.test(`inline ${label}: the workers run everything`, async (t) => {
    const r = await startRouter(t, { plugins: probes, pool: { inline } });
    const c = await TestCharger.connect(r.url('INL-OFF'));
    t.teardown(() => c.close());
    if (label.startsWith('batch')) {
      // One batch of 2 > maxBatch 1.
      t.ok(
        (await twoInOneBatch(c, 'x1', 'x2')).some((thread) => thread !== '0'),
        'a batch of two went to a worker',
      );
      return;
    }
    for (let i = 0; i < 3; i++) {
      const f = await c.call('DataTransfer', { vendorId: 'test.thread' });
      t.not((f[2] as { data: string }).data, '0', 'answered by a worker');
    }
    t.equal(batches((await r.api('GET', '/metrics')).body as string).socket, 0, 'no socket-thread batch');
  });
}

t.test(
  'socket thread busy, batch smaller than minOffload: runs inline all the same; one that big goes to a worker',
  async (t) => {
    // maxLoad 0: the socket thread always counts as busy; only the batch's size decides.
    const r = await startRouter(t, { plugins: probes, pool: { inline: { maxLoad: 0, minOffload: 2 } } });
    const c = await TestCharger.connect(r.url('INL-MIN'));
    t.teardown(() => c.close());
    for (let i = 0; i < 3; i++) {
      const f = await c.call('DataTransfer', { vendorId: 'test.thread' });
      t.equal(
        (f[2] as { data: string }).data,
        '0',
        `a batch of one (< minOffload 2): the socket thread answered (${i})`,
      );
    }
    // One batch of 2, not below minOffload.
    t.ok(
      (await twoInOneBatch(c, 'm1', 'm2')).every((thread) => thread !== '0'),
      'a batch of two went to a worker',
    );
    const m = batches((await r.api('GET', '/metrics')).body as string);
    t.ok(m.socket >= 3 && m.worker >= 1, `both counted (socket ${m.socket}, worker ${m.worker})`);
  },
);
