/**
 * Internal error catalog (OCR_ERR_*), fastify-style.
 *
 * Owns: the codes and message templates of errors raised *inside* the router (boot-time
 * contract violations, configuration errors, runtime faults). Each code is documented in
 * docs/errors.md. Must not: produce anything that goes on the OCPP wire. The single bridge
 * to the wire is core/worker/pipeline.ts, which maps anything that is not a CallError to an
 * OCPP `InternalError` with an opaque reference.
 */

export interface RouterError extends Error {
  readonly code: string;
  readonly statusCode?: number;
  details?: Record<string, unknown>;
}

export interface RouterErrorCtor {
  new (...args: unknown[]): RouterError;
  (...args: unknown[]): RouterError;
  readonly code: string;
}

function format(template: string, args: unknown[]): string {
  let i = 0;
  return template.replace(/%s/g, () => String(args[i++]));
}

/**
 * Builds an error constructor with a fixed `code`. The template uses `%s` placeholders,
 * filled in order. The last argument may be `{ cause }`.
 */
export function createError(code: string, template: string, statusCode?: number): RouterErrorCtor {
  function RouterErrorImpl(this: unknown, ...args: unknown[]): RouterError {
    const last = args[args.length - 1] as { cause?: unknown } | undefined;
    const hasCause =
      last !== null &&
      typeof last === 'object' &&
      'cause' in last &&
      args.length > (template.match(/%s/g)?.length ?? 0);
    const err = new Error(format(template, args), hasCause ? { cause: last.cause } : undefined) as Error & {
      code: string;
      statusCode?: number;
    };
    err.name = 'RouterError';
    err.code = code;
    if (statusCode !== undefined) err.statusCode = statusCode;
    Error.captureStackTrace?.(err, RouterErrorImpl);
    return err;
  }
  Object.defineProperty(RouterErrorImpl, 'code', { value: code });
  return RouterErrorImpl as unknown as RouterErrorCtor;
}

export const errors = {
  OCR_ERR_CONFIG_INVALID: createError('OCR_ERR_CONFIG_INVALID', 'Invalid configuration: %s'),
  OCR_ERR_CONFIG_FILE: createError('OCR_ERR_CONFIG_FILE', 'Cannot read configuration file %s: %s'),
  OCR_ERR_PLUGIN_NOT_FOUND: createError('OCR_ERR_PLUGIN_NOT_FOUND', 'Plugin "%s" could not be loaded: %s'),
  OCR_ERR_PLUGIN_INVALID: createError('OCR_ERR_PLUGIN_INVALID', 'Plugin "%s" is not a valid plugin: %s'),
  OCR_ERR_PLUGIN_CORE_VERSION: createError(
    'OCR_ERR_PLUGIN_CORE_VERSION',
    'Plugin "%s" requires core %s but this is core %s',
  ),
  OCR_ERR_PLUGIN_DEP_MISSING: createError(
    'OCR_ERR_PLUGIN_DEP_MISSING',
    'Plugin "%s" depends on "%s", which is not loaded before it',
  ),
  OCR_ERR_PLUGIN_DUPLICATE: createError('OCR_ERR_PLUGIN_DUPLICATE', 'Plugin "%s" is listed twice'),
  OCR_ERR_PLUGIN_OPTIONS: createError('OCR_ERR_PLUGIN_OPTIONS', 'Invalid options for plugin "%s": %s'),
  OCR_ERR_PLUGIN_HANDLER_CONFLICT: createError(
    'OCR_ERR_PLUGIN_HANDLER_CONFLICT',
    'Plugins "%s" and "%s" both handle %s %s',
  ),
  OCR_ERR_PLUGIN_UNKNOWN_ACTION: createError(
    'OCR_ERR_PLUGIN_UNKNOWN_ACTION',
    'Plugin "%s" registers %s for %s, which is not an action of that version',
  ),
  OCR_ERR_PLUGIN_UNKNOWN_HOOK: createError('OCR_ERR_PLUGIN_UNKNOWN_HOOK', 'Plugin "%s" registers unknown hook "%s"'),
  OCR_ERR_PLUGIN_SETUP: createError('OCR_ERR_PLUGIN_SETUP', 'Plugin "%s" failed in setup: %s'),
  OCR_ERR_PLUGIN_TIMEOUT: createError('OCR_ERR_PLUGIN_TIMEOUT', 'Plugin "%s" hook %s exceeded %sms'),
  OCR_ERR_UNDEFINED_REJECTION: createError(
    'OCR_ERR_UNDEFINED_REJECTION',
    'Plugin "%s" rejected with a falsy value in %s',
  ),
  OCR_ERR_POOL_SATURATED: createError('OCR_ERR_POOL_SATURATED', 'Worker pool is saturated'),
  OCR_ERR_WORKER_CRASHED: createError('OCR_ERR_WORKER_CRASHED', 'Worker crashed while processing a batch: %s'),
  OCR_ERR_STATE_UNAVAILABLE: createError('OCR_ERR_STATE_UNAVAILABLE', 'State store unavailable: %s'),
  OCR_ERR_STATE_RPC_TIMEOUT: createError('OCR_ERR_STATE_RPC_TIMEOUT', 'State RPC %s timed out after %sms'),
  OCR_ERR_CMD_NOT_CONNECTED: createError('OCR_ERR_CMD_NOT_CONNECTED', 'Charge point "%s" is not connected', 404),
  OCR_ERR_CMD_BUSY: createError(
    'OCR_ERR_CMD_BUSY',
    'Charge point "%s" already has a CALL in flight and the queue is full',
    409,
  ),
  OCR_ERR_CMD_TIMEOUT: createError('OCR_ERR_CMD_TIMEOUT', 'Charge point "%s" did not answer %s within %sms', 504),
  OCR_ERR_CMD_DISCONNECTED: createError(
    'OCR_ERR_CMD_DISCONNECTED',
    'Charge point "%s" disconnected before answering %s',
    502,
  ),
  OCR_ERR_CMD_UNKNOWN_ACTION: createError(
    'OCR_ERR_CMD_UNKNOWN_ACTION',
    'Action "%s" is not a CSMS-initiated action of %s',
    400,
  ),
  OCR_ERR_CMD_INVALID_PAYLOAD: createError('OCR_ERR_CMD_INVALID_PAYLOAD', 'Payload for %s is invalid: %s', 400),
  OCR_ERR_ANALYTICS_SPOOL: createError('OCR_ERR_ANALYTICS_SPOOL', 'Analytics spool error: %s'),
} as const;

export type ErrorCode = keyof typeof errors;
