/**
 * A worker that crashes mid-batch: every in-flight message is answered (InternalError),
 * none dropped silently; piscina replaces the worker and the router keeps serving. A plugin
 * that throws gets InternalError with an opaque reference, never its internal text.
 */
import t from 'tap';
import { startRouter } from '../helpers/router.js';
import { TestCharger } from '../helpers/charger.js';

t.test('worker crash: every in-flight message answered, router keeps serving', async (t) => {
  const r = await startRouter(t, {
    plugins: [{ name: 'core' }, { name: './test/fixtures/plugins/crasher.ts' }],
    pool: { threads: 1 },
  });
  const chargers = await Promise.all(Array.from({ length: 10 }, (_, i) => TestCharger.connect(r.url(`CR-${i}`))));
  t.teardown(() => Promise.all(chargers.map((c) => c.close())));
  // Slow messages keep the batch in flight while the crash arrives in the same worker.
  const slow = chargers.map((c, i) => c.call('DataTransfer', { vendorId: 'test.slow' }, `slow-${i}`));
  const crash = chargers[0].call('DataTransfer', { vendorId: 'test.crash' }, 'crash');
  const replies = await Promise.all([...slow, crash]);
  t.equal(replies.length, 11, 'every message answered');
  for (const f of replies) {
    t.ok(f[0] === 3 || (f[0] === 4 && f[2] === 'InternalError'), `${String(f[1])}: CALLRESULT or InternalError`);
  }
  t.ok(
    replies.some((f) => f[0] === 4),
    'the crashed batch was answered with InternalError',
  );
  const err = replies.find((f) => f[0] === 4)!;
  t.match(err[3], /^Internal error \(ref [0-9a-f]{12}\)$/);
  // A replacement worker serves the same chargers.
  for (const c of chargers) t.equal((await c.call('Heartbeat', {}))[0], 3);
  const m = await r.api('GET', '/metrics');
  t.match(m.body, /ocr_worker_crashes_total [1-9]/);
});

t.test('a throwing plugin: InternalError with a reference, no internal text on the wire', async (t) => {
  const r = await startRouter(t, { plugins: [{ name: 'core' }, { name: './test/fixtures/plugins/crasher.ts' }] });
  const c = await TestCharger.connect(r.url('THROW'));
  t.teardown(() => c.close());
  const f = await c.call('DataTransfer', { vendorId: 'test.throw' });
  t.equal(f[2], 'InternalError');
  t.notMatch(JSON.stringify(f), /secret internal detail/);
  t.match(f[4], { ref: /^[0-9a-f]{12}$/ });
  t.equal((await c.call('Heartbeat', {}))[0], 3);
});
