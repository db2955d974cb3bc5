/**
 * JSON helpers over a StateStore's string values.
 *
 * Owns: the convention that structured plugin values are stored as JSON text in plain keys,
 * so an operator can still read them with `redis-cli GET`.
 *
 * Must not: hide corrupt data. A value that is not valid JSON rejects with the SyntaxError
 * from JSON.parse instead of reading as null, which would let a caller overwrite it.
 */
import type { SetOptions, StateStore } from './store.js';

/** Reads and parses `key`; null when the key does not exist. The type is not checked. */
export async function getJSON<T>(store: StateStore, key: string): Promise<T | null> {
  const text = await store.get(key);
  return text === null ? null : (JSON.parse(text) as T);
}

/**
 * Stores `JSON.stringify(value)` under `key`; same result and options as `store.set`.
 * `undefined` (or a function) has no JSON text and is refused rather than stored as the
 * string "undefined".
 */
export async function setJSON(store: StateStore, key: string, value: unknown, opts?: SetOptions): Promise<boolean> {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError(`setJSON: value for key "${key}" has no JSON representation`);
  return store.set(key, text, opts);
}
