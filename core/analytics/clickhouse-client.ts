/**
 * ClickHouseWriter: ClickHouse as the analytics sink sees it (one server, one database).
 *
 * Owns: the @clickhouse/client instance and its settings, the schema (`migrate()` until it
 * has succeeded once, and again after the server lost its tables), the two insert forms
 * (JSONEachRow bytes from the row buffer, parsed rows from the spool), which errors mean
 * "this data is refused" rather than "try again later", and the connection's health: the
 * backoff after a failure and one log line per outage. Must not: buffer, hold or spool rows,
 * or run timers (row-buffer.ts and replayer.ts decide what to send and when, and ask
 * `canInsert()` / `backingOff()` first); must not log per failed request.
 */
import { createClient, ClickHouseLogLevel, type ClickHouseClient, type ClickHouseSettings } from '@clickhouse/client';
import { Readable } from 'node:stream';
import type { RouterError } from '../errors.js';
import type { AnalyticsTable, SinkLogger } from './sink.js';
import { assertIdentifier, clickHouseErrorCode, migrate, type ServerFeatures } from './schema.js';
import type { SpoolRow } from './spool.js';

/** Where ClickHouse is. Plain data, so it can be passed to worker threads. */
export interface ClickHouseConnectionOptions {
  /**
   * HTTP interface, e.g. `http://127.0.0.1:8123`. Absent or empty means no ClickHouse
   * (spool only), so a config section with its url unset can be passed as is.
   * @default undefined
   */
  url?: string | undefined;
  /** @default 'default' */
  username?: string;
  /** @default '' */
  password?: string;
  /**
   * Database holding the analytics tables; created by the migration.
   * @default 'ocpp'
   */
  database?: string;
  /**
   * Per-request timeout. Short, because a slow ClickHouse only delays the spool path.
   * @default 10000
   */
  requestTimeoutMs?: number;
  /** Extra ClickHouse settings sent with every request. @default {} */
  settings?: ClickHouseSettings;
}

const DEFAULTS = {
  username: 'default',
  password: '',
  database: 'ocpp',
  requestTimeoutMs: 10_000,
} as const;

/**
 * The database `connection` names (its default when absent), checked: it is spliced into
 * SQL. A sink checks it even when it has no url, so a bad name fails at boot either way.
 */
export function analyticsDatabase(connection: ClickHouseConnectionOptions | undefined): string {
  return assertIdentifier(connection?.database ?? DEFAULTS.database);
}

// Server error codes meaning "this data is refused" rather than "try again later":
// 6 CANNOT_PARSE_TEXT, 25/26/27 CANNOT_PARSE_*, 38/41 CANNOT_PARSE_DATE(TIME),
// 53 TYPE_MISMATCH, 69 ARGUMENT_OUT_OF_BOUND, 70 CANNOT_CONVERT_TYPE,
// 72 CANNOT_PARSE_NUMBER, 117 INCORRECT_DATA. Retrying them would block the spool forever.
const PERMANENT_CODES = new Set([6, 25, 26, 27, 38, 41, 53, 69, 70, 72, 117]);
// 60 UNKNOWN_TABLE, 81 UNKNOWN_DATABASE: the tables are gone (a fresh server); migrate again.
const SCHEMA_GONE_CODES = new Set([60, 81]);

/** @internal Whether retrying `err` can never succeed (the data, not the server, is the problem). */
export function isPermanentInsertError(err: unknown): boolean {
  if ((err as RouterError | null)?.details?.permanent === true) return true;
  return PERMANENT_CODES.has(clickHouseErrorCode(err) ?? -1);
}

export interface ClickHouseWriterOptions {
  /** Where to connect; `url` is required here (no url means no writer). */
  connection: ClickHouseConnectionOptions & { url: string };
  /** The analytics database, from analyticsDatabase(). */
  database: string;
  /** First delay after a failure; doubles per failure up to backoffMaxMs. */
  backoffMinMs: number;
  backoffMaxMs: number;
  log: SinkLogger;
}

export class ClickHouseWriter {
  readonly #client: ClickHouseClient;
  readonly #database: string;
  readonly #backoffMinMs: number;
  readonly #backoffMaxMs: number;
  readonly #log: SinkLogger;
  #migrated = false;
  #features: ServerFeatures | undefined;
  #backoffMs = 0;
  #retryAt = 0;
  #healthy = true;
  /** Failed inserts, replays and migrations since the writer was made (SinkStats.failures). */
  failures = 0;

