/**
 * Logger factory (pino). Owns: log level, base bindings and redaction of secrets.
 * Must not: be used for analytics (emit) or metrics.
 *
 * Redaction by default [ioredis tracing]: credentials, API keys, id tokens. idTag values are
 * personal data (RFID card numbers), so they are redacted wherever they appear in logged
 * payloads.
 */
import { pino, type Logger as PinoLogger } from 'pino';

export interface LogOptions {
  /** @default 'info' */
  level: string;
}

export const REDACT_PATHS = [
  'password',
  '*.password',
  'passwordHash',
  '*.passwordHash',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'apiKey',
  '*.apiKey',
  'key',
  'idTag',
  '*.idTag',
  '*.*.idTag',
  'idToken.idToken',
  '*.idToken.idToken',
  'payload.idTag',
  'payload.idToken',
  'clickhouse.password',
  'redis.url',
];

export function createLogger(opts: LogOptions, bindings: Record<string, unknown> = {}): PinoLogger {
  return pino({
    level: opts.level,
    base: bindings,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

export type { PinoLogger };
