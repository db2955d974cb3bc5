/**
 * Payload validation against the official schemas, compiled once per thread with ajv.
 *
 * Owns: compiling validators per (version, action, request|response), mapping ajv errors to
 * semantic CallError codes (STYLE.md §6 table), and lenient mode: the known harmless
 * deviations of real chargers (over-long strings, unknown enum values, timestamps without an
 * offset) accepted, reported back and counted by the caller. Must not: decide what to do with
 * a valid payload.
 *
 * Validators are compiled lazily, on first use of each schema, and cached for the thread's
 * life; the strict validator stops at the first error (allErrors: false: cheaper on the hot
 * path), the lenient one is compiled only when a lenient charger actually fails.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { isDateTime } from './date-time.js';
import { errors } from '../errors.js';
import { CallError, type CallErrorCode } from './call-error.js';
import type { OcppVersion } from './dialect.js';
import { actionCatalog, loadSchemas } from './schemas.js';

// ajv-formats is CommonJS; under NodeNext its default import is the module object.
const addFormats = addFormatsModule.default;

export type Direction = 'request' | 'response';

/** Names of tolerated deviations, used as a metric label. */
export type Deviation = 'overlongString' | 'unknownEnumValue' | 'timestampWithoutOffset';

export type ValidationResult = { ok: true; deviations?: Deviation[] } | { ok: false; error: CallError };

const KEYWORD_CODE: Record<string, CallErrorCode> = {
  type: 'TypeConstraintViolation',
  required: 'OccurrenceConstraintViolation',
  minItems: 'OccurrenceConstraintViolation',
  maxItems: 'OccurrenceConstraintViolation',
  enum: 'PropertyConstraintViolation',
  const: 'PropertyConstraintViolation',
  maxLength: 'PropertyConstraintViolation',
  minLength: 'PropertyConstraintViolation',
  minimum: 'PropertyConstraintViolation',
  maximum: 'PropertyConstraintViolation',
  exclusiveMinimum: 'PropertyConstraintViolation',
  exclusiveMaximum: 'PropertyConstraintViolation',
  multipleOf: 'PropertyConstraintViolation',
  pattern: 'PropertyConstraintViolation',
  format: 'PropertyConstraintViolation',
  additionalProperties: 'FormatViolation',
};

export function errorCodeOf(keyword: string): CallErrorCode {
  return KEYWORD_CODE[keyword] ?? 'FormatViolation';
}

/** A date-time that is complete except for its UTC offset, e.g. "2024-05-01T10:00:00". */
const NO_OFFSET = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/;

function makeAjv(allErrors: boolean) {
  // verbose (error.data) is needed by lenient mode only, to see the offending value.
  const ajv = new Ajv({ strict: false, allErrors, verbose: allErrors, messages: true });
  addFormats(ajv, ['uri']);
  // ajv-formats' own date-time answers the same but allocates per timestamp: see date-time.ts.
  ajv.addFormat('date-time', { type: 'string', validate: isDateTime });
  // The schemas use multipleOf 0.1 on decimals; exact float division rejects 7.3 (7.3/0.1 is
  // 72.99999999999999). Accept within a relative epsilon instead.
  ajv.removeKeyword('multipleOf');
  ajv.addKeyword({
    keyword: 'multipleOf',
    type: 'number',
    schemaType: 'number',
    errors: false,
    compile: (m: number) => (x: number) => {
      const q = x / m;
      return Math.abs(Math.round(q) - q) < 1e-6;
    },
  });
  return ajv;
}

/**
 * Compiles the validator of one schema on `ajv`. The packaged $ids ("urn:Heartbeat.req") are
 * not valid URNs for ajv's URI resolver (fast-uri: "URN without nid"). All $refs in these
 * schemas are document-local ("#/definitions/..."), so each schema is compiled on its own,
 * without its $id, and only when first used: a thread keeps the validators of the actions
 * its chargers send, not of all 2 × 39-130 schemas of each version.
 */
function compile(
  ajv: InstanceType<typeof Ajv>,
  version: OcppVersion,
  action: string,
  direction: Direction,
): ValidateFunction | undefined {
  const s = loadSchemas(version);
  const entry = (direction === 'request' ? s.request : s.response).get(action);
  if (!entry) return undefined;
  const { $id: _id, ...schema } = entry.schema;
  return ajv.compile(schema);
}

function schemaKey(action: string, direction: Direction): string {
  return direction === 'request' ? action : `${action}#response`;
}

