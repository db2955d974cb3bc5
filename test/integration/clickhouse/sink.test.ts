/**
 * ClickHouseSink against a real clickhouse-server (18.16 on the CI machines).
 *
 * Uses the run's server (OCR_TEST_CLICKHOUSE_URL, set by `npm test`) with one database per
 * test, or starts its own when run alone with `npx tap <file>`. The fault-injection test
 * always starts a dedicated server, because it stops and restarts it.
 */
import t from 'tap';
import { createClient, ClickHouseLogLevel, type ClickHouseClient } from '@clickhouse/client';
import { mkdtempSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import {
  ClickHouseSink,
  createAnalyticsSink,
  type ClickHouseSinkOptions,
} from '../../../core/analytics/clickhouse-sink.js';
import { COLUMNS, TABLES, migrate } from '../../../core/analytics/schema.js';
import { Spool } from '../../../core/analytics/spool.js';
import { startClickHouse, freePort } from '../../services/index.js';
import { createTestDatabase, uniqueName, useClickHouse, type TestLike } from '../../helpers/services.js';
import { until } from '../../helpers/wait.js';

const silent = pino({ level: 'silent' });
const url = await useClickHouse(t);

function client(u = url): ClickHouseClient {
  const c = createClient({ url: u, log: { level: ClickHouseLogLevel.OFF } });
  t.teardown(() => c.close());
  return c;
}

async function rows<T = Record<string, unknown>>(c: ClickHouseClient, query: string): Promise<T[]> {
  return (await c.query({ query, format: 'JSONEachRow' })).json<T>();
}

async function count(c: ClickHouseClient, table: string): Promise<number> {
  const [r] = await rows<{ n: string | number }>(c, `SELECT count() AS n FROM ${table}`);
  return Number(r.n); // UInt64 comes back quoted
}

function spoolDir(t: TestLike): string {
  const d = mkdtempSync(join(tmpdir(), 'ocr-sink-spool-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function spoolFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => e.name);
}

/** until() for ClickHouse round trips: polled every 100 ms for up to 15 s. */
const eventually = (what: string, check: () => Promise<boolean>) =>
  until(check, { what, timeoutMs: 15_000, everyMs: 100 });

function sinkOptions(t: TestLike, database: string, over: Partial<ClickHouseSinkOptions> = {}): ClickHouseSinkOptions {
  return {
    clickhouse: { url, database },
    spool: { dir: spoolDir(t) },
    flushIntervalMs: 50,
    replayIntervalMs: 100,
    backoffMinMs: 100,
    backoffMaxMs: 300,
    log: silent,
    ...over,
  };
}

t.test('rows written through the sink read back with the right types', async (t) => {
  const db = await createTestDatabase(t, url);
  const sink = createAnalyticsSink({ ...sinkOptions(t, db), nodeId: 'node-a' });
  t.teardown(() => sink.close());
  await sink.start();
  const c = client();

  const ts = 1_700_000_123_456;
  sink.write('meter_values', {
    ts,
    cp_id: 'CP-1',
    ocpp_version: 'ocpp1.6',
    evse_id: 1,
    connector_id: '2',
    transaction_id: 'tx-9',
    measurand: 'Energy.Active.Import.Register',
    unit: 'Wh',
    value: '1234.5',
    received_at: ts + 1000,
  });
  sink.write('status_events', {
    ts,
    cp_id: 'CP-1',
    connector_id: 1,
    status: 'Faulted',
    error_code: 'GroundFailure',
    node_id: 'node-b',
  });
  sink.write('ocpp_events', { ts, cp_id: 'CP-1', kind: 'call', action: 'BootNotification', payload: '{"a":1}' });
  sink.write('call_errors', {
    ts,
    cp_id: 'CP-1',
    direction: 'in',
    action: 'Authorize',
    message_id: 'm1',
    error_code: 'FormatViolation',
    ref: 'r1',
  });
  // Malformed values become defaults rather than failing the batch.
  sink.write('meter_values', { ts: 'garbage', cp_id: 'CP-2', evse_id: -5, connector_id: 1e12, value: 'NaN' });
  await sink.flush();

  t.same(sink.stats(), { buffered: 0, written: 5, spooled: 0, dropped: 0, replayed: 0, failures: 0, refused: 0 });

  const [mv] = await rows(
    c,
    `SELECT toUnixTimestamp(ts) AS ts_s, ts_ms, toUnixTimestamp(received_at) AS recv, cp_id, ocpp_version, node_id,
      evse_id, connector_id, transaction_id, measurand, phase, unit, value FROM ${db}.meter_values WHERE cp_id = 'CP-1'`,
  );
  t.same(mv, {
    ts_s: 1_700_000_123,
    ts_ms: 456,
    recv: 1_700_000_124,
    cp_id: 'CP-1',
    ocpp_version: 'ocpp1.6',
    node_id: 'node-a',
    evse_id: 1,
    connector_id: 2,
    transaction_id: 'tx-9',
    measurand: 'Energy.Active.Import.Register',
    phase: '',
    unit: 'Wh',
    value: 1234.5,
  });
  const [bad] = await rows(
    c,
    `SELECT toUnixTimestamp(ts) - toUnixTimestamp(received_at) AS d, evse_id, connector_id, value FROM ${db}.meter_values WHERE cp_id = 'CP-2'`,
  );
  t.same(
    bad,
    { d: 0, evse_id: 0, connector_id: 4294967295, value: 0 },
    'ts defaults to received_at, ints clamp, bad float → 0',
  );
  const [st] = await rows(c, `SELECT status, error_code, node_id, info FROM ${db}.status_events`);
  t.same(st, { status: 'Faulted', error_code: 'GroundFailure', node_id: 'node-b', info: '' }, 'explicit node_id wins');
  const [ev] = await rows(c, `SELECT kind, action, payload FROM ${db}.ocpp_events`);
  t.same(ev, { kind: 'call', action: 'BootNotification', payload: '{"a":1}' });
  const [ce] = await rows(c, `SELECT direction, error_code, ref, error_description FROM ${db}.call_errors`);
  t.same(ce, { direction: 'in', error_code: 'FormatViolation', ref: 'r1', error_description: '' });

  // The DDL matches the declared column kinds.
  const cols = await rows<{ table: string; name: string; type: string }>(
    c,
    `SELECT table, name, type FROM system.columns WHERE database = '${db}'`,
  );
  const expected: Record<string, RegExp> = {
    string: /^String$/,
    lcstring: /^(LowCardinality\()?String\)?$/,
    uint16: /^UInt16$/,
    uint32: /^UInt32$/,
    float64: /^Float64$/,
    datetime: /^DateTime$/,
  };
  for (const table of TABLES) {
    const got = cols.filter((r) => r.table === table);
    t.same(
      got.map((r) => r.name),
      Object.keys(COLUMNS[table]),
      `${table} columns in order`,
    );
    for (const r of got) t.match(r.type, expected[COLUMNS[table][r.name]], `${table}.${r.name} is ${r.type}`);
  }
  t.ok(
    sink.features?.version,
    `server version ${sink.features?.version}, LowCardinality ${sink.features?.lowCardinality}`,
  );
});

t.test('migrate is idempotent and restores missing columns', async (t) => {
  const db = await createTestDatabase(t, url);
  const c = client();
  const f1 = await migrate(c, db);
  const f2 = await migrate(c, db);
  t.same(f1, f2);
  await c.command({ query: `ALTER TABLE ${db}.call_errors DROP COLUMN ref` });
  // Three at once: the losers of the ADD COLUMN race (code 44 on 18.16) must not fail.
  await Promise.all([migrate(c, db), migrate(c, db), migrate(c, db)]);
  const names = await rows<{ name: string }>(
    c,
    `SELECT name FROM system.columns WHERE database = '${db}' AND table = 'call_errors'`,
  );
  t.ok(
    names.some((r) => r.name === 'ref'),
    'dropped column added back',
  );
  const tables = await rows<{ name: string }>(
    c,
    `SELECT name FROM system.tables WHERE database = '${db}' ORDER BY name`,
  );
  t.same(
    tables.map((r) => r.name),
    [...TABLES].sort(),
  );
  // Concurrent migrations (one per worker at boot) must not trip over each other.
  const db2 = uniqueName('ocr_test');
  t.teardown(() => c.command({ query: `DROP DATABASE IF EXISTS ${db2}` }));
  await Promise.all([migrate(c, db2), migrate(c, db2), migrate(c, db2)]);
  t.equal((await rows(c, `SELECT name FROM system.tables WHERE database = '${db2}'`)).length, TABLES.length);
});

t.test(
  "a flush inserts each table's rows at once (past batchRows too), UTF-8 text intact, an unencodable row dropped alone",
  async (t) => {
    const db = await createTestDatabase(t, url);
    const sink = createAnalyticsSink({ ...sinkOptions(t, db), batchRows: 4, flushIntervalMs: 60_000 });
    t.teardown(() => sink.close());
    await sink.start();
    const texts = [
      'plain',
      'Ünïcödé ✓',
      'emoji 🔌⚡',
      'quote " backslash \\ newline \n tab \t',
      '\u0000 nul and \u2028 separator',
    ];
    for (let i = 0; i < 11; i++)
      sink.write('ocpp_events', {
        ts: 1_700_000_000_000 + i,
        cp_id: `CP-${i}`,
        kind: 'k',
        action: 'A',
        payload: texts[i % texts.length],
      });
    const hostile = {
      toString() {
        throw new Error('no string for you');
      },
    };
    t.equal(
      sink.write('ocpp_events', { cp_id: 'bad', payload: hostile as never }),
      false,
      'a value whose String() throws: that row dropped',
    );
    await sink.flush();
    t.same(sink.stats(), { buffered: 0, written: 11, spooled: 0, dropped: 1, replayed: 0, failures: 0, refused: 0 });
    const got = await rows<{ cp_id: string; payload: string }>(
      client(),
      `SELECT cp_id, payload FROM ${db}.ocpp_events ORDER BY ts, ts_ms`,
    );
    t.same(
      got,
      Array.from({ length: 11 }, (_, i) => ({ cp_id: `CP-${i}`, payload: texts[i % texts.length] })),
    );
  },
);

t.test('many flushes through reused buffers: every row arrives once and intact', async (t) => {
  // The sink hands a flushed buffer back for a later flush (EncodedRows.recycle): rows written
  // while a flush is in flight, and flushes of different sizes, must not overwrite each other.
  const db = await createTestDatabase(t, url);
  const sink = createAnalyticsSink({ ...sinkOptions(t, db), batchRows: 1000, flushIntervalMs: 60_000 });
  t.teardown(() => sink.close());
  await sink.start();
  const payload = (i: number) => `row ${i} ${'x'.repeat(i % 7 === 0 ? 3000 : 40)} ü`;
  let n = 0;
  const flushes: Promise<void>[] = [];
  for (const size of [50, 2000, 10, 5000, 300, 4000, 1, 2500]) {
    for (let k = 0; k < size; k++, n++)
      sink.write('ocpp_events', {
        ts: 1_700_000_000_000 + n,
        cp_id: 'CP-R',
        kind: 'k',
        action: 'A',
        payload: payload(n),
      });
    flushes.push(sink.flush());
    // Let that flush take its buffer; the next rows are then written while it is being delivered.
    await new Promise((r) => setImmediate(r));
  }
  await Promise.all(flushes);
  await sink.flush();
  t.equal(sink.stats().written, n, `${n} rows written`);
  const got = await rows<{ payload: string }>(client(), `SELECT payload FROM ${db}.ocpp_events ORDER BY ts, ts_ms`);
  t.equal(got.length, n);
  const bad = got.findIndex((r, i) => r.payload !== payload(i));
  t.equal(
    bad,
    -1,
    bad === -1 ? 'every payload intact, in order' : `row ${bad} differs: ${JSON.stringify(got[bad]).slice(0, 80)}`,
  );
});

t.test('write() is synchronous, bounded, and never throws', async (t) => {
  const sink = new ClickHouseSink({ spool: { dir: spoolDir(t) }, maxBufferRows: 3, log: silent });
  const r = sink.write('meter_values', { ts: Date.now(), cp_id: 'x' });
  t.equal(typeof r, 'boolean', 'returns a boolean, not a promise');
  t.equal(r, true);
  t.equal(sink.write('status_events', { cp_id: 'x' }), true);
  t.equal(sink.write('ocpp_events', { cp_id: 'x' }), true);
  t.equal(sink.write('call_errors', { cp_id: 'x' }), false, 'the 4th row exceeds maxBufferRows: dropped');
  t.equal(sink.write('nope' as never, { cp_id: 'x' }), false, 'unknown table: dropped, no throw');
  t.same(sink.stats(), { buffered: 3, written: 0, spooled: 0, dropped: 2, replayed: 0, failures: 0, refused: 0 });
  await sink.close();
  t.equal(sink.stats().spooled, 3, 'close() flushed to the spool');
  t.equal(sink.write('meter_values', { cp_id: 'x' }), false, 'closed: dropped');
});

t.test(
  'spool full: rows are held in memory, not dropped; admit() says no near the bound; stored once there is room',
  async (t) => {
    const dir = spoolDir(t);
    const events: string[] = [];
    const log = {
      debug() {},
      info: (o: { event?: string }) => events.push(String(o.event)),
      warn: (o: { event?: string }) => events.push(String(o.event)),
      error: (o: { event?: string }) => events.push(String(o.event)),
    };
    // 8 KB of spool holds about 13 of these rows; the sink keeps up to 100 in memory.
    const sink = new ClickHouseSink({
      spool: { dir, maxBytes: 8000, fullRescanMs: 20 },
      maxBufferRows: 100,
      flushIntervalMs: 60_000,
      log,
    });
    await sink.start();
    t.teardown(() => sink.close());
    const row = (id: number) => ({
      ts: Date.now(),
      cp_id: `CP${id}`,
      kind: 'test',
      action: 'Test',
      payload: `${id}:${'x'.repeat(500)}`,
    });
    let next = 0;
    for (; next < 40; next++) t.equal(sink.write('ocpp_events', row(next)), true);
    await sink.flush();
    const first = sink.stats();
    t.ok(first.spooled > 0 && first.spooled < 40, `${first.spooled} rows fit in the spool`);
    t.equal(first.buffered, 40 - first.spooled, 'the rest are held in memory');
    t.equal(first.dropped, 0, 'none dropped');
    t.same(events, ['ocr.analytics.spool_full'], 'one warning as holding starts');

    t.equal(sink.admit(), true, 'below nine tenths of maxBufferRows: admitted');
    while (sink.stats().buffered < 90) sink.write('ocpp_events', row(next++));
    t.equal(sink.admit(), false, 'at nine tenths: refused');
    t.equal(sink.stats().refused, 1, 'the refusal is counted');
    t.equal(
      sink.write('call_errors', { ts: Date.now(), cp_id: 'x' }, true),
      false,
      'an incidental row is shed from the mark on',
    );
    // Rows of messages admitted before the mark still have room, up to maxBufferRows.
    while (sink.stats().buffered < 100) t.equal(sink.write('ocpp_events', row(next++)), true);
    t.equal(sink.write('ocpp_events', row(-1)), false, 'beyond maxBufferRows: dropped');
    t.equal(sink.stats().dropped, 2, 'the incidental row and the one beyond the bound');
    await sink.flush();
    t.equal(sink.stats().buffered, 100, 'still nowhere to go: all kept');

    // A replayer elsewhere (another thread or process with ClickHouse) drains the spool.
    const drainer = new Spool({ dir });
    const delivered: string[] = [];
    for (let i = 0; i < 20 && sink.stats().buffered > 0; i++) {
      await sink.spool.roll(); // measures the spool (full)
      const measuredBy = Date.now();
      await drainer.replay(async (_table, rows) => {
        for (const r of rows) delivered.push(String(r.payload).split(':')[0]);
      });
      // The sink's spool trusts that measurement for fullRescanMs (20 ms); then the flush
      // measures again and finds the room the drainer made.
      await until(() => Date.now() - measuredBy > 20, { what: 'fullRescanMs (20 ms) to pass since the roll' });
      await sink.flush();
    }
    t.equal(sink.stats().buffered, 0, 'every held row went to the spool as room came');
    await sink.spool.roll();
    await drainer.replay(async (_table, rows) => {
      for (const r of rows) delivered.push(String(r.payload).split(':')[0]);
    });
    t.same(
      delivered.map(Number).sort((a, b) => a - b),
      Array.from({ length: next }, (_, i) => i),
      'every accepted row stored exactly once',
    );
    t.equal(sink.admit(), true, 'admitting again');
    t.same(events, ['ocr.analytics.spool_full', 'ocr.analytics.held_rows_stored']);
    await drainer.close();
  },
);

t.test('rows still held at close are counted as dropped and logged', async (t) => {
  const events: string[] = [];
  const log = { debug() {}, info() {}, warn() {}, error: (o: { event?: string }) => events.push(String(o.event)) };
  const sink = new ClickHouseSink({ spool: { dir: spoolDir(t), maxBytes: 1000 }, flushIntervalMs: 60_000, log });
  await sink.start();
  for (let i = 0; i < 20; i++) sink.write('ocpp_events', { ts: Date.now(), cp_id: `CP${i}`, payload: 'y'.repeat(200) });
  await sink.close();
  const s = sink.stats();
  t.ok(s.spooled > 0 && s.spooled < 20);
  t.same([s.buffered, s.dropped], [0, 20 - s.spooled], 'what the spool did not take is lost at close, and counted');
  t.same(events, ['ocr.analytics.held_rows_lost']);
});

t.test('a sink without ClickHouse spools; a later sink with ClickHouse replays it', async (t) => {
  const db = await createTestDatabase(t, url);
  const dir = spoolDir(t);
  const local = createAnalyticsSink({ spoolDir: dir, log: silent });
  t.equal(local.hasClickHouse, false);
  await local.start();
  for (let i = 0; i < 30; i++)
    t.equal(local.write('meter_values', { ts: Date.now(), cp_id: `CP${i}`, value: i }), true);
  await local.close();
  t.equal(local.stats().spooled, 30);
  t.ok(
    spoolFiles(dir).some((n) => n.endsWith('.ndjson')),
    'closed segment on disk',
  );

  const remote = createAnalyticsSink(sinkOptions(t, db, { spool: { dir } }));
  t.teardown(() => remote.close());
  await remote.start(); // migrates, then starts replaying in the background
  const c = client();
  await eventually('30 replayed rows', async () => (await count(c, `${db}.meter_values`)) === 30);
  const [s] = await rows<{ s: number }>(c, `SELECT sum(value) AS s FROM ${db}.meter_values`);
  t.equal(s.s, (29 * 30) / 2);
  await eventually('replayed counter', async () => remote.stats().replayed === 30);
  t.same(spoolFiles(dir), [], 'spool empty');
});

t.test('fault injection: ClickHouse down, rows spool; back up, rows arrive', async (t) => {
  const ch = await startClickHouse();
  t.teardown(() => ch.stop({ signal: 'SIGKILL', removeDir: true }));
  const c = client(ch.url);
  const dir = spoolDir(t);
  const db = 'ocr_fault';
  const sink = createAnalyticsSink(
    sinkOptions(t, db, { clickhouse: { url: ch.url, database: db, requestTimeoutMs: 2000 }, spool: { dir } }),
  );
  t.teardown(() => sink.close());
  await sink.start();
  for (let i = 0; i < 10; i++) sink.write('status_events', { ts: Date.now(), cp_id: `up${i}`, status: 'Available' });
  await sink.flush();
  t.equal(sink.stats().written, 10, 'healthy: straight to ClickHouse');

  await ch.stop({ signal: 'SIGKILL' });
  // A second sink starting during the outage: its migration fails, start() still resolves.
  const late = createAnalyticsSink(
    sinkOptions(t, 'ocr_fault_late', {
      clickhouse: { url: ch.url, database: 'ocr_fault_late', requestTimeoutMs: 2000 },
      spool: { dir: spoolDir(t) },
    }),
  );
  t.teardown(() => late.close());
  await late.start();
  t.ok(late.stats().failures >= 1, 'failed migration counted');

  for (let i = 0; i < 50; i++) {
    const r = sink.write('status_events', { ts: Date.now(), cp_id: `down${i}`, status: 'Unavailable' });
    t.equal(r, true);
  }
  for (let i = 0; i < 7; i++) late.write('call_errors', { ts: Date.now(), cp_id: `late${i}`, direction: 'out' });
  await Promise.all([sink.flush(), late.flush()]);
  t.equal(sink.stats().spooled, 50, 'refused batch went to the spool');
  t.ok(sink.stats().failures >= 1);
  t.equal(late.stats().spooled, 7, 'unmigrated sink spools');
  t.ok(spoolFiles(dir).length > 0, 'spool has segments');

  await ch.restart();
  await eventually('60 rows after recovery', async () => (await count(c, `${db}.status_events`)) === 60);
  await eventually('late sink migrated and replayed', async () => (await count(c, 'ocr_fault_late.call_errors')) === 7);
  await eventually('spool drained', async () => sink.stats().replayed === 50 && spoolFiles(dir).length === 0);
  t.equal(sink.stats().dropped, 0, 'nothing lost');
  const down = await rows<{ n: string }>(
    c,
    `SELECT count() AS n FROM ${db}.status_events WHERE status = 'Unavailable'`,
  );
  t.equal(Number(down[0].n), 50);
});

t.test('a failed migrate does not prevent start (nothing listening)', async (t) => {
  const port = await freePort();
  const sink = createAnalyticsSink(
    sinkOptions(t, 'ocr_nowhere', {
      clickhouse: { url: `http://127.0.0.1:${port}`, database: 'ocr_nowhere', requestTimeoutMs: 500 },
    }),
  );
  await sink.start();
  t.equal(sink.write('ocpp_events', { cp_id: 'x', action: 'Heartbeat' }), true);
  await sink.close();
  t.match(sink.stats(), { spooled: 1, dropped: 0 });
  t.ok(sink.stats().failures >= 1);
});