  constructor(opts: ClickHouseWriterOptions) {
    const ch = opts.connection;
    this.#database = opts.database;
    this.#backoffMinMs = opts.backoffMinMs;
    this.#backoffMaxMs = opts.backoffMaxMs;
    this.#log = opts.log;
    this.#client = createClient({
      url: ch.url,
      username: ch.username ?? DEFAULTS.username,
      password: ch.password ?? DEFAULTS.password,
      request_timeout: ch.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
      application: 'ocpp-router',
      // The client logs every failed request at ERROR; during an outage that is one line
      // per flush. fail() logs state changes instead.
      log: { level: ClickHouseLogLevel.OFF },
      clickhouse_settings: {
        // Rows from an older spool may lack columns (defaults fill them); a table that
        // lacks a column must not refuse the whole batch.
        input_format_skip_unknown_fields: 1,
        ...ch.settings,
      },
    });
  }

  /** Whether the schema is in place: migrate() succeeded and no insert found it gone since. */
  get migrated(): boolean {
    return this.#migrated;
  }

  /** What migrate() detected about the server, once it succeeded. */
  get features(): ServerFeatures | undefined {
    return this.#features;
  }

  /** Whether the last failure's backoff still runs: nothing should be sent until it ends. */
  backingOff(): boolean {
    return Date.now() < this.#retryAt;
  }

  /** Whether an insert may be tried now: the schema is in place and no backoff runs. */
  canInsert(): boolean {
    return this.#migrated && Date.now() >= this.#retryAt;
  }

  /** Creates or completes the schema (schema.ts migrate()); rejects when that fails. */
  async migrate(): Promise<void> {
    this.#features = await migrate(this.#client, this.#database);
    this.#migrated = true;
    this.#log.info(
      {
        event: 'ocr.analytics.migrated',
        database: this.#database,
        version: this.#features.version,
        lowCardinality: this.#features.lowCardinality,
      },
      'analytics schema ready',
    );
  }

  /** Inserts JSONEachRow bytes as they are (the client's insert() would stringify objects). */
  async insertEncoded(table: AnalyticsTable, bytes: Uint8Array): Promise<void> {
    try {
      const res = await this.#client.exec({
        query: `INSERT INTO ${this.#database}.${table} FORMAT JSONEachRow`,
        values: Readable.from([bytes]),
      });
      res.stream.resume(); // the (empty) answer must be read for the socket to be reused
      await new Promise<void>((resolve, reject) => {
        res.stream.once('end', resolve).once('close', resolve).once('error', reject);
      });
    } catch (err) {
      if (SCHEMA_GONE_CODES.has(clickHouseErrorCode(err) ?? -1)) this.#migrated = false;
      throw err;
    }
  }

  /** Inserts rows read back from the spool. */
  async insertRows(table: AnalyticsTable, values: ReadonlyArray<SpoolRow>): Promise<void> {
    try {
      await this.#client.insert({
        table: `${this.#database}.${table}`,
        values: values as Array<Record<string, unknown>>,
        format: 'JSONEachRow',
      });
    } catch (err) {
      // A server that lost its tables (new data directory) is healed by migrating again.
      if (SCHEMA_GONE_CODES.has(clickHouseErrorCode(err) ?? -1)) this.#migrated = false;
      throw err;
    }
  }

  /** Records a success: the backoff ends, and an outage is logged as over. */
  succeed(): void {
    this.#backoffMs = 0;
    this.#retryAt = 0;
    if (!this.#healthy) {
      this.#healthy = true;
      this.#log.info({ event: 'ocr.analytics.clickhouse_recovered' }, 'ClickHouse reachable again');
    }
  }

  /** Records a failure: counted, and unless the data itself was refused, the backoff grows. */
  fail(op: 'insert' | 'replay' | 'migrate', err: unknown): void {
    this.failures++;
    if (op !== 'migrate' && isPermanentInsertError(err)) {
      // The server is up and refuses this data; backing off would only delay good rows.
      this.#log.error({ event: 'ocr.analytics.insert_refused', op, err }, 'ClickHouse refused analytics rows');
      return;
    }
    this.#backoffMs = this.#backoffMs === 0 ? this.#backoffMinMs : Math.min(this.#backoffMs * 2, this.#backoffMaxMs);
    this.#retryAt = Date.now() + this.#backoffMs;
    // One warning per outage, not one per attempt.
    if (this.#healthy) {
      this.#healthy = false;
      this.#log.warn(
        { event: 'ocr.analytics.clickhouse_unavailable', op, err, retryInMs: this.#backoffMs },
        'ClickHouse unavailable; spooling analytics rows',
      );
    } else {
      this.#log.debug(
        { event: 'ocr.analytics.clickhouse_unavailable', op, err, retryInMs: this.#backoffMs },
        'ClickHouse still unavailable',
      );
    }
  }

  close(): Promise<void> {
    return this.#client.close();
  }
}
