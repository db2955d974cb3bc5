/**
 * Graceful shutdown: work in flight finishes, every closed connection's onDisconnect runs,
 * and buffered analytics rows are flushed to the spool before the workers stop.
 */
import t from 'tap';
import { Redis } from 'ioredis';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startRouter } from '../../helpers/router.js';
import { TestCharger } from '../../helpers/charger.js';
import { uniqueName, useRedis } from '../../helpers/services.js';
import { until } from '../../helpers/wait.js';

function spooledRows(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(...readFileSync(p, 'utf8').split('\n').filter(Boolean));
    }
  };
  try {
    walk(dir);
  } catch {
    /* no spool yet */
  }
  return out;
}

t.test('close(): in-flight work, onDisconnect and analytics are not lost', async (t) => {
  const url = await useRedis(t);
  const keyPrefix = `${uniqueName('sd')}:`;
  const r = await startRouter(
    { teardown: () => undefined },
    {
      redis: { url, keyPrefix },
      analytics: { flushIntervalMs: 60_000 },
      plugins: [
        { name: 'core' },
        { name: './test/fixtures/plugins/lifecycle.ts' },
        { name: './test/fixtures/plugins/crasher.ts' },
      ],
    },
  );
  const redis = new Redis(url, { keyPrefix });
  t.teardown(() => redis.disconnect());
  const c = await TestCharger.connect(r.url('SD-1'));
  await c.call('MeterValues', {
    connectorId: 1,
    meterValue: [{ timestamp: new Date().toISOString(), sampledValue: [{ value: '42' }] }],
  });
  const slow = c.call('DataTransfer', { vendorId: 'test.slow' }).catch(() => null);
  // Close while it is in the worker (200 ms there).
  await until(() => r.router.dispatcher.stats.inFlight > 0, { what: 'the slow message to be in a worker', everyMs: 2 });
  await r.router.close();
  t.equal((await slow)?.[0], 3, 'the message in flight was answered before the socket closed');
  const events = JSON.parse((await redis.get('ocr:{SD-1}:lifecycle:events')) ?? '[]') as string[];
  t.match(
    events.join(','),
    /connect:start#\d+,connect:end#\d+,disconnect:start#\d+,disconnect:end#\d+/,
    'onDisconnect ran',
  );
  const rows = spooledRows(join(r.dir, 'spool'));
  t.ok(
    rows.some((l) => l.includes('"value":42')),
    'the buffered meter value was flushed to the spool',
  );
});
