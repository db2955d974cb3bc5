/**
 * trace-report: where an open-loop run's slow replies came from. Lines up the generator's
 * latency timeline (bench/lib/open-loop-gen.ts, `window.timeline`) with the router's own trace
 * of the same run (bench/reference/router.ts under BENCH_ROUTER_TRACE): for each 50 ms of
 * intended send time whose slowest reply took at least --slow-ms, the socket thread's event
 * loop delay and utilization, its dispatcher queues and the garbage collections around it; then
 * the GCs of the window by kind, and, when the run also sampled allocations
 * (BENCH_ROUTER_ALLOC=1), the socket thread's top allocation sites.
 *
 *   BENCH_ROUTER_TRACE=/tmp/trace [BENCH_ROUTER_ALLOC=1] node --import tsx bench/open-loop.ts --servers=uws-bare,router … --out=/tmp/ol.json
 *   node --import tsx bench/trace-report.ts /tmp/ol.json /tmp/trace [--slow-ms=15] [--action=StatusNotification] [--top=25]
 *
 * How to read it: a bucket with hundreds of slow CALLs is a stall (everything waited); a
 * generator send lag as large as the latency is the generator's (or the machine's) stall,
 * not the router's; a loop delay near the latency with a mark-compact (kind 4) beside it is a
 * GC pause; frames pending or batches in flight show the dispatcher catching up.
 *
 * Owns: reading and lining up the two files. Must not: run anything.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface Timeline {
  bucketMs: number;
  slowUs: number;
  startEpochMs: number;
  maxUs: number[];
  slow: number[];
  maxSendLagUs: number[];
}
interface RunEntry {
  rep: number;
  server: string;
  action: string;
  result: { options: { serverPid?: number }; window: { latencyUs: { p99: number }; timeline?: Timeline } };
}
interface RouterTrace {
  gc: { t: number; ms: number; kind: number }[];
  loop: {
    bucketMs: number;
    t: number[];
    maxDelayUs: number[];
    utilization: number[];
    dispatcher: Record<string, number>[];
  };
  heap?: { space: string; sizeMb: number }[];
}
interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children?: HeapNode[];
}

/** V8's GC kinds as PerformanceObserver reports them. */
const GC_KIND: Record<number, string> = {
  1: 'scavenge',
  2: 'minor mark-sweep',
  4: 'mark-compact',
  8: 'incremental marking',
  16: 'weak callbacks',
};

function args(argv: string[]) {
  const [result, traceDir, ...rest] = argv;
  if (!result || !traceDir)
    throw new Error('usage: trace-report.ts <open-loop JSON> <trace dir> [--slow-ms=15] [--action=A] [--top=25]');
  const o = { result, traceDir, slowMs: 15, action: '', top: 25 };
  for (const a of rest) {
    const m = /^--(slow-ms|action|top)=(.+)$/.exec(a);
    if (!m) throw new Error(`unknown option ${a}`);
    if (m[1] === 'action') o.action = m[2]!;
    else if (!(Number(m[2]) > 0)) throw new Error(`--${m[1]} must be a positive number`);
    else if (m[1] === 'slow-ms') o.slowMs = Number(m[2]);
    else o.top = Number(m[2]);
  }
  return o;
}

const site = (n: HeapNode) =>
  `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`;

function allocations(file: string, top: number): string[] {
  const head = (JSON.parse(readFileSync(file, 'utf8')) as { head: HeapNode }).head;
  const self = new Map<string, number>();
  let total = 0;
  const walk = (n: HeapNode) => {
    total += n.selfSize;
    if (n.selfSize > 0) self.set(site(n), (self.get(site(n)) ?? 0) + n.selfSize);
    for (const c of n.children ?? []) walk(c);
  };
  walk(head);
  return [
    `  allocated (sampled, whole process life): ${(total / 1e6).toFixed(1)} MB; top sites by self size:`,
    ...[...self]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(
        ([k, v]) => `    ${((100 * v) / total).toFixed(1).padStart(5)} %  ${(v / 1e6).toFixed(1).padStart(6)} MB  ${k}`,
      ),
  ];
}

