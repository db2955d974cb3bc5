/**
 * Plugin test harness [fastify inject]: runs plugins through the real loader and pipeline,
 * in-process, without sockets or worker threads. Exported for plugin authors.
 *
 *   const h = await createHarness({ plugins: [{ name: 'my-plugin', plugin: myPlugin, options }] });
 *   const r = await h.call('1.6', 'Authorize', { idTag: 'ABC' }, { cp: 'CP-1' });
 *   r.result / r.callError / r.emitted / r.sent
 *
 * Owns: in-memory fakes of our own interfaces (MemoryStateStore, a capturing analytics sink,
 * a scripted `send`). Must not: mock library internals.
 */
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { loadPlugins, type PluginSpec } from '../worker/plugin-loader.js';
import { Pipeline } from '../worker/pipeline.js';
import { ContextFactory, type ConnMeta, type WorkerServices } from '../worker/context.js';
import { MemoryStateStore } from '../state/memory-store.js';
import { StoreChargerRegistry } from '../state/registry.js';
import { scopeStore } from '../state/scoped-store.js';
import { serializeCall } from '../protocol/frame.js';
import { semanticCode } from '../protocol/call-error.js';
import type { AnalyticsRow, AnalyticsSink, AnalyticsTable, SinkStats } from '../analytics/sink.js';
import type { StateStore } from '../state/store.js';
import type { OcppVersion } from '../protocol/dialect.js';
import type { Logger } from '../plugin-api.js';

export interface Emitted {
  table: AnalyticsTable;
  row: AnalyticsRow;
}
export interface Sent {
  cpId: string;
  action: string;
  payload: Record<string, unknown>;
}

/** Captures analytics rows instead of writing them. */
export class CaptureSink implements AnalyticsSink {
  readonly rows: Emitted[] = [];
  /**
   * Set to true to see how calls fare while analytics storage is full: admit() says no, so
   * calls of actions that wrote rows before are refused with InternalError.
   */
  full = false;
  #refused = 0;
  #dropped = 0;
  write(table: AnalyticsTable, row: AnalyticsRow, incidental = false): boolean {
    if (incidental && this.full) {
      this.#dropped++;
      return false;
    }
    this.rows.push({ table, row });
    return true;
  }
  admit(): boolean {
    if (!this.full) return true;
    this.#refused++;
    return false;
  }
  async flush(): Promise<void> {}
  stats(): SinkStats {
    return {
      buffered: 0,
      written: this.rows.length,
      spooled: 0,
      dropped: this.#dropped,
      replayed: 0,
      failures: 0,
      refused: this.#refused,
    };
  }
  async close(): Promise<void> {}
}

export interface HarnessOptions {
  plugins: PluginSpec[];
  /** @default a new MemoryStateStore */
  store?: StateStore;
  /** Answers the plugins' ctx.send() calls. @default resolves `{}` */
  onSend?: (sent: Sent) => Record<string, unknown> | Promise<Record<string, unknown>>;
  /** @default 'harness' */
  nodeId?: string;
  /** @default 300 */
  heartbeatIntervalSec?: number;
  /** @default 10000 */
  hookTimeoutMs?: number;
  /** @default silent */
  log?: Logger;
}

export interface CallOptions {
  /** Charger id. @default 'CP-TEST' */
  cp?: string;
  lenient?: boolean;
  messageId?: string;
}

export interface CallOutcome {
  /** CALLRESULT payload, when the call succeeded. */
  result?: Record<string, unknown>;
  /** Semantic CALLERROR, when it failed (code as in the 2.0.1 spelling). */
  callError?: { code: string; wireCode: string; description: string; details: Record<string, unknown> };
  /** The exact frame the charger would receive. */
  frame?: string;
  deviations?: string[];
  /** Analytics rows emitted by this call. */
  emitted: Emitted[];
  /** CSMS-initiated CALLs made by this call. */
  sent: Sent[];
}

export interface Harness {
  store: StateStore;
  registry: StoreChargerRegistry;
  sink: CaptureSink;
  call(version: OcppVersion, action: string, payload: unknown, opts?: CallOptions): Promise<CallOutcome>;
  /** Sends a raw frame text, as a charger would. */
  frame(version: OcppVersion, text: string, opts?: CallOptions): Promise<CallOutcome>;
  connect(version: OcppVersion, cp?: string): Promise<void>;
  disconnect(version: OcppVersion, cp?: string): Promise<void>;
  close(): Promise<void>;
}

export async function createHarness(opts: HarnessOptions): Promise<Harness> {
  const store = opts.store ?? new MemoryStateStore();
  const registry = new StoreChargerRegistry(store);
  const sink = new CaptureSink();
  const log = opts.log ?? pino({ level: 'silent' });
  const nodeId = opts.nodeId ?? 'harness';
  let sent: Sent[] = [];
  const services: WorkerServices = {
    store,
    sink,
    registry,
    log,
    nodeId,
    async send(conn, action, payload) {
      const s = { cpId: conn.cpId, action, payload };
      sent.push(s);
      return opts.onSend ? opts.onSend(s) : {};
    },
  };
  const table = await loadPlugins(opts.plugins, (plugin) => ({
    log: log.child({ plugin }),
    globalState: scopeStore(store, `ocr:g:${plugin}:`),
    chargers: registry,
    router: { nodeId, heartbeatIntervalSec: opts.heartbeatIntervalSec ?? 300 },
  }));
  const pipeline = new Pipeline(table, new ContextFactory(services), log, opts.hookTimeoutMs ?? 10_000, sink, nodeId);
  const conns = new Map<string, number>();
  let nextConn = 1;
  const meta = (version: OcppVersion, o: CallOptions = {}): ConnMeta => {
    const cpId = o.cp ?? 'CP-TEST';
    if (!conns.has(cpId)) conns.set(cpId, nextConn++);
    return { connectionId: conns.get(cpId)!, cpId, version, lenient: o.lenient ?? false };
  };

  const frame = async (version: OcppVersion, text: string, o: CallOptions = {}): Promise<CallOutcome> => {
    const before = sink.rows.length;
    sent = [];
    const r = await pipeline.runFrame(meta(version, o), text, Date.now());
    // after-hooks are detached; let them run before reporting what the call emitted.
    await new Promise((res) => setImmediate(res));
    const out: CallOutcome = { emitted: sink.rows.slice(before), sent, frame: r.reply, deviations: r.deviations };
    if (r.reply) {
      const arr = JSON.parse(r.reply) as unknown[];
      if (arr[0] === 3) out.result = arr[2] as Record<string, unknown>;
      else if (arr[0] === 4)
        out.callError = {
          code: semanticCode(arr[2] as string),
          wireCode: arr[2] as string,
          description: arr[3] as string,
          details: arr[4] as Record<string, unknown>,
        };
    }
    return out;
  };

  return {
    store,
    registry,
    sink,
    frame,
    call: (version, action, payload, o = {}) =>
      frame(version, serializeCall(o.messageId ?? randomUUID(), action, payload), o),
    connect: (version, cp) => pipeline.runConnection('onConnect', meta(version, { cp }), {}),
    disconnect: (version, cp) =>
      pipeline.runConnection('onDisconnect', meta(version, { cp }), { code: 1000, reason: '' }),
    async close() {
      for (const c of table.closers) await c.fn();
      await store.close();
    },
  };
}
