/** The router on real Redis: registry, status and ownership land in Redis under hash-tagged keys. */
import t from 'tap';
import { Redis } from 'ioredis';
import { startRouter } from '../../helpers/router.js';
import { TestCharger } from '../../helpers/charger.js';
import { uniqueName, useRedis } from '../../helpers/services.js';

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
  const end = Date.now() + 5000;
  while (Date.now() < end && (await redis.hget('ocr:{R-1}:core:charger', 'nodeId'))) await new Promise((res) => setTimeout(res, 50));
  t.equal(await redis.hget('ocr:{R-1}:core:charger', 'nodeId'), null);
  t.ok(await redis.hget('ocr:{R-1}:core:charger', 'disconnectedAt'));
});

t.test('Redis away: heartbeats are still answered; status writes fail loudly, then recover', async (t) => {
  const { startRedis } = await import('../../services/redis.js');
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const r = await startRouter(t, { redis: { url: redis.url, commandTimeoutMs: 300 } });
  const c = await TestCharger.connect(r.url('R-OUT'));
  t.teardown(() => c.close());
  t.equal((await c.call('Heartbeat', {}))[0], 3);
  await redis.stop();
  const hb = await c.call('Heartbeat', {});
  t.equal(hb[0], 3, 'heartbeat answered while Redis is down');
  const st = await c.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Available' });
  t.same([st[0], st[2]], [4, 'InternalError'], 'a write that cannot be stored is not acknowledged');
  await redis.restart();
  let ok = false;
  for (let i = 0; i < 50 && !ok; i++) {
    const f = await c.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Available' });
    ok = f[0] === 3;
    if (!ok) await new Promise((res) => setTimeout(res, 100));
  }
  t.ok(ok, 'status stored again once Redis is back');
});
