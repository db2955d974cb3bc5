/**
 * StateStore: the one interface for shared state (registry, connector status, plugin state).
 *
 * Owns: the contract that both implementations (memory-store.ts, redis-store.ts) and the
 * worker-side proxy (remote-store.ts) fulfil, checked by one shared test suite
 * (test/helpers/store-suite.ts). Must not: know about OCPP or plugins; key naming lives
 * in keys.ts.
 *
 * Values are strings (hash fields and plain keys) so that an operator can read them with
 * redis-cli; structured plugin values go through `getJSON`/`setJSON` helpers built on top.
 * Every method is atomic on its own. Where several keys or a read-modify-write must be
 * atomic, use `casHash` (Lua in Redis) rather than a get-then-set from the caller.
 */
export interface SetOptions {
  /** Expire the key after this many milliseconds. */
  ttlMs?: number;
  /** Only set when the key does not exist (SET NX). The result says whether it was set. */
  ifAbsent?: boolean;
}

export interface IndexRangeOptions {
  /** Exclusive lower bound (lexicographic); omit to start at the beginning. */
  after?: string;
  /** At most this many members. @default 100 */
  limit?: number;
}

export interface StateStore {
  readonly kind: 'memory' | 'redis' | 'remote';

  get(key: string): Promise<string | null>;
  /** Returns false only when `ifAbsent` was set and the key existed. */
  set(key: string, value: string, opts?: SetOptions): Promise<boolean>;
  /** Number of keys removed. */
  del(...keys: string[]): Promise<number>;
  /** Atomic increment of an integer key (created at 0). Returns the new value. */
  incr(key: string, by?: number): Promise<number>;
  /** Remaining TTL in ms, -1 when the key has no TTL, -2 when it does not exist. */
  pttl(key: string): Promise<number>;

  hget(key: string, field: string): Promise<string | null>;
  hgetall(key: string): Promise<Record<string, string>>;
  hset(key: string, fields: Record<string, string>): Promise<void>;
  hdel(key: string, ...fields: string[]): Promise<number>;
  /**
   * Compare-and-set on a hash: when field `field` of `key` equals `expected` (null means
   * the field or key is absent), set `update` fields and delete `remove` fields, atomically.
   * Returns whether the update was applied.
   */
  casHash(
    key: string,
    field: string,
    expected: string | null,
    update: Record<string, string>,
    remove?: string[],
  ): Promise<boolean>;

  /** Lexicographically ordered index (Redis: sorted set with score 0). */
  indexAdd(key: string, ...members: string[]): Promise<number>;
  indexRemove(key: string, ...members: string[]): Promise<number>;
  indexRange(key: string, opts?: IndexRangeOptions): Promise<string[]>;
  indexCount(key: string): Promise<number>;

  /** Liveness probe: resolves when the backend answers. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
