/**
 * fanout: CSMS-initiated commands fanned out to many chargers through the operator API (issue
 * #3). N chargers connect and boot; then an operator client sends one command per charger
 * (`rounds` times over) through the server's HTTP API, at most C requests outstanding, and
 * the chargers answer (bench/lib/fanout-gen.ts: chargers and operator client in one process).
 * Per server: commands/s, command latency (HTTP request → HTTP response), failures by kind,
 * server CPU per command.
 *
 *   node --import tsx bench/fanout.ts [--servers=uws-bare,ocpp-rpc,router] [--chargers=1000]
 *        [--rounds=5] [--concurrency=64] [--command=GetConfiguration] [--version=1.6]
 *        [--warmup=500] [--timeout-ms=10000] [--reps=3] [--threads=0] [--router-config='{json}']
 *        [--quiet-cores=0.3] [--quiet-wait=5] [--out=bench/results/fanout-latest.json]
 *   --concurrency takes a list (e.g. 16,64,256); --command: GetConfiguration | TriggerMessage |
 *   ChangeAvailability (1.6), GetVariables | TriggerMessage | ChangeAvailability (2.0.1; default
 *   GetVariables).
 *
 * Servers (same operator route and contract as the router's, core/api/http-api.ts):
 *  - `router`: SERVERS.router of bench/lib/matrix.ts (bench/reference/router.ts, state in
 *    process), with one API key whose SHA-256 is given in its config (`api.keys`), as an
 *    operator configures one; the API on the chargers' port (api.port 0, the default).
 *  - `uws-bare`: bench/reference/uws-operator.ts, bare uWS passing bytes through (the floor).
 *  - `ocpp-rpc`: bench/reference/ocpp-rpc-operator.ts, ocpp-rpc strict mode, `client.call()`.
 * The key is random per run; every server checks SHA-256(key) against the configured hash.
 *
 * Owns: the servers of this scenario, the cells (concurrency), aggregation and the report
 * (markdown on stdout, JSON to --out); the repetition loop is bench/lib/matrix.ts's. Must
 * not: generate load itself, or reach into core/.
 */
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fmtSpread, spread, type Spread } from './lib/stats.js';
import {
  COMMANDS,
  DEFAULT_COMMAND,
  type FanoutCommand,
  type FanoutOptions,
  type FanoutResult,
} from './lib/fanout-gen.js';
import type { BenchVersion } from './lib/ocpp-payloads.js';
import {
  SERVERS,
  baselineOf,
  commandLine,
  countKinds,
  flagSpec,
  fmtKinds,
  groupBy,
  isMain,
  log,
  parseFlags,
  requireKnown,
  requireOneGeneratorFleet,
  requireTiming,
  requireVersion,
  root,
  runGenerator,
  runRepetitions,
  spreadOf,
  startRecording,
  startScript,
  versions,
  writeReport,
  type ServerOptions,
  type Settled,
} from './lib/matrix.js';

interface Options {
  servers: string[];
  chargers: number;
  rounds: number;
  concurrency: number[];
  command: FanoutCommand;
  version: BenchVersion;
  warmup: number;
  timeoutMs: number;
  reps: number;
  threads: number;
  routerConfig: Record<string, unknown>;
  quietCores: number;
  quietWaitSec: number;
  out: string;
}

const DEFAULTS: Options = {
  servers: ['uws-bare', 'ocpp-rpc', 'router'],
  chargers: 1000,
  rounds: 5,
  concurrency: [64],
  command: '' as FanoutCommand,
  version: '1.6',
  warmup: 500,
  timeoutMs: 10_000,
  reps: 3,
  threads: 0,
  routerConfig: {},
  quietCores: 0.3,
  quietWaitSec: 5,
  out: join(root, 'bench/results/fanout-latest.json'),
};

const FLAGS = flagSpec<Options>(
  ['servers', 'chargers', 'version', 'reps', 'threads', 'router-config', 'quiet-cores', 'quiet-wait', 'out'],
  {
    rounds: ['rounds', 'num'],
    concurrency: ['concurrency', 'nums'],
    command: ['command', 'str'],
    // Warm-up commands, not seconds.
    warmup: ['warmup', 'num'],
    'timeout-ms': ['timeoutMs', 'num'],
  },
);

