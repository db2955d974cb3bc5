/**
 * Compiled JavaScript for production: `dist/` holds core/, plugins/ and bin/ compiled by the
 * project's own TypeScript compiler (tsconfig.build.json), so that router processes and their
 * worker threads run plain JavaScript instead of compiling TypeScript through tsx at run time.
 *
 * Why: tsx costs each router process tens of MB of RSS (its loader in every thread plus one
 * esbuild helper process per thread; bench/RESULTS.md, "Reconnect storm and hold"), which at
 * 100,000 chargers over six processes is most of the fixed cost per charger.
 *
 * Comments are not emitted (tsconfig.build.json `removeComments`): V8 keeps every module's
 * source text in each thread that loads it, and commented sources with "≈" or "→" are
 * two-byte strings: about twice the source text per thread. Source maps are written beside
 * the files (nothing loads them unless asked): test coverage maps dist/ back to the sources.
 *
 * Plain JavaScript on purpose: this runs before anything can load TypeScript.
 *
 * - `ensureBuilt()` returns true when dist/ is at least as new as every source file, building
 *   it first when it is stale and the compiler is installed; false when the caller must run
 *   the sources through tsx instead (no compiler, read-only install, failed build). A build
 *   takes ≈ 2 s and happens only after a source changed.
 * - Concurrent starts (tests, `--processes N`) build once: a lock directory serialises them,
 *   and the output is built beside dist/ and swapped in, so a reader never sees half a tree.
 * - `node bin/build.mjs` (npm run build) builds unconditionally; `--if-stale` only when needed.
 */
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const distDir = join(root, 'dist');
const stampFile = join(distDir, '.built');
const lockDir = join(root, '.dist-build.lock');
/** Inputs of the build: what tsconfig.build.json includes, and the configs themselves. */
const SOURCE_DIRS = ['core', 'plugins', 'bin'];
const CONFIG_FILES = ['tsconfig.json', 'tsconfig.build.json'];
const LOCK_STALE_MS = 120_000;
const LOCK_WAIT_MS = 120_000;

function newestSource() {
  let newest = 0;
  const walk = (dir) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'node_modules') walk(p);
      } else if (/\.(ts|mts|json)$/.test(e.name) && !e.name.endsWith('.test.ts')) {
        newest = Math.max(newest, statSync(p).mtimeMs);
      }
    }
  };
  for (const d of SOURCE_DIRS) walk(join(root, d));
  for (const f of CONFIG_FILES) {
    try {
      newest = Math.max(newest, statSync(join(root, f)).mtimeMs);
    } catch {
      /* optional */
    }
  }
  return newest;
}

/** Whether dist/ was built from the sources as they are now. */
export function isFresh() {
  try {
    return statSync(stampFile).mtimeMs >= newestSource();
  } catch {
    return false;
  }
}

function compilerPath() {
  try {
    // Through package.json's `bin`: the package's `exports` do not expose bin/tsc.
    const pkgFile = createRequire(join(root, 'package.json')).resolve('typescript/package.json');
    const bin = JSON.parse(readFileSync(pkgFile, 'utf8')).bin;
    const tsc = join(dirname(pkgFile), typeof bin === 'string' ? bin : bin.tsc);
    return existsSync(tsc) ? tsc : undefined;
  } catch {
    return undefined;
  }
}

function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Takes the build lock, waiting for another builder; false when it could not. */
function lock() {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      mkdirSync(lockDir);
      return true;
    } catch (err) {
      if (err.code !== 'EEXIST') return false;
    }
    try {
      if (Date.now() - statSync(lockDir).mtimeMs > LOCK_STALE_MS) rmSync(lockDir, { recursive: true, force: true });
    } catch {
      /* gone meanwhile */
    }
    if (Date.now() > deadline) return false;
    sleep(100);
  }
}

/**
 * Compiles into a fresh directory and swaps it in (under the lock: ensureBuilt). Returns
 * undefined on success, else why not.
 */
function build() {
  const tsc = compilerPath();
  if (!tsc) return 'the TypeScript compiler is not installed (npm ci without --omit=dev installs it)';
  const started = Date.now();
  const next = join(root, `.dist-next-${process.pid}`);
  rmSync(next, { recursive: true, force: true });
  const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', next], {
    cwd: root,
    encoding: 'utf8',
    // Loaders meant for the caller (tap's --import=tsx) break the compiler: it runs bare.
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  if (r.status !== 0) {
    rmSync(next, { recursive: true, force: true });
    return `tsc failed: ${(r.stdout + r.stderr).trim().split('\n').slice(0, 5).join(' | ') || r.error?.message}`;
  }
  // The stamp carries the build's start time: a source saved during the build makes it stale.
  writeFileSync(join(next, '.built'), `built from the sources under ${SOURCE_DIRS.join(', ')}\n`);
  const t = new Date(started);
  utimesSync(join(next, '.built'), t, t);
  const old = join(root, `.dist-old-${process.pid}`);
  if (existsSync(distDir)) renameSync(distDir, old);
  renameSync(next, distDir);
  rmSync(old, { recursive: true, force: true });
  return undefined;
}

/**
 * True when dist/ can be run: fresh already (unless `force`), or built now. False (with the
 * reason reported) when the caller should run the TypeScript sources instead.
 */
export function ensureBuilt(report = () => {}, { force = false } = {}) {
  if (!force && isFresh()) return true;
  if (!lock()) {
    report(`could not take the build lock ${lockDir}`);
    return false;
  }
  try {
    if (!force && isFresh()) return true; // another process built it while we waited
    const why = build();
    if (why) report(why);
    return why === undefined;
  } catch (err) {
    report(err.message);
    return false;
  } finally {
    rmSync(lockDir, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  // `--if-stale`: build only when a source is newer than dist/ (test/run.ts), else always.
  let why = 'not built';
  if (!ensureBuilt((reason) => (why = reason), { force: !process.argv.includes('--if-stale') })) {
    process.stderr.write(`build: ${why}\n`);
    process.exit(1);
  }
  // Said the same way whether this run compiled or (--if-stale) found nothing newer: dist/ is current.
  process.stdout.write(`build: ${distDir} is current${process.argv.includes('--if-stale') ? '' : ' (compiled now)'}\n`);
}
