/**
 * The CLI as an operator starts it: `node bin/ocpp-router.js` runs the compiled JavaScript in
 * dist/ (built when a source changed), TypeScript plugins still load inside compiled workers,
 * and a dist/ that cannot be built falls back to the TypeScript sources, saying why.
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import {
  cpSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestCharger } from '../helpers/charger.js';
import { freePort } from '../services/spawn.js';
import { until } from '../helpers/wait.js';

const root = join(import.meta.dirname, '..', '..');
/**
 * Starts node as from an operator's shell: tap's coverage hooks re-inject themselves into every
 * child's NODE_OPTIONS (and from there into the compiler, which they break), so `env -u`.
 */
const nodeCmd = (args: string[]): [string, string[]] => ['env', ['-u', 'NODE_OPTIONS', process.execPath, ...args]];

/** Children of `pid` by their command line (from /proc). */
function childrenOf(pid: number): string[] {
  const out: string[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' ').trim());
    } catch {
      /* exited */
    }
  }
  return out;
}

async function startCli(
  t: { teardown(fn: () => unknown): void },
  config: Record<string, unknown>,
): Promise<{ port: number; pid: number; listening: Record<string, unknown> }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'ocr-cli-'));
  const file = join(dir, 'config.json');
  writeFileSync(
    file,
    JSON.stringify({
      server: { host: '127.0.0.1', port },
      dataDir: dir,
      analytics: { spoolDir: join(dir, 'spool') },
      log: { level: 'info' },
      ...config,
    }),
  );
  const child = spawn(...nodeCmd(['bin/ocpp-router.js', '--config', file]), {
    cwd: root,
    env: { ...process.env, OCR_REDIS_URL: '', OCR_CLICKHOUSE_URL: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  t.teardown(async () => {
    if (child.exitCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    }
    rmSync(dir, { recursive: true, force: true });
  });
  // The listening line; `true` if the CLI exited without one (no use waiting on).
  const line = await until(
    () => out.split('\n').find((l) => l.includes('"router listening"')) ?? child.exitCode !== null,
    { what: 'the CLI to log "router listening"', timeoutMs: 15_000, everyMs: 50 },
  ).catch((err: Error) => err);
  if (typeof line !== 'string') {
    throw new Error(`router did not start (${line === true ? 'exited' : line.message}):\n${out}`);
  }
  return { port, pid: child.pid!, listening: JSON.parse(line) as Record<string, unknown> };
}

t.test('the CLI runs compiled JavaScript: no TypeScript loader, no esbuild helper processes', async (t) => {
  const { port, pid, listening } = await startCli(t, {});
  t.equal(listening.code, 'compiled', 'the listening line says the code is compiled');
  const cp = await TestCharger.connect(`ws://127.0.0.1:${port}/ocpp/CLI-1`);
  t.teardown(() => cp.close());
  const [type, , boot] = await cp.call('BootNotification', { chargePointVendor: 'V', chargePointModel: 'M' });
  t.equal(type, 3);
  t.equal((boot as { status: string }).status, 'Accepted', 'a charger boots through the worker pool');
  t.same(childrenOf(pid), [], 'no child processes (tsx would start one esbuild helper per thread)');
});

t.test('a TypeScript plugin loads in compiled workers, and its own CallError is answered with its code', async (t) => {
  const { port } = await startCli(t, {
    plugins: [{ name: 'core' }, { name: './test/fixtures/plugins/vendor-gate.ts' }],
  });
  const cp = await TestCharger.connect(`ws://127.0.0.1:${port}/ocpp/CLI-2`);
  t.teardown(() => cp.close());
  const blocked = await cp.call('DataTransfer', { vendorId: 'blocked' });
  t.same([blocked[0], blocked[2]], [4, 'SecurityError'], 'CALLERROR SecurityError from the plugin, not InternalError');
  const other = await cp.call('DataTransfer', { vendorId: 'other' });
  t.not(other[2], 'SecurityError', 'other vendors pass the gate');
});

t.test('dist/ is rebuilt after a source changes, and a failed build falls back to the sources', async (t) => {
  // A copy of the project (sources only; node_modules linked) so the real dist/ is not touched.
  const copy = mkdtempSync(join(tmpdir(), 'ocr-build-'));
  t.teardown(() => rmSync(copy, { recursive: true, force: true }));
  for (const p of ['core', 'plugins', 'bin', 'config', 'package.json', 'tsconfig.json', 'tsconfig.build.json']) {
    cpSync(join(root, p), join(copy, p), { recursive: true, filter: (src) => !src.includes('node_modules') });
  }
  symlinkSync(join(root, 'node_modules'), join(copy, 'node_modules'));
  const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version as string;
  const cli = () => spawnSync(...nodeCmd(['bin/ocpp-router.js', '--version']), { cwd: copy, encoding: 'utf8' });

  let r = cli();
  t.equal(r.stdout.trim(), version, 'first start builds dist/ and runs it');
  t.equal(r.stderr, '', 'quietly');
  const stamp = join(copy, 'dist', '.built');
  const first = statSync(stamp).mtimeMs;
  t.ok(statSync(join(copy, 'dist', 'core', 'index.js')).isFile(), 'core compiled');

  cli();
  t.equal(statSync(stamp).mtimeMs, first, 'a fresh dist/ is not rebuilt');

  const later = new Date(Date.now() + 5_000);
  utimesSync(join(copy, 'core', 'errors.ts'), later, later);
  r = cli();
  t.equal(r.stdout.trim(), version);
  t.ok(statSync(stamp).mtimeMs > first, 'a changed source rebuilds dist/');

  writeFileSync(join(copy, 'core', 'broken.ts'), 'export const x: number = "not a number";\n');
  r = cli();
  t.equal(r.stdout.trim(), version, 'a failed build still starts, from the sources');
  t.match(r.stderr, /running the TypeScript sources through tsx.*tsc failed.*broken\.ts/, 'and says why');
});
