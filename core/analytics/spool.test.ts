/**
 * Unit tests of the disk spool (temp dirs only, no network).
 *
 * The exactly-once test races in-process Spool instances against child processes that
 * run this same file in "claimer" mode (OCR_SPOOL_TEST_CLAIMER set): rename(2) claims must
 * hold across processes, not only across promises of one event loop.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { threadId } from 'node:worker_threads';
import { until } from '../../test/helpers/wait.js';
import { Spool, type SpoolRow } from './spool.js';

const CLAIMER_ENV = 'OCR_SPOOL_TEST_CLAIMER';

if (process.env[CLAIMER_ENV]) {
  await claimerMain(process.env[CLAIMER_ENV]);
} else {
  await runTests();
}

/** Child mode: wait for "go" on stdin, replay the dir, print delivered ids as JSON lines. */
async function claimerMain(dir: string): Promise<void> {
  const spool = new Spool({ dir, replayChunkRows: 7 });
  await spool.open();
  process.stdout.write('ready\n');
  await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
  const res = await spool.replay(async (_table, rows) => {
    await jitter();
    process.stdout.write(JSON.stringify(rows.map((r) => r.id)) + '\n');
  });
  process.stdout.write(`done ${res.rows}\n`);
  process.stdin.destroy();
}

/**
 * A delivery that takes 0-3 ms, at random: the subject of the exactly-once race (replayers
 * interleave differently on every run), not a wait for anything.
 */
function jitter(): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.random() * 3));
}

/** The time in a segment's name: when it was opened (`<ms, 13 digits>-<owner>-…`). */
const openedAt = (name: string) => Number(name.slice(0, 13));

function rowsOf(n: number, from = 0, pad = ''): SpoolRow[] {
  return Array.from({ length: n }, (_, i) => ({ id: from + i, cp_id: `CP${from + i}`, pad }));
}

function files(dir: string, table: string): string[] {
  return existsSync(join(dir, table))
    ? readdirSync(join(dir, table))
        .filter((n) => n !== 'dead')
        .sort()
    : [];
}

/** A pid that is not running (for orphan-recovery tests). */
function deadPid(): number {
  for (let pid = 4_000_000; ; pid--) {
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return pid;
    }
  }
}

