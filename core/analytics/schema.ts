/**
 * ClickHouse schema of the analytics tables, and the mapping of an AnalyticsRow onto it.
 *
 * Owns: the column list of every table (`COLUMNS`, the one source of truth: DDL, defaults
 * and type coercion are all derived from it), `migrate()` (idempotent CREATE / ADD COLUMN),
 * and `rowEncoder()` (row → JSONEachRow line with every column present and typed).
 * Must not: buffer, retry or talk to the spool (row-buffer.ts, replayer.ts). Must not use
 * anything ClickHouse 18.16 lacks unless detected at runtime: no DateTime64, no TTL, no
 * `ADD COLUMN IF NOT EXISTS`, and LowCardinality only when the server supports it without
 * experimental flags.
 *
 * Time columns: `ts` is the event time and arrives as epoch milliseconds. DateTime has
 * second resolution (DateTime64 is newer than 18.16), so the millisecond part goes to
 * `ts_ms`. Both DateTime columns are inserted as integer epoch seconds, which ClickHouse
 * parses as a Unix timestamp: no time-zone dependence, unlike 'YYYY-MM-DD hh:mm:ss' text.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import type { AnalyticsRow, AnalyticsTable } from './sink.js';

/**
 * Logical column kinds. `lcstring` is a short, highly repeated string (status, unit,
 * measurand…): `LowCardinality(String)` where the server supports it, `String` otherwise.
 * Both read back as strings, so callers never see the difference.
 */
export type ColumnKind = 'string' | 'lcstring' | 'uint16' | 'uint32' | 'float64' | 'datetime';

export type TableColumns = Readonly<Record<string, ColumnKind>>;

/** Columns every table starts with, in this order. */
const COMMON = {
  ts: 'datetime',
  ts_ms: 'uint16',
  received_at: 'datetime',
  cp_id: 'string',
  ocpp_version: 'lcstring',
  node_id: 'lcstring',
} as const satisfies TableColumns;

/**
 * Every table's columns, name → kind, in DDL order. New columns are appended at the end
 * of a table; `migrate()` adds them to existing tables.
 */
export const COLUMNS: Readonly<Record<AnalyticsTable, TableColumns>> = Object.freeze({
  meter_values: Object.freeze({
    ...COMMON,
    evse_id: 'uint32',
    connector_id: 'uint32',
    transaction_id: 'string',
    measurand: 'lcstring',
    phase: 'lcstring',
    location: 'lcstring',
    context: 'lcstring',
    unit: 'lcstring',
    value: 'float64',
  }),
  status_events: Object.freeze({
    ...COMMON,
    evse_id: 'uint32',
    connector_id: 'uint32',
    status: 'lcstring',
    error_code: 'lcstring',
    info: 'string',
    vendor_id: 'string',
    vendor_error_code: 'string',
  }),
  ocpp_events: Object.freeze({
    ...COMMON,
    kind: 'lcstring',
    action: 'lcstring',
    payload: 'string',
  }),
  call_errors: Object.freeze({
    ...COMMON,
    direction: 'lcstring',
    action: 'lcstring',
    message_id: 'string',
    error_code: 'lcstring',
    error_description: 'string',
    ref: 'string',
  }),
});

/** The analytics tables, in a stable order. */
export const TABLES = Object.freeze(Object.keys(COLUMNS) as AnalyticsTable[]);

/** @internal ORDER BY of each table: one charge point's history is contiguous on disk. */
const ORDER_BY: Readonly<Record<AnalyticsTable, string>> = {
  meter_values: '(cp_id, ts)',
  status_events: '(cp_id, ts)',
  ocpp_events: '(cp_id, ts)',
  call_errors: '(cp_id, ts)',
};

/** What the connected server can do; decided once per `migrate()`. */
export interface ServerFeatures {
  /** e.g. "18.16.1". */
  version: string;
  lowCardinality: boolean;
}