function report(run: RunEntry, trace: RouterTrace, o: ReturnType<typeof args>): string[] {
  const tl = run.result.window.timeline;
  const out = [
    `== ${run.action}, repetition ${run.rep}: p99 ${(run.result.window.latencyUs.p99 / 1000).toFixed(1)} ms`,
  ];
  if (!tl) return [...out, '  (no timeline: a result from before bench/lib/open-loop-gen.ts recorded one)'];
  const L = trace.loop;
  for (let i = 0; i < tl.maxUs.length; i++) {
    if (tl.maxUs[i] < o.slowMs * 1000) continue;
    const t = tl.startEpochMs + i * tl.bucketMs;
    out.push(
      `  +${i * tl.bucketMs} ms: slowest ${(tl.maxUs[i] / 1000).toFixed(1)} ms, ${tl.slow[i]} CALLs over ${tl.slowUs / 1000} ms, generator send lag up to ${((tl.maxSendLagUs?.[i] ?? 0) / 1000).toFixed(1)} ms`,
    );
    const loop: string[] = [];
    for (let k = 0; k < L.t.length; k++) {
      if (L.t[k] < t - L.bucketMs || L.t[k] >= t + 3 * L.bucketMs) continue;
      const d = L.dispatcher[k];
      loop.push(
        `${L.t[k] - t >= 0 ? '+' : ''}${L.t[k] - t}: delay ${Math.round(L.maxDelayUs[k] / 1000)} ms, busy ${L.utilization[k]}, worker batches ${d.inFlight}, pending ${d.pendingFrames}`,
      );
    }
    out.push(`      loop ${loop.join(' | ')}`);
    const gcs = trace.gc.filter((g) => g.t >= t - 2 * tl.bucketMs && g.t <= t + 3 * tl.bucketMs);
    if (gcs.length)
      out.push(
        `      gc ${gcs.map((g) => `${g.t - t >= 0 ? '+' : ''}${g.t - t}: ${GC_KIND[g.kind] ?? g.kind} ${g.ms} ms`).join(', ')}`,
      );
  }
  const end = tl.startEpochMs + tl.maxUs.length * tl.bucketMs;
  const byKind = new Map<number, { n: number; ms: number; max: number }>();
  for (const g of trace.gc) {
    if (g.t < tl.startEpochMs || g.t >= end) continue;
    const k = byKind.get(g.kind) ?? { n: 0, ms: 0, max: 0 };
    k.n++;
    k.ms += g.ms;
    k.max = Math.max(k.max, g.ms);
    byKind.set(g.kind, k);
  }
  out.push(
    `  GC in the window: ${[...byKind].map(([kind, k]) => `${GC_KIND[kind] ?? kind} ×${k.n} (${k.ms.toFixed(1)} ms, longest ${k.max} ms)`).join('; ') || 'none'}`,
  );
  if (trace.heap)
    out.push(
      `  heap spaces at exit: ${trace.heap
        .filter((h) => h.sizeMb > 0)
        .map((h) => `${h.space} ${h.sizeMb} MB`)
        .join(', ')}`,
    );
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const o = args(process.argv.slice(2));
  const runs = (JSON.parse(readFileSync(o.result, 'utf8')) as { runs: RunEntry[] }).runs.filter(
    (r) => r.server === 'router' && (!o.action || r.action === o.action),
  );
  const seen = new Set<number>();
  for (const run of runs) {
    const pid = run.result.options.serverPid;
    const file = join(o.traceDir, `router-${pid}.json`);
    if (!existsSync(file)) {
      console.log(`== ${run.action}, repetition ${run.rep}: no trace ${file} (was BENCH_ROUTER_TRACE set?)`);
      continue;
    }
    console.log(report(run, JSON.parse(readFileSync(file, 'utf8')) as RouterTrace, o).join('\n'));
    const heap = join(o.traceDir, `router-${pid}.heapprofile`);
    if (pid !== undefined && !seen.has(pid) && existsSync(heap)) {
      seen.add(pid);
      console.log(allocations(heap, o.top).join('\n'));
    }
  }
}
