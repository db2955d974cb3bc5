/**
 * Pre-flight: one charger, one CALL of each action, through the `ws` client, and the exact
 * answer. A benchmark whose payloads are answered with CALLERROR measures the error path,
 * and one whose replies are wrong measures a cheaper server than the real one, so every run
 * starts by checking that each server answers each action with a CALLRESULT that carries
 * the CALL's message id and whose payload validates against the official `<Action>.conf`
 * schema of the version (the copies bundled with ocpp-rpc, compiled by its validator).
 *
 * Owns: the correctness gate before measuring. Must not: measure anything.
 */
import { createRequire } from 'node:module';
import WebSocket from 'ws';
import { createValidator } from 'ocpp-rpc';
import {
  actionPayload,
  bootPayload,
  BENCH_ACTIONS,
  SUBPROTOCOL,
  type BenchAction,
  type BenchVersion,
} from './ocpp-payloads.js';

export interface PreflightResult {
  ok: boolean;
  /** Action → the raw answer frame (or the failure). */
  answers: Record<string, string>;
  /** What was wrong with the answers (empty when ok). */
  problems: string[];
}

type Validator = ReturnType<typeof createValidator>;
const validators = new Map<BenchVersion, Validator>();
/** The official schemas of `version` (built once per process: ajv compiles them lazily). */
function validator(version: BenchVersion): Validator {
  let v = validators.get(version);
  if (!v) {
    const file = version === '1.6' ? 'ocpp1_6.json' : 'ocpp2_0_1.json';
    v = createValidator(
      SUBPROTOCOL[version],
      createRequire(import.meta.url)(`ocpp-rpc/lib/schemas/${file}`) as Parameters<typeof createValidator>[1],
    );
    validators.set(version, v);
  }
  return v;
}

/** Why `text` is not a correct CALLRESULT for CALL `mid` of `action`, or null. */
function checkAnswer(version: BenchVersion, action: string, mid: string, text: string): string | null {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch {
    return `${action}: not JSON`;
  }
  if (!Array.isArray(m) || m[0] !== 3) return `${action}: not a CALLRESULT`;
  if (m[1] !== mid) return `${action}: message id ${JSON.stringify(m[1])}, expected ${JSON.stringify(mid)}`;
  try {
    // Synchronous: it throws on a mismatch (its declared type allows a promise).
    void validator(version).validate(`urn:${action}.conf`, m[2]);
  } catch (err) {
    return `${action}: reply does not match the ${version} ${action}.conf schema: ${(err as Error).message}`;
  }
  return null;
}

/**
 * `extraCalls`: further CALLs (action, payload) checked the same way after the actions, e.g. the
 * fleet mix's StatusNotifications of every status; answers keyed `<action>#x<i>`.
 */
export async function preflight(
  port: number,
  version: BenchVersion,
  actions: readonly BenchAction[],
  timeoutMs = 5000,
  extraCalls: readonly (readonly [string, unknown])[] = [],
): Promise<PreflightResult> {
  const id = `preflight-${process.pid}-${Date.now()}`;
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ocpp/${id}`, SUBPROTOCOL[version], { perMessageDeflate: false });
  const answers: Record<string, string> = {};
  const problems: string[] = [];
  const deadline = setTimeout(() => ws.terminate(), timeoutMs);
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('close', (code, reason) => reject(new Error(`closed ${code} ${String(reason)}`)));
    });
    if (ws.protocol !== SUBPROTOCOL[version]) throw new Error(`server chose subprotocol "${ws.protocol}"`);
    const call = (action: string, payload: unknown, mid: string) =>
      new Promise<string>((resolve, reject) => {
        const onClose = (code: number, reason: Buffer) => reject(new Error(`closed ${code} ${String(reason)}`));
        const onMsg = (data: WebSocket.RawData) => {
          const text = String(data);
          if (!text.includes(`"${mid}"`)) return;
          ws.off('message', onMsg);
          ws.off('close', onClose);
          resolve(text);
        };
        ws.on('message', onMsg);
        ws.once('close', onClose);
        ws.send(JSON.stringify([2, mid, action, payload]));
      });
    const ts = new Date().toISOString();
    const calls = [
      ...(
        [['BootNotification', bootPayload(version, 0)], ...actions.map((a) => [a, actionPayload(version, a, ts)])] as [
          string,
          unknown,
        ][]
      ).map(([a, p]) => [a, p, `pf-${a}`, a]),
      ...extraCalls.map(([a, p], i) => [a, p, `pf-x${i}-${a}`, `${a}#x${i}`]),
    ] as [string, unknown, string, string][];
    for (const [action, payload, mid, key] of calls) {
      const text = await call(action, payload, mid);
      answers[key] = text.length > 300 ? text.slice(0, 300) + '…' : text;
      const problem = checkAnswer(version, action, mid, text);
      if (problem) problems.push(problem);
    }
  } catch (err) {
    problems.push((err as Error).message);
    answers.error = (err as Error).message;
  } finally {
    clearTimeout(deadline);
    ws.close();
  }
  return { ok: problems.length === 0, answers, problems };
}

// CLI: node --import tsx bench/lib/preflight.ts <port> [1.6|2.0.1]
if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await preflight(Number(process.argv[2]), (process.argv[3] ?? '1.6') as BenchVersion, BENCH_ACTIONS);
  console.log(JSON.stringify(r, null, 2));
  process.exit(r.ok ? 0 : 1);
}
