/**
 * MemoryStateStore: the in-process StateStore, for single-node deployments and for tests.
 *
 * Owns: plain Maps that mimic the subset of Redis that StateStore uses (strings, hashes,
 * score-0 sorted sets) with Redis's semantics, reply errors included, so that code tested
 * against this store behaves the same on RedisStateStore. Both are held to that by one
 * shared suite (test/helpers/store-suite.ts) run against each.
 *
 * Must not: be shared across threads by reference (it lives on the main thread; workers
 * reach it through RemoteStateStore), persist anything, or keep the process alive (the
 * sweep timer is unref'd).
 *
 * Deliberate choices:
 * - Expiry is a stored timestamp checked lazily on every access, exactly as Redis does,
 *   plus a periodic sweep of the keys that carry a TTL so that keys nobody reads again
 *   do not leak. Only keys with a TTL are visited by the sweep.
 * - Indexes are sorted arrays with binary-search insert: O(log n) lookups, O(n) insert by
 *   memmove, which beats a tree for the sizes a router indexes (thousands of ids) and makes
 *   `indexRange` a slice. Order is Redis's: byte order of the UTF-8 encoding (memcmp), not
 *   JS's UTF-16 code-unit order; the two differ only for astral characters, see compareLex.
 * - Every method is synchronous inside an async function, so each is atomic with respect
 *   to the others on this thread, like a single Redis command.
 * - Variadic calls with nothing to do (`del()`, `hdel(k)`, `indexAdd(k)`, `hset(k, {})`)
 *   resolve to 0 / no-op. Raw Redis would reply "wrong number of arguments"; both stores
 *   short-circuit instead, identically.
 */
import { errors } from '../errors.js';
import type { IndexRangeOptions, SetOptions, StateStore } from './store.js';

export interface MemoryStateStoreOptions {
  /**
   * Period of the background sweep that deletes expired keys nobody reads again. Expiry is
   * exact without it (checked on every access); the sweep only bounds memory. 0 disables it.
   * @default 1000
   */
  sweepIntervalMs?: number;
}

/**
 * Mirrors ioredis's ReplyError (name 'ReplyError', Redis's message text) so that callers
 * and tests see the same error from either store.
 */
class ReplyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReplyError';
  }
}

const WRONGTYPE = 'WRONGTYPE Operation against a key holding the wrong kind of value';
const NOT_INTEGER = 'ERR value is not an integer or out of range';
const OVERFLOW = 'ERR increment or decrement would overflow';
const INVALID_EXPIRE = "ERR invalid expire time in 'set' command";

// Redis's string2ll accepts exactly this: no sign on zero, no '+', no leading zeros, no
// spaces; anything else is "not an integer".
const INTEGER_RE = /^(?:0|-?[1-9][0-9]*)$/;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

const DEFAULT_LIMIT = 100;

type Entry =
  | { type: 'string'; value: string; expiresAt: number }
  | { type: 'hash'; value: Map<string, string>; expiresAt: number }
  | { type: 'zset'; value: string[]; expiresAt: number };

/** expiresAt value meaning "no TTL". */
const NO_TTL = 0;

/**
 * Redis orders index members by memcmp of their UTF-8 bytes, which is code point order.
 * JS `<` compares UTF-16 code units, which agrees except when one side's first differing
 * unit is a surrogate (astral character, code point ≥ 0x10000) and the other's is in
 * 0xE000–0xFFFF. The fix-up below remaps just that case, so ASCII ids pay one loop.
 * @internal
 */
export function compareLex(a: string, b: string): number {
  if (a === b) return 0;
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) {
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x < y ? -1 : 1;
    }
  }
  return a.length - b.length;
}

/** First index whose member is >= `m` (lower bound). */
function lowerBound(arr: string[], m: string): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareLex(arr[mid], m) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index whose member is > `m` (upper bound): where an exclusive `after` starts. */
function upperBound(arr: string[], m: string): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareLex(arr[mid], m) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function parseRedisInt(s: string): bigint | number {
  if (!INTEGER_RE.test(s) || s.length > 20) throw new ReplyError(NOT_INTEGER);
  // Up to 15 digits is always a safe JS integer: skip BigInt on the common path.
  if (s.length <= 15) return Number(s);
  const big = BigInt(s);
  if (big < INT64_MIN || big > INT64_MAX) throw new ReplyError(NOT_INTEGER);
  return big;
}

export class MemoryStateStore implements StateStore {
  readonly kind = 'memory' as const;

