/**
 * CallContext factory: one stable object shape per (call, plugin) [fastify decorators].
 *
 * Owns: building the `ctx` handed to hooks and handlers: charger and message info, the
 * plugin-scoped state store, a child logger, analytics emit, `send`, the deadline signal.
 * Must not: run hooks (pipeline.ts) or hold per-charger state between calls.
 *
 * Fields that cost an allocation (`state`, `log`, `signal`) are prototype getters, created
 * on first use: most handlers touch one or none of them.
 */
import { CallError, type CallErrorCode } from '../protocol/call-error.js';
import type { OcppVersion } from '../protocol/dialect.js';
import type { AnalyticsRow, AnalyticsSink, AnalyticsTable } from '../analytics/sink.js';
import type { StateStore } from '../state/store.js';
import { scopeStore } from '../state/scoped-store.js';
import { cpPrefix } from '../state/keys.js';
import type {
  CallContext,
  ChargePointInfo,
  ChargerRegistry,
  Logger,
  MessageInfo,
  PluginLocals,
} from '../plugin-api.js';

/** What the worker knows of a connection, sent with every batch item. */
export interface ConnMeta {
  connectionId: number;
  cpId: string;
  version: OcppVersion;
  lenient: boolean;
}

export interface WorkerServices {
  store: StateStore;
  sink: AnalyticsSink;
  registry: ChargerRegistry;
  log: Logger;
  nodeId: string;
  /**
   * Sends a CSMS-initiated CALL via the socket thread; resolves with the validated result.
   * `afterReply`: made from an `after` hook, so it must not reach the charger before the reply.
   */
  send(
    conn: ConnMeta,
    action: string,
    payload: Record<string, unknown>,
    timeoutMs?: number,
    afterReply?: boolean,
  ): Promise<Record<string, unknown>>;
}

/** The per-call part shared by every plugin's view of one call. */
interface CallBase {
  conn: ConnMeta;
  cp: ChargePointInfo;
  msg: MessageInfo | null;
  deviations: readonly string[];
  locals: PluginLocals;
  controller: AbortController | null;
  /** Analytics rows written through this call's contexts (ctx.emit). */
  rows: number;
}

class PluginContext {
  readonly plugin: string;
  readonly cp: ChargePointInfo;
  readonly msg: MessageInfo;
  readonly locals: PluginLocals;
  readonly deviations: readonly string[];
  readonly chargers: ChargerRegistry;
  private readonly base: CallBase;
  private readonly services: WorkerServices;
  private stateCache: StateStore | null = null;
  private logCache: Logger | null = null;

  constructor(
    base: CallBase,
    plugin: string,
    services: WorkerServices,
    private readonly afterReply = false,
  ) {
    this.plugin = plugin;
    this.cp = base.cp;
    this.msg = base.msg as MessageInfo;
    this.locals = base.locals;
    this.deviations = base.deviations;
    this.chargers = services.registry;
    this.base = base;
    this.services = services;
  }

  get state(): StateStore {
    return (this.stateCache ??= scopeStore(this.services.store, cpPrefix(this.cp.id, this.plugin)));
  }

  get globalState(): StateStore {
    return scopeStore(this.services.store, `ocr:g:${this.plugin}:`);
  }

  get log(): Logger {
    return (this.logCache ??= this.services.log.child({
      plugin: this.plugin,
      cpId: this.cp.id,
      messageId: this.msg?.messageId,
    }));
  }

  get signal(): AbortSignal {
    return (this.base.controller ??= new AbortController()).signal;
  }

  /** @internal used by the pipeline when a deadline passes */
  abort(): void {
    (this.base.controller ??= new AbortController()).abort();
  }

  emit(table: AnalyticsTable, row: AnalyticsRow): void {
    this.base.rows++;
    this.services.sink.write(table, row);
  }

  send(
    action: string,
    payload: Record<string, unknown>,
    opts?: { timeoutMs?: number },
  ): Promise<Record<string, unknown>> {
    return this.services.send(this.base.conn, action, payload, opts?.timeoutMs, this.afterReply);
  }

  fail(code: CallErrorCode, description?: string, details?: Record<string, unknown>): never {
    throw new CallError(code, description, details);
  }
}

export class ContextFactory {
  constructor(private readonly services: WorkerServices) {}

  private base(conn: ConnMeta, msg: MessageInfo | null, deviations: readonly string[]): CallBase {
    return {
      conn,
      cp: { id: conn.cpId, ocppVersion: conn.version, nodeId: this.services.nodeId, connectionId: conn.connectionId },
      msg,
      deviations,
      locals: {},
      controller: null,
      rows: 0,
    };
  }

  /** Whether hooks or the handler of this call (not its detached `after` hooks) wrote analytics rows. */
  wroteRows(ctx: CallContext): boolean {
    return (ctx as unknown as { base: CallBase }).base.rows > 0;
  }

  /** A call-level context; `forPlugin` gives each plugin its own view of it. */
  call(conn: ConnMeta, msg: MessageInfo, deviations: readonly string[]): CallContext {
    return new PluginContext(this.base(conn, msg, deviations), 'core', this.services) as unknown as CallContext;
  }

  connection(conn: ConnMeta): CallContext {
    return new PluginContext(this.base(conn, null, []), 'core', this.services) as unknown as CallContext;
  }

  /**
   * `afterReply`: the view given to detached `after` hooks: their ctx.send waits for the reply,
   * and they get their own deadline signal (the call's may already have been aborted).
   */
  forPlugin(ctx: CallContext, plugin: string, afterReply = false): CallContext {
    const base = (ctx as unknown as { base: CallBase }).base;
    return new PluginContext(
      afterReply ? { ...base, controller: null } : base,
      plugin,
      this.services,
      afterReply,
    ) as unknown as CallContext;
  }
}

export type { OcppVersion };
