/**
 * micro/redis-client: client-side CPU per Redis command, the way a worker issues them (a
 * batch's worth in one tick, then wait for all), for the ways ioredis can send them and for
 * the product's RedisStateStore. Behind the choice in core/state/redis-store.ts (socket
 * corked per tick instead of ioredis's auto-pipelining; flat HSET arguments).
 *
 *   node --import tsx bench/micro/redis-client.ts [--command=hset|hget] [--commands=200000] [--batch=512] [--rounds=4]
 *
 * Variants, each on its own connection to a throwaway redis-server (its CPU is not counted):
 *   auto-object   ioredis auto-pipelining, hset(key, { field: value })   (the store before)
 *   auto-flat     ioredis auto-pipelining, hset(key, field, value)
 *   plain         no auto-pipelining: one socket write per command
 *   corked        no auto-pipelining, socket corked until the tick ends: one write per tick
 *   store         RedisStateStore (what the product runs)
 *   script        (hset only) every HSET of a tick in one EVALSHA, each under pcall: what
 *                 coalescing a batch's state writes would save on the client (not adopted:
 *                 bench/results/HISTORY.md, "State in Redis: client side")
 * Prints µs of this process's CPU per command per round (the first round includes warm-up), and
 * the redis-server's CPU per command over the last rounds beside it (read from /proc in 10 ms
 * ticks: meaningful from ≈ 100,000 commands per round).
 *
 * Owns: nothing the product uses. Must not: touch any Redis but its own.
 */
import { Redis } from 'ioredis';
import { RedisStateStore } from '../../core/state/redis-store.js';
import { startRedis } from '../lib/redis-server.js';
import { processCpuMs } from '../lib/proc.js';

const opts = { command: 'hset' as 'hset' | 'hget', commands: 200_000, batch: 512, rounds: 4 };
for (const a of process.argv.slice(2)) {
  const m = /^--(command|commands|batch|rounds)=(.+)$/.exec(a);
  if (!m) throw new Error(`unknown argument ${a}`);
  if (m[1] === 'command') {
    if (m[2] !== 'hset' && m[2] !== 'hget') throw new Error('--command must be hset or hget');
    opts.command = m[2];
  } else
    opts[m[1] as 'commands' | 'batch' | 'rounds'] = Math.max(
      1,
      Math.min(Number(m[2]) || 1, m[1] === 'rounds' ? 20 : 1_000_000),
    );
}

const VARIANTS = ['auto-object', 'auto-flat', 'plain', 'corked', 'store', 'script'] as const;
type Variant = (typeof VARIANTS)[number];
const FIELD = '1';
const VALUE = JSON.stringify({ status: 'Available', errorCode: 'NoError', timestamp: new Date().toISOString() });
const keyOf = (i: number) => `ocr:cs:{CP${i % 1000}}`;

type Issue = (key: string) => Promise<unknown>;

async function setup(variant: Variant, url: string): Promise<{ issue: Issue; close: () => Promise<void> }> {
  if (variant === 'store') {
    const store = new RedisStateStore({ url });
    await store.ping();
    const issue: Issue =
      opts.command === 'hset' ? (k) => store.hset(k, { [FIELD]: VALUE }) : (k) => store.hget(k, FIELD);
    return { issue, close: () => store.close() };
  }
  if (variant === 'script') return coalesced(url);
  const client = new Redis(url, {
    enableAutoPipelining: variant.startsWith('auto'),
    commandTimeout: 2000,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
  });
  await new Promise((resolve) => client.once('ready', resolve));
  let corked = false;
  const uncork = () => {
    corked = false;
    client.stream.uncork();
  };
  const cork = () => {
    if (variant !== 'corked' || corked) return;
    corked = true;
    client.stream.cork();
    process.nextTick(uncork);
  };
  const issue: Issue =
    opts.command === 'hget'
      ? (k) => (cork(), client.hget(k, FIELD))
      : variant === 'auto-object'
        ? (k) => client.hset(k, { [FIELD]: VALUE })
        : (k) => (cork(), client.hset(k, FIELD, VALUE));
  return { issue, close: async () => void client.disconnect() };
}

// One EVALSHA per tick carrying every HSET of the tick (keys in KEYS, field/value pairs in ARGV);
// each write runs under pcall so one bad key fails only its own caller.
const HSET_MANY = `local out = {}
for i = 1, #KEYS do
  local r = redis.pcall('HSET', KEYS[i], ARGV[2*i-1], ARGV[2*i])
  if type(r) == 'table' and r.err then out[i] = r.err else out[i] = 0 end
end
return out`;
async function coalesced(url: string): Promise<{ issue: Issue; close: () => Promise<void> }> {
  const client = new Redis(url, {
    commandTimeout: 2000,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
  });
  await new Promise((resolve) => client.once('ready', resolve));
  client.defineCommand('hsetMany', { lua: HSET_MANY });
  let keys: string[] = [];
  let argv: string[] = [];
  let waiters: { resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];
  const flush = () => {
    const k = keys;
    const a = argv;
    const w = waiters;
    keys = [];
    argv = [];
    waiters = [];
    (client as unknown as { hsetMany(n: number, ...args: string[]): Promise<unknown[]> })
      .hsetMany(k.length, ...k, ...a)
      .then(
        (res) => {
          for (let i = 0; i < w.length; i++) {
            if (res[i] === 0) w[i].resolve(0);
            else w[i].reject(new Error(String(res[i])));
          }
        },
        (err) => {
          for (const x of w) x.reject(err);
        },
      );
  };
  const issue: Issue = (k) => {
    if (keys.length === 0) process.nextTick(flush);
    keys.push(k);
    argv.push(FIELD, VALUE);
    return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
  };
  return { issue, close: async () => void client.disconnect() };
}

async function round(issue: Issue): Promise<number> {
  const c0 = process.cpuUsage();
  for (let i = 0; i < opts.commands; i += opts.batch) {
    const ps: Promise<unknown>[] = [];
    for (let j = 0; j < opts.batch; j++) ps.push(issue(keyOf(i + j)));
    await Promise.all(ps);
  }
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / opts.commands;
}

const redis = await startRedis();
try {
  console.log(
    `${opts.command}, ${opts.commands} commands per round in batches of ${opts.batch}; µs of client CPU per command per round; redis-server's µs per command (rounds 2 on)`,
  );
  for (const v of VARIANTS) {
    if (v === 'script' && opts.command !== 'hset') continue;
    const { issue, close } = await setup(v, redis.url);
    const rounds: string[] = [];
    let r0 = 0;
    for (let r = 0; r < opts.rounds; r++) {
      if (r === 1 || opts.rounds === 1) r0 = processCpuMs(redis.pid);
      rounds.push((await round(issue)).toFixed(2));
    }
    const serverUs = ((processCpuMs(redis.pid) - r0) * 1000) / (opts.commands * Math.max(1, opts.rounds - 1));
    await close();
    console.log(`${v.padEnd(12)} ${rounds.join('  ')}   redis-server ${serverUs.toFixed(2)}`);
  }
} finally {
  await redis.stop();
}
