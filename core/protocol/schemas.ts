/**
 * Schema catalog: the official OCPP JSON schemas, as shipped by the `ocpp-rpc` package
 * (1.6 incl. the security extension, 2.0.1 and 2.1), indexed by version and action.
 *
 * Owns: loading the JSON files (a version's schemas only once a validator of it is needed, its
 * action names alone otherwise) and naming each schema by (version, action, request|response).
 * Must not: compile or validate (validate.ts does that).
 *
 * ocpp-rpc names schemas `urn:<Action>.req` / `urn:<Action>.conf` for 1.6 and 2.0.1 and
 * `urn:<Action>Request` / `urn:<Action>Response` for 2.1; we normalise both.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { OcppVersion } from './dialect.js';

const require = createRequire(import.meta.url);

export interface SchemaEntry {
  id: string;
  schema: Record<string, unknown>;
}

export interface VersionSchemas {
  /** All schemas, for adding to one ajv instance. */
  all: Record<string, unknown>[];
  request: Map<string, SchemaEntry>;
  response: Map<string, SchemaEntry>;
  /** Every action of the version, sorted. */
  actions: readonly string[];
}

const FILES: Record<OcppVersion, string> = {
  '1.6': 'ocpp-rpc/lib/schemas/ocpp1_6.json',
  '2.0.1': 'ocpp-rpc/lib/schemas/ocpp2_0_1.json',
  '2.1': 'ocpp-rpc/lib/schemas/ocpp2_1.json',
};

const cache = new Map<OcppVersion, VersionSchemas>();

/** The action names of a version, without its schemas. */
export interface ActionCatalog {
  request: ReadonlySet<string>;
  response: ReadonlySet<string>;
  /** Every action of the version (request and response schema both present), sorted. */
  actions: readonly string[];
}

const catalogs = new Map<OcppVersion, ActionCatalog>();

function classify(id: string): { action: string; kind: 'request' | 'response' } | undefined {
  const m = /^urn:([A-Za-z0-9]+?)(\.req|\.conf|Request|Response)$/.exec(id);
  if (!m) return undefined;
  return { action: m[1], kind: m[2] === '.req' || m[2] === 'Request' ? 'request' : 'response' };
}

/**
 * Parsed with JSON.parse, not require(): require() would keep every version's parsed file in
 * its module cache for the thread's life. Loaded this way, the schemas of a version no
 * charger speaks (2.0.1 and 2.1 are 1.5 MB of heap in each thread) are never retained.
 */
function readVersion(version: OcppVersion): Record<string, unknown>[] {
  return JSON.parse(readFileSync(require.resolve(FILES[version]), 'utf8')) as Record<string, unknown>[];
}

/** Reads and indexes the schema file of a version (not cached: see loadSchemas). */
function indexVersion(version: OcppVersion): VersionSchemas {
  const all = readVersion(version);
  const request = new Map<string, SchemaEntry>();
  const response = new Map<string, SchemaEntry>();
  for (const schema of all) {
    const id = schema.$id as string;
    const c = classify(id);
    if (!c) continue;
    (c.kind === 'request' ? request : response).set(c.action, { id, schema });
  }
  const actions = [...request.keys()].filter((a) => response.has(a)).sort();
  return { all, request, response, actions };
}

/** The full schemas of a version, for compiling validators (validate.ts); kept once loaded. */
export function loadSchemas(version: OcppVersion): VersionSchemas {
  let entry = cache.get(version);
  if (!entry) cache.set(version, (entry = indexVersion(version)));
  return entry;
}

/**
 * The action names of a version: what the plugin loader, the pipeline and the metrics need.
 * Only the names are kept; the schemas are loaded when a validator of the version is first
 * needed (loadSchemas).
 */
export function actionCatalog(version: OcppVersion): ActionCatalog {
  let c = catalogs.get(version);
  if (c) return c;
  // Indexed here without being cached, unless a validator already loaded them.
  const s = cache.get(version) ?? indexVersion(version);
  c = { request: new Set(s.request.keys()), response: new Set(s.response.keys()), actions: s.actions };
  catalogs.set(version, c);
  return c;
}

export function isKnownAction(version: OcppVersion, action: string): boolean {
  return actionCatalog(version).request.has(action);
}
