/**
 * Multi-process mode through the real CLI: `ocpp-router --processes 2` on one port. The kernel
 * spreads chargers over both processes (SO_REUSEPORT); the API of either reaches all of them.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestCharger } from '../../helpers/charger.js';
import { freePort } from '../../services/spawn.js';
import { uniqueName, useRedis } from '../../helpers/services.js';
import { until } from '../../helpers/wait.js';

t.test('two router processes share a port, state and commands', async (t) => {
  const url = await useRedis(t);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'ocr-procs-'));
  const child = spawn(process.execPath, ['bin/ocpp-router.js', '--processes', '2', '--port', String(port)], {
    env: {
      ...process.env,
      OCR_REDIS_URL: url,
      OCR_REDIS_KEY_PREFIX: `${uniqueName('mp')}:`,
      OCR_DATA_DIR: dir,
      OCR_ANALYTICS_SPOOL_DIR: join(dir, 'spool'),
      OCR_LOG_LEVEL: 'warn',
      OCR_SERVER_HOST: '127.0.0.1',
      OCR_NODE_ID: 'mp',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });

  const key = await until(() => /\n {2}(ocr_\S+)\n/.exec(stderr)?.[1], { what: 'the supervisor to print the API key' });
  t.equal(
    JSON.parse(readFileSync(join(dir, 'api-keys.json'), 'utf8')).keys.length,
    1,
    'one key, created by the supervisor',
  );
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json().catch(() => undefined)) as any };
  };
  // Both processes must be up before connecting, or one would take every charger: each has
  // its own listening socket on the port (SO_REUSEPORT), and listens once it can serve.
  await until(() => listeners(port) === 2, {
    what: `both router processes to listen on port ${port}`,
    timeoutMs: 15_000,
  });
  await until(async () => (await fetch(`http://127.0.0.1:${port}/health`)).ok, { what: '/health to answer' });

  const chargers = await Promise.all(
    Array.from({ length: 24 }, (_, i) =>
      TestCharger.connect(`ws://127.0.0.1:${port}/ocpp/MP-${i}`, { onCall: () => ({ status: 'Accepted' }) }),
    ),
  );
  t.teardown(() => Promise.all(chargers.map((c) => c.close())));
  for (const c of chargers)
    t.equal((await c.call('BootNotification', { chargePointVendor: 'V', chargePointModel: 'M' }))[0], 3);
  const nodes = new Set<string>();
  for (let i = 0; i < chargers.length; i++) nodes.add((await api('GET', `/api/v1/chargers/MP-${i}`)).body.nodeId);
  t.same([...nodes].sort(), ['mp-p0', 'mp-p1'], 'chargers are spread over both processes');
  let ok = 0;
  for (let i = 0; i < chargers.length; i++)
    if (
      (await api('POST', `/api/v1/chargers/MP-${i}/calls/Reset`, { type: 'Soft' })).body?.result?.status === 'Accepted'
    )
      ok++;
  t.equal(ok, chargers.length, 'every charger reached from any process');
  const metrics = await (
    await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${key}` } })
  ).text();
  t.match(
    metrics,
    new RegExp(`\\nocr_pool_threads ${Math.max(1, Math.floor(availableParallelism() / 2))}\\n`),
    'pool.threads 0: the host cores are shared by the processes',
  );

  child.kill('SIGTERM');
  t.equal(await exited, 0, 'supervisor and processes stop cleanly');
});

/** Listening TCP sockets on 127.0.0.1:`port` (Linux /proc/net/tcp: local address, state 0A). */
function listeners(port: number): number {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/tcp', 'latin1')
    .split('\n')
    .filter((l) => {
      const f = l.trim().split(/\s+/);
      return f[1] === local && f[3] === '0A';
    }).length;
}

/** Pids of processes whose environment holds `marker` (Linux /proc). */
function pidsWith(marker: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/environ`, 'latin1').includes(marker)) out.push(Number(d));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

for (const when of ['serving', 'starting'] as const) {
  t.test(
    `when the supervisor is killed (processes ${when}), its router processes stop and free the port`,
    async (t) => {
      const url = await useRedis(t);
      const port = await freePort();
      const dir = mkdtempSync(join(tmpdir(), 'ocr-procs-'));
      const prefix = `${uniqueName('mpk')}:`;
      const child = spawn(process.execPath, ['bin/ocpp-router.js', '--processes', '2', '--port', String(port)], {
        env: {
          ...process.env,
          OCR_REDIS_URL: url,
          OCR_REDIS_KEY_PREFIX: prefix,
          OCR_DATA_DIR: dir,
          OCR_ANALYTICS_SPOOL_DIR: join(dir, 'spool'),
          OCR_LOG_LEVEL: 'warn',
          OCR_SERVER_HOST: '127.0.0.1',
          OCR_NODE_ID: 'mpk',
        },
        stdio: ['ignore', 'ignore', 'ignore'],
      });
      t.teardown(() => {
        if (child.exitCode === null) child.kill('SIGKILL');
        for (const pid of pidsWith(prefix))
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* gone */
          }
      });
      const up = async () => {
        try {
          return (await fetch(`http://127.0.0.1:${port}/health`)).ok;
        } catch {
          return false;
        }
      };
      if (when === 'serving') {
        await until(up, { what: 'the router processes to serve', timeoutMs: 15_000, everyMs: 100 });
        t.ok(await up(), 'router processes serve');
      } else {
        await until(() => pidsWith(prefix).length >= 3, { what: 'the supervisor and both processes to start' });
        t.equal(pidsWith(prefix).length, 3, 'supervisor and both processes started');
      }
      child.kill('SIGKILL');
      await until(() => pidsWith(prefix).length === 0, {
        what: 'every router process to exit',
        timeoutMs: 15_000,
        everyMs: 100,
      });
      t.same(pidsWith(prefix), [], 'every router process exited');
      t.notOk(await up(), 'no process holds the port');
    },
  );
}

t.test('processes > 1 without Redis is a start-up error naming the key', async (t) => {
  const out = spawn(process.execPath, ['bin/ocpp-router.js', '--processes', '2'], {
    env: { ...process.env, OCR_REDIS_URL: '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  out.stderr.on('data', (d) => (err += d));
  const code = await new Promise((r) => out.on('exit', r));
  t.equal(code, 1);
  t.match(err, /OCR_ERR_CONFIG_INVALID.*processes > 1 needs redis\.url/);
});
