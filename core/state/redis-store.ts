/**
 * RedisStateStore: StateStore over ioredis, for multi-node deployments.
 *
 * Owns: the mapping of each StateStore method to one Redis command (or one Lua script for
 * casHash), the ioredis options that suit a router, and the translation of "Redis could not
 * be reached in time" into OCR_ERR_STATE_UNAVAILABLE.
 *
 * Must not: build key names (keys.ts does), swallow errors, retry or resend a command (a
 * resent write may be applied twice), or run multi-key scripts across charge points (keys
 * of different `{cpId}` hash tags live in different Cluster slots).
 *
 * Offline behaviour: a command issued while the connection is down waits (up to
 * commandTimeoutMs) for it in *this* class, not in ioredis's offline queue. ioredis's queue
 * keeps a command after its commandTimeout has rejected it and sends it on reconnect, so a
 * write the caller saw fail would be applied later (a lock claimed by nobody, a counter
 * bumped twice after a retry). Waiting here means a command that timed out was never sent.
 * For the same reason ioredis does not resend commands that were in flight when the
 * connection dropped (autoResendUnfulfilledCommands: false): they may or may not have run,
 * and they fail with OCR_ERR_STATE_UNAVAILABLE, which callers must read as "outcome
 * unknown". test/integration/redis/redis-store.test.ts pins both.
 *
 * Errors: a reply error from Redis (WRONGTYPE, "not an integer", ...) propagates unchanged,
 * exactly as MemoryStateStore raises it. Anything else (command timeout, not connected in
 * time, retries exhausted, connection or store closed) is wrapped in OCR_ERR_STATE_UNAVAILABLE with
 * the ioredis error as `cause`, so callers and metrics can tell "Redis is down" from "the
 * command was wrong" by `code`.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { errors } from '../errors.js';
import type { IndexRangeOptions, SetOptions, StateStore } from './store.js';

export interface RedisStateStoreOptions {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://` for TLS. */
  url: string;
  /**
   * Prepended by ioredis to every key (also to the KEYS of the casHash script). Used to
   * isolate tests or tenants sharing one Redis. Must not contain `{` or `}`: the first
   * brace pair of a key is its Cluster hash tag, and it must stay the `{cpId}` one.
   * @default ''
   */
  keyPrefix?: string;
  /**
   * A command that gets no reply within this time rejects with OCR_ERR_STATE_UNAVAILABLE.
   * A command issued while disconnected first waits up to this long for the connection
   * (see enableOfflineQueue), so the worst case is twice this value.
   * @default 2000
   */
  commandTimeoutMs?: number;
  /**
   * Reconnect attempts after which the commands that were in flight when the connection
   * dropped are failed (commandTimeoutMs may fail them first; they are never resent).
   * ioredis's default (20) holds them through many attempts; a router would rather answer
   * the charge point (InternalError, it retries) than hold its one in-flight CALL.
   * @default 1
   */
  maxRetriesPerRequest?: number;
  /**
   * Let commands issued while (re)connecting wait for the connection (up to
   * commandTimeoutMs) instead of failing at once. On: a brief Redis restart costs latency,
   * not errors. Off: fail fast while disconnected. Either way a command that timed out
   * while waiting is never sent afterwards (see the file header); ioredis's own offline
   * queue is always off on a client this store creates.
   * @default true
   */
  enableOfflineQueue?: boolean;
  /**
   * Give up on one TCP connect attempt after this long (then retryStrategy applies).
   * @default 5000
   */
  connectTimeoutMs?: number;
  /**
   * Do not connect until the first command (or `client.connect()`).
   * @default false
   */
  lazyConnect?: boolean;
  /**
   * Receives connection-level errors (ECONNREFUSED while reconnecting, ...). Command
   * errors are not reported here; they reject the command's promise. Without a listener
   * ioredis would print every reconnect failure to stderr.
   * @default a no-op
   */
  onError?: (err: Error) => void;
}

/** Lowest and highest reconnect delay; see retryStrategy. */
const RETRY_BASE_MS = 50;
const RETRY_CAP_MS = 2000;

/**
 * Capped exponential backoff with jitter, never giving up. The first retries come fast so a
 * Redis restart or failover costs tens of milliseconds; the cap keeps a long outage from
 * pushing the next attempt far past the moment Redis is back; jitter keeps a fleet of
 * router nodes from reconnecting in lockstep. Never returning null matters: a router that
 * stops reconnecting would need a restart after every Redis outage, while commands issued
 * meanwhile already fail fast through commandTimeout and maxRetriesPerRequest.
 * @internal
 */