function parse(argv: string[]): Options {
  const { o } = parseFlags(argv, DEFAULTS, FLAGS);
  requireVersion(o.version);
  if (!o.command) o.command = DEFAULT_COMMAND[o.version];
  if (!COMMANDS[o.version][o.command])
    throw new Error(
      `--command ${o.command} is not simulated for OCPP ${o.version} (known: ${Object.keys(COMMANDS[o.version]).join(', ')})`,
    );
  requireKnown('server', o.servers, Object.keys(FANOUT_SERVERS));
  requireOneGeneratorFleet(o.chargers);
  if (!Number.isInteger(o.rounds) || o.rounds < 1 || o.rounds > 100) throw new Error('--rounds must be 1..100');
  for (const c of o.concurrency)
    if (!Number.isInteger(c) || c < 1 || c > 1024) throw new Error('--concurrency values must be integers 1..1024');
  if (o.timeoutMs < 100 || o.timeoutMs > 600_000)
    throw new Error('--timeout-ms must be 100..600000 (the router accepts that range)');
  requireTiming({ reps: o.reps });
  if ((o.routerConfig.api as { port?: unknown } | undefined)?.port)
    throw new Error("--router-config must not set api.port: bench/reference/router.ts reports the chargers' port only");
  return o;
}

// ── servers ───────────────────────────────────────────────────────────────────────────────

interface FanoutServer {
  script: string;
  describe: string;
  args(o: Options, m: ServerOptions, keySha256: string): string[];
  nodeArgs?(m: ServerOptions): string[];
}

const FANOUT_SERVERS: Record<string, FanoutServer> = {
  'uws-bare': {
    script: 'bench/reference/uws-operator.ts',
    describe:
      'bare uWebSockets.js passing bytes between the operator request and the charger: no validation, no JSON.parse, no one-in-flight rule (the floor)',
    args: (_o, _m, sha256) => [JSON.stringify({ apiKeySha256: sha256 })],
  },
  'ocpp-rpc': {
    script: 'bench/reference/ocpp-rpc-operator.ts',
    describe:
      'ocpp-rpc RPCServer, strictMode (request and answer validated), client.call() per command behind a node:http route; callConcurrency 1',
    args: (_o, _m, sha256) => [JSON.stringify({ apiKeySha256: sha256 })],
  },
  router: {
    script: SERVERS.router.script,
    describe: `${SERVERS.router.describe}; state in process; the operator API on the chargers' port, one API key from the config`,
    args: (o, m, sha256) =>
      SERVERS.router.args({
        ...m,
        routerConfig: {
          ...o.routerConfig,
          api: { ...(o.routerConfig.api as object | undefined), keys: [{ name: 'bench-fanout', sha256 }] },
        },
      }),
    nodeArgs: (m) => SERVERS.router.nodeArgs?.(m) ?? [],
  },
};

/** What SERVERS.router reads: threads and extra config, state in process (no Redis). */
const serverOptions = (o: Options): ServerOptions => ({
  threads: o.threads,
  routerState: 'memory',
  routerConfig: o.routerConfig,
  profile: false,
});

function budgetMs(o: Options, concurrency: number): number {
  // Connects, then (worst case) every command timing out, capped at 30 min.
  return Math.min(
    30 * 60_000,
    120_000 + Math.ceil((o.chargers * o.rounds + o.warmup) / concurrency) * (o.timeoutMs + 5000),
  );
}

// ── aggregation and report ────────────────────────────────────────────────────────────────

interface FanoutRun {
  rep: number;
  server: string;
  concurrency: number;
  settle: Settled;
  result: FanoutResult;
}

interface FanoutCell {
  server: string;
  concurrency: number;
  commandsPerSec: Spread;
  p50Ms: Spread;
  p99Ms: Spread;
  p999Ms: Spread;
  maxMs: Spread;
  serverCpuUsPerCommand: Spread;
  serverCores: Spread;
  generatorCores: Spread;
  foreignCores: Spread;
  /** server ÷ ocpp-rpc, per repetition (same concurrency): commands/s and CPU per command. */
  vsOcppRpc: { commandsPerSec: Spread; cpuPerCommand: Spread };
  commands: number;
  failures: Record<string, number>;
  failureSamples: string[];
  /** Charger-side problems (unknown actions, unexpected closes, unparsed frames) and triggered Heartbeats unanswered. */
  chargerProblems: number;
}

