/**
 * Heartbeat on the socket thread (issue #3): answered without a worker when only the core
 * plugin takes part, never ahead of an earlier message of the same charger, and not at all
 * when a plugin hooks Heartbeat.
 */
import t from 'tap';
import { startRouter } from '../helpers/router.js';
import { TestCharger } from '../helpers/charger.js';
import { until } from '../helpers/wait.js';

const batchCount = async (r: Awaited<ReturnType<typeof startRouter>>) =>
  Number(/ocr_batch_items_count (\d+)/.exec((await r.api('GET', '/metrics')).body as string)?.[1] ?? 0);

// The lastSeenAt tests share one router (same options, own charger ids). The first one counts
// Heartbeats and batches, so it runs before the second connects its 600 chargers.
t.test('on one router flushing lastSeenAt every second', async (t) => {
  const r = await startRouter(t, { server: { lastSeenFlushSec: 1 } });

  t.test('answered on the socket thread, counted, lastSeenAt flushed', async (t) => {
    const c = await TestCharger.connect(r.url('HB-FAST'));
    t.teardown(() => c.close());
    await c.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Available' });
    const before = await batchCount(r);
    for (let i = 0; i < 20; i++) {
      const f = await c.call('Heartbeat', {});
      t.equal(f[0], 3);
      t.ok(Math.abs(Date.parse((f[2] as { currentTime: string }).currentTime) - Date.now()) < 2000);
    }
    t.equal(await batchCount(r), before, 'no batch went to a worker for the heartbeats');
    t.match(
      (await r.api('GET', '/metrics')).body,
      /ocr_messages_total\{version="1.6",action="Heartbeat",outcome="ok"\} 20/,
    );
    const spaced = await c.raw('[2, "sp", "Heartbeat", { } ]');
    t.same(spaced?.slice(0, 2), [3, 'sp'], 'whitespace tolerated');
    const bad = await c.raw('[2,"bad","Heartbeat",{"x":1}]');
    t.same(bad?.slice(0, 3), [4, 'bad', 'FormationViolation'], 'anything but {} is validated in a worker');
    const seen = await until(
      async () => {
        const rec = await r.router.registry.get('HB-FAST');
        return rec?.lastSeenAt && Date.parse(rec.lastSeenAt) > Date.now() - 3000 && rec.lastSeenAt;
      },
      { what: 'the periodic flush (every second) to write a recent lastSeenAt', everyMs: 100 },
    );
    t.ok(seen, 'lastSeenAt written by the periodic flush');
  });

  t.test('lastSeenAt of many chargers is flushed in bounded chunks, every one written', async (t) => {
    const registry = r.router.registry;
    const update = registry.update.bind(registry);
    let inFlight = 0;
    let maxInFlight = 0;
    const written = new Set<string>();
    registry.update = async (cpId, fields) => {
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      try {
        await update(cpId, fields);
        // Only this test's chargers: the shared router may still flush the previous test's.
        if (fields.lastSeenAt && cpId.startsWith('LS-')) written.add(cpId);
      } finally {
        inFlight--;
      }
    };
    t.teardown(() => {
      registry.update = update;
    });
    const n = 600;
    const chargers: TestCharger[] = [];
    for (let i = 0; i < n; i += 100)
      chargers.push(
        ...(await Promise.all(Array.from({ length: 100 }, (_, j) => TestCharger.connect(r.url(`LS-${i + j}`))))),
      );
    t.teardown(() => Promise.all(chargers.map((c) => c.close())));
    await until(() => written.size >= n, { what: `lastSeenAt of all ${n} chargers to be written`, everyMs: 100 });
    t.equal(written.size, n, 'every connected charger got its lastSeenAt');
    t.ok(maxInFlight <= 256, `at most 256 registry writes in flight (saw ${maxInFlight})`);
    t.ok(Date.parse((await registry.get('LS-599'))!.lastSeenAt!) > Date.now() - 15_000, 'the stored value is recent');
  });
});

t.test('never overtakes an earlier message of the same charger', async (t) => {
  const r = await startRouter(t, { plugins: [{ name: 'core' }, { name: './test/fixtures/plugins/crasher.ts' }] });
  const c = await TestCharger.connect(r.url('HB-ORDER'));
  t.teardown(() => c.close());
  const slow = c.call('DataTransfer', { vendorId: 'test.slow' }, 'slow');
  const hb = c.call('Heartbeat', {}, 'hb');
  await Promise.all([slow, hb]);
  t.same(
    c.received.filter((f) => f[0] === 3).map((f) => f[1]),
    ['slow', 'hb'],
    'replies in sending order',
  );
});

t.test('idle lanes stay for a while (no map churn per message) and are swept once quiet', async (t) => {
  const r = await startRouter(t);
  const lanes = (r.router.dispatcher as unknown as { lanes: { table: Map<string, unknown> } }).lanes.table;
  const cs = await Promise.all(['LANE-1', 'LANE-2', 'LANE-3'].map((id) => TestCharger.connect(r.url(id))));
  t.teardown(() => Promise.all(cs.map((c) => c.close())));
  for (const c of cs) await c.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Available' });
  t.ok(lanes.has('LANE-1') && r.router.dispatcher.isIdle('LANE-1'), 'an answered charger keeps its lane, idle');
  // LANE-1 stays busy until the sweeps (every second) have removed the others' lanes, which
  // takes two sweeps: LANE-1 lived through them; the others went quiet.
  let busy = true;
  const sending = (async () => {
    while (busy) {
      t.equal(
        (await cs[0].call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Charging' }))[0],
        3,
      );
      // The subject: a charger sending every 100 ms, whose lane must outlive the sweeps.
      await new Promise((res) => setTimeout(res, 100));
    }
  })();
  try {
    await until(() => !lanes.has('LANE-2') && !lanes.has('LANE-3'), {
      what: "the quiet chargers' lanes to be swept",
      everyMs: 50,
    });
  } finally {
    busy = false;
    await sending;
  }
  t.ok(lanes.has('LANE-1'), "the active charger's lane is kept");
  t.notOk(lanes.has('LANE-2') || lanes.has('LANE-3'), "the quiet chargers' lanes were swept");
  t.equal((await cs[1].call('Heartbeat', {}))[0], 3, 'a swept charger is served as before');
});

t.test('a plugin hooking Heartbeat turns the fast path off for that version', async (t) => {
  const r = await startRouter(t, {
    plugins: [{ name: 'core' }, { name: './test/fixtures/plugins/heartbeat-watcher.ts' }],
  });
  const c16 = await TestCharger.connect(r.url('HB-16'));
  const c201 = await TestCharger.connect(r.url('HB-201'), { protocols: 'ocpp2.0.1' });
  t.teardown(() => Promise.all([c16.close(), c201.close()]));
  for (let i = 0; i < 3; i++) await c16.call('Heartbeat', {});
  // The after hook counts each one once its reply is out.
  await until(async () => (await r.router.registry.store.get('ocr:{HB-16}:heartbeat-watcher:heartbeats')) === '3', {
    what: 'the after hook to count 3 heartbeats',
  });
  t.equal(
    await r.router.registry.store.get('ocr:{HB-16}:heartbeat-watcher:heartbeats'),
    '3',
    'the hook saw every heartbeat',
  );
  const before = await batchCount(r);
  await c201.call('Heartbeat', {});
  t.equal(await batchCount(r), before, '2.0.1 (not hooked) still answered on the socket thread');
});
