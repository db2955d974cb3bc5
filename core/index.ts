/**
 * createRouter(options): wiring only, no logic.
 *
 *   charger ──ws──► Transport (uWS) ──► Gateway ──► Dispatcher ──batch──► workers (piscina)
 *                        │                 │            ▲                   │ plugins, state,
 *   operator ──http──► HttpApi ──► CommandApi ──────────┘ ◄── replies ──────┘ analytics
 *                                                            ThreadRpc (state in-process, ctx.send)
 *   small batches while the socket thread is not busy: run by its own BatchRuntime (inline)
 */
import { availableParallelism } from 'node:os';
import { randomBytes } from 'node:crypto';
import { buildConfig, type RouterConfig } from './options.js';
import { createLogger, type PinoLogger } from './log.js';
import { errors } from './errors.js';
import type { OcppVersion } from './protocol/dialect.js';
import { createMetrics, registerAnalyticsMetrics, type Metrics } from './metrics.js';
import { AnalyticsTotals, isSinkStats } from './analytics/thread-totals.js';
import { ConnectionRegistry } from './registry/connection-registry.js';
import { Dispatcher } from './dispatch/dispatcher.js';
import { CommandApi } from './command/command-api.js';
import { Gateway } from './gateway/gateway.js';
import { HttpApi, type Readiness } from './api/http-api.js';
import { ApiKeyStore } from './api/api-keys.js';
import { createTransport } from './transport/create.js';
import { ThreadRpcServer } from './thread-contract/thread-rpc.js';
import { MemoryStateStore } from './state/memory-store.js';
import { createRedisStore } from './state/create.js';
import { serveStateStore } from './state/remote-store.js';
import { StoreChargerRegistry } from './state/registry.js';
import type { StateStore } from './state/store.js';
import type { Transport } from './transport/transport.js';
import { StateJournal, type JournalEntry } from './state/journal.js';
import { NodeBus } from './cluster/node-bus.js';
import { CommandRoute } from './cluster/route.js';
import { JournalingStore } from './state/journaling-store.js';
import { Gauge } from 'prom-client';
import { join } from 'node:path';
import { compiled } from './paths.js';
import { BatchRuntime } from './worker/runtime.js';
import type { WorkerServices } from './worker/context.js';
import { threadSink, type ClickHouseSink } from './analytics/clickhouse-sink.js';
import { validateOutgoing } from './protocol/validate.js';

export interface Router {
  readonly config: RouterConfig;
  /** Port chargers connect to (resolved when config.server.port is 0). */
  readonly port: number;
  /** Port of the operator API (same as `port` unless api.port is set). */
  readonly apiPort: number;
  readonly commands: CommandApi;
  /** Sends to a charger on this node or, with Redis, on any node. */
  readonly route: CommandRoute;
  readonly connections: ConnectionRegistry;
  readonly registry: StoreChargerRegistry;
  readonly metrics: Metrics;
  readonly log: PinoLogger;
  readonly apiKeys: ApiKeyStore;
  readonly dispatcher: Dispatcher;
  close(): Promise<void>;
}

export interface CreateRouterOptions {
  /** Called with a generated API key on first start (default: printed on stderr). */
  onGeneratedApiKey?: (key: string) => void;
  /**
   * Index of this process among `processes` on the host (multi-process mode); names its
   * per-process files in dataDir (the state journal). @default 0
   */
  instance?: number;
}

