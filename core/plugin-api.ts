/**
 * The plugin contract: the only module a plugin imports.
 *
 * Owns: `definePlugin`, the hook and handler types, `CallError`, the CallContext shape.
 * Must not: import router internals into plugins' type surface beyond what is re-exported
 * here. Plugins never import from core/* other than this file.
 *
 * A plugin is set up once per worker thread, each time one starts (idle workers stop and are
 * started again: pool.idleTimeoutMs; `onClose` runs at each stop), and once on the socket
 * thread when it declares `inline`. Its handlers and hooks run in the thread that got the
 * charger's frame; frames of one charger are handled strictly in order.
 *
 *   frame ─► validate request ─► onCall* (sequential, may answer) ─► handler (one owner)
 *        ─► onResult* (sequential reduce) ─► validate response ─► reply
 *        └─► after* (parallel, detached: never delays or changes the reply)
 */
import type { ActionsByVersion } from './protocol/action-types.generated.js';
import { CallError, type CallErrorCode } from './protocol/call-error.js';
import type { OcppVersion } from './protocol/dialect.js';
import type { StateStore } from './state/store.js';
import type { AnalyticsRow, AnalyticsTable } from './analytics/sink.js';

export { CallError };
export type { CallErrorCode, OcppVersion, StateStore, AnalyticsRow, AnalyticsTable, ActionsByVersion };

/** The core version plugins declare compatibility with (`core` semver range). */
export const CORE_VERSION = '0.1.0';

/**
 * Actions of V. For a union of versions (a hook that runs for several), the union of their
 * actions; request and response types then are the union over the versions that have A.
 */
export type ActionOf<V extends OcppVersion> = V extends OcppVersion ? keyof ActionsByVersion[V] & string : never;
export type RequestOf<V extends OcppVersion, A extends string> = V extends OcppVersion
  ? A extends keyof ActionsByVersion[V]
    ? ActionsByVersion[V][A] extends { request: infer R }
      ? R
      : never
    : never
  : never;
export type ResponseOf<V extends OcppVersion, A extends string> = V extends OcppVersion
  ? A extends keyof ActionsByVersion[V]
    ? ActionsByVersion[V][A] extends { response: infer R }
      ? R
      : never
    : never
  : never;

