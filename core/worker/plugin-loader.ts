/**
 * Plugin loader: imports the configured plugins, checks their contracts and builds the
 * frozen hook tables the pipeline loops over.
 *
 * Owns: every boot-time check of the plugin contract (shape, core version, dependencies,
 * options schema, handler conflicts, unknown actions/hooks) [fastify, rollup]. Must not: run
 * anything per message. A failed check throws an OCR_ERR_PLUGIN_* error and the router does
 * not start.
 *
 *   config.plugins ──► import ──► check shape/core/deps ──► validate options ──► setup(api)
 *                                                                                  │
 *                       HookTable { byAction[version][action], connect, … } ◄──────┘
 */
import { createRequire } from 'node:module';
import { access } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Ajv } from 'ajv';
import semver from 'semver';
import { errors } from '../errors.js';
import { OCPP_VERSIONS, type OcppVersion } from '../protocol/dialect.js';
import { actionCatalog } from '../protocol/schemas.js';
import { codeExt, codeRoot, importModule, projectRoot } from '../paths.js';
import {
  CORE_VERSION,
  HOOK_NAMES,
  isPluginDefinition,
  type AfterHook,
  type CallReplyHook,
  type ConnectionHook,
  type Handler,
  type HookName,
  type HookOptions,
  type OnCallHook,
  type OnErrorHook,
  type OnResultHook,
  type PluginDefinition,
  type SetupApi,
} from '../plugin-api.js';

export interface PluginSpec {
  /** A path (relative to the project root or absolute), a name under plugins/, or an npm package. */
  name: string;
  options?: Record<string, unknown>;
  /** An already imported definition (in-process use: the test harness). Not for config files. */
  plugin?: PluginDefinition<never>;
}

export interface Registered<F> {
  plugin: string;
  fn: F;
  timeoutMs?: number;
}

export interface ActionTable {
  handler?: Registered<Handler>;
  onCall: Registered<OnCallHook>[];
  onResult: Registered<OnResultHook>[];
  after: Registered<AfterHook>[];
  /**
   * What the pipeline learns at run time (the one mutable part of a frozen table):
   * `writesRows`, a call of this action wrote analytics rows (ctx.emit in onCall, the
   * handler or onResult); such calls are refused while the analytics sink is full.
   */
  readonly learnt: { writesRows: boolean };
}

export interface HookTable {
  /** `inline`: declared inline, and so is every plugin it depends on (set up on the socket thread). */
  plugins: { name: string; version: string; inline: boolean }[];
  /** Configured plugins not set up in this thread (`inlineOnly`: not inline, or needing one that is not). */
  skipped: string[];
  byAction: Record<OcppVersion, Map<string, ActionTable>>;
  onConnect: Record<OcppVersion, Registered<ConnectionHook>[]>;
  onDisconnect: Record<OcppVersion, Registered<ConnectionHook>[]>;
  onCallResult: Record<OcppVersion, Map<string, Registered<CallReplyHook>[]>>;
  onCallError: Record<OcppVersion, Map<string, Registered<CallReplyHook>[]>>;
  onError: Record<OcppVersion, Registered<OnErrorHook>[]>;
  closers: Array<{ plugin: string; fn: () => unknown }>;
}

type SetupApiBase = Omit<SetupApi, 'name' | 'handle' | 'hook' | 'onClose' | 'log'> & { log: SetupApi['log'] };

/** Resolves a plugin spec to an import URL: `core` → plugins/core, paths as given, else npm. */
export async function importPlugin(name: string): Promise<PluginDefinition<unknown>> {
  let mod: { default?: unknown };
  try {
    mod = (await importModule(await resolvePlugin(name))) as { default?: unknown };
  } catch (err) {
    throw new errors.OCR_ERR_PLUGIN_NOT_FOUND(name, (err as Error).message, { cause: err });
  }
  const def = mod.default;
  if (!isPluginDefinition(def))
    throw new errors.OCR_ERR_PLUGIN_INVALID(name, 'its default export is not made with definePlugin()');
  return def;
}

/**
 * A path (relative to the project root) as given; a bare kebab name under plugins/ first (the
 * compiled one when running compiled, else its TypeScript source), else an npm package.
 */
async function resolvePlugin(name: string): Promise<string> {
  if (name.startsWith('.') || isAbsolute(name)) return pathToFileURL(resolve(projectRoot, name)).href;
  if (/^[a-z0-9-]+$/.test(name)) {
    const exists = (p: string) =>
      access(p).then(
        () => true,
        () => false,
      );
    for (const local of [
      resolve(codeRoot, 'plugins', name, `index${codeExt}`),
      resolve(projectRoot, 'plugins', name, 'index.ts'),
    ]) {
      if (await exists(local)) return pathToFileURL(local).href;
    }
  }
  return pathToFileURL(createRequire(resolve(projectRoot, 'package.json')).resolve(name)).href;
}

