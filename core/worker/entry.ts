/**
 * Worker entry: the piscina task function. Decodes a batch, runs each charger's items in
 * order through the pipeline, and encodes the replies.
 *
 * Owns: per-worker wiring (state store client, analytics sink, plugin tables) and the
 * in-batch ordering rule. Must not: touch sockets; everything that goes to a charger is
 * returned to the socket thread.
 *
 *   batch ─► group by connection ─► lane A: item, item, …  (sequential)
 *                                 ─► lane B: item, …        (lanes run concurrently)
 *         ◄─ results in item order, reply bytes transferred back
 *
 * The socket thread never puts one charger's items into two batches at once, so sequential
 * lanes inside a batch are enough for strict per-charger order across the whole router.
 */
import { threadId, workerData } from 'node:worker_threads';
import Piscina from 'piscina';
import { BatchWriter, readBatch, type DecodedBatch } from '../dispatch/codec.js';
import { ItemFlag, ItemKind, Outcome, type DisconnectExtra, type ItemMeta, type PingResult, type PingTask, type ReplyExtra } from '../dispatch/envelope.js';
import { ThreadRpcClient } from '../dispatch/thread-rpc.js';
import { createLogger } from '../log.js';
import { Pipeline } from './pipeline.js';
import { ContextFactory, type ConnMeta, type WorkerServices } from './context.js';
import { loadPlugins } from './plugin-loader.js';
import { createStores } from '../state/create.js';
import { StoreChargerRegistry } from '../state/registry.js';
import { scopeStore } from '../state/scoped-store.js';
import { createAnalyticsSink } from '../analytics/clickhouse-sink.js';
import { validatorFor } from '../protocol/validate.js';
import { OCPP_VERSIONS } from '../protocol/dialect.js';
import { CallError } from '../protocol/call-error.js';
import type { RouterConfig } from '../options.js';

export interface WorkerData {
  config: RouterConfig;
  nodeId: string;
  /** Base name of this router's thread channels (see core/dispatch/thread-rpc.ts). */
  channel: string;
}

const { config, nodeId, channel } = workerData as WorkerData;
const log = createLogger(config.log, { nodeId, thread: threadId });
const rpc = new ThreadRpcClient({ name: channel });
const journaled: Set<string> | null = config.redis.url ? new Set() : null;
const store = createStores(config, rpc, log, journaled);
const registry = new StoreChargerRegistry(store);
const sink = createAnalyticsSink({
  clickhouse: config.clickhouse.url ? config.clickhouse : undefined,
  spoolDir: config.analytics.spoolDir,
  batchRows: config.analytics.batchRows,
  flushIntervalMs: config.analytics.flushIntervalMs,
  maxBufferRows: config.analytics.maxBufferRows,
  nodeId,
  log,
});
await sink.start();

// Shutdown: once the socket thread has let every batch finish, it asks each worker to run its
// plugins' close hooks and flush its analytics buffer before the pool is destroyed, so rows
// buffered in memory are written (or spooled), never lost.
const control = new BroadcastChannel(`${channel}:control`);
control.onmessage = (ev: MessageEvent) => {
  if ((ev.data as { op?: string })?.op !== 'drain') return;
  void (async () => {
    for (const c of table.closers) {
      try {
        await c.fn();
      } catch (err) {
        log.error({ err, plugin: c.plugin }, 'plugin close hook failed');
      }
    }
    await sink.close().catch((err: Error) => log.error({ err }, 'analytics flush at shutdown failed'));
    await store.close().catch(() => undefined);
    rpc.close();
    control.postMessage({ op: 'drained', threadId });
  })();
};
(control as unknown as { unref?: () => void }).unref?.();

const services: WorkerServices = {
  store,
  sink,
  registry,
  log,
  nodeId,
  async send(conn, action, payload, timeoutMs, afterReply) {
    // Validate before the frame leaves: a plugin bug must not reach the charger.
    const v = validatorFor(conn.version);
    if (!v.has(action, 'request')) throw new CallError('InternalError', `Unknown action ${action}`);
    const check = v.validate(action, 'request', payload);
    if (!check.ok) throw Object.assign(new Error(`Invalid ${action} request: ${check.error.description}`), { code: 'OCR_ERR_CMD_INVALID_PAYLOAD' });
    return (await rpc.call('cmd', 'send', [conn.cpId, conn.connectionId, action, payload, timeoutMs, afterReply === true], (timeoutMs ?? config.calls.timeoutMs) + 5000)) as Record<string, unknown>;
  },
};