export function retryDelay(times: number): number {
  const exp = RETRY_BASE_MS * 2 ** Math.min(times - 1, 10);
  const capped = Math.min(exp, RETRY_CAP_MS);
  return capped + Math.floor(Math.random() * (capped / 4));
}

/**
 * casHash: compare one hash field with an expected value (or with absence), then HSET and
 * HDEL, all in one script so no other client can interleave. Lua sees a missing field as
 * `false`. HSET runs before HDEL, so a field named in both ends up deleted; Redis deletes
 * the key when its last field goes, as with a plain HDEL.
 *
 * KEYS[1] hash key
 * ARGV[1] field to compare   ARGV[2] '1' expected present / '0' expected absent
 * ARGV[3] expected value     ARGV[4] n = number of update pairs
 * ARGV[5 .. 4+2n] update field/value pairs, then the fields to remove
 *
 * Kept inline rather than in scripts/*.lua so that no file has to be located at run time
 * (tsx, dist/ and bundles all agree on where a string constant is).
 */
const CAS_HASH_LUA = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if cur ~= ARGV[3] then return 0 end
elseif cur then
  return 0
end
local n = tonumber(ARGV[4])
if n > 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 5, 4 + 2 * n))
end
if #ARGV > 4 + 2 * n then
  redis.call('HDEL', KEYS[1], unpack(ARGV, 5 + 2 * n, #ARGV))
end
return 1
`;

/** Name under which the script is registered on the client; namespaced to avoid clashes. */
const CAS_COMMAND = 'ocrCasHash';

type CasClient = { [CAS_COMMAND](key: string, ...args: string[]): Promise<number> };

const DEFAULT_LIMIT = 100;

/** True for errors the server replied with, as opposed to transport/timeout failures. */
function isReplyError(err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError';
}

/** A command issued while disconnected, waiting for 'ready'. */
interface ReadyWaiter {
  resolve: () => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

const noop = (): void => undefined;
const RESOLVED: Promise<void> = Promise.resolve();

function wrap(err: unknown): never {
  if (isReplyError(err)) throw err;
  const message = err instanceof Error ? err.message : String(err);
  throw new errors.OCR_ERR_STATE_UNAVAILABLE(message, { cause: err });
}

export class RedisStateStore implements StateStore {
  readonly kind = 'redis' as const;
  /**
   * The ioredis client, for advanced use (pub/sub needs its own connection: use
   * `client.duplicate()`). Commands sent directly bypass this store's error translation.
   */
  readonly client: Redis;
  /** Whether close() may quit the client: only when this store created it. */
  readonly #ownsClient: boolean;
  /** Wait for the connection (true) or fail at once (false) when it is not ready. */
  readonly #waitWhenOffline: boolean;
  /** How long a command may wait for the connection. */
  readonly #readyWaitMs: number;
  readonly #waiters = new Set<ReadyWaiter>();
  readonly #onReady = () => {
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.resolve();
    }
    this.#waiters.clear();
  };
  readonly #onEnd = () => this.#rejectWaiters('connection ended');
  #closed = false;

  /**
   * Either options (the store creates and owns a client) or an existing ioredis client
   * (the store borrows it: close() leaves it open and the casHash script is registered on
   * it). A borrowed client keeps its own options: give it a commandTimeout, and
   * autoResendUnfulfilledCommands: false, or the guarantees in the file header do not hold.
   */
  constructor(optsOrClient: RedisStateStoreOptions | Redis) {
    if (optsOrClient instanceof Redis) {
      this.client = optsOrClient;
      this.#ownsClient = false;
      this.#waitWhenOffline = true;
      this.#readyWaitMs = optsOrClient.options.commandTimeout ?? 2000;
    } else {
      const opts = optsOrClient;
      if (opts.keyPrefix !== undefined && /[{}]/.test(opts.keyPrefix)) {
        throw new errors.OCR_ERR_CONFIG_INVALID(`state keyPrefix "${opts.keyPrefix}" must not contain "{" or "}"`);
      }
      const onError = opts.onError ?? (() => {});
      const commandTimeout = opts.commandTimeoutMs ?? 2000;
      if (!(commandTimeout > 0))
        throw new errors.OCR_ERR_CONFIG_INVALID(
          'state commandTimeoutMs must be > 0: it is what bounds every wait for Redis',
        );
      this.#waitWhenOffline = opts.enableOfflineQueue ?? true;
      this.#readyWaitMs = commandTimeout;
      const options: RedisOptions = {
        keyPrefix: opts.keyPrefix ?? '',
        // Off: this store batches the writes itself by corking the socket (#cork), which
        // gives the same one-write-per-tick as ioredis's auto-pipelining for less than half
        // its client CPU (no Pipeline object, second promise and nextTick per command):
        // 2.5-2.8 against 6.5 µs per HSET, bench/micro/redis-client.ts.
        enableAutoPipelining: false,
        commandTimeout,
        maxRetriesPerRequest: opts.maxRetriesPerRequest ?? 1,
        // Waiting for the connection is done by #run, which never sends a command whose
        // caller has already been told it failed; ioredis's queue would (file header).
        enableOfflineQueue: false,
        // A command in flight when the connection dropped may already have run: resending
        // could apply it twice or after its caller gave up. It fails instead.
        autoResendUnfulfilledCommands: false,
        connectTimeout: opts.connectTimeoutMs ?? 5000,
        lazyConnect: opts.lazyConnect ?? false,
        retryStrategy: retryDelay,
        // Shows up in CLIENT LIST, so an operator can tell router connections apart.
        connectionName: 'ocr-state',
      };
      this.client = new Redis(opts.url, options);
      this.client.on('error', onError);
      this.#ownsClient = true;
    }
    this.client.on('ready', this.#onReady);
    this.client.on('end', this.#onEnd);
    // defineCommand sends EVALSHA and falls back to EVAL on NOSCRIPT, so a Redis restart
    // (which empties the script cache) needs no handling here.
    this.client.defineCommand(CAS_COMMAND, { numberOfKeys: 1, lua: CAS_HASH_LUA });
  }

  #rejectWaiters(reason: string): void {
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(new Error(reason));
    }
    this.#waiters.clear();
  }

  /** Resolves on the next 'ready', rejects after #readyWaitMs or when the client ends. */
  #whenReady(): Promise<void> {
    if (this.client.status === 'end') return Promise.reject(new Error('Connection is closed.'));
    // lazyConnect: the first command starts the connection, as ioredis itself would.
    if (this.client.status === 'wait') this.client.connect().catch(() => {});
    return new Promise<void>((resolve, reject) => {
      const w: ReadyWaiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(w);
          reject(new Error(`Redis not connected within ${this.#readyWaitMs}ms`));
        }, this.#readyWaitMs),
      };
      w.timer.unref();
      this.#waiters.add(w);
    });
  }

  /**
   * Every command goes through here. Connected: send now (the hot path is one status
   * check). Not connected: wait for 'ready' first, or fail fast, per enableOfflineQueue.
   */
  #run<T>(send: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new errors.OCR_ERR_STATE_UNAVAILABLE('redis store is closed'));
    if (this.client.status === 'ready') {
      this.#cork();
      return send().catch(wrap);
    }
    if (!this.#waitWhenOffline) return send().catch(wrap);
    return this.#whenReady()
      .then(() => {
        this.#cork();
        return send();
      })
      .catch(wrap);
  }

  /**
   * Holds this tick's commands in the socket's buffer and writes them with one syscall
   * when the tick ends: what auto-pipelining does, without its per-command cost. ioredis
   * writes each command to the socket as it is issued (and queues it for its reply in the
   * same order), so a corked socket changes when bytes leave, never their order or which
   * reply goes to which command. The stream is remembered because a reconnect replaces it;
   * uncorking a socket that was destroyed meanwhile is a no-op (ioredis has already failed
   * its commands).
   */
  #cork(): void {
    if (this.#corked !== null) return;
    const stream = this.client.stream;
    if (stream === undefined) return;
    stream.cork();
    this.#corked = stream;
    process.nextTick(this.#uncork);
  }

  #corked: Redis['stream'] | null = null;
  readonly #uncork = (): void => {
    const stream = this.#corked;
    this.#corked = null;
    stream?.uncork();
  };

  get(key: string): Promise<string | null> {
    return this.#run(() => this.client.get(key));
  }

  async set(key: string, value: string, opts?: SetOptions): Promise<boolean> {
    const ttl = opts?.ttlMs;
    const nx = opts?.ifAbsent === true;
    const res = await this.#run((): Promise<string | null> => {
      if (ttl !== undefined)
        return nx ? this.client.set(key, value, 'PX', ttl, 'NX') : this.client.set(key, value, 'PX', ttl);
      return nx ? this.client.set(key, value, 'NX') : this.client.set(key, value);
    });
    // SET replies OK, or nil when NX found the key.
    return res === 'OK';
  }

  async del(...keys: string[]): Promise<number> {
    if (keys.length === 0) return 0;
    return this.#run(() => this.client.del(...keys));
  }

  incr(key: string, by?: number): Promise<number> {
    if (by === undefined || by === 1) return this.#run(() => this.client.incr(key));
    return this.#run(() => this.client.incrby(key, by));
  }

  pttl(key: string): Promise<number> {
    return this.#run(() => this.client.pttl(key));
  }

  hget(key: string, field: string): Promise<string | null> {
    return this.#run(() => this.client.hget(key, field));
  }

  hgetall(key: string): Promise<Record<string, string>> {
    return this.#run(() => this.client.hgetall(key));
  }

  hset(key: string, fields: Record<string, string>): Promise<void> {
    // Flat field/value arguments: ioredis's transformer for an object argument costs
    // ≈ 1.5 µs per command (bench/micro/redis-client.ts).
    let args: string[] | undefined;
    for (const f in fields) (args ??= []).push(f, fields[f]);
    if (args === undefined) return RESOLVED;
    // Connected (the usual case): straight to ioredis, one promise, no closure.
    if (this.client.status === 'ready' && !this.#closed) {
      this.#cork();
      // Spread, never an array argument: ioredis reads an array as an object to flatten
      // ("0", field, "1", value, ...).
      return (args.length === 2 ? this.client.hset(key, args[0], args[1]) : this.client.hset(key, ...args)).then(
        noop,
        wrap,
      );
    }
    const a = args;
    return this.#run(() => this.client.hset(key, ...a)).then(noop);
  }

  async hdel(key: string, ...fields: string[]): Promise<number> {
    if (fields.length === 0) return 0;
    return this.#run(() => this.client.hdel(key, ...fields));
  }

  async casHash(
    key: string,
    field: string,
    expected: string | null,
    update: Record<string, string>,
    remove?: string[],
  ): Promise<boolean> {
    const names = Object.keys(update);
    const args: string[] = [field, expected === null ? '0' : '1', expected ?? '', String(names.length)];
    for (const f of names) args.push(f, update[f]);
    if (remove !== undefined) for (const f of remove) args.push(f);
    const res = await this.#run(() => (this.client as unknown as CasClient)[CAS_COMMAND](key, ...args));
    return res === 1;
  }

  async indexAdd(key: string, ...members: string[]): Promise<number> {
    if (members.length === 0) return 0;
    // Score 0 for every member turns the sorted set into a lexicographic index (ZRANGEBYLEX
    // is only defined when all scores are equal).
    const args: (string | number)[] = [];
    for (const m of members) args.push(0, m);
    return this.#run(() => this.client.zadd(key, ...args));
  }

  async indexRemove(key: string, ...members: string[]): Promise<number> {
    if (members.length === 0) return 0;
    return this.#run(() => this.client.zrem(key, ...members));
  }

  indexRange(key: string, opts?: IndexRangeOptions): Promise<string[]> {
    const min = opts?.after === undefined ? '-' : '(' + opts.after;
    return this.#run(() => this.client.zrangebylex(key, min, '+', 'LIMIT', 0, opts?.limit ?? DEFAULT_LIMIT));
  }

  indexCount(key: string): Promise<number> {
    return this.#run(() => this.client.zcard(key));
  }

  async ping(): Promise<void> {
    await this.#run(() => this.client.ping());
  }

  /**
   * Later calls reject with OCR_ERR_STATE_UNAVAILABLE. QUIT lets replies already in flight
   * arrive; when it cannot be sent (connection down) or times out, disconnect() drops the
   * socket and stops reconnecting. A borrowed client is left open.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#rejectWaiters('store closed');
    this.client.off('ready', this.#onReady);
    this.client.off('end', this.#onEnd);
    if (!this.#ownsClient || this.client.status === 'end') return;
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}
