/**
 * Unit tests of the row encoder (no ClickHouse: test/integration/clickhouse/sink.test.ts reads
 * encoded rows back from a real server). Here every line the encoder writes is compared with
 * the line a plain, obviously right encoder makes (a typed object in column order through
 * JSON.stringify), over row sequences built to hit the encoder's reuse of the last row's text.
 */
import t from 'tap';
import { COLUMNS, rowEncoder, TABLES, type ColumnKind } from './schema.js';
import type { AnalyticsRow, AnalyticsTable } from './sink.js';

const MAX_DT = 0xffffffff;

function epochMs(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (typeof v === 'string' && v !== '') {
    const n = Number(v);
    if (Number.isFinite(n)) return n;
    const d = Date.parse(v);
    return Number.isNaN(d) ? undefined : d;
  }
  return undefined;
}
function text(v: unknown): string {
  return typeof v === 'string' ? v : v === null || v === undefined ? '' : String(v);
}
function int(v: unknown, max: number): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' || typeof v === 'boolean' ? Number(v) : NaN;
  return !Number.isFinite(n) || n <= 0 ? 0 : n >= max ? max : Math.trunc(n);
}
function coerce(kind: ColumnKind, v: unknown): unknown {
  switch (kind) {
    case 'string':
    case 'lcstring':
      return text(v);
    case 'uint16':
      return int(v, 0xffff);
    case 'uint32':
      return int(v, 0xffffffff);
    case 'float64': {
      const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
      return Number.isFinite(n) ? n : 0;
    }
    case 'datetime': {
      const ms = epochMs(v);
      return ms === undefined || ms < 0 ? 0 : Math.min(Math.floor(ms / 1000), MAX_DT);
    }
  }
}

/** The specification: what rowEncoder's doc comment promises, written the slow way. */
function reference(table: AnalyticsTable, row: AnalyticsRow, nowMs: number, nodeId: string): string {
  const recv = epochMs(row.received_at) ?? nowMs;
  const ts = epochMs(row.ts) ?? recv;
  const out: Record<string, unknown> = {};
  for (const [name, kind] of Object.entries(COLUMNS[table])) {
    if (name === 'ts') out.ts = ts < 0 ? 0 : Math.min(Math.floor(ts / 1000), MAX_DT);
    else if (name === 'ts_ms') out.ts_ms = ts < 0 ? 0 : Math.floor(ts - Math.floor(ts / 1000) * 1000);
    else if (name === 'received_at') out.received_at = recv < 0 ? 0 : Math.min(Math.floor(recv / 1000), MAX_DT);
    else if (name === 'node_id')
      out.node_id = text(
        row.node_id === undefined || row.node_id === null || row.node_id === '' ? nodeId : row.node_id,
      );
    else out[name] = coerce(kind, row[name]);
  }
  return `${JSON.stringify(out)}\n`;
}

/** A deterministic pseudo-random sequence (mulberry32), so a failure names its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

t.test('every line equals the plain encoding, however rows repeat or change', async (t) => {
  let counter = 0;
  // An object whose String() changes each time: equal by identity, never by text.
  const shifty = { toString: () => `shifty-${++counter}` };
  const pool: unknown[] = [
    undefined,
    null,
    '',
    'CP-1',
    'CP-2',
    'Wh',
    'ünï "q" \\ \n',
    '🔌',
    '\u2028',
    0,
    -0,
    1,
    7,
    1.5,
    -3.25,
    1e21,
    70000,
    5e9,
    '12',
    ' 3 ',
    'NaN',
    NaN,
    Infinity,
    true,
    shifty,
    1_700_000_123_456,
    '2026-11-21T10:00:00.123Z',
    -5,
  ];
  for (const table of TABLES) {
    const names = Object.keys(COLUMNS[table]);
    for (let seed = 1; seed <= 20; seed++) {
      const rand = rng(seed * 31 + table.length);
      const encode = rowEncoder(table);
      let row: AnalyticsRow = {};
      let bad = '';
      for (let i = 0; i < 400 && bad === ''; i++) {
        // Mostly the last row again with a few columns changed, like the rows of one message.
        row = rand() < 0.15 ? {} : { ...row };
        const changes = Math.floor(rand() * 4);
        for (let c = 0; c < changes; c++)
          row[names[Math.floor(rand() * names.length)]] = pool[Math.floor(rand() * pool.length)] as never;
        const nowMs = rand() < 0.9 ? 1_790_000_000_000 : 1_790_000_001_999;
        const nodeId = rand() < 0.9 ? 'node-a' : 'node-b';
        counter = 0;
        const got = encode(row, nowMs, nodeId);
        counter = 0;
        const want = reference(table, row, nowMs, nodeId);
        if (got !== want) bad = `row ${i}: ${JSON.stringify(row)}\n got ${got} want ${want}`;
      }
      t.equal(bad, '', `${table}, seed ${seed}: 400 rows`);
    }
  }
});

t.test('the rows of one MeterValues: shared columns, every line whole and parseable', async (t) => {
  const encode = rowEncoder('meter_values');
  const base = {
    ts: 1_790_000_000_250,
    received_at: 1_790_000_000_300,
    cp_id: 'CP-9',
    ocpp_version: '1.6',
    evse_id: 1,
    connector_id: 1,
    transaction_id: '42',
  };
  const lines = ['Energy.Active.Import.Register', 'Power.Active.Import', 'Voltage', 'Voltage'].map((measurand, i) =>
    encode({ ...base, measurand, unit: i === 0 ? 'Wh' : 'W', value: 100 + i }, 0, 'n1'),
  );
  const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.same(
    parsed.map((p) => [p.measurand, p.unit, p.value]),
    [
      ['Energy.Active.Import.Register', 'Wh', 100],
      ['Power.Active.Import', 'W', 101],
      ['Voltage', 'W', 102],
      ['Voltage', 'W', 103],
    ],
  );
  for (const p of parsed)
    t.match(p, {
      ts: 1_790_000_000,
      ts_ms: 250,
      received_at: 1_790_000_000,
      cp_id: 'CP-9',
      node_id: 'n1',
      transaction_id: '42',
    });
  t.ok(
    lines.every((l) => l.endsWith('}\n') && l.indexOf('\n') === l.length - 1),
    'one line each',
  );
  t.equal(
    encode({ ...base, measurand: 'Voltage', unit: 'W', value: 103 }, 0, 'n1'),
    lines[3],
    'the same row twice: the same line',
  );
});

t.test('a value whose String() throws fails that row only; the next row is whole', async (t) => {
  const encode = rowEncoder('meter_values');
  const row = {
    ts: 1_790_000_000_000,
    cp_id: 'CP-1',
    transaction_id: 't1',
    measurand: 'Voltage',
    unit: 'V',
    value: 230,
  };
  const first = encode(row, 0, 'n');
  const hostile = {
    toString() {
      throw new Error('no string for you');
    },
  };
  t.throws(() => encode({ ...row, cp_id: 'CP-2', transaction_id: hostile as never }, 0, 'n'), /no string for you/);
  // cp_id was encoded as CP-2 before the throw, transaction_id not: the next CP-2 row with
  // transaction t1 must not reuse the last whole text for t1, which holds CP-1.
  const next = encode({ ...row, cp_id: 'CP-2' }, 0, 'n');
  t.equal(next, reference('meter_values', { ...row, cp_id: 'CP-2' }, 0, 'n'));
  t.match(next, /"cp_id":"CP-2"/);
  t.equal(encode(row, 0, 'n'), first);
});
