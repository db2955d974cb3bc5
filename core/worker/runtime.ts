/**
 * BatchRuntime: what one thread needs to run batches through the plugin pipeline: the plugin
 * table, the pipeline, and the in-batch ordering rule. A worker thread has one (entry.ts), and
 * so does the socket thread when it runs batches itself (the Dispatcher's InlinePolicy).
 *
 * Owns: decoding a batch, running each charger's items in order, encoding the results; the
 * plugins' close hooks. Must not: touch sockets, or create the thread's store, sink or command
 * path (its owner passes them in: a worker reaches the socket thread over thread RPC, the
 * socket thread calls its own objects).
 *
 *   batch ─► group by charger ─► lane A: item, item, …  (sequential)
 *                             ─► lane B: item, …        (lanes run concurrently)
 *         ◄─ results in item order, reply bytes
 *
 * The socket thread never puts one charger's items into two batches at once, so sequential
 * lanes inside a batch are enough for strict per-charger order across the whole router.
 */
import { BatchWriter, readBatch, type DecodedBatch } from '../thread-contract/codec.js';
import {
  ItemFlag,
  ItemKind,
  Outcome,
  type DisconnectExtra,
  type ItemMeta,
  type PingResult,
  type ReplyExtra,
} from '../thread-contract/envelope.js';
import { Pipeline } from './pipeline.js';
import { ContextFactory, type ConnMeta, type WorkerServices } from './context.js';
import { inlineSupport, loadPlugins, type HookTable } from './plugin-loader.js';
import { scopeStore } from '../state/scoped-store.js';
import { OCPP_VERSIONS } from '../protocol/dialect.js';
import type { RouterConfig } from '../options.js';
import type { Logger } from '../plugin-api.js';

export interface RuntimeOptions {
  config: RouterConfig;
  services: WorkerServices;
  /**
   * Workers with Redis state: chargers whose writes this thread must journal (the
   * dispatcher's ItemFlag.Journal, see runBatch). Null where the store knows it itself.
   */
  journaled: Set<string> | null;
  /** Set up only `inline` plugins (the socket thread). */
  inlineOnly?: boolean;
}

/** Results of a batch: item i's result meta (envelope.ts) and, for frames, its reply text. */
export interface BatchResults {
  metas: (unknown[] | null)[];
  replies: (string | undefined)[];
}

export class BatchRuntime {
  private constructor(
    readonly table: HookTable,
    private readonly pipeline: Pipeline,
    private readonly log: Logger,
    private readonly journaled: Set<string> | null,
  ) {}

  static async create(o: RuntimeOptions): Promise<BatchRuntime> {
    const { config, services } = o;
    const table = await loadPlugins(
      config.plugins,
      (plugin) => ({
        log: services.log.child({ plugin }),
        globalState: scopeStore(services.store, `ocr:g:${plugin}:`),
        chargers: services.registry,
        router: { nodeId: services.nodeId, heartbeatIntervalSec: config.boot.heartbeatIntervalSec },
      }),
      { inlineOnly: o.inlineOnly },
    );
    const pipeline = new Pipeline(
      table,
      new ContextFactory(services),
      services.log,
      config.pool.hookTimeoutMs,
      services.sink,
      services.nodeId,
    );
    return new BatchRuntime(table, pipeline, services.log, o.journaled);
  }

  /** What the socket thread needs to know of this thread's plugins (the worker's ping answer). */
  info(threadId: number): PingResult {
    const t = this.table;
    const socketThreadHeartbeat = OCPP_VERSIONS.filter((v) => {
      const e = t.byAction[v].get('Heartbeat');
      return e?.handler?.plugin === 'core' && e.onCall.length === 0 && e.onResult.length === 0 && e.after.length === 0;
    });
    const callResultHooks = Object.fromEntries(OCPP_VERSIONS.map((v) => [v, [...t.onCallResult[v].keys()]]));
    return { threadId, plugins: t.plugins, socketThreadHeartbeat, callResultHooks, inline: inlineSupport(t) };
  }

