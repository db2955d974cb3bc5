/**
 * ClickHouse schema of the analytics tables, and the mapping of an AnalyticsRow onto it.
 *
 * Owns: the column list of every table (`COLUMNS`, the one source of truth: DDL, defaults
 * and type coercion are all derived from it), `migrate()` (idempotent CREATE / ADD COLUMN),
 * and `toInsertRow()` (row → JSONEachRow object with every column present and typed).
 * Must not: buffer, retry or talk to the spool; that is clickhouse-sink.ts. Must not use
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
    case 'string': return 'String';
    case 'lcstring': return features.lowCardinality ? 'LowCardinality(String)' : 'String';
    case 'uint16': return 'UInt16';
    case 'uint32': return 'UInt32';
    case 'float64': return 'Float64';
    case 'datetime': return 'DateTime';
  }
}

/** CREATE TABLE IF NOT EXISTS for one table. */
export function createTableSql(database: string, table: AnalyticsTable, features: Pick<ServerFeatures, 'lowCardinality'>): string {
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
  const [{ v: version }] = (await rs.json()) as Array<{ v: string }>;
  const major = Number.parseInt(version, 10);
  let lowCardinality = major >= 19;
  if (lowCardinality) {
    const s = await client.query({
      query: "SELECT value FROM system.settings WHERE name = 'allow_experimental_low_cardinality_type'",
      format: 'JSONEachRow',
    });
    const rows = (await s.json()) as Array<{ value: string }>;
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
  column: (code: number | undefined, message: string) => code === 15 || (code === 44 && message.includes('already exists')),
} as const;

async function commandIgnoringRace(client: ClickHouseClient, query: string, isRace: (code: number | undefined, message: string) => boolean): Promise<void> {
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
  const existing = new Set(((await rs.json()) as Array<{ table: string; name: string }>).map((r) => `${r.table}.${r.name}`));
  for (const table of TABLES) {
    for (const [name, kind] of Object.entries(COLUMNS[table])) {
      if (existing.has(`${table}.${name}`)) continue;
      await commandIgnoringRace(client, `ALTER TABLE ${database}.${table} ADD COLUMN ${name} ${columnType(kind, features)}`, RACE.column);
    }
  }
  return features;
}

/** A row as sent to ClickHouse: every column of the table, typed. */
export type InsertRow = Record<string, string | number>;

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

/**
 * Maps a caller's row onto `table`'s columns. Missing columns get their default (''/0),
 * values are coerced to the column kind, unknown keys are ignored. `ts` and `received_at`
 * are epoch milliseconds (a numeric or ISO string is accepted); `received_at` defaults to
 * `nowMs` (the sink passes its flush time) and `ts` to `received_at`. Never throws: a malformed value becomes the default,
 * because one bad row must not sink a batch of 5000 good ones.
 */
export function toInsertRow(table: AnalyticsTable, row: AnalyticsRow, nowMs: number): InsertRow {
  const cols = COLUMNS[table];
  const out: InsertRow = {};
  const receivedMs = toEpochMs(row.received_at) ?? nowMs;
  const tsMs = toEpochMs(row.ts) ?? receivedMs;
  for (const name in cols) {
    const kind = cols[name];
    if (name === 'ts') {
      const s = Math.floor(tsMs / 1000);
      out.ts = s < 0 ? 0 : s > MAX_DATETIME_S ? MAX_DATETIME_S : s;
      continue;
    }
    if (name === 'ts_ms') {
      out.ts_ms = tsMs < 0 ? 0 : Math.floor(tsMs - Math.floor(tsMs / 1000) * 1000);
      continue;
    }
    const v = name === 'received_at' ? receivedMs : row[name];
    switch (kind) {
      case 'string':
      case 'lcstring':
        out[name] = v === null || v === undefined ? '' : typeof v === 'string' ? v : String(v);
        break;
      case 'uint16':
        out[name] = clampInt(v, 0xffff);
        break;
      case 'uint32':
        out[name] = clampInt(v, 0xffffffff);
        break;
      case 'float64': {
        // JSON has no NaN/Infinity; a non-numeric reading is stored as 0 rather than
        // rejected, and the raw payload stays available in ocpp_events.
        const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
        out[name] = Number.isFinite(n) ? n : 0;
        break;
      }
      case 'datetime': {
        const ms = toEpochMs(v);
        out[name] = ms === undefined || ms < 0 ? 0 : Math.min(Math.floor(ms / 1000), MAX_DATETIME_S);
        break;
      }
    }
  }
  return out;
}
