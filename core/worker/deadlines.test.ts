import t from 'tap';
import { Deadlines } from './deadlines.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('a deadline fires once its time has passed, not before, and only for calls still pending', async (t) => {
  const dl = new Deadlines();
  t.teardown(() => dl.close());
  const fired: string[] = [];
  const t0 = performance.now();
  const at: Record<string, number> = {};
  const expire = (name: string) => () => {
    fired.push(name);
    at[name] = performance.now() - t0;
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
  await sleep(40);
  t.same(fired, [], 'nothing before its time');
  await sleep(120);
  t.same(fired, ['b'], 'the pending 80 ms call expired; the settled ones never do');
  t.ok(at.b >= 80 && at.b < 80 + 8 + 100, `within the granularity of its time (${Math.round(at.b)} ms)`);
  await sleep(150);
  t.same(fired, ['b', 'long'], 'the 200 ms one too, after it');
  t.ok(at.long >= 200, `not before its time (${Math.round(at.long)} ms)`);
  t.equal(dl.size, 0);
});

t.test('settling the oldest call lets the timer sleep until the next one; many calls, one timer', async (t) => {
  const dl = new Deadlines();
  t.teardown(() => dl.close());
  let fired = 0;
  const ds = Array.from({ length: 10_000 }, () => dl.add(50, () => fired++));
  for (let i = 0; i < ds.length; i += 2) dl.settle(ds[i]);
  t.equal(dl.size, 5000);
  await sleep(120);
  t.equal(fired, 5000, 'every pending call expired, each once');
  for (const d of ds) dl.settle(d); // after expiry: no effect
  t.equal(dl.size, 0);
  dl.add(30, () => fired++);
  await sleep(80);
  t.equal(fired, 5001, 'the timer re-arms after going idle');
});

t.test('close: pending deadlines never fire and the process is not held', async (t) => {
  const dl = new Deadlines();
  let fired = 0;
  dl.add(20, () => fired++);
  dl.close();
  await sleep(60);
  t.equal(fired, 0);
  t.equal(dl.size, 0);
});