function emptyTable(): HookTable {
  const per = <T>(f: () => T) => Object.fromEntries(OCPP_VERSIONS.map((v) => [v, f()])) as Record<OcppVersion, T>;
  return {
    plugins: [],
    skipped: [],
    byAction: per(() => new Map()),
    onConnect: per(() => []),
    onDisconnect: per(() => []),
    onCallResult: per(() => new Map()),
    onCallError: per(() => new Map()),
    onError: per(() => []),
    closers: [],
  };
}

function actionTable(t: HookTable, v: OcppVersion, action: string): ActionTable {
  let e = t.byAction[v].get(action);
  if (!e) t.byAction[v].set(action, (e = { onCall: [], onResult: [], after: [], learnt: { writesRows: false } }));
  return e;
}

interface PendingHook {
  plugin: string;
  name: HookName;
  fn: (...a: never[]) => unknown;
  opts: HookOptions;
  versions: OcppVersion[];
}

export interface LoadOptions {
  /**
   * Set up only the plugins declaring `inline: true` whose dependencies are set up too; the
   * others are listed in `skipped` (the socket thread's table, see inlineSupport()).
   */
  inlineOnly?: boolean;
}

/**
 * Loads and sets up the plugins in order. `makeBase(name)` gives each plugin its log, state
 * and registry facades (built by the thread, which owns the connections to Redis etc.).
 */
