/**
 * Starts a real router for a test (free port, temp data dir, silent logs) and closes it in
 * t.teardown. Returns the router plus an authenticated API fetch helper.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRouter, type Router } from '../../core/index.js';
import { mergeConfig } from '../../core/options.js';

export interface TestRouter {
  router: Router;
  url(cpId: string): string;
  apiKey: string;
  dir: string;
  api(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: any; headers: Headers }>;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

export async function startRouter(t: Teardown, config: Record<string, unknown> = {}): Promise<TestRouter> {
  const dir = mkdtempSync(join(tmpdir(), 'ocr-test-'));
  let apiKey = '';
  const base = {
    server: { port: 0, host: '127.0.0.1' },
    pool: { threads: 2 },
    log: { level: process.env.OCR_TEST_LOG ?? 'silent' },
    dataDir: dir,
    analytics: { spoolDir: join(dir, 'spool'), flushIntervalMs: 100 },
  };
  const cfg = mergeConfig(base, config);
  const router = await createRouter(cfg, {
    onGeneratedApiKey: (k) => {
      apiKey = k;
    },
  });
  t.teardown(async () => {
    await router.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    router,
    apiKey,
    dir,
    url: (cpId) => `ws://127.0.0.1:${router.port}${router.config.server.path}/${encodeURIComponent(cpId)}`,
    async api(method, path, body, headers = {}) {
      const res = await fetch(`http://127.0.0.1:${router.apiPort}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${apiKey}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...headers,
        },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        /* not JSON */
      }
      return { status: res.status, body: parsed, headers: res.headers };
    },
  };
}

/**
 * Rows of one analytics table in a test router's spool: closed segments and the one being
 * written alike (`.open`), so rows can be checked while the router runs.
 */
export function spooledRows(dir: string, table: string): Record<string, unknown>[] {
  const d = join(dir, 'spool', table);
  let files: string[];
  try {
    files = readdirSync(d).filter((f) => /\.(ndjson|open)$/.test(f));
  } catch {
    return [];
  }
  return files.flatMap((f) =>
    readFileSync(join(d, f), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>),
  );
}