  private async runItem(meta: ItemMeta, batch: DecodedBatch, res: BatchResults, i: number): Promise<void> {
    const out = res.metas;
    const [kind, connectionId, cpId, version, flags, receivedAt, extra] = meta;
    const conn: ConnMeta = { connectionId, cpId, version, lenient: (flags & ItemFlag.Lenient) !== 0 };
    switch (kind) {
      case ItemKind.Frame: {
        const t0 = performance.now();
        const r = await this.pipeline.runFrame(conn, batch.text(i), receivedAt);
        out[i] = [
          r.outcome === 'ok' ? Outcome.Ok : r.outcome === 'error' ? Outcome.Error : Outcome.Ignored,
          r.action,
          r.errorCode ?? null,
          r.deviations?.length ? r.deviations : null,
          r.identity ?? null,
          r.unmatched ?? null,
          Math.round((performance.now() - t0) * 1000),
        ];
        res.replies[i] = r.reply;
        return;
      }
      case ItemKind.Connect:
        await this.pipeline.runConnection('onConnect', conn, {});
        out[i] = [Outcome.Ok];
        return;
      case ItemKind.Disconnect:
        await this.pipeline.runConnection('onDisconnect', conn, extra as DisconnectExtra);
        out[i] = [Outcome.Ok];
        return;
      case ItemKind.Reply: {
        const { action, request } = extra as ReplyExtra;
        await this.pipeline.runReply(conn, action, request, batch.text(i));
        out[i] = [Outcome.Ok];
        return;
      }
    }
  }

  /** Runs one batch (codec.ts layout) and returns its results in the same layout (workers). */
  async runBatch(input: ArrayBuffer): Promise<ArrayBuffer> {
    const { metas, replies } = await this.run(readBatch(input));
    const w = new BatchWriter(1024);
    for (let i = 0; i < metas.length; i++) w.addText(metas[i], replies[i]);
    return w.finish();
  }

  /**
   * Runs one decoded batch: result i answers item i (null: the item failed in core code), with
   * the reply text of a Frame item in `replies[i]`. The socket thread calls this directly.
   */
  async run(batch: DecodedBatch): Promise<BatchResults> {
    const metas = batch.metas as ItemMeta[];
    const res: BatchResults = {
      metas: new Array<unknown[] | null>(metas.length),
      replies: new Array<string | undefined>(metas.length),
    };
    // Lanes: items of one charger (across its connections: a reconnect keeps the order), in
    // arrival order. A Reply item gets a lane of its own: it only feeds observer hooks.
    const lanes = new Map<string | number, number[]>();
    for (let i = 0; i < metas.length; i++) {
      const c = metas[i][0] === ItemKind.Reply ? -1 - i : metas[i][2];
      const lane = lanes.get(c);
      if (lane) lane.push(i);
      else lanes.set(c, [i]);
    }
    const journaled = this.journaled;
    const runs: Promise<void>[] = [];
    for (const lane of lanes.values()) {
      runs.push(
        (async () => {
          for (let n = 0; n < lane.length; n++) {
            const i = lane[n];
            const meta = metas[i];
            if (journaled && meta[0] !== ItemKind.Reply) {
              // The state journal's ordering rule (core/state/journal.ts): the dispatcher's flag is
              // exact for the lane's first item of the batch; later items only ever add to it, since
              // a write journaled by an earlier item must not be overtaken by a live one.
              if (meta[4] & ItemFlag.Journal) journaled.add(meta[2]);
              else if (n === 0) journaled.delete(meta[2]);
            }
            try {
              await this.runItem(meta, batch, res, i);
            } catch (err) {
              // runItem maps plugin errors itself; reaching here is a core bug. Answer anyway.
              this.log.error({ err, cpId: metas[i][2] }, 'batch item failed');
              res.metas[i] = null;
            }
          }
        })(),
      );
    }
    await Promise.all(runs);
    return res;
  }

  /** Runs the plugins' close hooks (errors logged, never thrown). */
  async close(): Promise<void> {
    for (const c of this.table.closers) {
      try {
        await c.fn();
      } catch (err) {
        this.log.error({ err, plugin: c.plugin }, 'plugin close hook failed');
      }
    }
  }
}
