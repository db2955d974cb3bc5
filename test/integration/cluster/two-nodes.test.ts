/**
 * Two router nodes sharing Redis (as two processes on one host would, or two hosts): the
 * operator API of either node reaches a charger connected to the other.
 */
import t from 'tap';
import { startRouter } from '../../helpers/router.js';
import { TestCharger } from '../../helpers/charger.js';
import { uniqueName, useRedis } from '../../helpers/services.js';

t.test('commands are routed to the node holding the charger', async (t) => {
  const url = await useRedis(t);
  const keyPrefix = `${uniqueName('cl')}:`;
  const a = await startRouter(t, { nodeId: 'node-a', redis: { url, keyPrefix } });
  const b = await startRouter(t, { nodeId: 'node-b', redis: { url, keyPrefix } });
  const c = await TestCharger.connect(b.url('CL-1'), {
    onCall: (action, payload) =>
      action === 'Reset' ? { status: payload.type === 'Hard' ? 'Rejected' : 'Accepted' } : ['NotSupported', 'nope'],
  });
  t.teardown(() => c.close());
  await c.call('Heartbeat', {});

  const detail = await a.api('GET', '/api/v1/chargers/CL-1');
  t.match(detail.body, { nodeId: 'node-b', connected: true, connectedHere: false }, 'node A sees where the charger is');
  const viaA = await a.api('POST', '/api/v1/chargers/CL-1/calls/Reset', { type: 'Soft' });
  t.equal(viaA.status, 200);
  t.same(viaA.body.result, { status: 'Accepted' }, 'answered through node B');
  t.same((await a.api('POST', '/api/v1/chargers/CL-1/calls/Reset', { type: 'Hard' })).body.result, {
    status: 'Rejected',
  });

  const bad = await a.api('POST', '/api/v1/chargers/CL-1/calls/Reset', { type: 'Sideways' });
  t.match(
    bad,
    { status: 400, body: { error: 'invalid_payload', field: 'body.type' } },
    'validated by the owning node, error carried back',
  );
  const callError = await a.api('POST', '/api/v1/chargers/CL-1/calls/UnlockConnector', { connectorId: 1 });
  t.match(callError, { status: 502, body: { error: 'call_error', callError: { code: 'NotSupported' } } });
  t.equal((await a.api('POST', '/api/v1/chargers/NOWHERE/calls/Reset', { type: 'Soft' })).status, 404);
});

t.test('a node that is gone: 404 at once, not a timeout', async (t) => {
  const url = await useRedis(t);
  const keyPrefix = `${uniqueName('cl')}:`;
  const a = await startRouter(t, { nodeId: 'node-a', redis: { url, keyPrefix } });
  await a.router.registry.register('GHOST', {});
  await a.router.registry.update('GHOST', { nodeId: 'node-crashed', connectionId: '1' });
  const started = Date.now();
  const res = await a.api('POST', '/api/v1/chargers/GHOST/calls/Reset?timeoutMs=20000', { type: 'Soft' });
  t.equal(res.status, 404);
  t.equal(res.body.error, 'not_connected');
  t.equal(res.body.node, 'node-crashed', 'the answer names the node that is gone');
  t.ok(Date.now() - started < 2000);
});
