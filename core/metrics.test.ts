import t from 'tap';
import { Histogram, Registry } from 'prom-client';
import { FrameHistogram } from './metrics.js';

t.test('FrameHistogram renders exactly what prom-client renders for the same observations', async (t) => {
  const buckets = [0.00005, 0.0001, 0.001, 0.01, 1];
  const ours = new Registry();
  const theirs = new Registry();
  const h = new FrameHistogram({ name: 'x_seconds', help: 'help text', labelName: 'action', buckets, registry: ours });
  const ref = new Histogram({
    name: 'x_seconds',
    help: 'help text',
    labelNames: ['action'],
    buckets,
    registers: [theirs],
  });
  const samples: Array<[string, number]> = [
    ['Heartbeat', 0.00002],
    ['Heartbeat', 0.0001],
    ['MeterValues', 0.0003],
    ['MeterValues', 0.5],
    ['MeterValues', 7],
    ['Heartbeat', 0.00005],
  ];
  for (const [a, v] of samples) {
    h.labels(a).observe(v);
    ref.labels(a).observe(v);
  }
  h.labels('Heartbeat').observe(Number.NaN); // ignored, like an invalid value
  t.equal(await ours.metrics(), await theirs.metrics());
  const json = await ours.getMetricsAsJSON();
  t.equal(json[0].type, 'histogram');
  t.same(
    (json[0].values as Array<{ labels: Record<string, unknown>; value: number; metricName?: string }>).filter(
      (v) => v.metricName === 'x_seconds_count',
    ),
    [
      { labels: { action: 'Heartbeat' }, value: 3, metricName: 'x_seconds_count' },
      { labels: { action: 'MeterValues' }, value: 3, metricName: 'x_seconds_count' },
    ],
  );
  const child = h.labels('Heartbeat');
  h.reset();
  child.observe(0.001);
  t.match(
    await ours.metrics(),
    /x_seconds_count\{action="Heartbeat"\} 1\n/,
    'a child bound before reset() still counts',
  );
});