export function isAnalyticsTable(name: string): name is AnalyticsTable {
  return Object.prototype.hasOwnProperty.call(COLUMNS, name);
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** @internal Throws on names that would need quoting; database names come from config. */
export function assertIdentifier(name: string): string {
  if (!IDENT.test(name)) throw new TypeError(`Invalid ClickHouse identifier: ${JSON.stringify(name)}`);
  return name;
}

export function columnType(kind: ColumnKind, features: Pick<ServerFeatures, 'lowCardinality'>): string {
  switch (kind) {
    case 'string':
      return 'String';
    case 'lcstring':
      return features.lowCardinality ? 'LowCardinality(String)' : 'String';
    case 'uint16':
      return 'UInt16';
    case 'uint32':
      return 'UInt32';
    case 'float64':
      return 'Float64';
    case 'datetime':
      return 'DateTime';
  }
}

/** CREATE TABLE IF NOT EXISTS for one table. */
export function createTableSql(
  database: string,
  table: AnalyticsTable,
  features: Pick<ServerFeatures, 'lowCardinality'>,
): string {
  const cols = Object.entries(COLUMNS[table]).map(([name, kind]) => `  ${name} ${columnType(kind, features)}`);
  return (
    `CREATE TABLE IF NOT EXISTS ${assertIdentifier(database)}.${table} (\n${cols.join(',\n')}\n)\n` +
    // Monthly partitions keep the part count low at our insert rate and let an operator
    // drop old months with ALTER TABLE … DROP PARTITION (18.16 has no TTL).
    `ENGINE = MergeTree() PARTITION BY toYYYYMM(ts) ORDER BY ${ORDER_BY[table]}`
  );
}

/**
 * Detects optional server features. LowCardinality exists in 18.x only behind
 * `allow_experimental_low_cardinality_type` (0 by default on 18.16); from 19.x it is
 * regular. Newer servers list the setting as obsolete with value 1, or not at all.
 */
export async function detectFeatures(client: ClickHouseClient): Promise<ServerFeatures> {
  const rs = await client.query({ query: 'SELECT version() AS v', format: 'JSONEachRow' });
  const [{ v: version }] = await rs.json<{ v: string }>();
  const major = Number.parseInt(version, 10);
  let lowCardinality = major >= 19;
  if (lowCardinality) {
    const s = await client.query({
      query: "SELECT value FROM system.settings WHERE name = 'allow_experimental_low_cardinality_type'",
      format: 'JSONEachRow',
    });
    const rows = await s.json<{ value: string }>();
    if (rows.length > 0 && rows[0].value === '0') lowCardinality = false;
  }
  return { version, lowCardinality };
}

/** @internal Server error code from a ClickHouse error, in both the old and new formats. */
export function clickHouseErrorCode(err: unknown): number | undefined {
  // The client parses `Code: N. DB::Exception: … (NAME)` (newer servers) into `err.code`,
  // but 18.16 answers `Code: N, e.displayText() = DB::Exception: …` which it leaves as a
  // plain Error, so the number is read from the message here.
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^\d+$/.test(code)) return Number(code);
  const m = /\bCode: (\d+)[.,]/.exec(String((err as Error | null)?.message ?? ''));
  return m ? Number(m[1]) : undefined;
}

// Errors meaning that another worker migrating at the same moment won the race, per
// statement kind: 82 DATABASE_ALREADY_EXISTS, 57 TABLE_ALREADY_EXISTS, and for ADD COLUMN
// 15 DUPLICATE_COLUMN, which 18.16 reports as 44 ILLEGAL_COLUMN ("column with this name
// already exists"). 44 also means a bad type, so it only counts with that message.
const RACE = {
  database: (code: number | undefined) => code === 82,
  table: (code: number | undefined) => code === 57,
  column: (code: number | undefined, message: string) =>
    code === 15 || (code === 44 && message.includes('already exists')),
} as const;

async function commandIgnoringRace(
  client: ClickHouseClient,
  query: string,
  isRace: (code: number | undefined, message: string) => boolean,
): Promise<void> {
  try {
    await client.command({ query });
  } catch (err) {
    if (!isRace(clickHouseErrorCode(err), String((err as Error | null)?.message ?? ''))) throw err;
  }
}

/**
 * Creates `database` and every analytics table if absent, and adds columns that `COLUMNS`
 * has and an existing table lacks. Idempotent and safe to run from several workers at once.
 * Never drops or retypes a column: that is an operator's decision.
 */
export async function migrate(client: ClickHouseClient, database: string): Promise<ServerFeatures> {
  assertIdentifier(database);
  const features = await detectFeatures(client);
  await commandIgnoringRace(client, `CREATE DATABASE IF NOT EXISTS ${database}`, RACE.database);
  for (const table of TABLES) {
    await commandIgnoringRace(client, createTableSql(database, table, features), RACE.table);
  }
  // 18.16 has no ADD COLUMN IF NOT EXISTS, so compare with system.columns first.
  // A literal, not {db:String}: query parameters arrived in 19.x. `database` passed
  // assertIdentifier, so it cannot contain a quote.
  const rs = await client.query({
    query: `SELECT table, name FROM system.columns WHERE database = '${database}'`,
    format: 'JSONEachRow',
  });
  const existing = new Set((await rs.json<{ table: string; name: string }>()).map((r) => `${r.table}.${r.name}`));
  for (const table of TABLES) {
    for (const [name, kind] of Object.entries(COLUMNS[table])) {
      if (existing.has(`${table}.${name}`)) continue;
      await commandIgnoringRace(
        client,
        `ALTER TABLE ${database}.${table} ADD COLUMN ${name} ${columnType(kind, features)}`,
        RACE.column,
      );
    }
  }
  return features;
}