export async function loadPlugins(
  specs: PluginSpec[],
  makeBase: (plugin: string) => SetupApiBase,
  loadOpts: LoadOptions = {},
): Promise<HookTable> {
  const table = emptyTable();
  const loaded = new Set<string>();
  const skipped = new Set<string>();
  /** Plugins that may run inline: declared so, and so is every plugin they depend on. */
  const inlineCapable = new Set<string>();
  const hooks: PendingHook[] = [];

  for (const spec of specs) {
    const def = spec.plugin ?? (await importPlugin(spec.name));
    const name = def.name;
    if (typeof name !== 'string' || !/^[a-z0-9][a-z0-9-]*$/.test(name))
      throw new errors.OCR_ERR_PLUGIN_INVALID(spec.name, 'name must be kebab-case');
    if (loaded.has(name) || skipped.has(name)) throw new errors.OCR_ERR_PLUGIN_DUPLICATE(name);
    if (typeof def.setup !== 'function') throw new errors.OCR_ERR_PLUGIN_INVALID(name, 'setup must be a function');
    if (def.inline !== undefined && typeof def.inline !== 'boolean')
      throw new errors.OCR_ERR_PLUGIN_INVALID(name, '"inline" must be a boolean');
    const inline = def.inline === true && (def.dependsOn ?? []).every((d) => inlineCapable.has(d));
    if (loadOpts.inlineOnly && !inline) {
      skipped.add(name);
      table.skipped.push(name);
      continue;
    }
    if (typeof def.core !== 'string' || !semver.validRange(def.core))
      throw new errors.OCR_ERR_PLUGIN_INVALID(name, '"core" must be a semver range');
    if (!semver.satisfies(CORE_VERSION, def.core, { includePrerelease: true }))
      throw new errors.OCR_ERR_PLUGIN_CORE_VERSION(name, def.core, CORE_VERSION);
    for (const dep of def.dependsOn ?? []) if (!loaded.has(dep)) throw new errors.OCR_ERR_PLUGIN_DEP_MISSING(name, dep);
    const supported = def.ocpp ?? [...OCPP_VERSIONS];

    const opts: Record<string, unknown> = structuredClone(spec.options ?? {});
    if (def.options) {
      const ajv = new Ajv({ useDefaults: true, allErrors: true, strict: false });
      const validate = ajv.compile(def.options);
      if (!validate(opts)) {
        const msg = (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}`).join('; ');
        throw new errors.OCR_ERR_PLUGIN_OPTIONS(name, msg);
      }
    } else if (spec.options && Object.keys(spec.options).length > 0) {
      throw new errors.OCR_ERR_PLUGIN_OPTIONS(name, 'plugin declares no options but options were given');
    }

    const base = makeBase(name);
    const api: SetupApi = {
      ...base,
      name,
      handle(version: OcppVersion | OcppVersion[], action: string, handler: Handler) {
        for (const v of Array.isArray(version) ? version : [version]) {
          if (!supported.includes(v))
            throw new errors.OCR_ERR_PLUGIN_INVALID(
              name,
              `handles ${action} for ${v}, which is not in its "ocpp" list`,
            );
          if (!actionCatalog(v).request.has(action))
            throw new errors.OCR_ERR_PLUGIN_UNKNOWN_ACTION(name, 'a handler', `${v} ${action}`);
          const e = actionTable(table, v, action);
          if (e.handler) throw new errors.OCR_ERR_PLUGIN_HANDLER_CONFLICT(e.handler.plugin, name, v, action);
          e.handler = { plugin: name, fn: handler };
        }
      },
      hook(hookName: HookName, arg: unknown) {
        if (!HOOK_NAMES.includes(hookName)) throw new errors.OCR_ERR_PLUGIN_UNKNOWN_HOOK(name, hookName);
        const obj = typeof arg === 'function' ? { handler: arg } : (arg as { handler: unknown } & HookOptions);
        if (typeof obj?.handler !== 'function')
          throw new errors.OCR_ERR_PLUGIN_INVALID(name, `hook ${hookName} needs a function`);
        const versions = (obj.versions ?? supported).filter((v) => supported.includes(v));
        for (const v of versions)
          for (const a of obj.actions ?? []) {
            if (!actionCatalog(v).request.has(a))
              throw new errors.OCR_ERR_PLUGIN_UNKNOWN_ACTION(name, `hook ${hookName}`, `${v} ${a}`);
          }
        hooks.push({ plugin: name, name: hookName, fn: obj.handler as PendingHook['fn'], opts: obj, versions });
      },
      onClose(fn) {
        table.closers.push({ plugin: name, fn });
      },
    } as SetupApi;
    try {
      await def.setup(api, opts);
    } catch (err) {
      if ((err as { code?: string }).code?.startsWith('OCR_ERR_')) throw err;
      throw new errors.OCR_ERR_PLUGIN_SETUP(name, (err as Error).message, { cause: err });
    }
    loaded.add(name);
    if (inline) inlineCapable.add(name);
    table.plugins.push({ name, version: def.version, inline });
  }

  // Order: 'pre', then unordered, then 'post'; config order within each (stable sort) [rollup].
  const rank = (h: PendingHook) => (h.opts.order === 'pre' ? 0 : h.opts.order === 'post' ? 2 : 1);
  hooks.sort((a, b) => rank(a) - rank(b));
  for (const h of hooks) {
    const reg = { plugin: h.plugin, fn: h.fn, timeoutMs: h.opts.timeoutMs } as Registered<never>;
    for (const v of h.versions) {
      const actions = h.opts.actions ?? actionCatalog(v).actions;
      switch (h.name) {
        case 'onCall':
        case 'onResult':
        case 'after':
          for (const a of actions) actionTable(table, v, a)[h.name].push(reg);
          break;
        case 'onCallResult':
        case 'onCallError':
          for (const a of actions) {
            const m = table[h.name][v];
            m.set(a, [...(m.get(a) ?? []), reg]);
          }
          break;
        default:
          table[h.name][v].push(reg);
      }
    }
  }
  return deepFreezeTables(table);
}

/**
 * What the socket thread may run itself (the Dispatcher's InlinePolicy): per version, the actions in which
 * every participant (handler, onCall, onResult, after) is an inline plugin, and whether
 * connection events and charger replies qualify. Nothing of a version qualifies when any of
 * its `onError` hooks is not inline: an error anywhere must reach every observer.
 */
export interface InlineSupport {
  actions: Partial<Record<OcppVersion, string[]>>;
  /** Versions whose onConnect / onDisconnect hooks are all inline. */
  connection: OcppVersion[];
  /** Versions whose onCallResult / onCallError hooks are all inline. */
  replies: OcppVersion[];
}

export function inlineSupport(t: HookTable): InlineSupport {
  const inline = new Set(t.plugins.filter((p) => p.inline).map((p) => p.name));
  const all = (regs: readonly Registered<unknown>[] | undefined) => (regs ?? []).every((r) => inline.has(r.plugin));
  const out: InlineSupport = { actions: {}, connection: [], replies: [] };
  for (const v of OCPP_VERSIONS) {
    if (!all(t.onError[v])) continue;
    const actions: string[] = [];
    for (const a of actionCatalog(v).actions) {
      const e = t.byAction[v].get(a);
      if (!e || ((!e.handler || inline.has(e.handler.plugin)) && all(e.onCall) && all(e.onResult) && all(e.after)))
        actions.push(a);
    }
    out.actions[v] = actions;
    if (all(t.onConnect[v]) && all(t.onDisconnect[v])) out.connection.push(v);
    if ([...t.onCallResult[v].values(), ...t.onCallError[v].values()].every(all)) out.replies.push(v);
  }
  return out;
}

function deepFreezeTables(t: HookTable): HookTable {
  for (const v of OCPP_VERSIONS)
    for (const e of t.byAction[v].values()) {
      Object.freeze(e.onCall);
      Object.freeze(e.onResult);
      Object.freeze(e.after);
      Object.freeze(e);
    }
  return Object.freeze(t);
}
