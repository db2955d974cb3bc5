/**
 * scopeStore: a view of a StateStore in which every key is prefixed.
 *
 * Owns: the key rewriting that gives each plugin its own corner of one charge point's
 * state, e.g. `ctx.state.get('session')` → `ocr:{CP-1}:auth:session` when the prefix is
 * `cpPrefix('CP-1', 'auth')` (keys.ts). Because the prefix carries the `{cpId}` hash tag,
 * every key a plugin touches for one charger shares the Cluster slot of core's keys for it.
 *
 * Must not: own the underlying store (close() is a no-op: a plugin must not be able to
 * close the store every plugin shares), or rewrite index *members* (they are values, e.g.
 * charge point ids, not keys).
 *
 * Cost: one string concatenation per key; the view holds no state and is cheap enough to
 * build per call, but building it once per charge point and plugin is cheaper still.
 */
import type { IndexRangeOptions, SetOptions, StateStore } from './store.js';

class ScopedStateStore implements StateStore {
  readonly #store: StateStore;
  readonly #prefix: string;

  constructor(store: StateStore, prefix: string) {
    this.#store = store;
    this.#prefix = prefix;
  }

  get kind(): StateStore['kind'] {
    return this.#store.kind;
  }

  get(key: string): Promise<string | null> {
    return this.#store.get(this.#prefix + key);
  }

  set(key: string, value: string, opts?: SetOptions): Promise<boolean> {
    return this.#store.set(this.#prefix + key, value, opts);
  }

  del(...keys: string[]): Promise<number> {
    return this.#store.del(...keys.map((k) => this.#prefix + k));
  }

  incr(key: string, by?: number): Promise<number> {
    return this.#store.incr(this.#prefix + key, by);
  }

  pttl(key: string): Promise<number> {
    return this.#store.pttl(this.#prefix + key);
  }

  hget(key: string, field: string): Promise<string | null> {
    return this.#store.hget(this.#prefix + key, field);
  }

  hgetall(key: string): Promise<Record<string, string>> {
    return this.#store.hgetall(this.#prefix + key);
  }

  hset(key: string, fields: Record<string, string>): Promise<void> {
    return this.#store.hset(this.#prefix + key, fields);
  }

  hdel(key: string, ...fields: string[]): Promise<number> {
    return this.#store.hdel(this.#prefix + key, ...fields);
  }

  casHash(
    key: string,
    field: string,
    expected: string | null,
    update: Record<string, string>,
    remove?: string[],
  ): Promise<boolean> {
    return this.#store.casHash(this.#prefix + key, field, expected, update, remove);
  }

  indexAdd(key: string, ...members: string[]): Promise<number> {
    return this.#store.indexAdd(this.#prefix + key, ...members);
  }

  indexRemove(key: string, ...members: string[]): Promise<number> {
    return this.#store.indexRemove(this.#prefix + key, ...members);
  }

  indexRange(key: string, opts?: IndexRangeOptions): Promise<string[]> {
    return this.#store.indexRange(this.#prefix + key, opts);
  }

  indexCount(key: string): Promise<number> {
    return this.#store.indexCount(this.#prefix + key);
  }

  ping(): Promise<void> {
    return this.#store.ping();
  }

  /** No-op: the view does not own the store it prefixes. */
  async close(): Promise<void> {}
}

/**
 * Returns a StateStore whose keys are all `prefix + key` in `store`. Scopes nest:
 * `scopeStore(scopeStore(s, 'a:'), 'b:')` writes `a:b:<key>`.
 */
export function scopeStore(store: StateStore, prefix: string): StateStore {
  return new ScopedStateStore(store, prefix);
}