export async function createRouter(
  input: Record<string, unknown> = {},
  opts: CreateRouterOptions = {},
): Promise<Router> {
  const config = buildConfig(input);
  const log = createLogger(config.log, { nodeId: config.nodeId });
  const metrics = createMetrics();
  // Channels between this router's threads carry a per-instance name, so several routers
  // in one process (tests, embedding) never hear each other.
  const channel = `ocr:${randomBytes(6).toString('hex')}`;
  const rpc = new ThreadRpcServer({ name: channel });

  const store: StateStore = config.redis.url ? createRedisStore(config, log) : new MemoryStateStore();
  if (store.kind === 'memory') serveStateStore(rpc, store);
  // Redis away: writes go to a durable journal and are replayed when it is back.
  let journal: StateJournal | null = null;
  let registryStore = store;
  if (store.kind === 'redis') {
    const instance = opts.instance ?? 0;
    journal = new StateJournal(
      join(config.dataDir, instance ? `state-journal-${instance}.ndjson` : 'state-journal.ndjson'),
      store,
      log.child({ area: 'state-journal' }),
    );
    await journal.open();
    const j = journal;
    rpc.handle('journal', (method, args) => {
      if (method !== 'append') throw new Error(`unknown journal method ${method}`);
      return j.append(args[0] as JournalEntry[]);
    });
    registryStore = new JournalingStore(store, (entries) => j.append(entries), {
      has: (g) => j.pending(g),
      mark: () => undefined,
    });
    new Gauge({
      name: 'ocr_state_journal_entries',
      help: 'State writes waiting in the journal for Redis',
      registers: [metrics.registry],
      collect() {
        this.set(j.size);
      },
    });
    new Gauge({
      name: 'ocr_state_journal_applied',
      help: 'State writes replayed from the journal since start',
      registers: [metrics.registry],
      collect() {
        this.set(j.stats.applied);
      },
    });
  }
  const registry = new StoreChargerRegistry(registryStore);

  // Analytics counters of every thread (the workers report theirs on the control channel).
  const analytics = new AnalyticsTotals();
  let inlineSink: ClickHouseSink | null = null;
  const control = new BroadcastChannel(`${channel}:control`);
  control.onmessage = (ev: MessageEvent) => {
    const d = ev.data as { op?: string; threadId?: unknown; stats?: unknown; analytics?: unknown } | null;
    if (typeof d?.threadId !== 'number') return;
    if (d.op === 'analytics' && isSinkStats(d.stats)) analytics.report(d.threadId, d.stats);
    else if (d.op === 'drained' && isSinkStats(d.analytics)) analytics.retire(d.threadId, d.analytics);
  };
  (control as unknown as { unref?: () => void }).unref?.();
  registerAnalyticsMetrics(metrics.registry, () => analytics.totals(inlineSink ? [inlineSink.stats()] : []));

  const connections = new ConnectionRegistry();
  const threads = config.pool.threads || availableParallelism();
  let gateway: Gateway;
  const dispatcher = new Dispatcher(
    {
      threads,
      idleTimeoutMs: config.pool.idleTimeoutMs,
      batchSize: config.pool.batchSize,
      concurrentTasksPerWorker: config.pool.concurrentTasksPerWorker,
      maxPendingFrames: config.pool.maxPendingFrames,
      backlogPerCharger: config.server.backlogPerCharger,
      inline: config.pool.inline,
      workerData: { config, nodeId: config.nodeId, channel },
    },
    {
      identity: (c, vendor, model) => gateway.identity(c, vendor, model),
      journalPending: (cpId) => journal?.pending(cpId) ?? false,
      badFrame: (c) => gateway.badFrame(c),
    },
    metrics,
    log,
  );
  const commands = new CommandApi(
    connections,
    dispatcher,
    metrics,
    log,
    config.calls.timeoutMs,
    config.server.backlogPerCharger,
  );
  gateway = new Gateway(config, connections, dispatcher, commands, registry, metrics, log);

  // ctx.send() from plugins (validated by the caller's thread), on the connection the message came in on.
  const pluginSend = async (
    cpId: string,
    connectionId: number,
    action: string,
    payload: Record<string, unknown>,
    timeoutMs: number | undefined,
    afterReply: boolean,
  ) => {
    // From an `after` hook: not before the reply to the message that caused it.
    if (afterReply) await dispatcher.afterLane(cpId);
    const conn = connections.get(cpId);
    if (!conn || conn.id !== connectionId) throw new errors.OCR_ERR_CMD_NOT_CONNECTED(cpId);
    return commands.call(cpId, action, payload, { timeoutMs, prevalidated: true });
  };
  // From workers: [cpId, connectionId, action, payload, timeoutMs, afterReply]
  rpc.handle('cmd', async (method, args) => {
    if (method !== 'send') throw new Error(`unknown cmd method ${method}`);
    const [cpId, connectionId, action, payload, timeoutMs, afterReply] = args as [
      string,
      number,
      string,
      Record<string, unknown>,
      number | undefined,
      boolean,
    ];
    return pluginSend(cpId, connectionId, action, payload, timeoutMs, afterReply);
  });

  // Several nodes (processes or hosts) share Redis: commands for a charger held by another node
  // go over the node bus (core/cluster/node-bus.ts).
  let bus: NodeBus | null = null;
  if (config.redis.url) {
    bus = new NodeBus(config.redis.url, config.redis.keyPrefix, config.nodeId, log.child({ area: 'node-bus' }));
    bus.start((req) => commands.call(req.cpId, req.action, req.payload, { timeoutMs: req.timeoutMs }));
  }
  const route = new CommandRoute(config.nodeId, connections, commands, registry, bus, config.calls.timeoutMs);

  const apiKeys = new ApiKeyStore(config.api.keys, ApiKeyStore.fileIn(config.dataDir));
  await apiKeys.load();
  if (config.api.enabled && apiKeys.size === 0) {
    const key = await apiKeys.create('generated-at-first-start');
    (
      opts.onGeneratedApiKey ??
      ((k) =>
        process.stderr.write(
          `\nNo API key was configured; created one (stored hashed in ${ApiKeyStore.fileIn(config.dataDir)}):\n\n  ${k}\n\nUse it as "Authorization: Bearer <key>". It is not shown again.\n\n`,
        ))
    )(key);
  }

  let listening = false;
  const readiness = async (): Promise<Readiness> => {
    const checks: Readiness['checks'] = { listening: { ok: listening } };
    try {
      await store.ping();
      checks.state = { ok: true };
    } catch (err) {
      // /ready may be public: say what is down, not the error text (hosts, ports).
      log.warn({ err }, 'readiness: state store unreachable');
      checks.state = { ok: false, detail: 'unreachable' };
    }
    checks.workers = {
      ok: !dispatcher.saturated,
      detail: `${dispatcher.stats.pendingFrames} frames waiting, ${dispatcher.stats.inFlight} batches in flight`,
    };
    return { ready: Object.values(checks).every((c) => c.ok), checks };
  };
  const api = new HttpApi(config, apiKeys, registry, connections, route, metrics, readiness, log);

  // The socket thread's own runtime for inline batches (dispatch/inline-policy.ts): the
  // `inline` plugins over this thread's store (the journaling one with Redis: the journal
  // lives here), its own sink.
  let inlineRuntime: BatchRuntime | null = null;
  try {
    const pings = await dispatcher.start();
    if (config.pool.inline.enabled) {
      const inlineLog = log.child({ thread: 'socket' });
      inlineSink = threadSink(config, config.nodeId, inlineLog);
      await inlineSink.start();
      const services: WorkerServices = {
        store: registryStore,
        sink: inlineSink,
        registry,
        log: inlineLog,
        nodeId: config.nodeId,
        async send(conn, action, payload, timeoutMs, afterReply) {
          validateOutgoing(conn.version, action, payload);
          return pluginSend(conn.cpId, conn.connectionId, action, payload, timeoutMs, afterReply === true);
        },
      };
      inlineRuntime = await BatchRuntime.create({ config, services, journaled: null, inlineOnly: true });
      dispatcher.setInline(inlineRuntime, pings[0].inline);
    }
    // Every worker loads the same plugins, so their answers agree (the inline support above
    // is taken from the first); for the Heartbeat fast path take the strictest anyway.
    const fast = pings.reduce(
      (acc, p) => acc.filter((v) => p.socketThreadHeartbeat.includes(v)),
      pings[0]?.socketThreadHeartbeat ?? [],
    );
    // Union over workers (they agree; a hook anywhere must see its answers).
    const observed: Partial<Record<OcppVersion, string[]>> = {};
    for (const p of pings)
      for (const [v, actions] of Object.entries(p.callResultHooks))
        observed[v as OcppVersion] = [...new Set([...(observed[v as OcppVersion] ?? []), ...actions])];
    gateway.start(fast, observed);
    log.info(
      {
        threads,
        plugins: pings[0]?.plugins,
        socketThreadHeartbeat: fast,
        inlinePlugins: inlineRuntime?.table.plugins.map((p) => p.name) ?? [],
      },
      'workers ready',
    );
  } catch (err) {
    await dispatcher.destroy();
    await inlineSink?.close().catch(() => undefined);
    rpc.close();
    control.close();
    await store.close().catch(() => undefined);
    throw err;
  }

  const transportOpts = {
    host: config.server.host,
    port: config.server.port,
    wsPath: config.server.path,
    maxPayloadLength: config.server.maxPayloadLength,
    idleTimeoutSec: config.server.idleTimeoutSec,
    maxBackpressure: config.server.maxBackpressure,
    maxBodyBytes: 1 << 20,
    tls: config.server.tls,
  };
  const noApi = () =>
    Promise.resolve({
      status: 404,
      headers: { 'content-type': 'application/json' },
      body: '{"error":"not_found","message":"The operator API listens on its own port"}',
    });
  const transports: Transport[] = [];
  const main = await createTransport(transportOpts, {
    upgrade: (r) => gateway.upgrade(r),
    open: (s) => gateway.open(s),
    message: (s, b) => gateway.message(s, b),
    drain: (s) => gateway.drain(s),
    close: (s, c, r) => gateway.close(s, c, r),
    http: config.api.enabled && config.api.port === 0 ? (r) => api.handle(r) : noApi,
  });
  transports.push(main);
  const port = await main.listen();
  let apiPort = port;
  if (config.api.enabled && config.api.port !== 0) {
    const apiTransport = await createTransport(
      { ...transportOpts, port: config.api.port, wsPath: '/__no_websockets__' },
      {
        upgrade: () => Promise.resolve({ accept: false as const, status: 404, message: 'Not found' }),
        open: () => undefined,
        message: () => undefined,
        drain: () => undefined,
        close: () => undefined,
        http: (r) => api.handle(r),
      },
    );
    transports.push(apiTransport);
    apiPort = await apiTransport.listen();
  }
  listening = true;
  log.info(
    {
      port,
      apiPort,
      path: config.server.path,
      state: store.kind,
      analytics: config.clickhouse.url ? 'clickhouse' : 'spool',
      code: compiled ? 'compiled' : 'typescript',
    },
    'router listening',
  );

  let closing: Promise<void> | null = null;
  return {
    config,
    port,
    apiPort,
    commands,
    route,
    connections,
    registry,
    metrics,
    log,
    apiKeys,
    dispatcher,
    close() {
      return (closing ??= (async () => {
        listening = false;
        gateway.stop();
        // Stop accepting, let the batches in flight answer, then close the chargers' sockets
        // (their Disconnect events still run), then stop the workers.
        for (const t of transports) await t.stopAccepting();
        await dispatcher.quiesce(5000);
        for (const c of [...connections.values()]) c.socket.close(1001, 'Router shutting down');
        await dispatcher.close();
        // Inline batches are done (dispatcher.close waited for them): close hooks, then the rows.
        await inlineRuntime?.close();
        await inlineSink?.close().catch((err: Error) => log.error({ err }, 'analytics flush at shutdown failed'));
        for (const t of transports) await t.close();
        await bus?.close();
        rpc.close();
        control.close();
        await journal?.close();
        await store.close();
      })());
    },
  };
}

export { buildConfig, mergeConfig } from './options.js';
export type { RouterConfig } from './options.js';