export interface Logger {
  trace(obj: object | string, msg?: string): void;
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

export interface ChargePointInfo {
  /** Identity from the connection URL (chargeBoxIdentity / station id). */
  readonly id: string;
  readonly ocppVersion: OcppVersion;
  /** Router node holding the connection. */
  readonly nodeId: string;
  /** Per-node connection number; a reconnect gets a new one. */
  readonly connectionId: number;
}

export interface MessageInfo {
  readonly messageId: string;
  readonly action: string;
  /** Epoch ms at which the socket thread received the frame. */
  readonly receivedAt: number;
}

/** Core's charger registry record (hash `ocr:{cpId}:core:charger`). All fields strings. */
export interface ChargerRecord {
  id: string;
  vendor?: string;
  model?: string;
  serialNumber?: string;
  firmwareVersion?: string;
  ocppVersion?: string;
  registeredAt?: string;
  lastBootAt?: string;
  lastSeenAt?: string;
  bootStatus?: string;
  nodeId?: string;
  connectedAt?: string;
  disconnectedAt?: string;
  connectionId?: string;
  /** scrypt hash of the Basic-auth password; never returned by the API. */
  passwordHash?: string;
  [field: string]: string | undefined;
}

/** Core's registry of chargers and connector status, shared by all plugins. */
export interface ChargerRegistry {
  get(cpId: string): Promise<ChargerRecord | null>;
  update(cpId: string, fields: Partial<ChargerRecord>): Promise<void>;
  /** Connector / EVSE status: key is "<evseId>" or "<evseId>/<connectorId>". */
  setStatus(cpId: string, key: string, status: ConnectorStatus): Promise<void>;
  statuses(cpId: string): Promise<Record<string, ConnectorStatus>>;
}

export interface ConnectorStatus {
  status: string;
  errorCode?: string;
  info?: string;
  vendorId?: string;
  vendorErrorCode?: string;
  timestamp: string;
}

export interface SendOptions {
  /** @default 30000 */
  timeoutMs?: number;
}

/** Plugin-declared per-call fields (module augmentation: `declare module` on this interface). */

export interface PluginLocals {
  [key: string]: unknown;
}

export interface CallContext<V extends OcppVersion = OcppVersion> {
  readonly plugin: string;
  readonly cp: ChargePointInfo & { readonly ocppVersion: V };
  readonly msg: MessageInfo;
  /** State scoped to this plugin and charger: keys become `ocr:{cpId}:<plugin>:<key>`. */
  readonly state: StateStore;
  /** State scoped to this plugin only (network-wide keys): `ocr:g:<plugin>:<key>`. */
  readonly globalState: StateStore;
  readonly chargers: ChargerRegistry;
  readonly log: Logger;
  /** Analytics row; buffered, never awaited. */
  emit(table: AnalyticsTable, row: AnalyticsRow): void;
  /** A CSMS-initiated CALL to this charger; resolves with its validated CALLRESULT payload. */
  send<A extends ActionOf<V>>(action: A, payload: RequestOf<V, A>, opts?: SendOptions): Promise<ResponseOf<V, A>>;
  /** Aborted when the hook deadline passes. */
  readonly signal: AbortSignal;
  readonly locals: PluginLocals;
  /** Tolerated spec deviations of this frame (lenient mode), for information. */
  readonly deviations: readonly string[];
  /** Throws a CallError: the caller gets a CALLERROR with this code. */
  fail(code: CallErrorCode, description?: string, details?: Record<string, unknown>): never;
}

/** With a literal action the payloads are typed from the schemas; with `string`, loosely. */
type Req<V extends OcppVersion, A extends string> = string extends A ? Record<string, unknown> : RequestOf<V, A>;
type Res<V extends OcppVersion, A extends string> = string extends A ? Record<string, unknown> : ResponseOf<V, A>;

export type Handler<V extends OcppVersion = OcppVersion, A extends string = string> = (
  ctx: CallContext<V>,
  payload: Req<V, A>,
) => Res<V, A> | Promise<Res<V, A>>;

export interface HookOptions {
  /** Within one hook name: 'pre' hooks first, then unordered, then 'post'; config order within each. */
  order?: 'pre' | 'post';
  /** Only for these actions (all when omitted). Filtering happens at load, not per call. */
  actions?: string[];
  /** Only for these versions (all the plugin supports when omitted). */
  versions?: OcppVersion[];
  /** Deadline for one invocation; on expiry `ctx.signal` aborts and the call fails with InternalError. */
  timeoutMs?: number;
}

/**
 * onCall — Kind: sequential, may short-circuit. Runs in: worker, after request validation.
 * Previous: schema validation. Next: the next onCall hook, or the handler.
 * Return a payload to answer without the handler; throw CallError (ctx.fail) to reject.
 */
export type OnCallHook = (ctx: CallContext, payload: Record<string, unknown>) => unknown | Promise<unknown>;
/**
 * onResult — Kind: sequential reduce. Runs in: worker, before response validation.
 * Previous: handler. Next: response validation, then `after`. Return a replacement or undefined.
 */
export type OnResultHook = (
  ctx: CallContext,
  payload: Record<string, unknown>,
  result: Record<string, unknown>,
) => unknown | Promise<unknown>;
/**
 * after — Kind: parallel, detached. Runs in: worker, after the reply was handed back.
 * Previous: reply. Next: none. Errors are logged and never affect the reply.
 */
export type AfterHook = (
  ctx: CallContext,
  payload: Record<string, unknown>,
  outcome: { result?: Record<string, unknown>; error?: CallError },
) => unknown | Promise<unknown>;
/**
 * onConnect / onDisconnect — Kind: parallel. Runs in: worker, in the charger's ordered lane
 * (before its first frame / after its last). Errors are logged and isolated.
 */
export type ConnectionHook = (
  ctx: Omit<CallContext, 'msg' | 'send' | 'fail'> & { readonly msg: null },
  info: { reason?: string; code?: number },
) => unknown | Promise<unknown>;
/**
 * onCallResult / onCallError — Kind: sequential. Runs in: worker, when a charger answers a
 * CSMS-initiated CALL (validated). Observe only.
 */
export type CallReplyHook = (
  ctx: CallContext,
  info: {
    action: string;
    request: Record<string, unknown>;
    result?: Record<string, unknown>;
    error?: { code: string; description: string; details: Record<string, unknown> };
  },
) => unknown | Promise<unknown>;
/** onError — Kind: parallel, observe only. Runs in: worker, whenever a call ended in error. */
export type OnErrorHook = (ctx: CallContext, error: CallError, cause?: unknown) => unknown | Promise<unknown>;

export interface HookMap {
  onCall: OnCallHook;
  onResult: OnResultHook;
  after: AfterHook;
  onConnect: ConnectionHook;
  onDisconnect: ConnectionHook;
  onCallResult: CallReplyHook;
  onCallError: CallReplyHook;
  onError: OnErrorHook;
}
export type HookName = keyof HookMap;
export const HOOK_NAMES: readonly HookName[] = [
  'onCall',
  'onResult',
  'after',
  'onConnect',
  'onDisconnect',
  'onCallResult',
  'onCallError',
  'onError',
];

export interface SetupApi {
  readonly name: string;
  readonly log: Logger;
  /** Plugin-wide state (not bound to a charger): `ocr:g:<plugin>:<key>`. */
  readonly globalState: StateStore;
  readonly chargers: ChargerRegistry;
  /** Router configuration values a plugin may read (node id, boot interval, …). */
  readonly router: { readonly nodeId: string; readonly heartbeatIntervalSec: number };
  /** Owns (version, action). Exactly one owner per pair; a second owner is a boot error. */
  handle<V extends OcppVersion, A extends ActionOf<V>>(version: V, action: A, handler: Handler<V, A>): void;
  /** Owns the action in several versions with one handler (payload typed as the union). */
  handle(versions: OcppVersion[], action: string, handler: Handler): void;
  hook<H extends HookName>(name: H, fn: HookMap[H] | ({ handler: HookMap[H] } & HookOptions)): void;
  /** Registers cleanup to run when a thread that ran setup stops: at shutdown, and when an idle worker stops (workers; the socket thread for `inline` plugins). */
  onClose(fn: () => unknown | Promise<unknown>): void;
}

export interface PluginDefinition<Opts = Record<string, unknown>> {
  /** kebab-case, unique; appears in every error, log line and metric. */
  name: string;
  version: string;
  /** semver range of core supported, e.g. "^0.1.0"; checked at load. */
  core: string;
  /** Dialects supported. @default all */
  ocpp?: OcppVersion[];
  /** Plugins that must be listed (and loaded) before this one. */
  dependsOn?: string[];
  /** JSON schema of the options; validated (with defaults applied) at boot. */
  options?: Record<string, unknown>;
  /**
   * The plugin's handlers and hooks may also run on the socket thread. When the worker pool
   * is not needed (the socket thread has spare time, a small batch), the router handles a
   * message where it arrived, without the two thread hops: at fleet rates that is most of
   * the CPU a message costs (bench/RESULTS.md, "inline"). A message runs there only when
   * every plugin taking part in it (its handler and every hook on its action, and every
   * `onError` hook) says `inline: true`; otherwise it goes to a worker as always.
   *
   * Declare it only when no handler or hook does long synchronous work (CPU-bound loops,
   * synchronous I/O, large JSON): on the socket thread that would delay every charger's
   * frames. Awaiting I/O (state, HTTP) is fine. `setup` then also runs once on the socket
   * thread, so it must not assume it runs only in workers. @default false
   */
  inline?: boolean;
  setup(api: SetupApi, opts: Opts): void | Promise<void>;
}

const kPlugin = Symbol.for('ocpp-router.plugin');

export function definePlugin<Opts = Record<string, unknown>>(def: PluginDefinition<Opts>): PluginDefinition<Opts> {
  return Object.freeze({ ...def, [kPlugin]: true });
}

export function isPluginDefinition(v: unknown): v is PluginDefinition<unknown> {
  return typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[kPlugin] === true;
}
