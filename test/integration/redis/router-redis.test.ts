/** The router on real Redis: registry, status and ownership land in Redis under hash-tagged keys. */
import t from 'tap';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRouter } from '../../helpers/router.js';
import { TestCharger } from '../../helpers/charger.js';
import { uniqueName, useRedis } from '../../helpers/services.js';
import { until as waitUntil } from '../../helpers/wait.js';

t.test('state in Redis', async (t) => {
  const url = await useRedis(t);
  const keyPrefix = `${uniqueName('rt')}:`;
  const r = await startRouter(t, { redis: { url, keyPrefix }, nodeId: 'node-a' });
  const redis = new Redis(url, { keyPrefix });
  t.teardown(async () => {
    const keys = await redis.keys(`${keyPrefix}*`);
    if (keys.length) await redis.del(...keys.map((k) => k.slice(keyPrefix.length)));
    redis.disconnect();
  });
  const c = await TestCharger.connect(r.url('R-1'));
  await c.call('BootNotification', { chargePointVendor: 'V', chargePointModel: 'M' });
  await c.call('StatusNotification', { connectorId: 2, errorCode: 'NoError', status: 'Charging' });
  const rec = await redis.hgetall('ocr:{R-1}:core:charger');
  t.match(rec, { vendor: 'V', model: 'M', nodeId: 'node-a', bootStatus: 'Accepted', ocppVersion: '1.6' });
  t.match(JSON.parse((await redis.hget('ocr:{R-1}:core:status', '2'))!), { status: 'Charging' });
  t.same(await redis.zrange('ocr:idx:chargers', '0', '-1'), ['R-1']);
  await c.close();
  // Ownership is released on disconnect (compare-and-delete on the session).
  await waitUntil(async () => (await redis.hget('ocr:{R-1}:core:charger', 'nodeId')) === null, {
    what: 'the disconnect to release the ownership (nodeId)',
  });
  t.equal(await redis.hget('ocr:{R-1}:core:charger', 'nodeId'), null);
  t.ok(await redis.hget('ocr:{R-1}:core:charger', 'disconnectedAt'));
});

/** Redis was restarted: its client reconnects with a backoff, so these waits are long. */
const until = (what: string, cond: () => Promise<boolean>) =>
  waitUntil(cond, { what, timeoutMs: 15_000, everyMs: 100 });

t.test('Redis away: the router keeps serving, journals the writes, and catches up in order', async (t) => {
  const { startRedis } = await import('../../services/redis.js');
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const r = await startRouter(t, { redis: { url: redis.url, commandTimeoutMs: 300 } });
  const c = await TestCharger.connect(r.url('R-OUT'));
  t.teardown(() => c.close());
  t.equal((await c.call('Heartbeat', {}))[0], 3);
  await redis.stop();

  t.equal((await c.call('Heartbeat', {}))[0], 3, 'heartbeat answered while Redis is down');
  const faulted = await c.call('StatusNotification', { connectorId: 1, errorCode: 'GroundFailure', status: 'Faulted' });
  t.same(faulted[2], {}, 'status answered: the write is in the journal');
  t.equal((await c.call('StatusNotification', { connectorId: 2, errorCode: 'NoError', status: 'Charging' }))[0], 3);
  t.equal((await r.api('GET', '/ready')).status, 503, 'not ready while Redis is down');
  t.match((await r.api('GET', '/metrics')).body, /ocr_state_journal_entries [1-9]/);

  await redis.restart();
  // The first write after the outage must not overtake the journaled ones of this charger.
  t.equal((await c.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Available' }))[0], 3);
  const client = new Redis(redis.url);
  t.teardown(() => client.disconnect());
  t.ok(
    await until('both statuses in Redis', async () => (await client.hlen('ocr:{R-OUT}:core:status')) === 2),
    'journal replayed',
  );
  t.ok(
    await until(
      'connector 1 Available in Redis',
      async () => JSON.parse((await client.hget('ocr:{R-OUT}:core:status', '1'))!).status === 'Available',
    ),
    'newest status wins',
  );
  t.match(JSON.parse((await client.hget('ocr:{R-OUT}:core:status', '2'))!), { status: 'Charging' });
  t.ok(
    await until('ocr_state_journal_entries 0', async () =>
      /ocr_state_journal_entries 0/.test((await r.api('GET', '/metrics')).body as string),
    ),
    'journal empty',
  );
  t.equal((await r.api('GET', '/ready')).status, 200);
});

t.test('Redis away across a router restart: the journal survives and is replayed', async (t) => {
  const { startRedis } = await import('../../services/redis.js');
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const dataDir = mkdtempSync(join(tmpdir(), 'ocr-journal-'));
  const cfg = { redis: { url: redis.url, commandTimeoutMs: 300 }, dataDir };
  const first = await startRouter({ teardown: () => undefined }, cfg);
  const c = await TestCharger.connect(first.url('R-RESTART'));
  await c.call('Heartbeat', {});
  await redis.stop();
  t.same((await c.call('StatusNotification', { connectorId: 3, errorCode: 'NoError', status: 'Reserved' }))[2], {});
  await c.close();
  await first.router.close();
  await redis.restart();
  await startRouter(t, cfg);
  const client = new Redis(redis.url);
  t.teardown(() => client.disconnect());
  t.ok(
    await until(
      'connector 3 Reserved in Redis',
      async () => JSON.parse((await client.hget('ocr:{R-RESTART}:core:status', '3')) ?? '{}').status === 'Reserved',
    ),
    'write from before the restart replayed',
  );
});

t.test(
  'a reconnect storm is paced: upgrades beyond server.maxPendingUpgrades get 503 + Retry-After at once',
  async (t) => {
    const { startRedis } = await import('../../services/redis.js');
    const redis = await startRedis(); // a private one: CLIENT PAUSE stops every client of the server
    t.teardown(() => redis.stop());
    const r = await startRouter(t, {
      redis: { url: redis.url, commandTimeoutMs: 5000 },
      server: { maxPendingUpgrades: 2 },
    });
    const admin = new Redis(redis.url);
    t.teardown(() => admin.disconnect());
    await admin.call('CLIENT', 'PAUSE', '1500', 'ALL'); // registry lookups now wait
    const started = Date.now();
    const attempts = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) => TestCharger.connect(r.url(`STORM-${i}`))),
    );
    const refused = attempts
      .filter((a) => a.status === 'rejected')
      .map((a) => a.reason as { statusCode?: number; headers?: Record<string, string> });
    const opened = attempts.filter((a) => a.status === 'fulfilled').map((a) => a.value);
    t.teardown(() => Promise.all(opened.map((c) => c.close())));
    t.equal(opened.length, 2, 'the two pending upgrades complete once the registry answers');
    t.equal(refused.length, 4);
    for (const e of refused) {
      t.equal(e.statusCode, 503);
      t.ok(
        Number(e.headers?.['retry-after']) >= 5 && Number(e.headers?.['retry-after']) <= 14,
        `Retry-After ${e.headers?.['retry-after']}`,
      );
    }
    t.ok(Date.now() - started >= 1000, 'the accepted ones waited for the registry, the rest did not queue behind it');
    for (const c of opened) t.equal((await c.call('Heartbeat', {}))[0], 3);
    t.equal(
      (await (await TestCharger.connect(r.url('STORM-late'))).call('Heartbeat', {}))[0],
      3,
      'accepted again once the storm passed',
    );
  },
);
