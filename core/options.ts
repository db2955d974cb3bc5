/**
 * Router options: the schema, the defaults and the validation, in one place [piscina, ioredis].
 *
 * Owns: every configuration key, its default (JSDoc @default mirrors the schema), loading a
 * config file, environment overrides and start-up errors that name the key. Must not: act on
 * the configuration.
 *
 * Sources, later wins: schema defaults ◄ config file (JSON, or a module default-exporting an
 * object) ◄ environment `OCR_<PATH>` (e.g. OCR_SERVER_PORT, OCR_REDIS_URL,
 * OCR_CLICKHOUSE_URL, OCR_SECURITY_UNKNOWN_CHARGERS); an empty variable counts as unset. Validation uses ajv, the validator we
 * already ship for OCPP schemas, so no second validation library is needed.
 */
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Ajv } from 'ajv';
import { errors } from './errors.js';
import { importModule } from './paths.js';
import type { PluginSpec } from './worker/plugin-loader.js';

export interface RouterConfig {
  /** Name of this router node; appears in the registry and every log line. @default `<hostname>-<pid>` */
  nodeId: string;
  server: {
    /** @default '0.0.0.0' */ host: string;
    /** @default 9000 */ port: number;
    /** URL prefix chargers connect under: ws://host:port/<path>/<chargePointId>. @default '/ocpp' */
    path: string;
    /** TLS (security profiles 2/3). When set, the server listens with uWS SSLApp. */
    tls?: { keyFile: string; certFile: string; passphrase?: string; caFile?: string };
    /** Largest accepted frame, bytes. @default 65536 */ maxPayloadLength: number;
    /** Close a connection silent for this long (uWS sends pings before). @default 300 */ idleTimeoutSec: number;
    /** Per-socket send buffer limit, bytes. @default 1048576 */ maxBackpressure: number;
    /** Subprotocols in order of preference. @default ['ocpp2.1','ocpp2.0.1','ocpp1.6'] */ protocols: string[];
    /** Protocol assumed when a charger offers none (real chargers do this). @default 'ocpp1.6' */ defaultProtocol: string;
    /** A second connection with the same identity: replace the first or reject the second. @default 'replace' */
    duplicateConnection: 'replace' | 'reject';
    /** Pending CALLs per charger beyond the one in flight, before answering with an error. @default 64 */ backlogPerCharger: number;
    /**
     * WebSocket upgrades being decided at once (registry lookups, password checks) before
     * further ones get 503 with Retry-After at once: after an outage a whole fleet
     * reconnects, and unbounded handshakes would pile up state calls until they time out.
     * @default 1024
     */
    maxPendingUpgrades: number;
    /** How often connected chargers' lastSeenAt is written to the registry. @default 60 */ lastSeenFlushSec: number;
  };
  security: {
    /** What to do with a charger the registry does not know. @default 'register' */
    unknownChargers: 'register' | 'reject';
    /** Require HTTP Basic auth (security profile 1/2) from every charger. @default false */
    requireAuth: boolean;
  };
  api: {
    /** @default true */ enabled: boolean;
    /** Port of the operator API; 0 serves it on the charger port. @default 0 */ port: number;
    /** SHA-256 hex hashes of accepted API keys (create with `ocpp-router api-key`). @default [] */
    keys: { name: string; sha256: string }[];
    /** Serve /health and /ready without a key (for load balancers). @default true */ publicProbes: boolean;
  };
  boot: {
    /** Heartbeat interval given in BootNotification responses. @default 300 */ heartbeatIntervalSec: number;
  };
  lenient: {
    /** Lenient validation for every charger. @default false */ all: boolean;
    /** Charger ids validated leniently. @default [] */ chargers: string[];
    /** Charger models validated leniently (from BootNotification). @default [] */ models: {
      vendor: string;
      model: string;
    }[];
  };
  pool: {
    /** Worker threads. 0 = one per core (with `processes` N: cores ÷ N per process, at least 1). @default 0 */ threads: number;
    /** Items per batch before it is sent at once. @default 512 */ batchSize: number;
    /** Batches in flight per worker. @default 4 */ concurrentTasksPerWorker: number;
    /**
     * Frames waiting for a worker (beyond the batches in flight) before new CALLs get a fast
     * InternalError and new connections a 503. @default 50000
     */
    maxPendingFrames: number;
    /** Deadline of one hook or handler call. @default 10000 */ hookTimeoutMs: number;
    /**
     * Worker threads stop after this long without a batch for them (their plugins' close hooks
     * run and their analytics are flushed first) and start again when one comes: an idle worker
     * holds ≈ 27 MB, and with inline batches a quiet router needs none. 0 keeps them running.
     * @default 60000
     */
    idleTimeoutMs: number;
    /**
     * Batches the socket thread runs itself instead of handing them to a worker: no thread hop,
     * which at fleet rates is most of a message's CPU (bench/RESULTS.md). Only messages whose
     * plugins all declare `inline: true` (the built-in ones do), only small batches, and only
     * while the socket thread is not busy; everything else goes to the workers.
     */
    inline: {
      /** @default true */ enabled: boolean;
      /** Largest batch run inline; larger ones go to a worker. @default 64 */ maxBatch: number;
      /**
       * Socket thread event-loop utilization (0-1, over the last 50 ms) at or above which
       * batches go to workers: the socket thread's own work (sockets, TLS, upgrades) comes
       * first; 1: whatever the load. @default 0.5
       */
      maxLoad: number;
      /**
       * Batches of fewer items than this run inline whatever the load (0: never): handing a
       * handful of frames to a worker costs both threads more than running them here (at
       * 10,000 msg/s, batches of 9-16 frames: twice the CPU per message; bench/RESULTS.md,
       * "Open loop"). Under real load batches grow past it by themselves. @default 32
       */
      minOffload: number;
    };
  };
  calls: {
    /** Timeout of a CSMS-initiated CALL waiting for the charger. @default 30000 */ timeoutMs: number;
  };
  redis: {
    /** When set, state is shared in Redis; otherwise in-process. */ url?: string;
    /** @default '' */ keyPrefix: string;
    /** @default 2000 */ commandTimeoutMs: number;
  };
  clickhouse: {
    /** When set, analytics go to ClickHouse; otherwise to the local spool only. */ url?: string;
    /** @default 'ocpp' */ database: string;
    /** @default 'default' */ username: string;
    /** @default '' */ password: string;
  };
  analytics: {
    /** @default './data/spool' */ spoolDir: string;
    /** A thread flushes a table once it buffers this many rows (else every flushIntervalMs); rows per insert when the spool is replayed. @default 5000 */ batchRows: number;
    /** @default 1000 */ flushIntervalMs: number;
    /**
     * Analytics rows held in memory per router thread. Near this bound (within a tenth of it)
     * the router refuses CALLs whose handling writes analytics rows, with InternalError, so
     * that chargers retry them later instead of a stored row being lost. @default 100000
     */
    maxBufferRows: number;
    /**
     * Bound on the spool directory's size in bytes (all tables, dead letters included). When
     * the spool is full and ClickHouse cannot take rows, they wait in memory (maxBufferRows).
     * @default 1073741824 (1 GiB)
     */
    spoolMaxBytes: number;
  };
  /** Directory for local data (API key store, spool). @default './data' */
  dataDir: string;
  /**
   * Router processes on this host, sharing the port (SO_REUSEPORT), each with its own worker
   * pool; needs `redis.url` (shared state, commands routed between processes). One process may
   * hold at most as many chargers as its file-descriptor limit allows. @default 1
   */
  processes: number;
  log: { /** @default 'info' */ level: string };
  /** Plugins, in order. @default [{ name: 'core' }] */
  plugins: PluginSpec[];
}

