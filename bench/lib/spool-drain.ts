/**
 * Empties an analytics spool as a replayer into ClickHouse would, by deleting its closed
 * segments (`<table>/*.ndjson`; the open ones are still being written). For bench runs that
 * write more rows than the spool's bound holds: a full spool makes the router refuse
 * messages that write rows (back-pressure), which is not what those runs measure.
 *
 * Owns: nothing the product uses. Must not: read the rows (a replayer's CPU is not the
 * router's, and would run in another process).
 */
import { readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';

export async function drainSpool(spoolDir: string): Promise<void> {
  for (const table of await readdir(spoolDir).catch(() => [] as string[])) {
    for (const name of await readdir(join(spoolDir, table)).catch(() => [] as string[])) {
      if (name.endsWith('.ndjson')) await unlink(join(spoolDir, table, name)).catch(() => undefined);
    }
  }
}
