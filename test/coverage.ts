/**
 * Coverage of the TypeScript sources (core/**, plugins/**) over the whole test run, and the
 * thresholds the suite enforces.
 *
 * Owns: the collection directory, the report and the threshold check. Must not: run tests.
 *
 * Why V8's own collection (NODE_V8_COVERAGE) read by c8, rather than tap's: the e2e tests
 * spawn routers through the CLI, which runs the compiled JavaScript in dist/, and their worker
 * threads; NODE_V8_COVERAGE follows every child process and thread, and c8 maps dist/ back to
 * the TypeScript through the build's source maps (tsconfig.build.json `sourceMap`), so one
 * report covers the sources whichever way they ran. tap's collector showed every source run
 * through tsx at 100 % here (so its report hid them) and dist/ as separate files.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Report } from 'c8';

type Metric = 'lines' | 'branches' | 'functions' | 'statements';
type Totals = Record<Metric, { total: number; covered: number }>;

/**
 * Minimum coverage per folder, in percent, enforced when the whole suite runs. Set two or
 * three points below what the suite reaches (paths taken only on timeouts vary from run to
 * run), so that a change that drops tests of these folders fails; raise them with the tests.
 */
export const THRESHOLDS: Record<string, Partial<Record<Metric, number>>> = {
  'core/protocol': { lines: 97, branches: 94, functions: 90 },
  'core/worker': { lines: 95, branches: 93, functions: 95 },
  'core/dispatch': { lines: 95, branches: 92, functions: 92 },
  'core/thread-contract': { lines: 98, branches: 94, functions: 98 },
};

/** A fresh directory for V8 to write coverage into (set as NODE_V8_COVERAGE). */
export function coverageDir(): string {
  return mkdtempSync(join(tmpdir(), 'ocr-coverage-'));
}

export interface CoverageResult {
  /** Per-folder table, then the threshold verdicts, ready to print. */
  text: string;
  /** Threshold failures, one line each (empty when every threshold holds or none was checked). */
  failures: string[];
}

/**
 * Reads what V8 wrote into `dir`, writes lcov and HTML to `<root>/coverage/`, and returns a
 * per-folder summary; thresholds are checked when `enforce` (a partial run covers less).
 */
export async function reportCoverage(root: string, dir: string, enforce: boolean): Promise<CoverageResult> {
  const reportsDirectory = join(root, 'coverage');
  const report = new Report({
    tempDirectory: dir,
    reportsDirectory,
    reporter: ['json-summary', 'lcov'],
    include: ['core/**', 'plugins/**'],
    exclude: ['**/*.test.ts', '**/*.generated.ts', 'core/testing/**'],
    excludeAfterRemap: true,
    excludeNodeModules: true,
    src: [root],
    all: true,
  });
  const cwd = process.cwd();
  process.chdir(root);
  try {
    await report.run();
  } finally {
    process.chdir(cwd);
  }
  const summary = JSON.parse(readFileSync(join(reportsDirectory, 'coverage-summary.json'), 'utf8')) as Record<
    string,
    Totals
  >;
  const folders = new Map<string, Totals>();
  for (const [file, t] of Object.entries(summary)) {
    if (file === 'total') continue;
    const rel = relative(root, file);
    const folder = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '.';
    const acc = folders.get(folder) ?? emptyTotals();
    for (const m of METRICS) {
      acc[m].total += t[m].total;
      acc[m].covered += t[m].covered;
    }
    folders.set(folder, acc);
  }
  const lines = [`# coverage of core/ and plugins/ (${relative(root, reportsDirectory)}/lcov-report/index.html)`];
  lines.push(`#   ${'folder'.padEnd(28)} ${METRICS.map((m) => m.padStart(10)).join(' ')}`);
  const rows = [...folders.entries()].sort(([a], [b]) => a.localeCompare(b));
  rows.push(['all', summary.total]);
  for (const [folder, t] of rows) {
    lines.push(`#   ${folder.padEnd(28)} ${METRICS.map((m) => `${pct(t[m]).toFixed(1)}%`.padStart(10)).join(' ')}`);
  }
  const failures: string[] = [];
  if (enforce) {
    for (const [folder, min] of Object.entries(THRESHOLDS)) {
      const t = folders.get(folder);
      for (const [m, want] of Object.entries(min) as [Metric, number][]) {
        const got = t ? pct(t[m]) : 0;
        if (got < want) failures.push(`coverage of ${folder} ${m} ${got.toFixed(1)}% is below its threshold ${want}%`);
      }
    }
    lines.push(
      failures.length === 0
        ? `# coverage thresholds (${Object.keys(THRESHOLDS).join(', ')}): ok`
        : `# coverage thresholds: FAILED`,
    );
  } else {
    lines.push('# coverage thresholds: not checked (a part of the suite ran)');
  }
  return { text: lines.join('\n'), failures };
}

/** Removes the raw V8 files (hundreds of MB for a whole run). */
export function removeCoverageDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

const METRICS: Metric[] = ['lines', 'branches', 'functions', 'statements'];

function emptyTotals(): Totals {
  return {
    lines: { total: 0, covered: 0 },
    branches: { total: 0, covered: 0 },
    functions: { total: 0, covered: 0 },
    statements: { total: 0, covered: 0 },
  };
}

function pct(t: { total: number; covered: number }): number {
  return t.total === 0 ? 100 : (100 * t.covered) / t.total;
}
