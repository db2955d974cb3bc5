/**
 * Chooses the state store of a thread from configuration: Redis when `redis.url` is set,
 * otherwise the in-process store of the main thread, reached from workers over thread RPC.
 * Must not: hold state itself.
 */
import type { RouterConfig } from '../options.js';
import type { ThreadRpcClient } from '../dispatch/thread-rpc.js';
import { RedisStateStore } from './redis-store.js';
import { RemoteStateStore } from './remote-store.js';
import type { StateStore } from './store.js';

export function createStores(config: RouterConfig, rpc: ThreadRpcClient, log?: { warn(o: object, m?: string): void }): StateStore {
  if (config.redis.url) {
    return new RedisStateStore({ url: config.redis.url, keyPrefix: config.redis.keyPrefix, commandTimeoutMs: config.redis.commandTimeoutMs, onError: (err: Error) => log?.warn({ err }, 'redis connection error') });
  }
  return new RemoteStateStore(rpc);
}