async function runTests(): Promise<void> {
  const { default: t } = await import('tap');

  const tempDir = (name: string) => {
    const d = mkdtempSync(join(tmpdir(), `ocr-spool-${name}-`));
    t.teardown(() => rmSync(d, { recursive: true, force: true }));
    return d;
  };

  t.test('append writes NDJSON to a per-process, per-thread segment; roll closes it', async (t) => {
    const dir = tempDir('append');
    const spool = new Spool({ dir });
    t.equal(await spool.append('meter_values', rowsOf(3)), 3);
    const [open] = files(dir, 'meter_values');
    t.match(
      open,
      new RegExp(`^\\d{13}-${process.pid}\\.\\d+-${threadId}-\\d+\\.open$`),
      'name carries pid and threadId',
    );
    await spool.append('meter_values', rowsOf(2, 3));
    await spool.roll();
    const closed = files(dir, 'meter_values');
    t.equal(closed.length, 1);
    t.ok(closed[0].endsWith('.ndjson'));
    const lines = readFileSync(join(dir, 'meter_values', closed[0]), 'utf8')
      .trimEnd()
      .split('\n');
    t.same(
      lines.map((l) => JSON.parse(l).id),
      [0, 1, 2, 3, 4],
    );
    t.equal(spool.stats().appended, 5);
    t.equal(spool.stats().bytes, Buffer.byteLength(lines.join('\n') + '\n'));
    await spool.close();
  });

  t.test('segments roll by size and by age', async (t) => {
    const dir = tempDir('roll');
    const spool = new Spool({ dir, segmentBytes: 200 });
    const rows = rowsOf(20); // ~40 bytes per line
    t.equal(await spool.append('status_events', rows), 20);
    await spool.settled(); // rolls finish in the background
    const closed = files(dir, 'status_events').filter((n) => n.endsWith('.ndjson'));
    t.ok(closed.length >= 3, `rolled into ${closed.length} closed segments`);
    for (const f of closed) t.ok(readFileSync(join(dir, 'status_events', f)).length <= 200, `${f} within segmentBytes`);

    const aged = new Spool({ dir: tempDir('age'), segmentMaxAgeMs: 20 });
    await aged.append('ocpp_events', rowsOf(1));
    const [open] = files(aged.dir, 'ocpp_events');
    await until(() => Date.now() - openedAt(open) >= 20, { what: 'the open segment to be 20 ms old' });
    await aged.append('ocpp_events', rowsOf(1, 1));
    await aged.settled();
    const names = files(aged.dir, 'ocpp_events');
    t.equal(names.filter((n) => n.endsWith('.ndjson')).length, 1, 'old segment rolled by the next append');
    t.equal(names.filter((n) => n.endsWith('.open')).length, 1);
    // rollAged() takes the time to judge by: 20 ms from now, the open segment is that old.
    await aged.rollAged(Date.now() + 20);
    t.equal(
      files(aged.dir, 'ocpp_events').filter((n) => n.endsWith('.open')).length,
      0,
      'rollAged closes idle segments',
    );
    await spool.close();
    await aged.close();
  });

  t.test('appendEncoded splits only at line ends: segment rolls and a full spool keep whole UTF-8 lines', async (t) => {
    const lines = Array.from({ length: 30 }, (_, i) => JSON.stringify({ id: i, s: 'ÿ€🔌'.repeat(i % 4) }) + '\n');
    const data = Buffer.from(lines.join(''));
    const rolled = new Spool({ dir: tempDir('enc-roll'), segmentBytes: 100 });
    t.equal(await rolled.appendEncoded('meter_values', data, 30), 30);
    await rolled.roll();
    const seq = (n: string) => Number(/-(\d+)\.ndjson$/.exec(n)![1]);
    const names = files(rolled.dir, 'meter_values').sort((a, b) => seq(a) - seq(b));
    t.ok(names.length >= 5, `${names.length} segments`);
    const back = names.map((n) => readFileSync(join(rolled.dir, 'meter_values', n), 'utf8'));
    for (const b of back) t.ok(b.endsWith('\n'), 'each segment ends at a line end');
    t.equal(back.join(''), lines.join(''), 'every byte kept, in order');

    const full = new Spool({ dir: tempDir('enc-full'), maxBytes: 500 });
    const accepted = await full.appendEncoded('meter_values', data, 30);
    const kept = readFileSync(join(full.dir, 'meter_values', files(full.dir, 'meter_values')[0]), 'utf8');
    t.equal(kept, lines.slice(0, accepted).join(''), `the first ${accepted} whole lines kept`);
    t.ok(Buffer.byteLength(kept) <= 500);
    t.same([full.stats().appended, full.stats().dropped], [accepted, 30 - accepted]);
    await rolled.close();
    await full.close();
  });

  t.test('a full spool drops new rows and counts them', async (t) => {
    const dir = tempDir('full');
    const spool = new Spool({ dir, maxBytes: 1000 });
    const accepted = await spool.append('call_errors', rowsOf(100, 0, 'x'.repeat(20)));
    t.ok(accepted > 0 && accepted < 100, `accepted ${accepted} of 100`);
    t.equal(spool.stats().dropped, 100 - accepted);
    t.equal(await spool.append('call_errors', rowsOf(5, 100, 'x'.repeat(20))), 0, 'still full');
    t.equal(spool.stats().dropped, 105 - accepted);
    await spool.roll();
    const onDisk = files(dir, 'call_errors').reduce((n, f) => n + readFileSync(join(dir, 'call_errors', f)).length, 0);
    t.ok(onDisk <= 1000, `${onDisk} bytes on disk within maxBytes`);
    // Replaying frees space: appends are accepted again.
    await spool.replay(async () => {});
    t.equal(spool.stats().bytes, 0);
    t.equal(await spool.append('call_errors', rowsOf(1)), 1);
    await spool.close();
  });

  t.test('a full spool measures again before refusing: room made by another replayer is used', async (t) => {
    const dir = tempDir('full-rescan');
    // The writer never replays (a spool-only router); another instance drains the directory.
    const writer = new Spool({ dir, maxBytes: 1000, fullRescanMs: 200 });
    const drainer = new Spool({ dir });
    const accepted = await writer.append('call_errors', rowsOf(100, 0, 'x'.repeat(20)));
    t.ok(accepted < 100, 'writer full');
    await writer.roll(); // measures the directory (full)
    // The writer measures at most every fullRescanMs: wait out the period after its last measurement.
    let measuredBy = Date.now();
    const rescanDue = () =>
      until(() => Date.now() - measuredBy > 200, { what: 'fullRescanMs (200 ms) to pass since the writer measured' });
    const delivered: unknown[] = [];
    await drainer.replay(async (_table, rows) => {
      delivered.push(...rows.map((r) => r.id));
    });
    t.equal(delivered.length, accepted, 'drained by the other instance');
    await rescanDue();
    t.equal(await writer.append('call_errors', rowsOf(5, 100)), 5, 'the writer sees the room after its rescan');
    // Within fullRescanMs of a rescan it trusts its count: one measurement per period at most.
    t.equal((await writer.append('call_errors', rowsOf(100, 105, 'x'.repeat(20)))) < 100, true, 'full again');
    await writer.roll(); // measures (full), closes the segment for the drainer
    measuredBy = Date.now();
    await drainer.replay(async () => {});
    t.equal(await writer.append('call_errors', rowsOf(1, 300, 'x'.repeat(20))), 0, 'not measured again yet: refused');
    await rescanDue();
    t.equal(
      await writer.append('call_errors', rowsOf(1, 301, 'x'.repeat(20))),
      1,
      'measured again after fullRescanMs: accepted',
    );
    await writer.close();
    await drainer.close();
  });

  t.test('replay delivers in chunks, oldest first, and deletes delivered segments', async (t) => {
    const dir = tempDir('replay');
    const spool = new Spool({ dir, segmentBytes: 300, replayChunkRows: 4 });
    await spool.append('meter_values', rowsOf(30));
    await spool.append('status_events', rowsOf(3, 100));
    const got: Array<[string, number[]]> = [];
    const res = await spool.replay(async (table, rows) => {
      t.ok(rows.length <= 4, 'chunk size bounded');
      got.push([table, rows.map((r) => r.id as number)]);
    });
    t.equal(res.rows, 33);
    t.equal(res.error, undefined);
    t.same(
      got.filter(([tb]) => tb === 'meter_values').flatMap(([, ids]) => ids),
      rowsOf(30).map((r) => r.id),
      'order kept',
    );
    t.same(files(dir, 'meter_values'), []);
    t.same(files(dir, 'status_events'), []);
    t.equal(spool.stats().bytes, 0);
    t.equal(spool.stats().delivered, 33);
    await spool.close();
  });

  t.test('a failed delivery keeps the segment; a partial one keeps only the rest', async (t) => {
    const dir = tempDir('fail');
    const spool = new Spool({ dir, replayChunkRows: 10 });
    await spool.append('meter_values', rowsOf(30));
    const down = new Error('ECONNREFUSED');
    const r1 = await spool.replay(async () => {
      throw down;
    });
    t.equal(r1.error, down, 'transient error reported');
    t.equal(r1.rows, 0);
    const after1 = files(dir, 'meter_values');
    t.equal(after1.length, 1);
    t.ok(after1[0].endsWith('.ndjson'), 'renamed back to a claimable segment');

    let calls = 0;
    const delivered: number[] = [];
    const r2 = await spool.replay(async (_tb, rows) => {
      if (++calls === 2) throw down; // second chunk fails
      delivered.push(...rows.map((r) => r.id as number));
    });
    t.equal(r2.rows, 10);
    const after2 = files(dir, 'meter_values');
    t.equal(after2.length, 1);
    t.match(after2[0], /-r10\.ndjson$/, 'the undelivered rest is a new segment');

    const r3 = await spool.replay(async (_tb, rows) => {
      delivered.push(...rows.map((r) => r.id as number));
    });
    t.equal(r3.rows, 20);
    t.same(
      delivered,
      rowsOf(30).map((r) => r.id),
      'every row exactly once',
    );
    t.same(files(dir, 'meter_values'), []);
    await spool.close();
  });

  t.test('a permanently refused chunk goes to dead/ and replay goes on', async (t) => {
    const dir = tempDir('dead');
    const spool = new Spool({ dir, replayChunkRows: 5 });
    await spool.append('call_errors', rowsOf(15));
    const delivered: number[] = [];
    const bad = Object.assign(new Error('Code: 27, e.displayText() = DB::Exception: Cannot parse input'), {
      permanent: true,
    });
    const res = await spool.replay(
      async (_tb, rows) => {
        if (rows.some((r) => r.id === 7)) throw bad;
        delivered.push(...rows.map((r) => r.id as number));
      },
      { isPermanent: (e) => (e as { permanent?: boolean }).permanent === true },
    );
    t.equal(res.quarantined, 5);
    t.equal(res.error, undefined);
    t.same(delivered, [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]);
    const dead = readdirSync(join(dir, 'call_errors', 'dead'));
    t.equal(dead.length, 1);
    t.same(
      readFileSync(join(dir, 'call_errors', 'dead', dead[0]), 'utf8')
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l).id),
      [5, 6, 7, 8, 9],
    );
    t.equal(spool.stats().quarantined, 5);
    await spool.close();
  });

  t.test('orphans of dead processes are recovered; torn lines are skipped', async (t) => {
    const dir = tempDir('orphan');
    const pid = deadPid();
    mkdirSync(join(dir, 'meter_values'), { recursive: true });
    // A writer that crashed mid-line, and a claimer that crashed mid-delivery.
    writeFileSync(join(dir, 'meter_values', `0000000000001-${pid}.12345-0-1.open`), '{"id":1}\n{"id":2}\n{"id":');
    writeFileSync(join(dir, 'meter_values', `0000000000002-${pid}.12345-0-2~${pid}.12345-3.claim`), '{"id":3}\n');
    writeFileSync(join(dir, 'meter_values', `0000000000003-x~${pid}.12345-3.tmp`), 'junk');
    const spool = new Spool({ dir });
    await spool.open();
    t.same(files(dir, 'meter_values'), [
      '0000000000001-' + pid + '.12345-0-1.ndjson',
      '0000000000002-' + pid + '.12345-0-2.ndjson',
    ]);
    const ids: unknown[] = [];
    await spool.replay(async (_tb, rows) => {
      ids.push(...rows.map((r) => r.id));
    });
    t.same(ids, [1, 2, 3]);
    t.equal(spool.stats().corrupt, 1);
    await spool.close();
  });

  t.test('concurrent replayers (promises and processes) deliver each row exactly once', async (t) => {
    const dir = tempDir('race');
    const writer = new Spool({ dir, segmentBytes: 400 });
    const total = 1200;
    for (let i = 0; i < total; i += 100)
      await writer.append(i % 200 === 0 ? 'meter_values' : 'status_events', rowsOf(100, i));
    await writer.close();
    const segments = files(dir, 'meter_values').length + files(dir, 'status_events').length;
    t.ok(segments > 50, `${segments} segments to claim`);

    const self = fileURLToPath(import.meta.url);
    const children = Array.from({ length: 3 }, () =>
      spawn(process.execPath, ['--import', 'tsx', self], {
        env: { ...process.env, [CLAIMER_ENV]: dir },
        stdio: ['pipe', 'pipe', 'inherit'],
      }),
    );
    const outputs = children.map(
      (c) =>
        new Promise<string>((resolve, reject) => {
          let out = '';
          c.stdout.on('data', (d) => (out += d));
          c.on('error', reject);
          c.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`claimer exited ${code}: ${out}`))));
        }),
    );
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            const onData = (d: Buffer) => {
              if (d.toString().includes('ready')) {
                c.stdout.off('data', onData);
                resolve();
              }
            };
            c.stdout.on('data', onData);
          }),
      ),
    );
    // All at once: three processes and three in-process instances.
    for (const c of children) c.stdin.write('go\n');
    const local: number[] = [];
    const locals = Array.from({ length: 3 }, () =>
      new Spool({ dir, replayChunkRows: 7 }).replay(async (_tb, rows) => {
        await jitter();
        local.push(...rows.map((r) => r.id as number));
      }),
    );
    await Promise.all(locals);
    const remote = (await Promise.all(outputs)).flatMap((out) =>
      out
        .split('\n')
        .filter((l) => l.startsWith('['))
        .flatMap((l) => JSON.parse(l) as number[]),
    );
    const all = [...local, ...remote].sort((a, b) => a - b);
    t.equal(all.length, total, `${local.length} rows delivered in-process, ${remote.length} by child processes`);
    t.same(
      all,
      Array.from({ length: total }, (_, i) => i),
      'each row exactly once',
    );
    t.ok(remote.length > 0, 'child processes took part');
    t.same([...files(dir, 'meter_values'), ...files(dir, 'status_events')], [], 'nothing left, no claims behind');
  });
}
