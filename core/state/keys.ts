/**
 * State key builders: the one place that spells Redis (and MemoryStateStore) key names.
 *
 * Owns: the key layout of STYLE.md §4.
 *
 *   ocr:{<cpId>}:<area>:<thing>     per charge point; <area> is `core` or a plugin name
 *   ocr:<area>:<thing>              global (indexes, cluster bookkeeping)
 *
 * The `{<cpId>}` part is a Redis Cluster hash tag: only the text between the first `{` and
 * the next `}` is hashed, so every key of one charge point lands in the same slot and a Lua
 * script (casHash) or a pipeline touching several of them stays legal in Cluster mode.
 *
 * Must not: know about OCPP or plugins' semantics, talk to a store, or accept a part that
 * contains `{` or `}`. A brace inside a charge point id would end the hash tag early (or open
 * a second one) and silently scatter that charger's keys across slots; the charge point id
 * validator rejects braces before an id reaches us, and the builders throw as a second line
 * of defence rather than build a key that is subtly wrong in Cluster mode.
 */
import { errors } from '../errors.js';

function checkPart(what: string, part: string): string {
  if (typeof part !== 'string' || part.length === 0) {
    throw new errors.OCR_ERR_STATE_KEY_INVALID(what, 'must be a non-empty string');
  }
  // indexOf twice is cheaper than a regex on this (hot) path and reads just as clearly.
  if (part.indexOf('{') !== -1 || part.indexOf('}') !== -1) {
    throw new errors.OCR_ERR_STATE_KEY_INVALID(
      what,
      `"${part}" contains "{" or "}", which would break the Redis Cluster hash tag`,
    );
  }
  return part;
}

/**
 * Prefix shared by every key of one charge point in one area, ending in `:`:
 * `ocr:{<cpId>}:<area>:`. This is what `scopeStore()` gets for a plugin's `ctx.state`.
 */
export function cpPrefix(cpId: string, area: string): string {
  return `ocr:{${checkPart('cpId', cpId)}}:${checkPart('area', area)}:`;
}

/** `ocr:{<cpId>}:<area>:<thing>`: a key owned by one charge point. */
export function cpKey(cpId: string, area: string, thing: string): string {
  return cpPrefix(cpId, area) + checkPart('thing', thing);
}

/**
 * `ocr:<area>:<thing>`: a key not tied to one charge point. It has no hash tag, so in
 * Cluster mode it must never share a Lua script or MULTI with a per-charge-point key.
 */
export function globalKey(area: string, thing: string): string {
  return `ocr:${checkPart('area', area)}:${checkPart('thing', thing)}`;
}

/** Area of the keys that core itself owns under a charge point. */
export const CORE_AREA = 'core';

/** Hash: the charger registry record (ocppVersion, nodeId, connectedAt, ...). */
export function chargerKey(cpId: string): string {
  return cpKey(cpId, CORE_AREA, 'charger');
}

/** Hash: one field per connector / EVSE with its last reported status. */
export function connectorStatusKey(cpId: string): string {
  return cpKey(cpId, CORE_AREA, 'status');
}

// Built once: the global index key is constant and read on every connect.
const CHARGER_INDEX_KEY = globalKey('idx', 'chargers');

/** Index (sorted set, score 0) of every known charge point id, for paginated listing. */
export function chargerIndexKey(): string {
  return CHARGER_INDEX_KEY;
}
