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
 *  - `router`: SERVERS.router of e2e-throughput.ts (bench/reference/router.ts, state in
 *    process), with one API key whose SHA-256 is given in its config (`api.keys`), as an
 *    operator configures one; the API on the chargers' port (api.port 0, the default).
 *  - `uws-bare`: bench/reference/uws-operator.ts, bare uWS passing bytes through (the floor).
 *  - `ocpp-rpc`: bench/reference/ocpp-rpc-operator.ts, ocpp-rpc strict mode, `client.call()`.
 * The key is random per run; every server checks SHA-256(key) against the configured hash.
 *
 * Owns: the servers of this scenario, the repetitions × concurrency × servers loop,
 * aggregation and the report (markdown on stdout, JSON to --out). Must not: generate load
 * itself, or reach into core/.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem, release } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { DEFAULT_MATRIX, SERVERS, gitInfo, packageVersion, settle, type MatrixOptions } from './e2e-throughput.js';
import { runResultChild, startServer, type ServerHandle } from './lib/proc.js';
import { spread, fmtSpread, type Spread } from './lib/stats.js';
import {
  COMMANDS,
  DEFAULT_COMMAND,
  type FanoutCommand,
  type FanoutOptions,
  type FanoutResult,
} from './lib/fanout-gen.js';
import type { BenchVersion } from './lib/ocpp-payloads.js';

const root = join(import.meta.dirname, '..');

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

