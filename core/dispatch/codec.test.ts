import t from 'tap';
import { BatchWriter, readBatch } from './codec.js';

t.test('batch round trip: metas, byte frames and text frames', async (t) => {
  const w = new BatchWriter(8);
  const frames = ['[2,"a","Heartbeat",{}]', '', '[2,"é€😀","X",{"k":"ünïcödé"}]', 'x'.repeat(70_000)];
  w.add([0, 1, 'CP', '1.6', 0, 5, null], new TextEncoder().encode(frames[0]!));
  w.add([1, 2, 'CP2', '2.0.1', 1, 6, { code: 1000 }]);
  w.addText(['r'], frames[2]);
  w.addText(['r'], frames[3]);
  w.addText(['none'], undefined);
  t.equal(w.count, 5);
  const buf = w.finish();
  t.ok(buf instanceof ArrayBuffer);
  const b = readBatch(buf);
  t.same(b.metas, [[0, 1, 'CP', '1.6', 0, 5, null], [1, 2, 'CP2', '2.0.1', 1, 6, { code: 1000 }], ['r'], ['r'], ['none']]);
  t.equal(b.text(0), frames[0]);
  t.equal(b.frame(1).length, 0);
  t.equal(b.text(2), frames[2]);
  t.equal(b.text(3), frames[3]);
  t.equal(b.frame(4).length, 0);
});
