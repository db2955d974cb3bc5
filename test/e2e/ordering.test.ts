/**
 * Per-charger ordering under parallel load: many chargers each pipeline many CALLs without
 * waiting; each charger's replies come back in sending order, and the order-recorder plugin
 * (random delays, read-modify-write state) sees them processed in sending order.
 */
import t from 'tap';
import { startRouter } from '../helpers/router.js';
import { TestCharger } from '../helpers/charger.js';

const CHARGERS = 40;
const PER_CHARGER = 30;

// batchSize 7 forces size-triggered flushes while backlogs are being moved into a batch (the
// path where one charger could end up in two batches); 512 is the default.
for (const batchSize of [7, 512])
  t.test(
    `frames of one charger are processed strictly in order; chargers run in parallel (batchSize ${batchSize})`,
    async (t) => {
      const r = await startRouter(t, {
        plugins: [{ name: 'core' }, { name: './test/fixtures/plugins/order-recorder.ts' }],
        pool: { batchSize },
      });
      const chargers = await Promise.all(
        Array.from({ length: CHARGERS }, (_, i) => TestCharger.connect(r.url(`ORD-${i}`))),
      );
      t.teardown(() => Promise.all(chargers.map((c) => c.close())));

      await Promise.all(
        chargers.map(async (c, ci) => {
          const replies: Promise<unknown[]>[] = [];
          for (let s = 0; s < PER_CHARGER; s++) {
            // Mix in StatusNotifications so lanes carry more than one action.
            if (s % 5 === 0)
              replies.push(
                c.call(
                  'StatusNotification',
                  { connectorId: 1, errorCode: 'NoError', status: 'Available' },
                  `${ci}-s${s}`,
                ),
              );
            replies.push(c.call('DataTransfer', { vendorId: 'test.order', data: String(s) }, `${ci}-${s}`));
          }
          await Promise.all(replies);
        }),
      );

      let outOfOrder = 0;
      for (const [ci, c] of chargers.entries()) {
        const ids = c.received.filter((f) => f[0] === 3).map((f) => f[1] as string);
        const expected = [];
        for (let s = 0; s < PER_CHARGER; s++) {
          if (s % 5 === 0) expected.push(`${ci}-s${s}`);
          expected.push(`${ci}-${s}`);
        }
        if (JSON.stringify(ids) !== JSON.stringify(expected)) outOfOrder++;
        const last = c.received.filter((f) => f[0] === 3 && String(f[1]).endsWith(`-${PER_CHARGER - 1}`))[0] as [
          number,
          string,
          { data: string },
        ];
        t.equal(last?.[2].data, String(PER_CHARGER), `charger ${ci}: every message recorded exactly once`);
      }
      t.equal(outOfOrder, 0, 'replies in sending order for every charger');
      const stored = await Promise.all(
        chargers.map((_, ci) => r.router.registry.store.get(`ocr:{ORD-${ci}}:order-recorder:seq`)),
      );
      t.ok(
        stored.every(
          (s) => JSON.stringify(JSON.parse(s!)) === JSON.stringify(Array.from({ length: PER_CHARGER }, (_, i) => i)),
        ),
        'processing order = sending order for every charger',
      );
      const batches = await r.api('GET', '/metrics');
      const m = /ocr_batch_items_sum (\d+)\s+ocr_batch_items_count (\d+)/.exec(batches.body as string);
      t.ok(
        m && Number(m[1]) / Number(m[2]) > 1,
        `frames were batched (mean ${m && (Number(m[1]) / Number(m[2])).toFixed(1)} items per batch)`,
      );
      t.match(batches.body, /ocr_lane_backlog_frames 0/, 'no frame left behind in a backlog');
    },
  );