  readonly #data = new Map<string, Entry>();
  /** Keys that carry a TTL: what the sweep visits. */
  readonly #expiring = new Set<string>();
  #sweepTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(opts: MemoryStateStoreOptions = {}) {
    const every = opts.sweepIntervalMs ?? 1000;
    if (every > 0) {
      this.#sweepTimer = setInterval(() => this.sweep(), every);
      // The sweep only bounds memory; it must never be the reason a process stays up.
      this.#sweepTimer.unref();
    }
  }

  /** Number of keys currently held, expired-but-unswept included. @internal (tests) */
  get size(): number {
    return this.#data.size;
  }

  /** Deletes every expired key now; returns how many. Runs on the sweep timer. @internal */
  sweep(now = Date.now()): number {
    let n = 0;
    for (const key of this.#expiring) {
      const e = this.#data.get(key);
      if (e === undefined || e.expiresAt === NO_TTL) {
        this.#expiring.delete(key);
      } else if (now > e.expiresAt) {
        this.#data.delete(key);
        this.#expiring.delete(key);
        n++;
      }
    }
    return n;
  }

  #check(): void {
    if (this.#closed) throw new errors.OCR_ERR_STATE_UNAVAILABLE('memory store is closed');
  }

  /** The live entry for `key`, deleting it first when its TTL has passed (Redis lazy expiry). */
  #live(key: string): Entry | undefined {
    const e = this.#data.get(key);
    if (e === undefined) return undefined;
    // Redis treats a key as expired only once now > expiry (keyIsExpired in db.c).
    if (e.expiresAt !== NO_TTL && Date.now() > e.expiresAt) {
      this.#data.delete(key);
      this.#expiring.delete(key);
      return undefined;
    }
    return e;
  }

  #remove(key: string): void {
    this.#data.delete(key);
    this.#expiring.delete(key);
  }

  #hash(key: string, create: true): Map<string, string>;
  #hash(key: string, create: false): Map<string, string> | undefined;
  #hash(key: string, create: boolean): Map<string, string> | undefined {
    const e = this.#live(key);
    if (e === undefined) {
      if (!create) return undefined;
      const value = new Map<string, string>();
      this.#data.set(key, { type: 'hash', value, expiresAt: NO_TTL });
      return value;
    }
    if (e.type !== 'hash') throw new ReplyError(WRONGTYPE);
    return e.value;
  }

  #zset(key: string, create: true): string[];
  #zset(key: string, create: false): string[] | undefined;
  #zset(key: string, create: boolean): string[] | undefined {
    const e = this.#live(key);
    if (e === undefined) {
      if (!create) return undefined;
      const value: string[] = [];
      this.#data.set(key, { type: 'zset', value, expiresAt: NO_TTL });
      return value;
    }
    if (e.type !== 'zset') throw new ReplyError(WRONGTYPE);
    return e.value;
  }

  async get(key: string): Promise<string | null> {
    this.#check();
    const e = this.#live(key);
    if (e === undefined) return null;
    if (e.type !== 'string') throw new ReplyError(WRONGTYPE);
    return e.value;
  }

  async set(key: string, value: string, opts?: SetOptions): Promise<boolean> {
    this.#check();
    let expiresAt = NO_TTL;
    if (opts?.ttlMs !== undefined) {
      const ttl = opts.ttlMs;
      if (!Number.isSafeInteger(ttl)) throw new ReplyError(NOT_INTEGER);
      if (ttl <= 0) throw new ReplyError(INVALID_EXPIRE);
      expiresAt = Date.now() + ttl;
    }
    if (opts?.ifAbsent === true && this.#live(key) !== undefined) return false;
    // SET replaces a key of any type and, without KEEPTTL, drops its old TTL.
    this.#data.set(key, { type: 'string', value: String(value), expiresAt });
    if (expiresAt !== NO_TTL) this.#expiring.add(key);
    else this.#expiring.delete(key);
    return true;
  }

  async del(...keys: string[]): Promise<number> {
    this.#check();
    let n = 0;
    for (const key of keys) {
      if (this.#live(key) !== undefined) {
        this.#remove(key);
        n++;
      }
    }
    return n;
  }

  async incr(key: string, by = 1): Promise<number> {
    this.#check();
    // INCRBY parses its argument like a stored value: 1.5, NaN and Infinity are rejected.
    if (!Number.isSafeInteger(by)) throw new ReplyError(NOT_INTEGER);
    const e = this.#live(key);
    let current: number | bigint = 0;
    if (e !== undefined) {
      if (e.type !== 'string') throw new ReplyError(WRONGTYPE);
      current = parseRedisInt(e.value);
    }
    let next: number | bigint;
    if (typeof current === 'number' && Number.isSafeInteger(current + by)) {
      next = current + by;
    } else {
      next = BigInt(current) + BigInt(by);
      if (next < INT64_MIN || next > INT64_MAX) throw new ReplyError(OVERFLOW);
    }
    const text = String(next);
    // INCR keeps the key's TTL (it rewrites the value, not the key).
    if (e !== undefined) e.value = text;
    else this.#data.set(key, { type: 'string', value: text, expiresAt: NO_TTL });
    // Past 2^53 this loses precision exactly as ioredis's integer reply does.
    return Number(next);
  }

  async pttl(key: string): Promise<number> {
    this.#check();
    const e = this.#live(key);
    if (e === undefined) return -2;
    if (e.expiresAt === NO_TTL) return -1;
    return e.expiresAt - Date.now();
  }

  async hget(key: string, field: string): Promise<string | null> {
    this.#check();
    return this.#hash(key, false)?.get(field) ?? null;
  }

  async hgetall(key: string): Promise<Record<string, string>> {
    this.#check();
    const h = this.#hash(key, false);
    const out: Record<string, string> = {};
    if (h === undefined) return out;
    for (const [f, v] of h) {
      // Same guard as ioredis's hgetall transformer: a field named "__proto__" must become
      // an own property, not replace the object's prototype.
      if (f in out) Object.defineProperty(out, f, { value: v, configurable: true, enumerable: true, writable: true });
      else out[f] = v;
    }
    return out;
  }

  async hset(key: string, fields: Record<string, string>): Promise<void> {
    this.#check();
    const names = Object.keys(fields);
    if (names.length === 0) return;
    const h = this.#hash(key, true);
    for (const f of names) h.set(f, String(fields[f]));
  }

  async hdel(key: string, ...fields: string[]): Promise<number> {
    this.#check();
    if (fields.length === 0) return 0;
    const h = this.#hash(key, false);
    if (h === undefined) return 0;
    let n = 0;
    for (const f of fields) if (h.delete(f)) n++;
    // Redis deletes a hash when its last field goes.
    if (h.size === 0) this.#remove(key);
    return n;
  }

  async casHash(
    key: string,
    field: string,
    expected: string | null,
    update: Record<string, string>,
    remove?: string[],
  ): Promise<boolean> {
    this.#check();
    const h = this.#hash(key, false);
    const current = h?.get(field);
    if (expected === null ? current !== undefined : current !== expected) return false;
    // Same order as the Lua script: HSET, then HDEL, so a field in both ends up removed.
    const names = Object.keys(update);
    let target = h;
    if (names.length > 0) {
      target = this.#hash(key, true);
      for (const f of names) target.set(f, String(update[f]));
    }
    if (target !== undefined && remove !== undefined && remove.length > 0) {
      for (const f of remove) target.delete(f);
      if (target.size === 0) this.#remove(key);
    }
    return true;
  }

  async indexAdd(key: string, ...members: string[]): Promise<number> {
    this.#check();
    if (members.length === 0) return 0;
    const z = this.#zset(key, true);
    let n = 0;
    for (const raw of members) {
      const m = String(raw);
      const i = lowerBound(z, m);
      if (i < z.length && z[i] === m) continue;
      z.splice(i, 0, m);
      n++;
    }
    return n;
  }

  async indexRemove(key: string, ...members: string[]): Promise<number> {
    this.#check();
    if (members.length === 0) return 0;
    const z = this.#zset(key, false);
    if (z === undefined) return 0;
    let n = 0;
    for (const raw of members) {
      const m = String(raw);
      const i = lowerBound(z, m);
      if (i < z.length && z[i] === m) {
        z.splice(i, 1);
        n++;
      }
    }
    if (z.length === 0) this.#remove(key);
    return n;
  }

  async indexRange(key: string, opts?: IndexRangeOptions): Promise<string[]> {
    this.#check();
    const limit = opts?.limit ?? DEFAULT_LIMIT;
    // ZRANGEBYLEX ... LIMIT 0 <count>: a non-integer count is a reply error, a negative
    // one means "all the rest", 0 means nothing.
    if (!Number.isSafeInteger(limit)) throw new ReplyError(NOT_INTEGER);
    const z = this.#zset(key, false);
    if (z === undefined || limit === 0) return [];
    const start = opts?.after === undefined ? 0 : upperBound(z, opts.after);
    return z.slice(start, limit < 0 ? z.length : start + limit);
  }

  async indexCount(key: string): Promise<number> {
    this.#check();
    return this.#zset(key, false)?.length ?? 0;
  }

  async ping(): Promise<void> {
    this.#check();
  }

  /** Stops the sweep and drops all data; later calls reject with OCR_ERR_STATE_UNAVAILABLE. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#sweepTimer !== undefined) clearInterval(this.#sweepTimer);
    this.#data.clear();
    this.#expiring.clear();
  }
}
