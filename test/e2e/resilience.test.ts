/**
 * Load shedding, analytics outage and TLS, end to end.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from '@clickhouse/client';
import { startRouter } from '../helpers/router.js';
import { TestCharger } from '../helpers/charger.js';
import { until } from '../helpers/wait.js';
import { startClickHouse } from '../services/clickhouse.js';

t.test('saturated pool: fast InternalError for new CALLs, 503 for new connections, then recovery', async (t) => {
  const r = await startRouter(t, {
    plugins: [{ name: 'core' }, { name: './test/fixtures/plugins/crasher.ts' }],
    pool: { threads: 1, concurrentTasksPerWorker: 1, maxPendingFrames: 1 },
  });
  // One at a time: with maxPendingFrames 1 even simultaneous connect events would be shed.
  let a: TestCharger | undefined, b: TestCharger | undefined, c: TestCharger | undefined;
  for (const id of ['SAT-A', 'SAT-B', 'SAT-C']) {
    const ch = await TestCharger.connect(r.url(id));
    t.equal((await ch.call('Heartbeat', {}))[0], 3, `${id} connected and served`);
    if (!a) a = ch;
    else if (!b) b = ch;
    else c = ch;
  }
  t.teardown(() => Promise.all([a, b, c].map((x) => x!.close())));
  // All of this happens within the 200 ms the worker is busy with A: poll often.
  const pool = r.router.dispatcher;
  const slowA = a!.call('DataTransfer', { vendorId: 'test.slow' }); // batch 1: in the worker
  await until(() => pool.stats.inFlight === 1, { what: "A's batch to be in the worker", everyMs: 1 });
  const slowB = b!.call('DataTransfer', { vendorId: 'test.slow' }); // waits for the only batch slot: 1 frame pending = maxPendingFrames
  await until(() => pool.stats.pendingFrames === 1, { what: "B's frame to wait for the batch slot", everyMs: 1 });
  const started = Date.now();
  const shed = await c!.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Available' });
  t.equal(shed[2], 'InternalError', 'answered at once with InternalError');
  t.ok(Date.now() - started < 150, `fast (${Date.now() - started} ms, while the worker is busy for 200+ ms)`);
  t.equal(
    (await c!.call('Heartbeat', {}))[0],
    3,
    'Heartbeat is answered by the socket thread even while the pool is saturated',
  );
  await t.rejects(
    TestCharger.connect(r.url('SAT-D')),
    { message: 'HTTP 503' },
    'new connections refused while saturated',
  );
  t.equal((await slowA)[0], 3);
  t.equal((await slowB)[0], 3);
  t.equal((await c!.call('Heartbeat', {}))[0], 3, 'serving again once drained');
  t.match((await r.api('GET', '/metrics')).body, /ocr_frames_dropped_total\{reason="pool_saturated"\} 1/);
});

t.test('ClickHouse away: frames answered at once, rows spooled, delivered when it is back', async (t) => {
  const ch = await startClickHouse();
  t.teardown(() => ch.stop({ removeDir: true }));
  await ch.stop();
  const r = await startRouter(t, { clickhouse: { url: ch.url, database: 'outage' } });
  const c = await TestCharger.connect(r.url('CH-DOWN'));
  t.teardown(() => c.close());
  const started = Date.now();
  for (let i = 0; i < 5; i++) {
    const f = await c.call('MeterValues', {
      connectorId: 1,
      meterValue: [{ timestamp: new Date().toISOString(), sampledValue: [{ value: String(i) }] }],
    });
    t.equal(f[0], 3, `MeterValues ${i} answered while ClickHouse is down`);
  }
  t.ok(Date.now() - started < 2000, 'no reply waited on ClickHouse');
  await ch.restart();
  const client = createClient({ url: ch.url });
  t.teardown(() => client.close());
  // ClickHouse restarting, then the sink's backoff and replay: errors (table not created yet) count as "not yet".
  const values = await until(
    async () => {
      const rows = await (
        await client.query({
          query: "SELECT value FROM outage.meter_values WHERE cp_id = 'CH-DOWN' ORDER BY value",
          format: 'JSONEachRow',
        })
      ).json<{ value: number }>();
      return rows.length >= 5 && rows.map((x) => x.value);
    },
    { what: 'the 5 spooled meter values in ClickHouse', timeoutMs: 60_000, everyMs: 250 },
  );
  t.same(values, [0, 1, 2, 3, 4], 'every spooled row delivered exactly once');
  // What an operator's dashboard shows: the rows went to the spool, then from it to ClickHouse.
  const sample = async (outcome: string) =>
    Number(
      new RegExp(`^ocr_analytics_rows_total\\{outcome="${outcome}"\\} (\\S+)$`, 'm').exec(
        (await r.api('GET', '/metrics')).body as string,
      )?.[1],
    );
  t.ok(
    await until(async () => (await sample('replayed')) >= 5, {
      what: 'ocr_analytics_rows_total{outcome="replayed"} >= 5',
    }),
    '/metrics: rows replayed from the spool',
  );
  t.ok((await sample('spooled')) >= 5, '/metrics: rows spooled while ClickHouse was away');
  t.equal(await sample('dropped'), 0, '/metrics: none dropped');
});

t.test(
  'ClickHouse away and the spool full: MeterValues refused (the charger retries), none answered and lost',
  async (t) => {
    const ch = await startClickHouse();
    t.teardown(() => ch.stop({ removeDir: true }));
    await ch.stop();
    // A 64 KiB spool (about 250 meter rows) and 200 rows in memory per thread.
    const r = await startRouter(t, {
      clickhouse: { url: ch.url, database: 'spoolfull' },
      analytics: { spoolMaxBytes: 65536, maxBufferRows: 200, flushIntervalMs: 50 },
    });
    const c = await TestCharger.connect(r.url('CH-FULL'));
    t.teardown(() => c.close());
    const mv = (n: number) => ({
      connectorId: 1,
      meterValue: [
        {
          timestamp: new Date().toISOString(),
          sampledValue: Array.from({ length: 10 }, (_, i) => ({
            value: String(n * 10 + i),
            measurand: 'Energy.Active.Import.Register',
          })),
        },
      ],
    });
    const answered: number[] = [];
    let refused: unknown[] | undefined;
    for (let n = 0; n < 2000 && refused === undefined; n++) {
      const f = await c.call('MeterValues', mv(n));
      if (f[0] === 3) answered.push(n);
      else refused = f;
      // Pacing, not synchronisation: a pause after every 10 messages lets the flush (every 50 ms)
      // move the rows to the spool, so the spool fills before the memory buffer does. Every
      // assertion below holds either way.
      if (n % 10 === 9) await new Promise((r) => setTimeout(r, 60));
    }
    t.match(
      refused,
      [4, String, 'InternalError', 'Analytics storage is full; retry later'],
      `refused after ${answered.length} answered`,
    );
    t.equal((await c.call('Heartbeat', {}))[0], 3, 'Heartbeat still answered');
    const metric = async (re: RegExp) => Number(re.exec((await r.api('GET', '/metrics')).body as string)?.[1]);
    t.ok(
      await until(async () => (await metric(/^ocr_analytics_refused_messages_total (\S+)$/m)) >= 1, {
        what: 'ocr_analytics_refused_messages_total >= 1',
      }),
      '/metrics counts the refusal',
    );

    await ch.restart();
    const client = createClient({ url: ch.url });
    t.teardown(() => client.close());
    // Once the held rows are in ClickHouse the router admits MeterValues again.
    // The charger retries, as a refused one would (each attempt refused until then).
    const again = await until(
      async () => {
        const f = await c.call('MeterValues', mv(answered.length + 10_000));
        return f[0] === 3 && f;
      },
      { what: 'a MeterValues to be admitted again', timeoutMs: 60_000, everyMs: 250 },
    );
    t.equal(again[0], 3, 'MeterValues admitted again');
    const expected = answered.flatMap((n) => Array.from({ length: 10 }, (_, i) => n * 10 + i));
    const values = await until(
      async () => {
        const rows = await (
          await client.query({
            query: "SELECT value FROM spoolfull.meter_values WHERE cp_id = 'CH-FULL' AND value < 100000 ORDER BY value",
            format: 'JSONEachRow',
          })
        ).json<{ value: number }>();
        return rows.length >= expected.length && rows.map((x) => x.value);
      },
      {
        what: `the ${expected.length} values of the answered MeterValues in ClickHouse`,
        timeoutMs: 60_000,
        everyMs: 250,
      },
    );
    t.same(values, expected, `every value of the ${answered.length} answered MeterValues stored exactly once`);
    // The only rows shed: the router's own call_errors record of each refusal, while full.
    const refusals = await metric(/^ocr_analytics_refused_messages_total (\S+)$/m);
    t.equal(
      await metric(/^ocr_analytics_rows_total\{outcome="dropped"\} (\S+)$/m),
      refusals,
      `/metrics: dropped rows are the ${refusals} refusals' own records, nothing else`,
    );
  },
);

t.test('TLS (wss) via uWS SSLApp', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ocr-tls-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  const r = await startRouter(t, {
    server: { tls: { keyFile: join(dir, 'key.pem'), certFile: join(dir, 'cert.pem') } },
  });
  const url = r.url('TLS-1').replace('ws://', 'wss://');
  const WebSocket = (await import('ws')).default;
  const ws = new WebSocket(url, 'ocpp1.6', { rejectUnauthorized: false });
  const reply = await new Promise<unknown[]>((resolve, reject) => {
    ws.once('open', () => ws.send('[2,"t1","Heartbeat",{}]'));
    ws.once('message', (m) => resolve(JSON.parse(m.toString()) as unknown[]));
    ws.once('error', reject);
  });
  ws.close();
  t.equal(reply[0], 3);
  t.equal(reply[1], 't1');
});
