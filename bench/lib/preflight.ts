/**
 * Pre-flight: one charger, one CALL of each action, through the `ws` client, and the exact
 * answer. A benchmark whose payloads are answered with CALLERROR measures the error path,
 * so every run starts by checking that each server answers each action with a CALLRESULT.
 *
 * Owns: the correctness gate before measuring. Must not: measure anything.
 */
import WebSocket from 'ws';
import { actionPayload, bootPayload, SUBPROTOCOL, type BenchAction, type BenchVersion } from './ocpp-payloads.js';

export interface PreflightResult {
  ok: boolean;
  /** Action → the raw answer frame (or the failure). */
  answers: Record<string, string>;
}

export async function preflight(port: number, version: BenchVersion, actions: readonly BenchAction[], timeoutMs = 5000): Promise<PreflightResult> {
  const id = `preflight-${process.pid}-${Date.now()}`;
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ocpp/${id}`, SUBPROTOCOL[version], { perMessageDeflate: false });
  const answers: Record<string, string> = {};
  let ok = true;
  const deadline = setTimeout(() => ws.terminate(), timeoutMs);
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('close', (code, reason) => reject(new Error(`closed ${code} ${String(reason)}`)));
    });
    if (ws.protocol !== SUBPROTOCOL[version]) throw new Error(`server chose subprotocol "${ws.protocol}"`);
    const call = (action: string, payload: unknown) => new Promise<string>((resolve, reject) => {
      const mid = `pf-${action}`;
      const onMsg = (data: WebSocket.RawData) => {
        const text = String(data);
        if (!text.includes(`"${mid}"`)) return;
        ws.off('message', onMsg);
        resolve(text);
      };
      ws.on('message', onMsg);
      ws.once('close', (code, reason) => reject(new Error(`closed ${code} ${String(reason)}`)));
      ws.send(JSON.stringify([2, mid, action, payload]));
    });
    const ts = new Date().toISOString();
    for (const [action, payload] of [['BootNotification', bootPayload(version, 0)], ...actions.map((a) => [a, actionPayload(version, a, ts)])] as [string, unknown][]) {
      const text = await call(action, payload);
      answers[action] = text.length > 300 ? text.slice(0, 300) + '…' : text;
      if (!text.startsWith('[3,')) ok = false;
    }
  } catch (err) {
    ok = false;
    answers.error = (err as Error).message;
  } finally {
    clearTimeout(deadline);
    ws.close();
  }
  return { ok, answers };
}

// CLI: node --import tsx bench/lib/preflight.ts <port> [1.6|2.0.1]
if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await preflight(Number(process.argv[2]), (process.argv[3] ?? '1.6') as BenchVersion, ['Heartbeat', 'StatusNotification', 'MeterValues']);
  console.log(JSON.stringify(r, null, 2));
  process.exit(r.ok ? 0 : 1);
}
