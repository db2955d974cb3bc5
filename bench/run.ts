/**
 * `npm run bench`: the standard benchmark run.
 *
 *   npm run bench [-- <e2e-throughput options>] [-- --no-ceiling]
 *
 * 1. Generator ceiling: the bare uWS responder driven by each client (raw, ws), Heartbeat,
 *    8 in flight. What the load generator can do at most on this machine; a server figure
 *    near it measures the generator, not the server.
 * 2. e2e-throughput, the standard matrix (DEFAULT_MATRIX): {bare uWS, ws-json, ocpp-rpc,
 *    router with its state in a throwaway redis-server} × {Heartbeat, StatusNotification,
 *    MeterValues, Authorize} × {1, 8} in flight, 1,000 chargers, 3 × (3 s after 1 s warm-up),
 *    every server of a cell measured in the same repetition (order rotated per repetition).
 *    Options given on the command line override it.
 *
 * Writes bench/results/latest.json (everything, every run) and bench/results/latest.md (the
 * tables), prints the tables. Bounded: the whole run is killed after 14 minutes (18 with
 * --baseline); it takes about 11 on a quiet 2-core machine.
 *
 * Owns: which matrices make the standard run. Must not: measure (e2e-throughput.ts does).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { markdown, parseArgs, runMatrix, DEFAULT_MATRIX, type MatrixReport } from './e2e-throughput.js';
import { exitAfter, root } from './lib/matrix.js';

// A --baseline router is a fifth server in every cell of the matrix: a quarter more time.
const HARD_LIMIT_MS = (process.argv.some((a) => a.startsWith('--baseline')) ? 18 : 14) * 60_000;
exitAfter(HARD_LIMIT_MS, `bench: still running after ${HARD_LIMIT_MS / 60000} minutes; giving up`, 2);

const argv = process.argv.slice(2);
const ceiling = !argv.includes('--no-ceiling');
const command = `npm run bench${argv.length ? ' -- ' + argv.join(' ') : ''}`;
const main = parseArgs(argv.filter((a) => a !== '--no-ceiling'));
main.command = command;

const started = Date.now();
const sections: { generatorCeiling?: MatrixReport; e2e?: MatrixReport } = {};
if (ceiling) {
  process.stderr.write('── generator ceiling (bare uWS responder, raw vs ws client) ──\n');
  const reports: MatrixReport[] = [];
  for (const client of ['raw', 'ws'] as const) {
    reports.push(
      await runMatrix({
        ...DEFAULT_MATRIX,
        servers: ['uws-bare'],
        actions: ['Heartbeat'],
        inflight: [8],
        reps: 2,
        duration: 3,
        warmup: 1,
        chargers: main.chargers,
        version: main.version,
        client,
        command,
      }),
    );
  }
  // One report, runs tagged by client.
  const [raw, ws] = reports as [MatrixReport, MatrixReport];
  sections.generatorCeiling = {
    ...raw,
    runs: [...raw.runs, ...ws.runs],
    cells: [
      ...raw.cells.map((c) => ({ ...c, server: 'uws-bare/raw' })),
      ...ws.cells.map((c) => ({ ...c, server: 'uws-bare/ws' })),
    ],
    ratios: [],
  };
}
process.stderr.write('── e2e-throughput ──\n');
sections.e2e = await runMatrix(main);

function ceilingTable(rep: MatrixReport): string {
  const lines = [
    `Bare uWS responder, Heartbeat, 8 in flight, ${rep.options.chargers} chargers, 2 × 3 s per client; median (min–max).`,
    '',
    '| client | round trips/s | generator CPU µs/rt | generator cores | server cores | other load (cores) |',
    '|---|---:|---:|---:|---:|---:|',
  ];
  const f = (s: { median: number; min: number; max: number; n: number }, d = 0) =>
    s.n ? (s.n === 1 ? s.median.toFixed(d) : `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})`) : '–';
  for (const c of rep.cells)
    lines.push(
      `| ${c.server.split('/')[1]} | ${f(c.rps)} | ${f(c.generatorCpuUsPerRt, 1)} | ${f(c.generatorCores, 2)} | ${f(c.serverCores, 2)} | ${f(c.foreignCores, 2)} |`,
    );
  return lines.join('\n');
}

const e2e = sections.e2e;
const md = [
  `# Benchmark run ${e2e.date}`,
  '',
  `Command: \`${command}\``,
  '',
  `Machine: ${e2e.machine.cpu}, ${e2e.machine.cores} cores, ${e2e.machine.memGiB} GiB, Linux ${e2e.machine.kernel}; load average ${e2e.machine.loadavgStart.join(' / ')} at start, ${e2e.machine.loadavgEnd.join(' / ')} at end.`,
  `Node ${e2e.node.version} (V8 ${e2e.node.v8}), uWebSockets.js ${e2e.node.uws}, ws ${e2e.node.ws}, ocpp-rpc ${e2e.node.ocppRpc}, router pool ${e2e.servers.router?.threads ?? '–'} worker threads; git ${e2e.git ? e2e.git.commit.slice(0, 10) + (e2e.git.dirty ? ' (dirty)' : '') : 'unknown'}.`,
  ...(e2e.git?.changedDuringRun
    ? [
        '',
        '**Warning: the product sources (outside bench/) changed during this run; servers started at different times may run different code.**',
      ]
    : []),
  '',
  ...(sections.generatorCeiling ? ['## Generator ceiling', '', ceilingTable(sections.generatorCeiling), ''] : []),
  '## e2e-throughput',
  '',
  markdown(e2e),
  '',
  `Wall time ${Math.round((Date.now() - started) / 1000)} s.`,
].join('\n');

const dir = join(root, 'bench/results');
mkdirSync(dir, { recursive: true });
writeFileSync(
  join(dir, 'latest.json'),
  JSON.stringify({ kind: 'bench-run', date: e2e.date, command, ...sections }, null, 2) + '\n',
);
writeFileSync(join(dir, 'latest.md'), md + '\n');
process.stdout.write(md + '\n');
process.stderr.write('wrote bench/results/latest.json and bench/results/latest.md\n');
process.exit(0);