function parse(argv: string[]): Options {
  const o: Options = {
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
  for (const a of argv) {
    const m = /^--([a-z-]+)=(.*)$/.exec(a);
    if (!m) throw new Error(`expected --name=value, got ${a}`);
    const [, k, v] = m as unknown as [string, string, string];
    const num = (s = v) => {
      const n = Number(s);
      if (!Number.isFinite(n) || n < 0) throw new Error(`--${k} must be a non-negative number, got "${s}"`);
      return n;
    };
    if (k === 'servers')
      o.servers = v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
    else if (k === 'chargers') o.chargers = num();
    else if (k === 'rounds') o.rounds = num();
    else if (k === 'concurrency') o.concurrency = v.split(',').map((s) => num(s.trim()));
    else if (k === 'command') o.command = v as FanoutCommand;
    else if (k === 'version') o.version = v as BenchVersion;
    else if (k === 'warmup') o.warmup = num();
    else if (k === 'timeout-ms') o.timeoutMs = num();
    else if (k === 'reps') o.reps = num();
    else if (k === 'threads') o.threads = num();
    else if (k === 'router-config') o.routerConfig = JSON.parse(v) as Record<string, unknown>;
    else if (k === 'quiet-cores') o.quietCores = num();
    else if (k === 'quiet-wait') o.quietWaitSec = num();
    else if (k === 'out') o.out = resolve(v);
    else
      throw new Error(
        `unknown option --${k} (known: servers, chargers, rounds, concurrency, command, version, warmup, timeout-ms, reps, threads, router-config, quiet-cores, quiet-wait, out)`,
      );
  }
  if (!['1.6', '2.0.1'].includes(o.version)) throw new Error('--version must be 1.6 or 2.0.1');
  if (!o.command) o.command = DEFAULT_COMMAND[o.version];
  if (!COMMANDS[o.version][o.command])
    throw new Error(
      `--command ${o.command} is not simulated for OCPP ${o.version} (known: ${Object.keys(COMMANDS[o.version]).join(', ')})`,
    );
  for (const s of o.servers)
    if (!FANOUT_SERVERS[s]) throw new Error(`unknown server "${s}" (known: ${Object.keys(FANOUT_SERVERS).join(', ')})`);
  if (!Number.isInteger(o.chargers) || o.chargers < 1 || o.chargers > 5000)
    throw new Error('--chargers must be 1..5000 (one generator process)');
  if (!Number.isInteger(o.rounds) || o.rounds < 1 || o.rounds > 100) throw new Error('--rounds must be 1..100');
  for (const c of o.concurrency)
    if (!Number.isInteger(c) || c < 1 || c > 1024) throw new Error('--concurrency values must be integers 1..1024');
  if (o.timeoutMs < 100 || o.timeoutMs > 600_000)
    throw new Error('--timeout-ms must be 100..600000 (the router accepts that range)');
  if (o.reps < 1 || o.reps > 20) throw new Error('--reps must be 1..20');
  if ((o.routerConfig.api as { port?: unknown } | undefined)?.port)
    throw new Error("--router-config must not set api.port: bench/reference/router.ts reports the chargers' port only");
  return o;
}

// ── servers ───────────────────────────────────────────────────────────────────────────────

interface FanoutServer {
  script: string;
  describe: string;
  args(o: Options, m: MatrixOptions, keySha256: string): string[];
  nodeArgs?(m: MatrixOptions): string[];
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

/** The e2e matrix options SERVERS and settle() read (router state in process, no Redis). */
function matrixFor(o: Options): MatrixOptions {
  return {
    ...DEFAULT_MATRIX,
    threads: o.threads,
    version: o.version,
    routerConfig: o.routerConfig,
    routerState: 'memory',
    quietCores: o.quietCores,
    quietWaitSec: o.quietWaitSec,
  };
}

function runGenerator(
  opts: Partial<FanoutOptions> & Pick<FanoutOptions, 'port' | 'apiPort' | 'apiKey' | 'command'>,
  o: Options,
  concurrency: number,
): Promise<FanoutResult> {
  // Connects, then (worst case) every command timing out, capped at 30 min.
  const budgetMs = Math.min(
    30 * 60_000,
    120_000 + Math.ceil((o.chargers * o.rounds + o.warmup) / concurrency) * (o.timeoutMs + 5000),
  );
  return runResultChild<FanoutResult>(join(root, 'bench/lib/fanout-gen.ts'), opts, budgetMs, root);
}

// ── aggregation and report ────────────────────────────────────────────────────────────────

interface FanoutRun {
  rep: number;
  server: string;
  concurrency: number;
  settle: { waitedMs: number; foreignCores: number };
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
  const groups = new Map<string, FanoutRun[]>();
  for (const r of runs)
    groups.set(`${r.server}|${r.concurrency}`, [...(groups.get(`${r.server}|${r.concurrency}`) ?? []), r]);
  return [...groups.values()].map((rs) => {
    const f = (g: (x: FanoutResult) => number | undefined) => spread(rs.map((r) => g(r.result) ?? NaN));
    const ratio = (g: (x: FanoutResult) => number | undefined) =>
      spread(
        rs.map((r) => {
          const b = runs.find((x) => x.server === 'ocpp-rpc' && x.concurrency === r.concurrency && x.rep === r.rep);
          return b && r.server !== 'ocpp-rpc' ? (g(r.result) ?? NaN) / (g(b.result) ?? NaN) : NaN;
        }),
      );
    const failures: Record<string, number> = {};
    for (const r of rs)
      for (const [k, v] of Object.entries(r.result.measured.failures)) failures[k] = (failures[k] ?? 0) + v;
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
    const fails = nf
      ? `${nf} of ${c.commands} (${Object.entries(c.failures)
          .map(([k, v]) => `${v} ${k}`)
          .join(', ')})`
      : '0';
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

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

if (import.meta.url === `file://${process.argv[1]}`) {
  const o = parse(process.argv.slice(2));
  const command = `node --import tsx bench/fanout.ts ${process.argv.slice(2).join(' ')}`.trim();
  const log = (s: string) => process.stderr.write(s + '\n');
  const started = Date.now();
  const gitStart = gitInfo();
  const loadStart = loadavg().map((x) => +x.toFixed(2));
  const m = matrixFor(o);
  const apiKey = `bench_${randomBytes(24).toString('base64url')}`;
  const sha256 = createHash('sha256').update(apiKey).digest('hex');
  const runs: FanoutRun[] = [];
  const servers: Record<string, { describe: string; script: string; threads: number }> = {};
  const total = o.reps * o.concurrency.length * o.servers.length;
  let n = 0;
  for (let rep = 1; rep <= o.reps; rep++) {
    const hs: ServerHandle[] = [];
    try {
      for (const name of o.servers) {
        const def = FANOUT_SERVERS[name];
        const h = await startServer(name, join(root, def.script), def.args(o, m, sha256), {
          nodeArgs: def.nodeArgs?.(m),
          cwd: root,
        });
        hs.push(h);
        servers[name] ??= { describe: def.describe, script: def.script, threads: h.threads };
      }
      for (const concurrency of o.concurrency) {
        const order = hs.map((_, i) => hs[(i + rep - 1) % hs.length]);
        for (const h of order) {
          const s = await settle(
            hs.map((x) => x.pid),
            m,
          );
          const result = await runGenerator(
            {
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
            },
            o,
            concurrency,
          );
          n++;
          if (!result.preflight.ok)
            throw new Error(
              `pre-flight failed for ${h.kind}: ${result.preflight.problem} (status ${result.preflight.status}, body ${result.preflight.body})`,
            );
          runs.push({ rep, server: h.kind, concurrency, settle: s, result });
          const x = result.measured;
          const nf = Object.values(x.failures).reduce((a, b) => a + b, 0);
          log(
            `[${n}/${total}] rep ${rep} ${h.kind.padEnd(8)} C=${concurrency}  ${x.ok}/${x.commands} ok in ${x.seconds} s  ${x.commandsPerSec} cmd/s  p50 ${(x.latencyUs.p50 / 1000).toFixed(2)}  p99 ${(x.latencyUs.p99 / 1000).toFixed(2)}  max ${(x.latencyUs.max / 1000).toFixed(1)} ms  server ${result.server?.cpuUsPerCommand ?? '?'} µs/cmd (${result.server?.cores ?? '?'} cores)  gen ${result.generator.cores} cores  other ${result.machine.foreignCores}  failures ${nf}  chargers: ${result.chargers.callsReceived} CALLs${result.chargers.triggeredSent ? `, ${result.chargers.triggeredAnswered}/${result.chargers.triggeredSent} triggered Heartbeats answered` : ''}`,
          );
          for (const smp of [...result.connect.failures, ...x.failureSamples, ...result.chargers.samples].slice(0, 5))
            log(`    ${smp}`);
          if (await Promise.race([h.exited.then(() => true), sleep(0).then(() => false)]))
            throw new Error(`${h.kind} exited during the run; stderr:\n${h.stderr.join('\n')}`);
        }
      }
    } finally {
      for (const h of hs) await h.stop();
    }
  }
  const cells = summarize(runs);
  const report = {
    kind: 'fanout',
    date: new Date().toISOString(),
    command,
    options: o,
    machine: {
      cpu: cpus()[0]?.model ?? 'unknown',
      cores: cpus().length,
      memGiB: Math.round(totalmem() / 2 ** 30),
      kernel: release(),
      loadavgStart: loadStart,
      loadavgEnd: loadavg().map((x) => +x.toFixed(2)),
    },
    node: { version: process.version, uws: packageVersion('uWebSockets.js'), ocppRpc: packageVersion('ocpp-rpc') },
    git: gitStart && {
      commit: gitStart.commit,
      dirty: gitStart.dirty,
      changedDuringRun: gitInfo()?.fingerprint !== gitStart.fingerprint,
    },
    servers,
    runs,
    cells,
    wallSeconds: Math.round((Date.now() - started) / 1000),
  };
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(o.out, JSON.stringify(report, null, 2) + '\n');
  log(`wrote ${relative(root, o.out)}`);
  process.stdout.write(markdown(o, cells, runs) + '\n');
}