function summarize(runs: FanoutRun[]): FanoutCell[] {
  return groupBy(runs, (r) => `${r.server}|${r.concurrency}`).map((rs) => {
    const f = spreadOf(rs.map((r) => r.result));
    const ratio = (g: (x: FanoutResult) => number | undefined) =>
      spread(
        rs.map((r) => {
          const b = baselineOf(runs, r, 'ocpp-rpc', (x, y) => x.concurrency === y.concurrency);
          return b && r.server !== 'ocpp-rpc' ? (g(r.result) ?? NaN) / (g(b.result) ?? NaN) : NaN;
        }),
      );
    const failures = countKinds(rs, (r) => Object.entries(r.result.measured.failures));
    return {
      server: rs[0].server,
      concurrency: rs[0].concurrency,
      commandsPerSec: f((x) => x.measured.commandsPerSec),
      p50Ms: f((x) => x.measured.latencyUs.p50 / 1000),
      p99Ms: f((x) => x.measured.latencyUs.p99 / 1000),
      p999Ms: f((x) => x.measured.latencyUs.p999 / 1000),
      maxMs: f((x) => x.measured.latencyUs.max / 1000),
      serverCpuUsPerCommand: f((x) => x.server?.cpuUsPerCommand),
      serverCores: f((x) => x.server?.cores),
      generatorCores: f((x) => x.generator.cores),
      foreignCores: f((x) => x.machine.foreignCores),
      vsOcppRpc: {
        commandsPerSec: ratio((x) => x.measured.commandsPerSec),
        cpuPerCommand: ratio((x) => x.server?.cpuUsPerCommand),
      },
      commands: rs.reduce((n, r) => n + r.result.measured.commands, 0),
      failures,
      failureSamples: rs
        .flatMap((r) => [
          ...r.result.connect.failures,
          ...r.result.measured.failureSamples,
          ...r.result.chargers.samples,
        ])
        .slice(0, 5),
      chargerProblems: rs.reduce((n, r) => {
        const c = r.result.chargers;
        return (
          n +
          c.unknownActions +
          c.closed +
          c.unparsed +
          (c.triggeredSent - c.triggeredAnswered) +
          r.result.connect.failed
        );
      }, 0),
    };
  });
}

function markdown(o: Options, cells: FanoutCell[], runs: FanoutRun[]): string {
  const L: string[] = [];
  const req = JSON.stringify(COMMANDS[o.version][o.command]!.request);
  L.push(
    `Fan-out: N = ${o.chargers} chargers (OCPP ${o.version}, raw client), operator sends ${o.command} ${req} to each, ${o.rounds} round${o.rounds > 1 ? 's' : ''} (${o.chargers * o.rounds} commands) after ${Math.min(o.warmup, o.chargers)} warm-up commands (one each to the first chargers); C requests outstanding (raw HTTP/1.1 keep-alive). Latency: HTTP request written → response read. ${o.reps} repetition${o.reps > 1 ? 's' : ''}; median (min–max).`,
    '',
  );
  L.push(
    '| C | server | commands/s | p50 ms | p99 ms | p99.9 ms | max ms | failures | server CPU µs/cmd | server cores | generator cores | other load (cores) | commands/s ÷ ocpp-rpc | CPU/cmd ÷ ocpp-rpc |',
  );
  L.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  const sorted = [...cells].sort(
    (a, b) => a.concurrency - b.concurrency || o.servers.indexOf(a.server) - o.servers.indexOf(b.server),
  );
  for (const c of sorted) {
    const nf = Object.values(c.failures).reduce((a, b) => a + b, 0);
    const fails = nf ? `${nf} of ${c.commands} (${fmtKinds(c.failures)})` : '0';
    L.push(
      `| ${c.concurrency} | ${c.server}${c.chargerProblems ? ' ᶜ' : ''} | ${fmtSpread(c.commandsPerSec)} | ${fmtSpread(c.p50Ms, 2)} | ${fmtSpread(c.p99Ms, 2)} | ${fmtSpread(c.p999Ms, 1)} | ${fmtSpread(c.maxMs, 1)} | ${fails} | ${fmtSpread(c.serverCpuUsPerCommand, 1)} | ${fmtSpread(c.serverCores, 2)} | ${fmtSpread(c.generatorCores, 2)} | ${fmtSpread(c.foreignCores, 2)} | ${fmtSpread(c.vsOcppRpc.commandsPerSec, 2)} | ${fmtSpread(c.vsOcppRpc.cpuPerCommand, 2)} |`,
    );
  }
  const shortest = Math.min(...runs.map((r) => r.result.measured.seconds));
  if (shortest < 1)
    L.push(
      '',
      `The shortest measured phase lasted ${shortest.toFixed(2)} s: /proc CPU time has 10 ms resolution, so CPU per command and cores are rough there (use more --rounds).`,
    );
  if (cells.some((c) => c.chargerProblems))
    L.push(
      '',
      'ᶜ charger-side problems (connect failures, unknown actions, unexpected closes, unparsed frames, triggered Heartbeats unanswered): see `failureSamples` in the JSON.',
    );
  return L.join('\n');
}