const MAX_DATETIME_S = 0xffffffff; // DateTime is UInt32 seconds (until 2106)

function toEpochMs(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (typeof v === 'string' && v !== '') {
    const n = Number(v);
    if (Number.isFinite(n)) return n;
    const parsed = Date.parse(v); // ISO text from a payload timestamp
    return Number.isNaN(parsed) ? undefined : parsed;
  }
  return undefined;
}

function clampInt(v: unknown, max: number): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' || typeof v === 'boolean' ? Number(v) : NaN;
  if (!Number.isFinite(n) || n <= 0) return 0;
  return n >= max ? max : Math.trunc(n);
}

/** Encodes one row as one JSONEachRow line (newline included). See `rowEncoder`. */
export type RowEncoder = (row: AnalyticsRow, nowMs: number, nodeId: string) => string;

/** JSON text of a string column's value; a one-entry cache per column (rows of one message repeat them). */
function strCol(v: unknown, last: [string, string]): string {
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- a column value is a primitive by the sink contract
  const s = typeof v === 'string' ? v : v === null || v === undefined ? '' : String(v);
  if (s === last[0]) return last[1];
  last[0] = s;
  return (last[1] = JSON.stringify(s));
}

/**
 * JSON text of a LowCardinality column's value: the column's last value first (rows of one
 * message repeat unit, location, context), then a bounded map shared by the table's columns
 * (few distinct values).
 */
function lcCol(v: unknown, last: [string, string], cache: Map<string, string>): string {
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- a column value is a primitive by the sink contract
  const s = typeof v === 'string' ? v : v === null || v === undefined ? '' : String(v);
  if (s === last[0]) return last[1];
  let q = cache.get(s);
  if (q === undefined) {
    if (cache.size >= 1024) cache.clear();
    q = JSON.stringify(s);
    cache.set(s, q);
  }
  last[0] = s;
  return (last[1] = q);
}

function float64Col(v: unknown): number {
  // JSON has no NaN/Infinity; a non-numeric reading is stored as 0 rather than rejected,
  // and the raw payload stays available in ocpp_events. String(-0) is "0", like JSON.
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : 0;
}

function dateTimeCol(v: unknown): number {
  const ms = toEpochMs(v);
  return ms === undefined || ms < 0 ? 0 : Math.min(Math.floor(ms / 1000), MAX_DATETIME_S);
}

/**
 * The JSONEachRow encoder of `table`: maps a caller's row onto the table's columns and
 * returns the line ClickHouse takes and the spool stores. Every column is present, in DDL
 * order; missing columns get their default (''/0), values are coerced to the column kind,
 * unknown keys are ignored. `ts` and `received_at` are epoch milliseconds (a numeric or
 * ISO string is accepted); `received_at` defaults to `nowMs` and `ts` to `received_at`;
 * an empty `node_id` becomes `nodeId`. Never throws on a value, except one whose String()
 * throws: a malformed value becomes the default, because one bad row must not sink a
 * batch of 5000 good ones.
 *
 * Why text straight from the row, rather than a typed row object that JSON.stringify
 * serialises at the flush: building the typed object, stringifying it generically and the
 * old-generation GC of row objects kept for up to a flush interval are what made the
 * analytics path expensive. Encoded once, a row is garbage at once and its bytes wait in a
 * buffer (bench/RESULTS.md, "Where the time goes").
 *
 * Why generated code (`new Function`, from COLUMNS only, every name checked against
 * IDENT): a loop over the columns reads `row[name]` with a different key each time, a
 * megamorphic keyed load. The generated function reads `row.cp_id`, `row.value`… at sites
 * of their own, which stay monomorphic for a plugin's row shape.
 *
 * Why the last row's text is reused: the rows of one message repeat their leading columns
 * (time, charger, EVSE, transaction: 9 of 15 for a MeterValues row), so a row starts from
 * the text of the longest run of leading columns equal to the last row's and encodes only
 * the rest. The text is built as ropes, which V8 flattens and copies natively: cheaper than
 * writing the bytes into the buffer from JS (bench/RESULTS.md, "Analytics rows").
 */
