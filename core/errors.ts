/**
 * Internal error catalog (OCR_ERR_*), fastify-style.
 *
 * Owns: the codes, message templates and HTTP status codes of errors raised *inside* the
 * router (boot-time contract violations, configuration errors, runtime faults), and the one
 * way to rebuild such an error received from another thread or node. Every code raised in
 * core/, plugins/ and bin/ is a key of `errors`, made here and nowhere else, and is documented
 * in docs/errors.md (core/errors.test.ts checks all three). Must not: produce anything that
 * goes on the OCPP wire. The single bridge to the wire is core/worker/pipeline.ts, which maps
 * anything that is not a CallError to an OCPP `InternalError` with an opaque reference.
 */

export interface RouterError extends Error {
  readonly code: string;
  /** The HTTP status the operator API answers with, for codes that map to one. */
  readonly statusCode?: number;
  /** Structured facts for callers and logs (e.g. the schema path of an invalid payload). */
  details?: Record<string, unknown>;
}

/** Optional last argument of every error constructor, after the template's arguments. */
export interface RouterErrorOptions {
  cause?: unknown;
  details?: Record<string, unknown>;
}

/** A template argument (`%s`, rendered with String()) or, last, the options. */
export type RouterErrorArg = string | number | boolean | RouterErrorOptions;

export interface RouterErrorCtor {
  new (...args: RouterErrorArg[]): RouterError;
  (...args: RouterErrorArg[]): RouterError;
  readonly code: string;
  readonly statusCode?: number;
  /** The message template, `%s` placeholders filled in order. */
  readonly template: string;
}

function format(template: string, args: unknown[]): string {
  let i = 0;
  return template.replace(/%s/g, () => String(args[i++]));
}

/**
 * Builds an error constructor with a fixed `code` (and `statusCode`, when given). The
 * template uses `%s` placeholders, filled in order. An object after the template's arguments
 * is the options: `cause` becomes the standard `Error.cause`, `details` is set on the error.
 */
export function createError(code: string, template: string, statusCode?: number): RouterErrorCtor {
  const placeholders = template.match(/%s/g)?.length ?? 0;
  function RouterErrorImpl(this: unknown, ...args: unknown[]): RouterError {
    const last = args[args.length - 1];
    const opts =
      args.length > placeholders && last !== null && typeof last === 'object' ? (last as RouterErrorOptions) : {};
    const err = new Error(format(template, args), 'cause' in opts ? { cause: opts.cause } : undefined) as Error & {
      code: string;
      statusCode?: number;
      details?: Record<string, unknown>;
    };
    err.name = 'RouterError';
    err.code = code;
    if (statusCode !== undefined) err.statusCode = statusCode;
    if (opts.details !== undefined) err.details = opts.details;
    Error.captureStackTrace?.(err, RouterErrorImpl);
    return err;
  }
  Object.defineProperty(RouterErrorImpl, 'code', { value: code });
  Object.defineProperty(RouterErrorImpl, 'template', { value: template });
  if (statusCode !== undefined) Object.defineProperty(RouterErrorImpl, 'statusCode', { value: statusCode });
  return RouterErrorImpl as unknown as RouterErrorCtor;
}

/**
 * An error as it travels between threads (core/thread-contract/thread-rpc.ts) or nodes
 * (core/cluster/node-bus.ts): plain data, never a stack or a cause.
 */
export interface SerializedError {
  message: string;
  name?: string;
  code?: string;
  statusCode?: number;
  details?: Record<string, unknown>;
  /** The charger's CALLERROR carried by OCR_ERR_CMD_CALL_ERROR and OCR_ERR_CMD_INVALID_RESPONSE. */
  callError?: unknown;
}

/** What of `err` travels to another thread or node (fromSerialized() rebuilds it there). */
export function toSerialized(err: unknown): SerializedError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) };
  const e = err as Error & Omit<SerializedError, 'message' | 'name'>;
  const s: SerializedError = { name: e.name, message: e.message };
  if (typeof e.code === 'string') s.code = e.code;
  if (typeof e.statusCode === 'number') s.statusCode = e.statusCode;
  if (e.details !== undefined) s.details = e.details;
  if (e.callError !== undefined) s.callError = e.callError;
  return s;
}

/**
 * Rebuilds an error received from another thread or node. The message is the sender's, as
 * is the code: an error that had none (a plain Error) still has none, so checks such as
 * `code === 'OCR_ERR_STATE_UNAVAILABLE'` read the same on both sides. The stack is local.
 */