const str = { type: 'string' };
const int = (min: number, max: number, def: number) => ({ type: 'integer', minimum: min, maximum: max, default: def });

export const configSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    $comment: { type: 'string' },
    nodeId: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._-]+$' },
    server: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        host: { ...str, default: '0.0.0.0' },
        port: int(0, 65535, 9000),
        path: { type: 'string', pattern: '^(/[A-Za-z0-9._~-]+)*$', default: '/ocpp' },
        tls: {
          type: 'object',
          additionalProperties: false,
          required: ['keyFile', 'certFile'],
          properties: { keyFile: str, certFile: str, passphrase: str, caFile: str },
        },
        maxPayloadLength: int(1024, 16 * 1024 * 1024, 65536),
        idleTimeoutSec: int(8, 960, 300),
        maxBackpressure: int(1024, 1 << 30, 1 << 20),
        protocols: {
          type: 'array',
          items: { enum: ['ocpp1.6', 'ocpp2.0.1', 'ocpp2.1'] },
          minItems: 1,
          uniqueItems: true,
          default: ['ocpp2.1', 'ocpp2.0.1', 'ocpp1.6'],
        },
        defaultProtocol: { enum: ['ocpp1.6', 'ocpp2.0.1', 'ocpp2.1'], default: 'ocpp1.6' },
        duplicateConnection: { enum: ['replace', 'reject'], default: 'replace' },
        backlogPerCharger: int(0, 10000, 64),
        maxPendingUpgrades: int(1, 1 << 20, 1024),
        lastSeenFlushSec: int(1, 86400, 60),
      },
    },
    security: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        unknownChargers: { enum: ['register', 'reject'], default: 'register' },
        requireAuth: { type: 'boolean', default: false },
      },
    },
    api: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: true },
        port: int(0, 65535, 0),
        keys: {
          type: 'array',
          default: [],
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'sha256'],
            properties: { name: str, sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
          },
        },
        publicProbes: { type: 'boolean', default: true },
      },
    },
    boot: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { heartbeatIntervalSec: int(1, 86400, 300) },
    },
    lenient: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        all: { type: 'boolean', default: false },
        chargers: { type: 'array', items: str, default: [] },
        models: {
          type: 'array',
          default: [],
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['vendor', 'model'],
            properties: { vendor: str, model: str },
          },
        },
      },
    },
    pool: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        threads: int(0, 256, 0),
        batchSize: int(1, 65536, 512),
        concurrentTasksPerWorker: int(1, 64, 4),
        maxPendingFrames: int(1, 1 << 24, 50000),
        hookTimeoutMs: int(1, 600000, 10000),
        idleTimeoutMs: int(0, 86400000, 60000),
        inline: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            enabled: { type: 'boolean', default: true },
            maxBatch: int(1, 65536, 64),
            maxLoad: { type: 'number', minimum: 0, maximum: 1, default: 0.5 },
            minOffload: int(0, 65536, 32),
          },
        },
      },
    },
    calls: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { timeoutMs: int(100, 600000, 30000) },
    },
    redis: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        url: { type: 'string', pattern: '^rediss?://' },
        keyPrefix: { ...str, default: '' },
        commandTimeoutMs: int(10, 600000, 2000),
      },
    },
    clickhouse: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        url: { type: 'string', pattern: '^https?://' },
        database: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$', default: 'ocpp' },
        username: { ...str, default: 'default' },
        password: { ...str, default: '' },
      },
    },
    analytics: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        spoolDir: { ...str, default: './data/spool' },
        batchRows: int(1, 1000000, 5000),
        flushIntervalMs: int(10, 600000, 1000),
        maxBufferRows: int(1, 100000000, 100000),
        spoolMaxBytes: int(65536, Number.MAX_SAFE_INTEGER, 1024 ** 3),
      },
    },
    dataDir: { ...str, default: './data' },
    processes: int(1, 256, 1),
    log: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { level: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' } },
    },
    plugins: {
      type: 'array',
      default: [{ name: 'core' }],
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: { name: { type: 'string', minLength: 1 }, options: { type: 'object' } },
      },
    },
  },
} as const;

