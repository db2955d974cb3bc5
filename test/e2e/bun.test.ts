/**
 * The router on Bun (Bun.serve transport, same worker pool and plugins), through the real CLI:
 * 1.6 and 2.0.1 chargers, a bad frame, a command from the API, a clean stop.
 */
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestCharger } from '../helpers/charger.js';
import { freePort } from '../services/spawn.js';
import { until } from '../helpers/wait.js';

/**
 * Bun is found on the PATH (or at OCR_TEST_BUN) rather than installed by every `npm ci`
 * (≈ 100 MB); .ci/run installs it when missing. Missing here is a failure, never a skip.
 */
function findBun(): string | undefined {
  const candidate = process.env.OCR_TEST_BUN || 'bun';
  try {
    execFileSync(candidate, ['--version'], { stdio: 'ignore' });
    return candidate;
  } catch {
    return undefined;
  }
}

t.test('runs on Bun', async (t) => {
  const bun = findBun();
  if (!bun) {
    t.fail('bun not found on the PATH: install it with `npm install -g bun` (or set OCR_TEST_BUN to its path)');
    return;
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'ocr-bun-'));
  const child = spawn(bun, ['bin/ocpp-router.ts'], {
    env: {
      ...process.env,
      OCR_SERVER_PORT: String(port),
      OCR_SERVER_HOST: '127.0.0.1',
      OCR_DATA_DIR: dir,
      OCR_ANALYTICS_SPOOL_DIR: join(dir, 'spool'),
      OCR_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const key = await until(() => /\n {2}(ocr_\S+)\n/.exec(stderr)?.[1], { what: 'the router to print the API key' });
  t.ok(key, 'API key printed');
  await until(async () => (await fetch(`http://127.0.0.1:${port}/health`)).ok, {
    what: '/health to answer',
    everyMs: 100,
  });

  const c16 = await TestCharger.connect(`ws://127.0.0.1:${port}/ocpp/BUN-16`, {
    onCall: (a, p) => (a === 'Reset' ? { status: p.type === 'Soft' ? 'Accepted' : 'Rejected' } : undefined),
  });
  const c201 = await TestCharger.connect(`ws://127.0.0.1:${port}/ocpp/BUN-201`, { protocols: 'ocpp2.0.1' });
  t.teardown(() => Promise.all([c16.close(), c201.close()]));
  t.equal(c16.ws.protocol, 'ocpp1.6');
  t.match((await c16.call('BootNotification', { chargePointVendor: 'V', chargePointModel: 'M' }))[2], {
    status: 'Accepted',
  });
  t.equal((await c16.call('Heartbeat', {}))[0], 3);
  t.same((await c16.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Charging' }))[2], {});
  t.same((await c16.raw('[2,"b1","Heartbeat",{"x":1}]'))?.slice(0, 3), [4, 'b1', 'FormationViolation'], '1.6 spelling');
  t.match(
    (await c201.call('BootNotification', { reason: 'PowerUp', chargingStation: { vendorName: 'V', model: 'M' } }))[2],
    { status: 'Accepted' },
  );
  t.same((await c201.raw('[2,"b2","Heartbeat",{"x":1}]'))?.slice(0, 3), [4, 'b2', 'FormatViolation'], '2.0.1 spelling');
  t.ok(
    c16.received.every((f) => Array.isArray(f)),
    'replies are text frames of JSON',
  );

  const res = await fetch(`http://127.0.0.1:${port}/api/v1/chargers/BUN-16/calls/Reset`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: '{"type":"Soft"}',
  });
  t.equal(res.status, 200);
  t.match(await res.json(), { result: { status: 'Accepted' } });
  const detail = (await (
    await fetch(`http://127.0.0.1:${port}/api/v1/chargers/BUN-16`, { headers: { authorization: `Bearer ${key}` } })
  ).json()) as { connectors: Record<string, { status: string }> };
  t.equal(detail.connectors['1']?.status, 'Charging');
  t.equal((await fetch(`http://127.0.0.1:${port}/api/v1/chargers`)).status, 401);

  child.kill('SIGTERM');
  t.equal(await exited, 0, 'clean stop');
});