// ── the loop ──────────────────────────────────────────────────────────────────────────────

if (isMain(import.meta.url)) {
  const o = parse(process.argv.slice(2));
  const command = commandLine('bench/fanout.ts', process.argv.slice(2));
  const rec = startRecording();
  const m = serverOptions(o);
  const apiKey = `bench_${randomBytes(24).toString('base64url')}`;
  const sha256 = createHash('sha256').update(apiKey).digest('hex');
  const runs: FanoutRun[] = [];
  const servers: Record<string, { describe: string; script: string; threads: number }> = {};
  await runRepetitions({
    reps: o.reps,
    servers: o.servers,
    cells: o.concurrency,
    quiet: o,
    start: (name) => {
      const def = FANOUT_SERVERS[name];
      return startScript(name, def.script, def.args(o, m, sha256), def.nodeArgs?.(m));
    },
    ready: async (h) => {
      const def = FANOUT_SERVERS[h.kind];
      servers[h.kind] ??= { describe: def.describe, script: def.script, threads: h.threads };
    },
    run: async ({ h, cell: concurrency, rep, settle: s, progress }) => {
      const opts: Partial<FanoutOptions> = {
        port: h.port,
        apiPort: h.port,
        apiKey,
        serverPid: h.pid,
        version: o.version,
        command: o.command,
        chargers: o.chargers,
        rounds: o.rounds,
        concurrency,
        warmupCommands: o.warmup,
        timeoutMs: o.timeoutMs,
        idPrefix: `fo${rep}-${h.kind}-${concurrency}-${Date.now().toString(36)}`,
      };
      const result = await runGenerator<FanoutResult>('bench/lib/fanout-gen.ts', opts, budgetMs(o, concurrency));
      // The generator checks one command's answer before measuring (a wrong answer measures something else).
      if (!result.preflight.ok)
        throw new Error(
          `pre-flight failed for ${h.kind}: ${result.preflight.problem} (status ${result.preflight.status}, body ${result.preflight.body})`,
        );
      runs.push({ rep, server: h.kind, concurrency, settle: s, result });
      const x = result.measured;
      const nf = Object.values(x.failures).reduce((a, b) => a + b, 0);
      log(
        `${progress} rep ${rep} ${h.kind.padEnd(8)} C=${concurrency}  ${x.ok}/${x.commands} ok in ${x.seconds} s  ${x.commandsPerSec} cmd/s  p50 ${(x.latencyUs.p50 / 1000).toFixed(2)}  p99 ${(x.latencyUs.p99 / 1000).toFixed(2)}  max ${(x.latencyUs.max / 1000).toFixed(1)} ms  server ${result.server?.cpuUsPerCommand ?? '?'} µs/cmd (${result.server?.cores ?? '?'} cores)  gen ${result.generator.cores} cores  other ${result.machine.foreignCores}  failures ${nf}  chargers: ${result.chargers.callsReceived} CALLs${result.chargers.triggeredSent ? `, ${result.chargers.triggeredAnswered}/${result.chargers.triggeredSent} triggered Heartbeats answered` : ''}`,
      );
      for (const smp of [...result.connect.failures, ...x.failureSamples, ...result.chargers.samples].slice(0, 5))
        log(`    ${smp}`);
    },
  });
  const cells = summarize(runs);
  const report = {
    kind: 'fanout',
    date: new Date().toISOString(),
    command,
    options: o,
    machine: rec.machine(),
    node: versions('version', 'uws', 'ocppRpc'),
    git: rec.git(),
    servers,
    runs,
    cells,
    wallSeconds: rec.wallSeconds(),
  };
  writeReport(o.out, report);
  process.stdout.write(markdown(o, cells, runs) + '\n');
}