function describe(e: ErrorObject): string {
  const path = e.instancePath || '/';
  if (e.keyword === 'additionalProperties')
    return `${path} has unknown property "${(e.params as { additionalProperty: string }).additionalProperty}"`;
  if (e.keyword === 'required')
    return `${path} is missing required property "${(e.params as { missingProperty: string }).missingProperty}"`;
  return `${path} ${e.message ?? 'is invalid'}`;
}

function toCallError(e: ErrorObject): CallError {
  return new CallError(errorCodeOf(e.keyword), describe(e), { path: e.instancePath || '/', keyword: e.keyword });
}

/** Writes `value` at a JSON pointer inside `root` (only used to fix a tolerated deviation). */
function setAt(root: unknown, pointer: string, value: unknown): void {
  const parts = pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  let node = root as Record<string, unknown>;
  for (let i = 0; i < parts.length - 1; i++) node = node[parts[i]] as Record<string, unknown>;
  node[parts[parts.length - 1]] = value;
}

export class SchemaValidator {
  readonly version: OcppVersion;
  private readonly actions: { request: ReadonlySet<string>; response: ReadonlySet<string> };
  private strictAjv?: InstanceType<typeof Ajv>;
  private lenientAjv?: InstanceType<typeof Ajv>;
  private readonly strict = new Map<string, ValidateFunction>();
  private readonly lenient = new Map<string, ValidateFunction>();

  constructor(version: OcppVersion) {
    this.version = version;
    const c = actionCatalog(version);
    this.actions = { request: c.request, response: c.response };
  }

  has(action: string, direction: Direction): boolean {
    return this.actions[direction].has(action);
  }

  private get(action: string, direction: Direction, lenient: boolean): ValidateFunction | undefined {
    const cache = lenient ? this.lenient : this.strict;
    const key = schemaKey(action, direction);
    let fn = cache.get(key);
    if (fn) return fn;
    if (!this.actions[direction].has(action)) return undefined;
    const ajv = lenient ? (this.lenientAjv ??= makeAjv(true)) : (this.strictAjv ??= makeAjv(false));
    fn = compile(ajv, this.version, action, direction);
    if (fn) cache.set(key, fn);
    return fn;
  }

  /**
   * Validates `payload`. With `lenient`, tolerated deviations are accepted and returned; a
   * timestamp without offset is rewritten in place to UTC ("Z"), so handlers never see a
   * local-time ambiguity.
   */
  validate(action: string, direction: Direction, payload: unknown, lenient = false): ValidationResult {
    const fn = this.get(action, direction, false);
    if (!fn) return { ok: false, error: new CallError('NotImplemented', `Unknown action ${action}`) };
    if (fn(payload)) return { ok: true };
    const first = fn.errors![0];
    if (!lenient) return { ok: false, error: toCallError(first) };

    const all = this.get(action, direction, true)!;
    all(payload);
    const deviations: Deviation[] = [];
    const fixes: Array<[string, string]> = [];
    for (const e of all.errors ?? []) {
      if (e.keyword === 'maxLength') deviations.push('overlongString');
      else if (e.keyword === 'enum') deviations.push('unknownEnumValue');
      else if (
        e.keyword === 'format' &&
        (e.params as { format: string }).format === 'date-time' &&
        typeof e.data === 'string' &&
        NO_OFFSET.test(e.data)
      ) {
        deviations.push('timestampWithoutOffset');
        fixes.push([e.instancePath, `${e.data}Z`]);
      } else return { ok: false, error: toCallError(e) };
    }
    for (const [p, v] of fixes) setAt(payload, p, v);
    return { ok: true, deviations };
  }
}

const validators = new Map<OcppVersion, SchemaValidator>();

/** One validator per version per thread. */
export function validatorFor(version: OcppVersion): SchemaValidator {
  let v = validators.get(version);
  if (!v) validators.set(version, (v = new SchemaValidator(version)));
  return v;
}

/**
 * Checks a CSMS-initiated CALL a plugin is about to send (`ctx.send`) before it leaves its
 * thread: a plugin bug must not reach the charger. Unknown action: InternalError; invalid
 * payload: an OCR_ERR_CMD_INVALID_PAYLOAD error naming the field.
 */
export function validateOutgoing(version: OcppVersion, action: string, payload: Record<string, unknown>): void {
  const v = validatorFor(version);
  if (!v.has(action, 'request')) throw new CallError('InternalError', `Unknown action ${action}`);
  const check = v.validate(action, 'request', payload);
  if (!check.ok)
    throw new errors.OCR_ERR_CMD_INVALID_PAYLOAD(action, check.error.description, {
      details: { path: check.error.details.path, keyword: check.error.details.keyword },
    });
}
