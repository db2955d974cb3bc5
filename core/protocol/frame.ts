/**
 * OCPP-J RPC framing (worker side): parse and serialize CALL, CALLRESULT, CALLERROR and the
 * OCPP 2.1 additions SEND and CALLRESULTERROR.
 *
 * Owns: the framing rules of OCPP-J 1.6 §4 and 2.0.1/2.1 Part 4 §4, and the mapping of
 * framing faults to semantic CallError codes (STYLE.md §6 table). Must not: look at action
 * semantics or schemas (validate.ts, pipeline.ts).
 */
import { CallError, type CallErrorCode } from './call-error.js';
import { wireCode } from './call-error.js';
import type { OcppVersion } from './dialect.js';

export const CALL = 2;
export const CALLRESULT = 3;
export const CALLERROR = 4;
export const CALLRESULTERROR = 5;
export const SEND = 6;

export type Frame =
  | { type: typeof CALL | typeof SEND; id: string; action: string; payload: Record<string, unknown> }
  | { type: typeof CALLRESULT; id: string; payload: Record<string, unknown> }
  | {
      type: typeof CALLERROR | typeof CALLRESULTERROR;
      id: string;
      code: string;
      description: string;
      details: Record<string, unknown>;
    };

/** A frame that breaks the framing rules. `id` is null when it could not be read. */
export interface BadFrame {
  type: 0;
  /** The messageTypeId when it could be read. */
  messageType: number | null;
  id: string | null;
  error: CallError;
  /**
   * Whether a CALLERROR may be sent. Not for a broken CALLRESULT/CALLERROR (the spec has no
   * answer to an answer) nor for a 2.1 SEND (never answered); yes for a CALL, an unknown
   * message type and a frame whose type could not be read.
   */
  answer: boolean;
}

export type ParseResult = Frame | BadFrame;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function readId(v: unknown): string | null {
  if (typeof v === 'string') return v;
  // Some firmware sends numeric ids; we can read them and echo them back as strings.
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return null;
}

function bad(
  code: CallErrorCode,
  description: string,
  id: string | null,
  messageType: number | null,
  version?: OcppVersion,
): BadFrame {
  const answer =
    messageType === null || messageType === CALL || (version !== undefined && !typeExists(messageType, version));
  return { type: 0, messageType, id, error: new CallError(code, description), answer };
}

/** Message types that exist in each dialect. SEND and CALLRESULTERROR are OCPP 2.1 only. */
function typeExists(type: number, version: OcppVersion): boolean {
  if (type >= CALL && type <= CALLERROR) return true;
  return version === '2.1' && (type === CALLRESULTERROR || type === SEND);
}

export function parseFrame(text: string, version: OcppVersion): ParseResult {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return bad('RpcFrameworkError', 'Frame is not valid JSON', salvageId(text), salvageType(text));
  }
  if (!Array.isArray(parsed)) return bad('RpcFrameworkError', 'Frame is not a JSON array', null, null);
  const arr = parsed as unknown[];
  const type = arr[0];
  const id = readId(arr[1]);
  if (typeof type !== 'number' || !Number.isInteger(type)) {
    return bad('RpcFrameworkError', 'messageTypeId is not an integer', id, null);
  }
  if (!typeExists(type, version)) {
    return bad('MessageTypeNotSupported', `messageTypeId ${type} is not supported`, id, type, version);
  }
  if (id === null) return bad('RpcFrameworkError', 'messageId is not a string', null, type);
  switch (type) {
    case CALL:
    case SEND: {
      if (arr.length !== 4) return bad('RpcFrameworkError', `CALL must have 4 elements, got ${arr.length}`, id, type);
      const action = arr[2];
      if (typeof action !== 'string' || action.length === 0)
        return bad('RpcFrameworkError', 'Action is not a string', id, type);
      const payload = arr[3];
      if (!isPlainObject(payload)) return bad('FormatViolation', 'Payload is not a JSON object', id, type);
      return { type, id, action, payload };
    }
    case CALLRESULT: {
      if (arr.length !== 3)
        return bad('RpcFrameworkError', `CALLRESULT must have 3 elements, got ${arr.length}`, id, type);
      const payload = arr[2];
      if (!isPlainObject(payload)) return bad('FormatViolation', 'Payload is not a JSON object', id, type);
      return { type, id, payload };
    }
    default: {
      // CALLERROR / CALLRESULTERROR: [type, id, errorCode, errorDescription, errorDetails]
      if (arr.length !== 5)
        return bad('RpcFrameworkError', `CALLERROR must have 5 elements, got ${arr.length}`, id, type);
      const [, , code, description, details] = arr;
      return {
        type: type as typeof CALLERROR,
        id,
        code: typeof code === 'string' ? code : 'GenericError',
        description: typeof description === 'string' ? description : '',
        details: isPlainObject(details) ? details : {},
      };
    }
  }
}

const SALVAGE = /^\s*\[\s*(\d+)\s*,\s*"([^"\\]{1,128})"/;

/** Best effort: the id of a frame whose JSON is broken further on. */
function salvageId(text: string): string | null {
  return SALVAGE.exec(text)?.[2] ?? null;
}
function salvageType(text: string): number | null {
  const m = SALVAGE.exec(text);
  return m ? Number(m[1]) : null;
}

export function serializeCall(id: string, action: string, payload: unknown): string {
  return `[2,${JSON.stringify(id)},${JSON.stringify(action)},${JSON.stringify(payload)}]`;
}

export function serializeCallResult(id: string, payload: unknown): string {
  return `[3,${JSON.stringify(id)},${JSON.stringify(payload)}]`;
}

/** OCPP-J 2.0.1 §4.2.3: ErrorDescription is at most 255 characters. */
const MAX_DESCRIPTION = 255;

export function serializeCallError(id: string, err: CallError, version: OcppVersion): string {
  const description =
    err.description.length > MAX_DESCRIPTION ? err.description.slice(0, MAX_DESCRIPTION) : err.description;
  return `[4,${JSON.stringify(id)},${JSON.stringify(wireCode(err.code, version))},${JSON.stringify(description)},${JSON.stringify(err.details)}]`;
}

/**
 * The id used to answer a frame whose messageId cannot be read. OCPP-J 2.0.1 / 2.1 §4.2.3:
 * the CALLERROR then carries messageId "-1". OCPP-J 1.6 has no such rule, so we do not
 * answer at all there (a guessed id could match an unrelated pending CALL in the charger).
 */
export function unreadableIdReply(version: OcppVersion): string | null {
  return version === '1.6' ? null : '-1';
}
