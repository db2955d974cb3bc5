/**
 * `npm run test:loaded [-- --runs N]`: the whole suite N times in a row (3 by default) while
 * another process keeps one core busy, as on a contributor's laptop that is doing something
 * else. Prints each run's time and verdict, and ends with the usual "N passed, N failed"
 * line counting runs.
 *
 * Owns: the load and the repetition. Must not: change how a run is judged (that is
 * test/run.ts, started here exactly as `npm test` starts it).
 *
 * The load is a spin loop in a child process, bounded in time (the runs' budget) and ended
 * with this process, so an interrupted check never leaves a core busy.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const runsArg = process.argv.indexOf('--runs');
const runs = runsArg === -1 ? 3 : Number(process.argv[runsArg + 1]);
if (!Number.isInteger(runs) || runs < 1 || runs > 10) {
  console.error('test:loaded: --runs must be an integer from 1 to 10');
  process.exit(2);
}
/** Each run has 4 minutes by the project's rule; the load stops after all of them at most. */
const RUN_BUDGET_MS = 240_000;

const spinSource = `
  const end = Date.now() + ${runs * RUN_BUDGET_MS + 60_000};
  const parent = ${process.pid};
  let n = 0;
  while (Date.now() < end) {
    if (++n % 1e7 === 0) { try { process.kill(parent, 0); } catch { break; } }
  }
`;
const spin = spawn(process.execPath, ['-e', spinSource], { stdio: 'ignore' });
const stopSpin = () => {
  if (spin.exitCode === null) spin.kill('SIGKILL');
};
process.on('exit', stopSpin);
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    stopSpin();
    process.exit(130);
  });

function runSuite(): Promise<{ ok: boolean; ms: number; last: string }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/run.ts'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let tail = '';
    child.stdout.on('data', (d: Buffer) => {
      process.stdout.write(d);
      tail = (tail + d.toString('utf8')).slice(-2000);
    });
    child.on('close', (code) => {
      const last = tail.trimEnd().split('\n').pop() ?? '';
      resolve({ ok: code === 0, ms: Date.now() - t0, last });
    });
  });
}

const results: Array<{ ok: boolean; ms: number; last: string }> = [];
for (let i = 0; i < runs; i++) results.push(await runSuite());
stopSpin();

console.log(`# npm test ${runs} times with one core kept busy (pid ${spin.pid}):`);
results.forEach((r, i) => {
  const slow = r.ms > RUN_BUDGET_MS ? ' OVER the 4-minute budget' : '';
  console.log(`#   run ${i + 1}: ${(r.ms / 1000).toFixed(1)} s, ${r.last}${slow}`);
});
const good = results.filter((r) => r.ok && r.ms <= RUN_BUDGET_MS).length;
console.log(`${good} passed, ${runs - good} failed`);
process.exit(good === runs ? 0 : 1);
