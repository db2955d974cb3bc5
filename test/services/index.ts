/**
 * Throwaway services for tests: one import for test/run.ts, helpers and integration tests.
 *
 * Owns: nothing but the re-exports. Must not: start anything at import time.
 */
export {
  startRedis,
  pingRedis,
  REDIS_INSTALL_HINT,
  type RedisOptions,
  type RedisService,
  type StopOptions,
} from './redis.js';
export {
  startClickHouse,
  pingClickHouse,
  CLICKHOUSE_INSTALL_HINT,
  type ClickHouseOptions,
  type ClickHouseService,
} from './clickhouse.js';
export { ServiceUnavailableError, freePort } from './spawn.js';