function toEnvName(path: string[]): string {
  return 'OCR_' + path.map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_');
}

type SchemaNode = {
  type?: string;
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
  enum?: readonly unknown[];
};

/** Collects `OCR_*` overrides for every scalar (and JSON for arrays) key of the schema. */
function envOverrides(env: NodeJS.ProcessEnv): { values: Record<string, unknown>; sources: Map<string, string> } {
  const values: Record<string, unknown> = {};
  const sources = new Map<string, string>();
  const walk = (node: SchemaNode, path: string[]) => {
    if (node.properties) {
      for (const [k, child] of Object.entries(node.properties)) walk(child, [...path, k]);
      return;
    }
    const name = toEnvName(path);
    const raw = env[name];
    // `OCR_REDIS_URL=` (empty) means unset, as operators write it in env files.
    if (raw === undefined || raw === '') return;
    let value: unknown = raw;
    if (node.type === 'array') {
      try {
        value = JSON.parse(raw);
      } catch {
        value = raw
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
      }
    }
    let target = values;
    for (const p of path.slice(0, -1)) target = (target[p] ??= {}) as Record<string, unknown>;
    target[path[path.length - 1]] = value;
    sources.set('/' + path.join('/'), name);
  };
  walk(configSchema, []);
  return { values, sources };
}

