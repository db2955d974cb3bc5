/**
 * `npm test`: typecheck, throwaway services, tap, one summary line.
 *
 * Owns: the order of a test run and its final verdict. Must not: contain tests, or touch
 * any service it did not start (the shared Redis on 6379, anything on 8123/9000).
 *
 *   tsc --noEmit ───────────────┐  (concurrently: both take a second or two)
 *   startRedis + startClickHouse ┤
 *                                ▼
 *   tap [args] with OCR_TEST_REDIS_URL, OCR_TEST_CLICKHOUSE_URL  ── output streamed through
 *                                ▼
 *   stop services (also on failure and SIGINT/SIGTERM) ─► last line "N passed, N failed"
 *
 * Counting: tap's final summary line (`# { total: 12, pass: 11, fail: 1 }`) counts
 * assertions, and a test file that dies without reporting counts as one failure. We use
 * it as is, so the numbers are assertions, plus one for the typecheck (pass or fail), plus
 * one failure per service that could not start, plus one failure when tap exits non-zero
 * without reporting a failed assertion (crash, no summary, no files found).
 *
 * Arguments go to tap unchanged, except directories: tap expands a directory to every
 * script in it (including helpers and this file), so a directory argument is replaced by
 * the *.test.ts files under it. Without arguments tap discovers tests itself through
 * `.taprc`'s `include: **\/*.test.ts`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { coverageDir, removeCoverageDir, reportCoverage } from './coverage.js';
import { startClickHouse, startRedis, type ClickHouseService, type RedisService } from './services/index.js';

const root = join(import.meta.dirname, '..');
const failures: string[] = [];
let passed = 0;
let failed = 0;
let interrupted = false;
let tap: ChildProcess | undefined;

/** Runs a local bin (node_modules/.bin/<name>) or falls back to npx. */
function bin(name: string): { cmd: string; pre: string[] } {
  const local = join(root, 'node_modules', '.bin', name);
  return existsSync(local) ? { cmd: local, pre: [] } : { cmd: 'npx', pre: [name] };
}

function run(name: string, args: string[]): Promise<{ ok: boolean; output: string }> {
  const { cmd, pre } = name === 'node' ? { cmd: process.execPath, pre: [] } : bin(name);
  return new Promise((resolve) => {
    const child = spawn(cmd, [...pre, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', (err) => resolve({ ok: false, output: String(err) }));
    child.on('close', (code) => resolve({ ok: code === 0, output }));
  });
}

const typecheck = () => run('tsc', ['--noEmit', '-p', 'tsconfig.json']);
/** dist/ (compiled JS, what the CLI runs), built once here so that tests starting the CLI do not all wait for it. */
const buildDist = () => run('node', ['bin/build.mjs', '--if-stale']);
/**
 * tap applies the plugin list of .taprc (which drops its ts-node based TypeScript plugin in
 * favour of tsx) only after `tap build`; a fresh `npm ci` still has the default build, so every
 * test file would fail to load. Building takes a few seconds, in parallel with the rest.
 */
const tapBuild = () => run('tap', ['build']);

function findTests(dir: string, out: string[]): void {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) findTests(p, out);
    else if (name.endsWith('.test.ts')) out.push(relative(root, p));
  }
}

function tapArgs(args: string[]): string[] {
  const out: string[] = [];
  for (const a of args) {
    if (!a.startsWith('-') && existsSync(a) && statSync(a).isDirectory()) {
      const found: string[] = [];
      findTests(a, found);
      if (found.length === 0) failures.push(`no *.test.ts files under ${a}`);
      out.push(...found.sort());
    } else out.push(a);
  }
  // The summary line is parsed from the TAP reporter's output (the default when stdout is
  // not a terminal; forced in case FORCE_COLOR is set).
  if (!args.some((a) => a === '-R' || a.startsWith('-R') || a.startsWith('--reporter'))) out.unshift('--reporter=tap');
  return out;
}

interface TapCounts {
  [k: string]: number;
}

