/**
 * Test-side access to the shared throwaway services, and per-test isolation.
 *
 * Owns: reading OCR_TEST_REDIS_URL / OCR_TEST_CLICKHOUSE_URL (set by test/run.ts, which
 * `npm test` runs), unique names for key prefixes and databases, and per-test ClickHouse
 * databases dropped in teardown. Must not: skip a test when a service is missing (STYLE.md
 * §7: a missing service is a failure that says how to fix it), flush a shared server, or
 * touch the default ports.
 *
 * Isolation without FLUSHALL: every test uses its own key prefix or database from
 * uniqueName(), so tap can run files in parallel against one server.
 */
import { createClient, ClickHouseLogLevel } from '@clickhouse/client';
import { randomBytes } from 'node:crypto';
import { startClickHouse, startRedis, REDIS_INSTALL_HINT, CLICKHOUSE_INSTALL_HINT } from '../services/index.js';

/** The part of a tap Test these helpers use (structural, so any tap version fits). */
export interface TestLike {
  readonly name?: string;
  teardown(fn: () => unknown): void;
}

function missing(t: TestLike, envVar: string, server: string, hint: string): Error {
  const err = new Error(
    `Test "${t.name ?? '?'}" needs ${server}, but ${envVar} is not set. Run the tests through \`npm test\` ` +
      `(node --import tsx test/run.ts [files…]), which starts a throwaway ${server} and sets it. ` +
      `If npm test reported that ${server} is missing, install it: ${hint}`,
  );
  (err as Error & { code: string }).code = 'OCR_TEST_SERVICE_MISSING';
  return err;
}

/** URL of the run's Redis. Throws (failing the test, never skipping it) when unset. */
export function redisUrl(t: TestLike): string {
  const url = process.env.OCR_TEST_REDIS_URL;
  if (!url) throw missing(t, 'OCR_TEST_REDIS_URL', 'redis-server', REDIS_INSTALL_HINT);
  return url;
}

/** URL of the run's ClickHouse (HTTP). Throws (failing the test, never skipping it) when unset. */
export function clickhouseUrl(t: TestLike): string {
  const url = process.env.OCR_TEST_CLICKHOUSE_URL;
  if (!url) throw missing(t, 'OCR_TEST_CLICKHOUSE_URL', 'clickhouse-server', CLICKHOUSE_INSTALL_HINT);
  return url;
}

/**
 * The run's Redis when OCR_TEST_REDIS_URL is set, else a throwaway one for this test
 * (stopped in teardown), so a file also runs standalone with `npx tap <file>`.
 */
export async function useRedis(t: TestLike): Promise<string> {
  const url = process.env.OCR_TEST_REDIS_URL;
  if (url) return url;
  const svc = await startRedis();
  t.teardown(() => svc.stop({ removeDir: true }));
  return svc.url;
}

/** Like useRedis, for ClickHouse. */
export async function useClickHouse(t: TestLike): Promise<string> {
  const url = process.env.OCR_TEST_CLICKHOUSE_URL;
  if (url) return url;
  const svc = await startClickHouse();
  t.teardown(() => svc.stop({ signal: 'SIGKILL', removeDir: true }));
  return svc.url;
}

let counter = 0;

/**
 * A name unique across parallel test processes: `<prefix>_<pid>_<n>_<random>`. Valid as a
 * ClickHouse identifier and inside a Redis key when `prefix` is [A-Za-z0-9_]+.
 */
export function uniqueName(prefix = 'ocr_test'): string {
  return `${prefix}_${process.pid}_${++counter}_${randomBytes(3).toString('hex')}`;
}

/** Creates a fresh database on the ClickHouse at `url`, dropped in t.teardown. Returns its name. */
export async function createTestDatabase(t: TestLike, url: string): Promise<string> {
  const name = uniqueName('ocr_test');
  const client = createClient({ url, log: { level: ClickHouseLogLevel.OFF } });
  await client.command({ query: `CREATE DATABASE ${name}` });
  t.teardown(async () => {
    try {
      await client.command({ query: `DROP DATABASE IF EXISTS ${name}` });
    } finally {
      await client.close();
    }
  });
  return name;
}
