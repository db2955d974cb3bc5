/**
 * micro/analytics-write: the analytics sink's cost per row, on its own: `sink.write()` of the
 * rows a 10-value MeterValues makes (core plugin's meterRow shape, 100 chargers taking turns),
 * encoded into the table buffer, flushed to a local spool every `--flush` rows like the timer
 * would. What the encoder (core/analytics/schema.ts rowEncoder) and the buffer
 * (core/analytics/row-buffer.ts EncodedRows) cost per row, without the pipeline around them.
 *
 *   node --import tsx bench/micro/analytics-write.ts [--rows=500000] [--rounds=5] [--flush=5000] [--table=meter_values|status_events]
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof --import tsx bench/micro/analytics-write.ts
 *
 * Prints ns per row (wall and CPU) per round; the first round includes warm-up (JIT). Caches
 * are hot here, so a change that saves instructions shows; the cold-cache cost of k = 1 in the
 * e2e matrix does not (bench/RESULTS.md, "One in flight per charger").
 *
 * Owns: nothing the product uses. Must not: stand in for an end-to-end figure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAnalyticsSink } from '../../core/analytics/clickhouse-sink.js';
import type { AnalyticsRow } from '../../core/analytics/sink.js';

const opts = { rows: 500_000, rounds: 5, flush: 5000, table: 'meter_values' as 'meter_values' | 'status_events' };
for (const a of process.argv.slice(2)) {
  const m = /^--(rows|rounds|flush|table)=(.+)$/.exec(a);
  if (!m) throw new Error(`unknown argument ${a}`);
  if (m[1] === 'table') {
    if (m[2] !== 'meter_values' && m[2] !== 'status_events')
      throw new Error('--table must be meter_values or status_events');
    opts.table = m[2];
  } else
    opts[m[1] as 'rows' | 'rounds' | 'flush'] = Math.max(
      1,
      Math.min(Number(m[2]) || 1, m[1] === 'rounds' ? 20 : 5_000_000),
    );
}

const dir = mkdtempSync(join(tmpdir(), 'ocr-micro-'));
const sink = createAnalyticsSink({
  spoolDir: join(dir, 'spool'),
  nodeId: 'micro',
  maxBufferRows: opts.flush * 2,
  batchRows: opts.flush,
  flushIntervalMs: 3_600_000,
});

// The 10 values of bench/lib/ocpp-payloads.ts's MeterValues, as plugins/core/handlers/meter-values.ts maps them.
const SAMPLE: Array<[string, string, string, number]> = [
  ['Energy.Active.Import.Register', '', 'Wh', 123456.7],
  ['Power.Active.Import', '', 'W', 7200],
  ['Current.Import', 'L1', 'A', 31.9],
  ['Current.Import', 'L2', 'A', 32.1],
  ['Current.Import', 'L3', 'A', 31.7],
  ['Voltage', 'L1-N', 'V', 230.4],
  ['Voltage', 'L2-N', 'V', 229.8],
  ['Voltage', 'L3-N', 'V', 231.1],
  ['SoC', '', 'Percent', 57],
  ['Temperature', '', 'Celsius', 41.5],
];
const CHARGERS = 100;
const cpIds = Array.from({ length: CHARGERS }, (_, i) => `CP-${String(i).padStart(6, '0')}`);

function meterRows(n: number, t: number): AnalyticsRow[] {
  const cp = cpIds[n % CHARGERS];
  return SAMPLE.map(([measurand, phase, unit, value], i) => ({
    ts: t,
    received_at: t + 3,
    cp_id: cp,
    ocpp_version: '1.6',
    node_id: 'micro',
    evse_id: 1,
    connector_id: 1,
    transaction_id: String(1000 + (n % CHARGERS)),
    measurand,
    phase,
    location: 'Outlet',
    context: 'Sample.Periodic',
    unit,
    value: value + (n % 7) * 0.1 + i,
  }));
}
function statusRows(n: number, t: number): AnalyticsRow[] {
  return [
    {
      ts: t,
      received_at: t + 3,
      cp_id: cpIds[n % CHARGERS],
      ocpp_version: '1.6',
      node_id: 'micro',
      evse_id: 1,
      connector_id: 1,
      status: n % 2 ? 'Charging' : 'Available',
      error_code: 'NoError',
      info: '',
      vendor_id: '',
      vendor_error_code: '',
    },
  ];
}
const make = opts.table === 'meter_values' ? meterRows : statusRows;

process.stdout.write(`${opts.table}: ${opts.rows} rows per round, flush every ${opts.flush}\n`);
for (let round = 0; round < opts.rounds; round++) {
  let written = 0;
  let cpu = 0;
  let wallNs = 0n;
  for (let n = 0; written < opts.rows;) {
    // A flush's worth of rows is built before the clock starts, as the handler builds a row
    // before emit(); the timed part is write() of each and the flush to the spool.
    const rows: AnalyticsRow[] = [];
    for (; rows.length < opts.flush; n++) rows.push(...make(n, 1_790_000_000_000 + n * 10));
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (const r of rows) if (sink.write(opts.table, r)) written++;
    await sink.flush();
    wallNs += process.hrtime.bigint() - t0;
    const c = process.cpuUsage(c0);
    cpu += c.user + c.system;
  }
  process.stdout.write(
    `round ${round}: ${(Number(wallNs) / written).toFixed(0)} ns/row wall, ${((cpu * 1000) / written).toFixed(0)} ns/row CPU\n`,
  );
}
await sink.close();
rmSync(dir, { recursive: true, force: true });