function runTap(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; counts: TapCounts | undefined }> {
  const { cmd, pre } = bin('tap');
  return new Promise((resolve) => {
    tap = spawn(cmd, [...pre, ...args], { cwd: root, env, stdio: ['inherit', 'pipe', 'inherit'] });
    let counts: TapCounts | undefined;
    let partial = '';
    const scan = (line: string) => {
      // tap's last line but one: "# { total: 12, pass: 11, fail: 1, skip: 2 }" (top level only)
      const m = /^# \{ (total: \d+.*) \}$/.exec(line);
      if (m)
        counts = Object.fromEntries(
          m[1]
            .split(', ')
            .map((kv) => kv.split(': '))
            .map(([k, v]) => [k, Number(v)]),
        );
    };
    tap.stdout!.on('data', (d: Buffer) => {
      process.stdout.write(d);
      const lines = (partial + d.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) scan(l);
    });
    tap.on('error', (err) => {
      failures.push(`tap could not start: ${err.message}`);
      resolve({ code: 1, signal: null, counts });
    });
    tap.on('close', (code, signal) => {
      scan(partial);
      tap = undefined;
      resolve({ code, signal, counts });
    });
  });
}

async function main(): Promise<number> {
  const services: Array<RedisService | ClickHouseService> = [];
  const onSignal = (sig: NodeJS.Signals) => {
    interrupted = true;
    // tap usually got the same SIGINT from the terminal; forwarding covers `kill <pid>`.
    tap?.kill(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const [tc, build, dist, redis, ch] = await Promise.all([
      typecheck(),
      tapBuild(),
      buildDist(),
      startRedis().then(ok, ko),
      startClickHouse().then(ok, ko),
    ]);
    if (!build.ok) {
      failed++;
      console.log(`# tap build FAILED:\n${build.output}`);
    }
    if (dist.ok) {
      passed++;
      console.log('# build of dist/ (node bin/build.mjs --if-stale): ok');
    } else {
      failed++;
      console.log(`# build of dist/ (node bin/build.mjs --if-stale) FAILED:\n${dist.output}`);
    }
    if (tc.output.trim()) process.stdout.write(tc.output.endsWith('\n') ? tc.output : tc.output + '\n');
    if (tc.ok) {
      passed++;
      console.log('# typecheck (tsc --noEmit -p tsconfig.json): ok');
    } else {
      failed++;
      console.log('# typecheck (tsc --noEmit -p tsconfig.json): FAILED');
    }
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const [name, res, envVar] of [
      ['redis-server', redis, 'OCR_TEST_REDIS_URL'],
      ['clickhouse-server', ch, 'OCR_TEST_CLICKHOUSE_URL'],
    ] as const) {
      if (res.ok) {
        services.push(res.value);
        env[envVar] = res.value.url;
        console.log(`# ${name}: ${res.value.url} (pid ${res.value.pid}, dir ${res.value.dir})`);
      } else {
        failed++;
        // The error message says how to install the server (test/services).
        console.log(`# ${name} could not start: ${(res.error as Error).message}`);
      }
    }
    if (interrupted) return 130;

    const args = process.argv.slice(2);
    const covDir = coverageDir();
    env.NODE_V8_COVERAGE = covDir;
    const result = await runTap(tapArgs(args), env);
    if (result.counts === undefined) {
      failures.push(`tap printed no summary (exit code ${result.code}, signal ${result.signal})`);
    } else {
      passed += result.counts.pass ?? 0;
      failed += result.counts.fail ?? 0;
      if (result.code !== 0 && !(result.counts.fail > 0))
        failures.push(`tap exited with code ${result.code} without a failed assertion`);
    }
    if (!interrupted) {
      // Thresholds hold for the whole suite only: a run of some files covers less.
      const coverage = await reportCoverage(root, covDir, args.length === 0);
      console.log(coverage.text);
      if (coverage.failures.length > 0) failures.push(...coverage.failures);
      else if (args.length === 0) passed++;
    }
    removeCoverageDir(covDir);
    return interrupted ? 130 : 0;
  } finally {
    // Their data is thrown away, so ClickHouse gets SIGKILL: its graceful shutdown takes
    // 1–3 s on 18.16 and buys nothing here.
    await Promise.allSettled(
      services.map((s) =>
        s.stop({ removeDir: true, signal: 'url' in s && s.url.startsWith('http') ? 'SIGKILL' : 'SIGTERM' }),
      ),
    );
  }
}

function ok<T>(value: T): { ok: true; value: T } {
  return { ok: true, value };
}
function ko(error: unknown): { ok: false; error: unknown } {
  return { ok: false, error };
}

let code: number;
try {
  code = await main();
} catch (err) {
  failures.push(`test runner error: ${(err as Error).stack ?? String(err)}`);
  code = 1;
}
for (const f of failures) console.log(`# ${f}`);
failed += failures.length;
if (failed > 0 && code === 0) code = 1;
// The very last line, for humans and CI alike.
console.log(`${passed} passed, ${failed} failed`);
process.exit(code);