export function rowEncoder(table: AnalyticsTable): RowEncoder {
  const cols = Object.entries(COLUMNS[table]);
  const common = Object.keys(COMMON);
  const lasts: Array<[string, string]> = [];
  const lc = new Map<string, string>();
  const slot = (): number => lasts.push(['', '""']) - 1;
  const reads: string[] = [];
  const matches: string[] = [];
  const cases: string[] = [];
  cols.forEach(([name, kind], i) => {
    assertIdentifier(name);
    if (i < common.length && common[i] !== name) throw new Error(`${table}: column ${i} must be ${common[i]}`);
    const key = JSON.stringify((i === 0 ? '{' : ',') + JSON.stringify(name) + ':');
    // ts, ts_ms and received_at come from tsMsAll and recvMs: one group, case 0.
    if (i === 0) {
      cases.push(`case 0: {
        const tsSec = Math.floor(tsMsAll / 1000);
        const tsS = tsSec < 0 ? 0 : tsSec > MAX ? MAX : tsSec;
        const tsMs = tsMsAll < 0 ? 0 : Math.floor(tsMsAll - tsSec * 1000);
        const recvS = recvMs < 0 ? 0 : Math.min(Math.floor(recvMs / 1000), MAX);
        t = ${key} + tsS; P[0] = t;
        t = t + ${JSON.stringify(',"ts_ms":')} + tsMs; P[1] = t;
        t = t + ${JSON.stringify(',"received_at":')} + recvS; P[2] = t;
      }`);
      return;
    }
    if (i < 3) return;
    let expr: string;
    if (name === 'node_id')
      expr = `lcCol(v${i} === undefined || v${i} === null || v${i} === '' ? nodeId : v${i}, lasts[${slot()}], lc)`;
    else if (kind === 'string') expr = `strCol(v${i}, lasts[${slot()}])`;
    else if (kind === 'lcstring') expr = `lcCol(v${i}, lasts[${slot()}], lc)`;
    else if (kind === 'uint16') expr = `clampInt(v${i}, 0xffff)`;
    else if (kind === 'uint32') expr = `clampInt(v${i}, 0xffffffff)`;
    else if (kind === 'float64') expr = `float64Col(v${i})`;
    else expr = `dateTimeCol(v${i})`;
    reads.push(`const v${i} = row.${name};`);
    matches.push(`if (j === ${i} && v${i} === L[${i}]) j = ${i + 1};`);
    cases.push(`case ${i}: t = t + ${key} + ${expr}; P[${i}] = t; L[${i}] = plain(v${i}) ? v${i} : NOPE;`);
  });
  // Each row starts from the text of the longest run of leading columns whose values are
  // those of the last row (compared as they came, before coercion), and encodes only the
  // rest: the rows of one message repeat time, charger, EVSE and transaction (10 rows per
  // MeterValues). Only strings, numbers, null and undefined count as the same (an object's
  // String() may change): anything else is stored as NOPE, which nothing equals.
  const body = `
    const recvMs = toEpochMs(row.received_at) ?? nowMs;
    const tsMsAll = toEpochMs(row.ts) ?? recvMs;
    ${reads.join('\n    ')}
    let j = tsMsAll === L.ts && recvMs === L.recv && nodeId === L.nodeId ? 3 : 0;
    ${matches.join('\n    ')}
    if (j === ${cols.length}) return P[${cols.length - 1}] + '}\\n';
    let t = '';
    // Reading a character flattens a rope in place (V8): the reused text is then copied as one
    // piece by every later join, not walked node by node for each row (bench/RESULTS.md,
    // "Analytics rows"). Its first character is always '{'.
    if (j > 0 && (t = P[j - 1]).charCodeAt(0) !== 0x7b) j = 0;
    // Until the line is whole, nothing matches: a value whose String() throws leaves P and L
    // half updated, and the next row must not reuse them.
    L.ts = NaN;
    switch (j) {
      ${cases.join('\n      ')}
    }
    L.ts = tsMsAll; L.recv = recvMs; L.nodeId = nodeId;
    return t + '}\\n';`;
  const L: Record<string | number, unknown> = { ts: NaN, recv: NaN, nodeId: undefined };
  const P: string[] = new Array<string>(cols.length).fill('');
  const NOPE = {};
  const plain = (v: unknown): boolean =>
    v === undefined || v === null || typeof v === 'string' || typeof v === 'number';
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- see the doc comment
  const make = new Function(
    'toEpochMs',
    'clampInt',
    'strCol',
    'lcCol',
    'float64Col',
    'dateTimeCol',
    'lasts',
    'lc',
    'MAX',
    'L',
    'P',
    'NOPE',
    'plain',
    `return function encode_${table}(row, nowMs, nodeId) {${body}\n  };`,
  ) as (...deps: unknown[]) => RowEncoder;
  return make(
    toEpochMs,
    clampInt,
    strCol,
    lcCol,
    float64Col,
    dateTimeCol,
    lasts,
    lc,
    MAX_DATETIME_S,
    L,
    P,
    NOPE,
    plain,
  );
}
