/** Lenient mode per charger and per model: harmless deviations accepted, logged, counted. */
import t from 'tap';
import { startRouter } from '../helpers/router.js';
import { TestCharger } from '../helpers/charger.js';

const quirky = {
  connectorId: 1,
  errorCode: 'NoError',
  status: 'Available',
  timestamp: '2026-05-01T10:00:00',
  info: 'x'.repeat(80),
};

t.test('strict by default, lenient by charger id and by model', async (t) => {
  const r = await startRouter(t, { lenient: { chargers: ['LEN-ID'], models: [{ vendor: 'Quirk', model: 'Q1' }] } });
  const strict = await TestCharger.connect(r.url('STRICT'));
  const byId = await TestCharger.connect(r.url('LEN-ID'));
  const byModel = await TestCharger.connect(r.url('LEN-MODEL'));
  t.teardown(() => Promise.all([strict.close(), byId.close(), byModel.close()]));

  t.equal((await strict.call('StatusNotification', quirky))[2], 'PropertyConstraintViolation');
  t.same((await byId.call('StatusNotification', quirky))[2], {});
  const before = await byModel.call('StatusNotification', quirky);
  t.equal(before[2], 'PropertyConstraintViolation', 'model not known before BootNotification');
  await byModel.call('BootNotification', { chargePointVendor: 'Quirk', chargePointModel: 'Q1' });
  t.same((await byModel.call('StatusNotification', quirky))[2], {}, 'lenient once the model is known');

  const status = await r.router.registry.statuses('LEN-ID');
  t.equal(status['1']?.timestamp, '2026-05-01T10:00:00.000Z', 'timestamp without offset read as UTC');
  const m = (await r.api('GET', '/metrics')).body as string;
  t.match(m, /ocr_lenient_deviations_total\{kind="timestampWithoutOffset"\} 2/);
  t.match(m, /ocr_lenient_deviations_total\{kind="overlongString"\} 2/);
});