const table = await loadPlugins(config.plugins, (plugin) => ({
  log: log.child({ plugin }),
  globalState: scopeStore(store, `ocr:g:${plugin}:`),
  chargers: registry,
  router: { nodeId, heartbeatIntervalSec: config.boot.heartbeatIntervalSec },
}));
const socketThreadHeartbeat = OCPP_VERSIONS.filter((v) => {
  const e = table.byAction[v].get('Heartbeat');
  return e?.handler?.plugin === 'core' && e.onCall.length === 0 && e.onResult.length === 0 && e.after.length === 0;
});
const callResultHooks = Object.fromEntries(OCPP_VERSIONS.map((v) => [v, [...table.onCallResult[v].keys()]]));
const pipeline = new Pipeline(table, new ContextFactory(services), log, config.pool.hookTimeoutMs, sink, nodeId);

async function runItem(meta: ItemMeta, batch: DecodedBatch, out: unknown[], i: number): Promise<void> {
  const [kind, connectionId, cpId, version, flags, receivedAt, extra] = meta;
  const conn: ConnMeta = { connectionId, cpId, version, lenient: (flags & ItemFlag.Lenient) !== 0 };
  switch (kind) {
    case ItemKind.Frame: {
      const t0 = performance.now();
      const r = await pipeline.runFrame(conn, batch.text(i), receivedAt);
      out[i] = [r.outcome === 'ok' ? Outcome.Ok : r.outcome === 'error' ? Outcome.Error : Outcome.Ignored, r.action, r.errorCode ?? null, r.deviations?.length ? r.deviations : null, r.identity ?? null, r.unmatched ?? null, Math.round((performance.now() - t0) * 1000), r.reply];
      return;
    }
    case ItemKind.Connect:
      await pipeline.runConnection('onConnect', conn, {});
      out[i] = [Outcome.Ok];
      return;
    case ItemKind.Disconnect:
      await pipeline.runConnection('onDisconnect', conn, extra as DisconnectExtra);
      out[i] = [Outcome.Ok];
      return;
    case ItemKind.Reply: {
      const { action, request } = extra as ReplyExtra;
      await pipeline.runReply(conn, action, request, batch.text(i));
      out[i] = [Outcome.Ok];
      return;
    }
  }
}

export default async function task(input: ArrayBuffer | PingTask): Promise<ArrayBuffer | PingResult | unknown> {
  if (!(input instanceof ArrayBuffer)) {
    if (input.op === 'ping') return { threadId, plugins: table.plugins, socketThreadHeartbeat, callResultHooks } satisfies PingResult;
    throw new Error('unknown task');
  }
  const batch = readBatch(input);
  const metas = batch.metas as ItemMeta[];
  const out = new Array<unknown>(metas.length);
  // Lanes: items of one charger (across its connections: a reconnect keeps the order), in
  // arrival order. A Reply item gets a lane of its own: it only feeds observer hooks.
  const lanes = new Map<string | number, number[]>();
  for (let i = 0; i < metas.length; i++) {
    const c = metas[i]![0] === ItemKind.Reply ? -1 - i : metas[i]![2];
    const lane = lanes.get(c);
    if (lane) lane.push(i);
    else lanes.set(c, [i]);
  }
  const runs: Promise<void>[] = [];
  for (const lane of lanes.values()) {
    runs.push((async () => {
      for (let n = 0; n < lane.length; n++) {
        const i = lane[n]!;
        const meta = metas[i]!;
        if (journaled && meta[0] !== ItemKind.Reply) {
          // The state journal's ordering rule (core/state/journal.ts): the dispatcher's flag is
          // exact for the lane's first item of the batch; later items only ever add to it, since
          // a write journaled by an earlier item must not be overtaken by a live one.
          if (meta[4] & ItemFlag.Journal) journaled.add(meta[2]);
          else if (n === 0) journaled.delete(meta[2]);
        }
        try {
          await runItem(meta, batch, out, i);
        } catch (err) {
          // runItem maps plugin errors itself; reaching here is a core bug. Answer anyway.
          log.error({ err, cpId: metas[i]![2] }, 'batch item failed');
          out[i] = null;
        }
      }
    })());
  }
  await Promise.all(runs);
  const w = new BatchWriter(4096);
  for (let i = 0; i < out.length; i++) {
    const r = out[i] as unknown[] | null;
    if (r && metas[i]![0] === ItemKind.Frame) {
      const reply = r.pop() as string | undefined;
      w.addText(r, reply);
    } else w.addText(r, undefined);
  }
  return Piscina.move(w.finish());
}