/** Deep merge of plain objects (arrays and scalars in `b` replace those in `a`). */
export function mergeConfig(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && cur && typeof cur === 'object' && !Array.isArray(cur)
        ? mergeConfig(cur as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

export async function readConfigFile(file: string): Promise<Record<string, unknown>> {
  const path = resolve(file);
  try {
    if (extname(path) === '.json') return JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    const mod = (await importModule(pathToFileURL(path).href)) as { default?: Record<string, unknown> };
    return mod.default ?? {};
  } catch (err) {
    throw new errors.OCR_ERR_CONFIG_FILE(path, (err as Error).message, { cause: err });
  }
}

/**
 * Builds a validated configuration: defaults ◄ `input` ◄ environment. Throws
 * OCR_ERR_CONFIG_INVALID naming every bad key (and the env variable it came from).
 */
export function buildConfig(input: Record<string, unknown> = {}, env: NodeJS.ProcessEnv = process.env): RouterConfig {
  const { values, sources } = envOverrides(env);
  const merged = mergeConfig(structuredClone(input), values);
  const ajv = new Ajv({ useDefaults: true, coerceTypes: true, allErrors: true, strict: false });
  const validate = ajv.compile(configSchema);
  if (!validate(merged)) {
    const msgs = (validate.errors ?? []).map((e) => {
      let key = e.instancePath;
      if (e.keyword === 'additionalProperties')
        key += '/' + (e.params as { additionalProperty: string }).additionalProperty;
      const dotted = key.replace(/^\//, '').replace(/\//g, '.') || '(root)';
      const src = sources.get(e.instancePath);
      const msg =
        e.keyword === 'additionalProperties'
          ? 'is not a known key'
          : e.keyword === 'enum'
            ? `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`
            : e.message;
      return `${dotted} ${msg}${src ? ` (from ${src})` : ''}`;
    });
    throw new errors.OCR_ERR_CONFIG_INVALID(msgs.join('; '));
  }
  const cfg = merged as unknown as RouterConfig;
  if (cfg.processes > 1 && !cfg.redis.url) {
    throw new errors.OCR_ERR_CONFIG_INVALID(
      'processes > 1 needs redis.url: the processes share state and route commands through Redis',
    );
  }
  cfg.nodeId ??= `${hostname().replace(/[^A-Za-z0-9._-]/g, '-')}-${process.pid}`;
  return cfg;
}
