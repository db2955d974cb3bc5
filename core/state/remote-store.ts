/**
 * RemoteStateStore: a worker thread's view of the StateStore that lives on the main thread.
 *
 * Owns: forwarding each StateStore method over thread RPC (namespace 'state') and, on the
 * main thread, `serveStateStore()`, which answers those calls from the real store. This is
 * how the default in-process mode shares one MemoryStateStore with every piscina worker:
 *
 *   worker 1: RemoteStateStore ─┐
 *   worker 2: RemoteStateStore ─┼─ ThreadRpcClient ══ BroadcastChannel ══ ThreadRpcServer
 *   worker N: RemoteStateStore ─┘                                         └─ 'state' → MemoryStateStore
 *
 * Atomicity carries over: each forwarded call runs as one synchronous step of the main
 * thread's store, so casHash from two workers still has exactly one winner.
 *
 * Must not: let a worker close the shared store (close() only stops this view, and
 * 'close' is not on the served whitelist), or serve any method not in the StateStore
 * interface (the handler dispatches by name, so the name is checked against a fixed list).
 */
import type { ThreadRpcClient, ThreadRpcServer } from '../thread-contract/thread-rpc.js';
import { errors } from '../errors.js';
import type { IndexRangeOptions, SetOptions, StateStore } from './store.js';

/** RPC namespace of the state store. @internal */
export const STATE_NAMESPACE = 'state';

/**
 * The methods a worker may call. Everything else, `close` included, is refused: a worker
 * must not be able to shut the store down for the whole process.
 */
const SERVED = new Set<string>([
  'get',
  'set',
  'del',
  'incr',
  'pttl',
  'hget',
  'hgetall',
  'hset',
  'hdel',
  'casHash',
  'indexAdd',
  'indexRemove',
  'indexRange',
  'indexCount',
  'ping',
]);

/**
 * Registers the 'state' namespace on `server`, answering from `store`. Call once on the
 * main thread before the worker pool starts.
 */
export function serveStateStore(server: ThreadRpcServer, store: StateStore): void {
  server.handle(STATE_NAMESPACE, (method, args) => {
    if (!SERVED.has(method)) throw new errors.OCR_ERR_STATE_RPC_UNKNOWN(`state method "${method}"`);
    const fn = (store as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[method];
    return fn.apply(store, args);
  });
}

export interface RemoteStateStoreOptions {
  /**
   * Per-call timeout; a call that takes longer rejects with OCR_ERR_STATE_RPC_TIMEOUT. When
   * the main thread's store is itself remote (Redis), keep this above its command timeout
   * so the real cause, not the RPC timeout, reaches the caller.
   * @default the client's timeoutMs (5000)
   */
  timeoutMs?: number;
  /**
   * Close the RPC client in close(). Off by default: the client is usually shared by other
   * namespaces of the worker.
   * @default false
   */
  closeClient?: boolean;
}

export class RemoteStateStore implements StateStore {
  readonly kind = 'remote' as const;
  readonly #client: ThreadRpcClient;
  readonly #timeoutMs: number | undefined;
  readonly #closeClient: boolean;
  #closed = false;

  constructor(client: ThreadRpcClient, opts: RemoteStateStoreOptions = {}) {
    this.#client = client;
    this.#timeoutMs = opts.timeoutMs;
    this.#closeClient = opts.closeClient ?? false;
  }

  #call<T>(method: string, args: unknown[]): Promise<T> {
    if (this.#closed) return Promise.reject(new errors.OCR_ERR_STATE_UNAVAILABLE('remote state store is closed'));
    return this.#client.call(STATE_NAMESPACE, method, args, this.#timeoutMs) as Promise<T>;
  }

  get(key: string): Promise<string | null> {
    return this.#call('get', [key]);
  }

  set(key: string, value: string, opts?: SetOptions): Promise<boolean> {
    return this.#call('set', opts === undefined ? [key, value] : [key, value, opts]);
  }

  del(...keys: string[]): Promise<number> {
    return this.#call('del', keys);
  }

  incr(key: string, by?: number): Promise<number> {
    return this.#call('incr', by === undefined ? [key] : [key, by]);
  }

  pttl(key: string): Promise<number> {
    return this.#call('pttl', [key]);
  }

  hget(key: string, field: string): Promise<string | null> {
    return this.#call('hget', [key, field]);
  }

  hgetall(key: string): Promise<Record<string, string>> {
    return this.#call('hgetall', [key]);
  }

  hset(key: string, fields: Record<string, string>): Promise<void> {
    return this.#call('hset', [key, fields]);
  }

  hdel(key: string, ...fields: string[]): Promise<number> {
    return this.#call('hdel', [key, ...fields]);
  }

  casHash(
    key: string,
    field: string,
    expected: string | null,
    update: Record<string, string>,
    remove?: string[],
  ): Promise<boolean> {
    return this.#call(
      'casHash',
      remove === undefined ? [key, field, expected, update] : [key, field, expected, update, remove],
    );
  }

  indexAdd(key: string, ...members: string[]): Promise<number> {
    return this.#call('indexAdd', [key, ...members]);
  }

  indexRemove(key: string, ...members: string[]): Promise<number> {
    return this.#call('indexRemove', [key, ...members]);
  }

  indexRange(key: string, opts?: IndexRangeOptions): Promise<string[]> {
    return this.#call('indexRange', opts === undefined ? [key] : [key, opts]);
  }

  indexCount(key: string): Promise<number> {
    return this.#call('indexCount', [key]);
  }

  /** Round trip to the main thread and through to the store's own ping. */
  async ping(): Promise<void> {
    await this.#call('ping', []);
  }

  /** Stops this view (later calls reject with OCR_ERR_STATE_UNAVAILABLE); the shared store stays open. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#closeClient) this.#client.close();
  }
}
