/**
 * The real router as a benchmark target, in its own process, through the public API only
 * (STYLE.md §8: no benchmark-only code paths in core/).
 *
 *   node --import tsx bench/reference/router.ts ['<config JSON>']
 *
 * Prints one JSON line on stdout once listening: {"ready":true,"port":N,"pid":P,"threads":T}.
 * Local data (API key store, analytics spool) goes to a fresh temp dir, removed on exit.
 * SIGTERM / SIGINT / stdin closing: close the router, remove the temp dir, exit.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRouter, mergeConfig } from '../../core/index.js';
import { stopWithParent } from '../lib/proc.js';

const dir = mkdtempSync(join(tmpdir(), 'ocr-bench-router-'));
const user = JSON.parse(process.argv[2] ?? '{}') as Record<string, unknown>;
const base: Record<string, unknown> = {
  server: { host: '127.0.0.1', port: 0 },
  log: { level: 'silent' },
  dataDir: dir,
  analytics: { spoolDir: join(dir, 'spool') },
};

const router = await createRouter(mergeConfig(base, user), { onGeneratedApiKey: () => undefined });
process.stdout.write(JSON.stringify({ ready: true, port: router.port, pid: process.pid, threads: router.dispatcher.stats.threads, config: router.config }) + '\n');

let stopping = false;
async function stop(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  const hard = setTimeout(() => process.exit(code || 1), 15_000);
  hard.unref();
  try {
    await router.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
    process.exit(code);
  }
}
stopWithParent(() => void stop(0));
