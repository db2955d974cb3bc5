/**
 * Deadlines on a fake clock (test/helpers/clock.ts): time is stepped, not slept, so "not
 * before its time, by its time plus the granularity" is checked exactly on any machine. One
 * test keeps the real clock, the default, to show it is wired.
 */
import t from 'tap';
import { FakeClock } from '../../test/helpers/clock.js';
import { until } from '../../test/helpers/wait.js';
import { Deadlines } from './deadlines.js';

t.test('a deadline fires once its time has passed, not before, and only for calls still pending', async (t) => {
  const clock = new FakeClock();
  const dl = new Deadlines(clock);
  t.teardown(() => dl.close());
  const fired: string[] = [];
  const at: Record<string, number> = {};
  const expire = (name: string) => () => {
    fired.push(name);
    at[name] = clock.now();
  };
  const a = dl.add(80, expire('a'));
  dl.add(80, expire('b'));
  const c = dl.add(80, expire('c'));
  dl.add(200, expire('long'));
  t.equal(dl.size, 4);
  dl.settle(a);
  dl.settle(c);
  dl.settle(c); // idempotent
  t.equal(dl.size, 2, 'settled calls leave at once');
  // The granularity is a tenth of the shortest timeout: 8 ms.
  clock.advance(79);
  t.same(fired, [], 'nothing before its time');
  clock.advance(88 - 79);
  t.same(fired, ['b'], 'the pending 80 ms call expired; the settled ones never do');
  t.ok(at.b >= 80 && at.b <= 80 + 8, `within the granularity of its time (${at.b} ms)`);
  clock.advance(199 - 88);
  t.same(fired, ['b'], 'the 200 ms one not before its time');
  clock.advance(208 - 199);
  t.same(fired, ['b', 'long'], 'the 200 ms one too, after it');
  t.ok(at.long >= 200, `not before its time (${at.long} ms)`);
  t.equal(dl.size, 0);
});

t.test('settling the oldest call lets the timer sleep until the next one; many calls, one timer', async (t) => {
  const clock = new FakeClock();
  const dl = new Deadlines(clock);
  t.teardown(() => dl.close());
  let fired = 0;
  const ds = Array.from({ length: 10_000 }, () => dl.add(50, () => fired++));
  t.equal(clock.pending, 1, 'one timer for 10,000 calls');
  for (let i = 0; i < ds.length; i += 2) dl.settle(ds[i]);
  t.equal(dl.size, 5000);
  clock.advance(50 + 5);
  t.equal(fired, 5000, 'every pending call expired, each once');
  for (const d of ds) dl.settle(d); // after expiry: no effect
  t.equal(dl.size, 0);
  t.equal(clock.pending, 0, 'no timer while nothing is pending');
  dl.add(30, () => fired++);
  clock.advance(30 + 3);
  t.equal(fired, 5001, 'the timer re-arms after going idle');

  // The timer wakes at the oldest deadline (30 ms from now); that call settles first.
  const oldest = dl.add(30, () => fired++);
  clock.advance(10);
  dl.add(30, () => fired++); // due 10 ms after the oldest
  dl.settle(oldest);
  clock.advance(23);
  t.equal(fired, 5001, 'nothing expired at the settled call’s time');
  t.equal(clock.pending, 1, 'the timer sleeps until the next one');
  clock.advance(10);
  t.equal(fired, 5002, 'which expires at its own time');
});

t.test('close: pending deadlines never fire and the process is not held', async (t) => {
  const clock = new FakeClock();
  const dl = new Deadlines(clock);
  let fired = 0;
  dl.add(20, () => fired++);
  dl.close();
  t.equal(clock.pending, 0, 'the timer is cleared');
  clock.advance(60);
  t.equal(fired, 0);
  t.equal(dl.size, 0);
});

t.test('the default clock is the real one', async (t) => {
  const dl = new Deadlines();
  t.teardown(() => dl.close());
  const t0 = performance.now();
  let firedAfter = -1;
  dl.add(20, () => (firedAfter = performance.now() - t0));
  await until(() => firedAfter >= 0, { what: 'the 20 ms deadline to fire' });
  t.ok(firedAfter >= 20, `not before its time (${Math.round(firedAfter)} ms)`);
});

t.test('the timer holds the process only while a call is pending', async (t) => {
  const clock = new FakeClock();
  const held: boolean[] = [];
  const dl = new Deadlines({ ...clock, now: clock.now, hold: (_timer, on) => held.push(on) });
  t.teardown(() => dl.close());
  const a = dl.add(100, () => {});
  const b = dl.add(100, () => {});
  dl.settle(a);
  t.same(held, [], 'a call still pending: the timer keeps holding');
  dl.settle(b);
  t.same(held, [false], 'the last call settled: released (the timer itself stays armed)');
  dl.add(100, () => {});
  t.same(held, [false, true], 'a new call: held again');
});
