/**
 * Chooses the state store of a thread from configuration: Redis when `redis.url` is set,
 * otherwise the in-process store of the main thread, reached from workers over thread RPC.
 * Must not: hold state itself.
 */
import type { RouterConfig } from '../options.js';
import type { ThreadRpcClient } from '../thread-contract/thread-rpc.js';
import { RedisStateStore } from './redis-store.js';
import { RemoteStateStore } from './remote-store.js';
import type { StateStore } from './store.js';
import { JournalingStore } from './journaling-store.js';
import type { JournalEntry } from './journal.js';

/** The Redis store of a thread, configured the same way on the socket thread and in workers. */
export function createRedisStore(config: RouterConfig, log?: { warn(o: object, m?: string): void }): RedisStateStore {
  return new RedisStateStore({
    url: config.redis.url!,
    keyPrefix: config.redis.keyPrefix,
    commandTimeoutMs: config.redis.commandTimeoutMs,
    onError: (err: Error) => log?.warn({ err }, 'redis connection error'),
  });
}

export function createStores(
  config: RouterConfig,
  rpc: ThreadRpcClient,
  log?: { warn(o: object, m?: string): void },
  journaled?: Set<string> | null,
): StateStore {
  if (config.redis.url) {
    const redis = createRedisStore(config, log);
    if (!journaled) return redis;
    // Writes that cannot reach Redis go to the socket thread's journal (core/state/journal.ts).
    const append = async (entries: JournalEntry[]) => {
      await rpc.call('journal', 'append', [entries]);
    };
    return new JournalingStore(redis, append, { has: (g) => journaled.has(g), mark: (g) => journaled.add(g) });
  }
  return new RemoteStateStore(rpc);
}
