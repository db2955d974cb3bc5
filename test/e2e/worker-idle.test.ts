/**
 * Idle worker threads stop (pool.idleTimeoutMs, core/dispatch/worker-pool.ts): after the timeout
 * without a batch for them they drain (plugins' close hooks, analytics flushed) and exit; the
 * next batch that needs a worker starts them again. Asserted as an operator sees it: the
 * threads gauge, the rows in the spool, which thread answered, nothing lost or unanswered.
 */
import t from 'tap';
import { spooledRows, startRouter, type TestRouter } from '../helpers/router.js';
import { until } from '../helpers/wait.js';
import { TABLES } from '../../core/analytics/schema.js';
import { TestCharger } from '../helpers/charger.js';

const probes = [
  { name: 'core' },
  { name: './test/fixtures/plugins/thread-probe.ts', options: { versions: ['1.6'] } },
  { name: './test/fixtures/plugins/thread-probe-worker.ts', options: { versions: ['2.0.1'] } },
];

async function metric(r: TestRouter, name: string): Promise<number> {
  const text = (await r.api('GET', '/metrics')).body as string;
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
}

/** A labelled sample, e.g. metricWith(r, 'ocr_analytics_rows_total', 'outcome="spooled"'). */
async function metricWith(r: TestRouter, name: string, labels: string): Promise<number> {
  const text = (await r.api('GET', '/metrics')).body as string;
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return Number(line?.split(' ')[1] ?? NaN);
}

async function stopped(r: TestRouter): Promise<void> {
  await until(async () => (await metric(r, 'ocr_pool_threads')) === 0, {
    what: 'the workers to stop (ocr_pool_threads 0)',
  });
}

/** Meter values of one charger in the spool, closed segments and the open one alike. */
const spooledValues = (dir: string, cpId: string) =>
  spooledRows(dir, 'meter_values')
    .filter((x) => x.cp_id === cpId)
    .map((x) => String(x.value));

const mv = (i: number) => ({
  evseId: 1,
  meterValue: [
    {
      timestamp: new Date().toISOString(),
      sampledValue: Array.from({ length: 10 }, (_, k) => ({ value: i * 10 + k })),
    },
  ],
});

t.test('idle workers drain and stop; a batch that needs one starts them again', async (t) => {
  // Analytics buffered for a long time in the workers: only the drain at the stop writes them.
  const r = await startRouter(t, {
    plugins: probes,
    pool: { threads: 2, idleTimeoutMs: 400, inline: { enabled: false } },
    analytics: { flushIntervalMs: 600_000, batchRows: 1_000_000 },
  });
  const c = await TestCharger.connect(r.url('IDLE-1'), { protocols: 'ocpp2.0.1' });
  t.teardown(() => c.close());
  t.equal(await metric(r, 'ocr_pool_threads'), 2, 'two workers after start');

  for (let i = 0; i < 5; i++)
    t.equal((await c.call('MeterValues', mv(i)))[0], 3, `MeterValues ${i} answered by a worker`);
  t.same(spooledValues(r.dir, 'IDLE-1'), [], 'rows still buffered in the worker');

  await stopped(r);
  t.equal(r.router.dispatcher.stats.threads, 0, 'no worker thread left');
  t.same(
    spooledValues(r.dir, 'IDLE-1').sort((a, b) => Number(a) - Number(b)),
    Array.from({ length: 50 }, (_, i) => String(i)),
    'the drain wrote every buffered row, once',
  );
  // Each worker's last counters reach /metrics as it drains, and stay there once it is gone.
  const inSpool = () => TABLES.reduce((n, table) => n + spooledRows(r.dir, table).length, 0);
  const first = inSpool();
  t.ok(
    await until(async () => (await metricWith(r, 'ocr_analytics_rows_total', 'outcome="spooled"')) === first, {
      what: `ocr_analytics_rows_total{outcome="spooled"} ${first}`,
    }),
    `/metrics: the stopped workers' rows counted as spooled, as many as the spool holds (${first})`,
  );
  t.equal(await metric(r, 'ocr_analytics_buffered_rows'), 0, 'nothing buffered');
  t.equal(await metricWith(r, 'ocr_analytics_rows_total', 'outcome="dropped"'), 0, 'nothing dropped');

  const f = await c.call('DataTransfer', { vendorId: 'test.thread' });
  t.equal(f[0], 3, 'a message for a worker is answered after the restart');
  t.not((f[2] as { data: string }).data, '0', 'by a worker');
  t.equal(await metric(r, 'ocr_worker_starts_total'), 1, 'one restart counted');
  t.equal(await metric(r, 'ocr_pool_threads'), 2, 'both workers running again');

  // New threads count from zero; the router's totals add them to the stopped threads' counts.
  t.equal((await c.call('MeterValues', mv(5)))[0], 3);
  await stopped(r);
  const second = inSpool();
  t.ok(second >= first + 10, 'the second generation of workers spooled its rows');
  t.ok(
    await until(async () => (await metricWith(r, 'ocr_analytics_rows_total', 'outcome="spooled"')) === second, {
      what: `ocr_analytics_rows_total{outcome="spooled"} ${second}`,
    }),
    `/metrics: both generations' rows counted (${second})`,
  );
});

