/**
 * storm: connect storm and hold (issue #3). N chargers connect and send BootNotification as
 * fast as ≤ `concurrency` pending handshakes allow (a fleet reconnecting after an outage),
 * then stay idle for H seconds: none may be dropped, memory should stay flat. Each server of
 * the e2e matrix (SERVERS of e2e-throughput.ts) in its own fresh process, the generator
 * (bench/lib/storm-gen.ts) in another.
 *
 *   node --import tsx bench/storm.ts [--servers=uws-bare,ws-json,ocpp-rpc,router] [--chargers=2000]
 *        [--hold=20] [--concurrency=256] [--threads=0] [--router-config='{json}'] [--out=bench/results/storm-latest.json]
 *
 * Outputs per server: connects/s and boots/s, time to boot all, failures by kind, handshake and
 * boot latency, server RSS per connection ((RSS at the start of the hold − idle RSS before the
 * storm) ÷ booted chargers, also at the end of the hold; VmRSS covers every thread of the process, the router's workers
 * included), RSS drift over the hold, drops during the hold. Markdown on stdout, JSON to --out.
 *
 * Limits: one generator process holds every client socket, and a process may have 20,000
 * file descriptors here, so N is capped at 5,000 in this first version.
 *
 * Owns: server processes of the storm and the report. Must not: generate load itself.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, release } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { SERVERS, DEFAULT_MATRIX } from './e2e-throughput.js';
import { runResultChild, startServer } from './lib/proc.js';
import type { StormOptions, StormResult } from './lib/storm-gen.js';

const root = join(import.meta.dirname, '..');

interface Options { servers: string[]; chargers: number; hold: number; concurrency: number; threads: number; routerConfig: Record<string, unknown>; out: string }

function parse(argv: string[]): Options {
  const o: Options = { servers: ['uws-bare', 'ws-json', 'ocpp-rpc', 'router'], chargers: 2000, hold: 20, concurrency: 256, threads: 0, routerConfig: {}, out: join(root, 'bench/results/storm-latest.json') };
  for (const a of argv) {
    const m = /^--([a-z-]+)=(.*)$/.exec(a);
    if (!m) throw new Error(`expected --name=value, got ${a}`);
    const [, k, v] = m as unknown as [string, string, string];
    const num = () => { const n = Number(v); if (!Number.isFinite(n) || n < 0) throw new Error(`--${k} must be a non-negative number`); return n; };
    if (k === 'servers') o.servers = v.split(',').map((s) => s.trim()).filter(Boolean);
    else if (k === 'chargers') o.chargers = num();
    else if (k === 'hold') o.hold = num();
    else if (k === 'concurrency') o.concurrency = num();
    else if (k === 'threads') o.threads = num();
    else if (k === 'router-config') o.routerConfig = JSON.parse(v) as Record<string, unknown>;
    else if (k === 'out') o.out = resolve(v);
    else throw new Error(`unknown option --${k}`);
  }
  for (const s of o.servers) if (!SERVERS[s]) throw new Error(`unknown server "${s}" (known: ${Object.keys(SERVERS).join(', ')})`);
  if (!Number.isInteger(o.chargers) || o.chargers < 1 || o.chargers > 5000) throw new Error('--chargers must be 1..5000 (one generator process, 20k file descriptors)');
  if (o.hold < 1 || o.hold > 600) throw new Error('--hold must be 1..600 seconds');
  if (!Number.isInteger(o.concurrency) || o.concurrency < 1 || o.concurrency > 4096) throw new Error('--concurrency must be 1..4096');
  return o;
}

function runGenerator(opts: Partial<StormOptions> & Pick<StormOptions, 'port' | 'serverPid'>, o: Options): Promise<StormResult> {
  const budgetMs = 120_000 + o.hold * 1000 + (Math.ceil(o.chargers / o.concurrency) + 2) * 20_000;
  return runResultChild<StormResult>(join(root, 'bench/lib/storm-gen.ts'), opts, budgetMs, root);
}

const fmtFail = (f: Record<string, number>) => { const e = Object.entries(f); return e.length ? `${e.reduce((n, [, v]) => n + v, 0)} (${e.map(([k, v]) => `${v} ${k}`).join(', ')})` : '0'; };

function markdown(o: Options, rows: { server: string; r: StormResult }[]): string {
  const L: string[] = [];
  L.push(`N = ${o.chargers} chargers (OCPP 1.6, raw client, ≤ ${o.concurrency} handshakes pending), hold ${o.hold} s; one repetition.`, '');
  L.push('| server | connects/s | boots/s | time to boot all s | handshake p50 / p99 ms | boot p50 / p99 ms | failures | RSS idle MB | RSS/connection KB, hold start / end | RSS drift in hold MB | drops in hold | CPU in storm s, server / generator |');
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const { server, r } of rows) {
    const s = r.storm;
    L.push(`| ${server} | ${s.connectsPerSec} | ${s.bootsPerSec} | ${(s.bootAllMs / 1000).toFixed(2)} | ${(s.handshakeUs.p50 / 1000).toFixed(1)} / ${(s.handshakeUs.p99 / 1000).toFixed(1)} | ${(s.bootUs.p50 / 1000).toFixed(1)} / ${(s.bootUs.p99 / 1000).toFixed(1)} | ${fmtFail(s.failures)} | ${(r.rssKB.idle / 1024).toFixed(0)} | ${r.perConnection.rssKB} / ${r.perConnection.rssKBEnd} | ${r.perConnection.rssDriftMB} | ${r.hold.drops} | ${(s.serverCpuMs / 1000).toFixed(2)} / ${(s.generatorCpuMs / 1000).toFixed(2)} |`);
  }
  return L.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const o = parse(process.argv.slice(2));
  const command = `node --import tsx bench/storm.ts ${process.argv.slice(2).join(' ')}`.trim();
  const started = Date.now();
  const rows: { server: string; r: StormResult }[] = [];
  const servers: Record<string, unknown> = {};
  for (const name of o.servers) {
    const def = SERVERS[name]!;
    const m = { ...DEFAULT_MATRIX, threads: o.threads, routerConfig: o.routerConfig };
    const h = await startServer(name, join(root, def.script), def.args(m), { cwd: root });
    servers[name] = { describe: def.describe, threads: h.threads };
    try {
      await new Promise((r) => setTimeout(r, 1000));
      const r = await runGenerator({ port: h.port, serverPid: h.pid, chargers: o.chargers, holdSec: o.hold, concurrency: o.concurrency, idPrefix: `storm-${name}-${Date.now().toString(36)}` }, o);
      rows.push({ server: name, r });
      const s = r.storm;
      process.stderr.write(`${name.padEnd(8)} booted ${s.booted}/${s.attempted} in ${s.bootAllMs} ms  ${s.connectsPerSec} connects/s  ${s.bootsPerSec} boots/s  failures ${fmtFail(s.failures)}  RSS ${r.perConnection.rssKB} KB/conn  drift ${r.perConnection.rssDriftMB} MB  drops ${r.hold.drops}\n`);
      for (const x of [...s.failureSamples, ...r.hold.dropSamples]) process.stderr.write(`    ${x}\n`);
      if (h.exited && (await Promise.race([h.exited.then(() => true), new Promise<boolean>((res) => setTimeout(() => res(false), 0))]))) throw new Error(`${name} exited during the run; stderr:\n${h.stderr.join('\n')}`);
    } finally {
      await h.stop();
    }
  }
  const report = {
    kind: 'storm', date: new Date().toISOString(), command, options: o,
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memGiB: Math.round(totalmem() / 2 ** 30), kernel: release() },
    node: process.version, servers, results: Object.fromEntries(rows.map(({ server, r }) => [server, r])), wallSeconds: Math.round((Date.now() - started) / 1000),
  };
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(o.out, JSON.stringify(report, null, 2) + '\n');
  process.stderr.write(`wrote ${relative(root, o.out)}\n`);
  process.stdout.write(markdown(o, rows) + '\n');
}
