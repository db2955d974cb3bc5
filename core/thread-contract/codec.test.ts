import t from 'tap';
import { BatchWriter, readBatch } from './codec.js';

t.test('batch round trip: metas, byte frames and text frames', async (t) => {
  const w = new BatchWriter(8);
  const frames = ['[2,"a","Heartbeat",{}]', '', '[2,"é€😀","X",{"k":"ünïcödé"}]', 'x'.repeat(70_000)];
  w.add([0, 1, 'CP', '1.6', 0, 5, null], new TextEncoder().encode(frames[0]));
  w.add([1, 2, 'CP2', '2.0.1', 1, 6, { code: 1000 }]);
  w.addText(['r'], frames[2]);
  w.addText(['r'], frames[3]);
  w.addText(['none'], undefined);
  t.equal(w.count, 5);
  const buf = w.finish();
  t.ok(buf instanceof ArrayBuffer);
  const b = readBatch(buf);
  t.same(b.metas, [
    [0, 1, 'CP', '1.6', 0, 5, null],
    [1, 2, 'CP2', '2.0.1', 1, 6, { code: 1000 }],
    ['r'],
    ['r'],
    ['none'],
  ]);
  t.equal(b.text(0), frames[0]);
  t.equal(b.frame(1).length, 0);
  t.equal(b.text(2), frames[2]);
  t.equal(b.text(3), frames[3]);
  t.equal(b.frame(4).length, 0);
});

t.test('view: the same batch without encoding; a recycled buffer is reused', async (t) => {
  const w = new BatchWriter(8);
  w.add(['a'], new TextEncoder().encode('[2,"1","Heartbeat",{}]'));
  w.add(['b']);
  w.add(['c'], new TextEncoder().encode('ü'));
  const v = w.view();
  t.same(v.metas, [['a'], ['b'], ['c']]);
  t.same([v.text(0), v.frame(1).length, v.text(2)], ['[2,"1","Heartbeat",{}]', 0, 'ü']);
  const buf = w.recycle();
  t.equal(new BatchWriter(16, buf).recycle(), buf, 'large enough: reused');
  t.not(new BatchWriter(buf.length * 2, buf).recycle(), buf, 'too small: a new one');
});
