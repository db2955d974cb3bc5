/**
 * micro/conn-memory: what one idle connected charger costs the router's socket process, split
 * into JS heap (by constructor, from two heap snapshots) and everything else (uWS, malloc).
 * The storm scenario measures RSS per charger end to end; this says where it goes.
 *
 *   node --expose-gc --import tsx bench/micro/conn-memory.ts [--chargers=5000] [--wait=30] [--snapshot] [--redis=URL]
 *
 * The router runs in this process (compiled dist/, in-process state unless `--redis` names a
 * server, as in a multi-process deployment, spool analytics; its
 * worker threads are other isolates and not in the heap figures); a child process
 * (bench/micro/conn-memory-gen.ts) opens the connections and boots each charger once. Memory
 * is read after full GCs, with no connection, then with all of them open, once at once and
 * again after `--wait` idle seconds (freed memory goes back to the system lazily); `--snapshot`
 * also writes a heap snapshot at both points and prints the constructors that grew most.
 *
 * Owns: nothing the product uses. Must not: stand in for the storm's end-to-end figure.
 */
import { fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHeapSnapshot } from 'node:v8';
import { importRouterCore } from '../lib/router-code.js';

const opts = { chargers: 5000, snapshot: false, wait: 30, redis: '' };
for (const a of process.argv.slice(2)) {
  const m = /^--(chargers|wait)=(\d+)$/.exec(a);
  if (m?.[1] === 'chargers') opts.chargers = Math.max(1, Math.min(Number(m[2]), 15_000));
  else if (m?.[1] === 'wait') opts.wait = Math.min(Number(m[2]), 600);
  else if (a === '--snapshot') opts.snapshot = true;
  else if (a.startsWith('--redis=')) opts.redis = a.slice('--redis='.length);
  else throw new Error(`unknown argument ${a}`);
}
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

const { createRouter } = await importRouterCore('conn-memory', { required: true });

const dir = mkdtempSync(join(tmpdir(), 'ocr-conn-mem-'));
const router = await createRouter(
  {
    server: { host: '127.0.0.1', port: 0 },
    log: { level: 'silent' },
    dataDir: dir,
    analytics: { spoolDir: join(dir, 'spool') },
    // Workers stop after 2 s without a batch, as a production router's do after a minute: both
    // readings are then of the socket thread alone (the worker isolate is not per charger).
    pool: { threads: 1, idleTimeoutMs: 2000 },
    ...(opts.redis ? { redis: { url: opts.redis } } : {}),
  },
  { onGeneratedApiKey: () => undefined },
);

/** This process's proportional set size in bytes (Linux), what the storm sums over processes. */
function pss(): number {
  try {
    return Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'))?.[1] ?? NaN) * 1024;
  } catch {
    return NaN;
  }
}

type Reading = NodeJS.MemoryUsage & { pss: number };

async function settle(): Promise<Reading> {
  const t0 = Date.now();
  while (router.dispatcher.stats.threads > 0 && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 250));
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 200));
    gc!();
  }
  return { ...process.memoryUsage(), pss: pss() };
}

/** Self size by constructor name, from a heap snapshot (nodes: [type, name, id, self_size, …]). */
async function heapByConstructor(): Promise<Map<string, { count: number; bytes: number }>> {
  const chunks: Buffer[] = [];
  for await (const c of getHeapSnapshot()) chunks.push(c as Buffer);
  const snap = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const f = snap.snapshot.meta.node_fields;
  const width = f.length;
  const [iType, iName, iSize] = [f.indexOf('type'), f.indexOf('name'), f.indexOf('self_size')];
  const types = snap.snapshot.meta.node_types[0];
  const out = new Map<string, { count: number; bytes: number }>();
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + iType]];
    // Arrays by their name too: "(object properties)", "(object elements)", a Map's table…
    const key =
      type === 'object' || type === 'closure' || type === 'array'
        ? `${type}:${snap.strings[snap.nodes[i + iName]]}`
        : `(${type})`;
    const e = out.get(key) ?? { count: 0, bytes: 0 };
    e.count++;
    e.bytes += snap.nodes[i + iSize];
    out.set(key, e);
  }
  return out;
}

const port = router.port;
const gen = fork(join(import.meta.dirname, 'conn-memory-gen.ts'), [String(port), String(opts.chargers)], {
  execArgv: ['--import', 'tsx'],
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
});
const ready = new Promise<{ booted: number; failed: number }>((resolve, reject) => {
  gen.on('message', (m) => resolve(m as { booted: number; failed: number }));
  gen.on('exit', (code) => reject(new Error(`generator exited with ${code}`)));
});

try {
  const before = await settle();
  const heapBefore = opts.snapshot ? await heapByConstructor() : undefined;
  gen.send('go');
  const r = await ready;
  if (r.failed) throw new Error(`${r.failed} chargers failed to connect or boot`);
  const n = r.booted;
  console.log(
    `chargers: ${n} connected and booted, then idle; per charger, KB (the whole process; its worker thread stopped when idle):`,
  );
  console.log(
    `  idle before: rss ${(before.rss / 1048576).toFixed(1)} MB, pss ${(before.pss / 1048576).toFixed(1)} MB, heapUsed ${(before.heapUsed / 1048576).toFixed(1)} MB`,
  );
  const report = (label: string, after: Reading) => {
    const per = (k: keyof Reading) => ((after[k] - before[k]) / n / 1024).toFixed(2);
    const native =
      (after.rss - after.heapTotal - after.external - (before.rss - before.heapTotal - before.external)) / n / 1024;
    console.log(
      `  ${label}: rss ${per('rss')}  pss ${per('pss')}  heapUsed ${per('heapUsed')}  heapTotal ${per('heapTotal')}  external ${per('external')}  rss − heapTotal − external (uWS, malloc, worker isolate) ${native.toFixed(2)}`,
    );
  };
  report('at once', await settle());
  for (let waited = 0; waited < opts.wait; waited += 5) {
    await new Promise((r) => setTimeout(r, 5000));
    gc();
  }
  if (opts.wait) report(`after ${opts.wait} s`, await settle());
  if (heapBefore) {
    const heapAfter = await heapByConstructor();
    const rows = [...heapAfter]
      .map(([k, v]) => {
        const b = heapBefore.get(k) ?? { count: 0, bytes: 0 };
        return { k, count: (v.count - b.count) / n, bytes: (v.bytes - b.bytes) / n };
      })
      .filter((x) => x.bytes > 8)
      .sort((a, b) => b.bytes - a.bytes)
      .slice(0, 30);
    console.log('heap growth per charger by constructor (bytes, objects):');
    for (const x of rows)
      console.log(`  ${x.bytes.toFixed(0).padStart(6)} B  ${x.count.toFixed(2).padStart(6)}  ${x.k}`);
  }
} finally {
  gen.kill();
  await router.close();
  rmSync(dir, { recursive: true, force: true });
}