export function fromSerialized(s: SerializedError): Error & Omit<SerializedError, 'message' | 'name'> {
  const err = new Error(s.message) as Error & Omit<SerializedError, 'message' | 'name'>;
  if (s.name !== undefined) err.name = s.name;
  if (s.code !== undefined) err.code = s.code;
  if (s.statusCode !== undefined) err.statusCode = s.statusCode;
  if (s.details !== undefined) err.details = s.details;
  if (s.callError !== undefined) err.callError = s.callError;
  Error.captureStackTrace?.(err, fromSerialized);
  return err;
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
  /** details: the schema error (path, keyword, …). */
  OCR_ERR_PLUGIN_INVALID_RESPONSE: createError(
    'OCR_ERR_PLUGIN_INVALID_RESPONSE',
    'Invalid %s response from plugin: %s',
  ),
  OCR_ERR_UNDEFINED_REJECTION: createError(
    'OCR_ERR_UNDEFINED_REJECTION',
    'Plugin "%s" rejected with a falsy value in %s',
  ),
  OCR_ERR_POOL_SATURATED: createError('OCR_ERR_POOL_SATURATED', 'Worker pool is saturated'),
  OCR_ERR_LANE_BACKLOG_FULL: createError(
    'OCR_ERR_LANE_BACKLOG_FULL',
    'Charge point "%s" has %s messages waiting, as many as server.backlogPerCharger allows',
  ),
  OCR_ERR_WORKER_CRASHED: createError('OCR_ERR_WORKER_CRASHED', 'Worker crashed while processing a batch: %s'),
  OCR_ERR_WORKER_ITEM: createError('OCR_ERR_WORKER_ITEM', 'A batch item failed in the worker outside any plugin: %s'),
  OCR_ERR_INLINE_BATCH: createError('OCR_ERR_INLINE_BATCH', 'A batch failed on the socket thread: %s'),
  OCR_ERR_STATE_UNAVAILABLE: createError('OCR_ERR_STATE_UNAVAILABLE', 'State store unavailable: %s'),
  OCR_ERR_STATE_RPC_TIMEOUT: createError('OCR_ERR_STATE_RPC_TIMEOUT', 'State RPC %s timed out after %sms'),
  OCR_ERR_STATE_RPC_UNKNOWN: createError('OCR_ERR_STATE_RPC_UNKNOWN', 'No RPC handler for %s'),
  OCR_ERR_STATE_KEY_INVALID: createError('OCR_ERR_STATE_KEY_INVALID', 'Invalid state key part %s: %s'),
  OCR_ERR_CMD_NOT_CONNECTED: createError('OCR_ERR_CMD_NOT_CONNECTED', 'Charge point "%s" is not connected', 404),
  OCR_ERR_CMD_BUSY: createError(
    'OCR_ERR_CMD_BUSY',
    'Charge point "%s" already has a CALL in flight and the queue is full',
    409,
  ),
  OCR_ERR_CMD_TIMEOUT: createError('OCR_ERR_CMD_TIMEOUT', 'Charge point "%s" did not answer %s within %sms', 504),
  /** The last argument says why: the charger disconnected, or this router is shutting down. */
  OCR_ERR_CMD_DISCONNECTED: createError('OCR_ERR_CMD_DISCONNECTED', 'Charge point "%s" did not answer %s: %s', 502),
  OCR_ERR_CMD_UNKNOWN_ACTION: createError(
    'OCR_ERR_CMD_UNKNOWN_ACTION',
    'Action "%s" is not a CSMS-initiated action of %s',
    400,
  ),
  /** details: `path` and `keyword` of the first schema error. */
  OCR_ERR_CMD_INVALID_PAYLOAD: createError('OCR_ERR_CMD_INVALID_PAYLOAD', 'Payload for %s is invalid: %s', 400),
  /** Carries the charger's CALLERROR as `callError` (see CommandError). */
  OCR_ERR_CMD_CALL_ERROR: createError(
    'OCR_ERR_CMD_CALL_ERROR',
    'Charge point "%s" answered %s with CALLERROR %s: %s',
    502,
  ),
  /** Carries the answer, described as a CALLERROR `InvalidResponse`, as `callError`. */
  OCR_ERR_CMD_INVALID_RESPONSE: createError(
    'OCR_ERR_CMD_INVALID_RESPONSE',
    'Charge point "%s" answered %s with an invalid response: %s',
    502,
  ),
  /** A command routed to another node failed there with an error that has no code. */
  OCR_ERR_CMD_REMOTE: createError('OCR_ERR_CMD_REMOTE', 'Node "%s" failed to run the command: %s', 500),
  OCR_ERR_ANALYTICS_SPOOL: createError('OCR_ERR_ANALYTICS_SPOOL', 'Analytics spool error: %s'),
} as const;

export type ErrorCode = keyof typeof errors;
