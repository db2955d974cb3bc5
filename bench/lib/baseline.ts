/**
 * The router of another commit, for measuring a change beside its parent in the same run
 * (`--baseline=<git revision>`, server `router-base`): STYLE.md §8 asks for a comparison
 * against the previous commit, and two runs on a shared machine differ more than most changes.
 *
 * Owns: a detached git worktree of the revision in the temp directory, made once per commit
 * and reused, sharing this checkout's node_modules (`git worktree remove <dir>` when done).
 * Must not: touch this checkout's tree.
 *
 * The baseline runs its own bench/reference/router.ts and builds its own dist/, so what is
 * measured is that commit's router as its bench ran it; only the dependencies are this
 * checkout's (a commit that changed them is measured with today's).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '../..');

/** The checkout of `rev` (made if missing) and its full commit id. */
export function baselineCheckout(rev: string): { dir: string; commit: string } {
  let commit: string;
  try {
    commit = execFileSync('git', ['rev-parse', '--verify', `${rev}^{commit}`], { cwd: root, encoding: 'utf8' }).trim();
  } catch (err) {
    throw new Error(`--baseline: "${rev}" is not a commit of this repository`, { cause: err });
  }
  const dir = join(tmpdir(), `ocr-bench-base-${commit.slice(0, 12)}`);
  if (!existsSync(join(dir, 'bench/reference/router.ts'))) {
    execFileSync('git', ['worktree', 'add', '--force', '--detach', dir, commit], { cwd: root, stdio: 'ignore' });
  }
  if (!existsSync(join(dir, 'node_modules'))) symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  return { dir, commit };
}
