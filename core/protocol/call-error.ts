/**
 * CallError: the only thing that becomes an OCPP CALLERROR on the wire.
 *
 * Owns: the semantic error codes, their per-dialect spelling and the payload shape of a
 * CALLERROR. Must not: carry internal messages to the wire. Anything that is not a CallError
 * is turned into `InternalError` with an opaque reference by core/worker/pipeline.ts.
 *
 * Semantic codes are the OCPP 2.0.1 names (OCPP-J 2.0.1 §4.3). OCPP-J 1.6 §4.2.3 spells two of
 * them differently ("FormationViolation", "OccurenceConstraintViolation") and lacks
 * RpcFrameworkError and MessageTypeNotSupported; for those we fall back to FormationViolation,
 * the 1.6 code for a message that does not conform to the RPC framing (STYLE.md §6).
 */
import type { OcppVersion } from './dialect.js';

export type CallErrorCode =
  | 'FormatViolation'
  | 'GenericError'
  | 'InternalError'
  | 'MessageTypeNotSupported'
  | 'NotImplemented'
  | 'NotSupported'
  | 'OccurrenceConstraintViolation'
  | 'PropertyConstraintViolation'
  | 'ProtocolError'
  | 'RpcFrameworkError'
  | 'SecurityError'
  | 'TypeConstraintViolation';

const SEMANTIC = new Set<string>([
  'FormatViolation',
  'GenericError',
  'InternalError',
  'MessageTypeNotSupported',
  'NotImplemented',
  'NotSupported',
  'OccurrenceConstraintViolation',
  'PropertyConstraintViolation',
  'ProtocolError',
  'RpcFrameworkError',
  'SecurityError',
  'TypeConstraintViolation',
]);

const WIRE_16: Partial<Record<CallErrorCode, string>> = {
  FormatViolation: 'FormationViolation',
  OccurrenceConstraintViolation: 'OccurenceConstraintViolation',
  RpcFrameworkError: 'FormationViolation',
  MessageTypeNotSupported: 'FormationViolation',
};

/** The spelling of a semantic code on the wire of `version`. */
export function wireCode(code: CallErrorCode, version: OcppVersion): string {
  return version === '1.6' ? (WIRE_16[code] ?? code) : code;
}

/** Reads a wire code of any dialect back into a semantic code (unknown → GenericError). */
export function semanticCode(wire: string): CallErrorCode {
  if (wire === 'FormationViolation') return 'FormatViolation';
  if (wire === 'OccurenceConstraintViolation') return 'OccurrenceConstraintViolation';
  return SEMANTIC.has(wire) ? (wire as CallErrorCode) : 'GenericError';
}

export function isCallErrorCode(code: unknown): code is CallErrorCode {
  return typeof code === 'string' && SEMANTIC.has(code);
}

/**
 * Brand shared by every copy of this module: a TypeScript plugin loaded by compiled core (dist/)
 * imports core's sources, so two CallError classes exist in one thread; `instanceof` and
 * isCallError() must accept either.
 */
const kCallError = Symbol.for('ocpp-router.CallError');

export class CallError extends Error {
  override readonly name = 'CallError';
  readonly [kCallError] = true;
  readonly code: CallErrorCode;
  readonly description: string;
  readonly details: Record<string, unknown>;

  constructor(code: CallErrorCode, description = '', details: Record<string, unknown> = {}) {
    super(description || code);
    this.code = code;
    this.description = description;
    this.details = details;
  }

  static override [Symbol.hasInstance](v: unknown): boolean {
    if (this !== CallError) return Function.prototype[Symbol.hasInstance].call(this, v);
    return typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[kCallError] === true;
  }
}

export function isCallError(err: unknown): err is CallError {
  return err instanceof CallError;
}