t.test('idle time counts from when the workers are up, not from when they began to load', async (t) => {
  // Workers that take longer than idleTimeoutMs to set up (a slow plugin, a loaded host) were
  // stopped on the pool's first idle check, before any batch could use them.
  const r = await startRouter(t, {
    plugins: [...probes, { name: './test/fixtures/plugins/slow-setup.ts', options: { delayMs: 1700 } }],
    pool: { threads: 1, idleTimeoutMs: 1500, inline: { enabled: false } },
  });
  // Past the pool's first idle check (every 375 ms): counted by wrapping its private method
  // (called through `this` from the interval), as there is nothing an operator sees until a stop.
  const pool = (r.router.dispatcher as unknown as { workers: { checkIdle(): void } }).workers;
  const checkIdle = pool.checkIdle.bind(pool);
  let idleChecks = 0;
  pool.checkIdle = () => {
    idleChecks++;
    checkIdle();
  };
  await until(() => idleChecks >= 1, { what: "the pool's first idle check" });
  const c = await TestCharger.connect(r.url('SLOW-1'), { protocols: 'ocpp2.0.1' });
  t.teardown(() => c.close());
  const f = await c.call('DataTransfer', { vendorId: 'test.thread' });
  t.not((f[2] as { data: string }).data, '0', 'answered by a worker');
  t.equal(
    await metric(r, 'ocr_worker_starts_total'),
    0,
    'by the workers started with the router: they were not stopped and started again',
  );
});

t.test('running workers report their analytics counters to /metrics within a second', async (t) => {
  const r = await startRouter(t, {
    plugins: probes,
    pool: { threads: 2, idleTimeoutMs: 0, inline: { enabled: false } },
    analytics: { flushIntervalMs: 600_000, batchRows: 1_000_000 },
  });
  const c = await TestCharger.connect(r.url('REPORT-1'), { protocols: 'ocpp2.0.1' });
  t.teardown(() => c.close());
  for (let i = 0; i < 3; i++) t.equal((await c.call('MeterValues', mv(i)))[0], 3);
  t.ok(
    await until(async () => (await metric(r, 'ocr_analytics_buffered_rows')) >= 30, {
      what: 'ocr_analytics_buffered_rows >= 30',
      timeoutMs: 3000,
    }),
    '/metrics: the 30 meter rows buffered in the workers',
  );
  t.equal(await metricWith(r, 'ocr_analytics_rows_total', 'outcome="spooled"'), 0, 'none spooled yet');
  t.equal(await metricWith(r, 'ocr_analytics_rows_total', 'outcome="dropped"'), 0, 'none dropped');
  // More rows within the second: the throttled report follows.
  const before = await metric(r, 'ocr_analytics_buffered_rows');
  t.equal((await c.call('MeterValues', mv(3)))[0], 3);
  t.ok(
    await until(async () => (await metric(r, 'ocr_analytics_buffered_rows')) >= before + 10, {
      what: `ocr_analytics_buffered_rows >= ${before + 10}`,
      timeoutMs: 3000,
    }),
    '/metrics: a later batch reported too',
  );
});

t.test('while the workers are stopped, inline messages run on the socket thread and do not wake them', async (t) => {
  // maxLoad 1 (inline whatever the load): this test process (router and chargers in one
  // thread) is often busy, and a busy socket thread would rightly start the workers.
  const r = await startRouter(t, { plugins: probes, pool: { threads: 1, idleTimeoutMs: 200, inline: { maxLoad: 1 } } });
  const c16 = await TestCharger.connect(r.url('IDLE-16'));
  const c201 = await TestCharger.connect(r.url('IDLE-201'), { protocols: 'ocpp2.0.1' });
  t.teardown(() => Promise.all([c16.close(), c201.close()]));
  await stopped(r);

  for (let i = 0; i < 5; i++) {
    const f = await c16.call('DataTransfer', { vendorId: 'test.thread' });
    t.equal((f[2] as { data: string }).data, '0', `inline message ${i} answered by the socket thread`);
  }
  t.equal((await c16.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Charging' }))[0], 3);
  t.match(await r.router.registry.statuses('IDLE-16'), { 1: { status: 'Charging' } }, 'its state stored');
  t.equal(await metric(r, 'ocr_worker_starts_total'), 0, 'the workers stayed stopped');

  // Several at once while the worker starts: each answered, in order.
  const ids = ['w1', 'w2', 'w3', 'w4'];
  const replies = await Promise.all(ids.map((id) => c201.call('DataTransfer', { vendorId: 'test.thread' }, id)));
  t.same(
    replies.map((f) => f[1]),
    ids,
    'every message for the worker answered',
  );
  t.ok(
    replies.every((f) => (f[2] as { data: string }).data !== '0'),
    'by the worker',
  );
  t.same(
    c201.received.filter((f) => f[0] === 3).map((f) => f[1]),
    ids,
    'in sending order',
  );
  t.equal(await metric(r, 'ocr_worker_starts_total'), 1);
});

t.test('pool.idleTimeoutMs 0 keeps the workers running', async (t) => {
  const r = await startRouter(t, { plugins: probes, pool: { threads: 1, idleTimeoutMs: 0 } });
  // The subject is time passing with nothing to wait for: with idleTimeoutMs 0 the pool arms no
  // idle check at all (with one, a 0 ms timeout would stop the workers within 10 ms).
  await new Promise((res) => setTimeout(res, 300));
  t.equal(await metric(r, 'ocr_pool_threads'), 1);
  t.equal(r.router.dispatcher.stats.threads, 1);
});
