/**
 * Every bad-frame case of STYLE.md §6 with its exact CALLERROR code per dialect, over real
 * WebSockets. Assertions are on the wire code and the echoed id, never on message text.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { startRouter } from '../helpers/router.js';
import { TestCharger } from '../helpers/charger.js';

interface Case {
  name: string;
  frame: string | Record<string, string>;
  expect: Record<string, [string, string] | null>;
}
const { cases } = JSON.parse(readFileSync(new URL('../fixtures/frames/bad-frames.json', import.meta.url), 'utf8')) as {
  cases: Case[];
};

const dialects = [
  { protocol: 'ocpp1.6', key: '1.6' },
  { protocol: 'ocpp2.0.1', key: '2.0.1' },
  { protocol: 'ocpp2.1', key: '2.1' },
];

t.test('bad frames get the CALLERROR their dialect names', async (t) => {
  const r = await startRouter(t);
  for (const d of dialects) {
    await t.test(d.protocol, async (t) => {
      const c = await TestCharger.connect(r.url(`BAD-${d.key}-${d.protocol}`), { protocols: d.protocol });
      t.teardown(() => c.close());
      t.equal(c.ws.protocol, d.protocol);
      for (const k of cases) {
        const text = typeof k.frame === 'string' ? k.frame : (k.frame[d.key] ?? k.frame['2.0.1']);
        const expected = d.key in k.expect ? k.expect[d.key] : k.expect['2.0.1'];
        const got = await c.raw(text, expected === null ? 400 : 5000);
        if (expected === null) {
          t.equal(got, null, `${k.name}: no answer`);
        } else {
          t.ok(got, `${k.name}: answered`);
          t.same(got && [got[0], got[1], got[2]], [4, expected[0], expected[1]], k.name);
          t.type(got?.[3], 'string', `${k.name}: description is a string`);
          t.type(got?.[4], 'object', `${k.name}: details is an object`);
        }
      }
      // The connection survives all of it and still serves.
      const hb = await c.call('Heartbeat', {});
      t.equal(hb[0], 3, 'still serving after bad frames');
    });
  }
});

t.test('a numeric messageId is tolerated and echoed as a string', async (t) => {
  const r = await startRouter(t);
  const c = await TestCharger.connect(r.url('NUMERIC-ID'));
  t.teardown(() => c.close());
  const got = await c.raw('[2,123,"Heartbeat",{}]');
  t.same(got?.slice(0, 2), [3, '123']);
});

t.test('repeat offenders are disconnected', async (t) => {
  const r = await startRouter(t);
  const c = await TestCharger.connect(r.url('SPAMMER'));
  for (let i = 0; i < 25; i++) c.ws.send('garbage');
  const closed = await c.closed;
  t.equal(closed.code, 1008);
});
