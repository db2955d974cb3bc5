/**
 * Schema catalog: the official OCPP JSON schemas, as shipped by the `ocpp-rpc` package
 * (1.6 incl. the security extension, 2.0.1 and 2.1), indexed by version and action.
 *
 * Owns: loading the JSON files once per thread and naming each schema by (version, action,
 * request|response). Must not: compile or validate (validate.ts does that).
 *
 * ocpp-rpc names schemas `urn:<Action>.req` / `urn:<Action>.conf` for 1.6 and 2.0.1 and
 * `urn:<Action>Request` / `urn:<Action>Response` for 2.1; we normalise both.
 */
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

function classify(id: string): { action: string; kind: 'request' | 'response' } | undefined {
  const m = /^urn:([A-Za-z0-9]+?)(\.req|\.conf|Request|Response)$/.exec(id);
  if (!m) return undefined;
  return { action: m[1]!, kind: m[2] === '.req' || m[2] === 'Request' ? 'request' : 'response' };
}

export function loadSchemas(version: OcppVersion): VersionSchemas {
  let entry = cache.get(version);
  if (entry) return entry;
  const all = require(FILES[version]) as Record<string, unknown>[];
  const request = new Map<string, SchemaEntry>();
  const response = new Map<string, SchemaEntry>();
  for (const schema of all) {
    const id = schema.$id as string;
    const c = classify(id);
    if (!c) continue;
    (c.kind === 'request' ? request : response).set(c.action, { id, schema });
  }
  const actions = [...request.keys()].filter((a) => response.has(a)).sort();
  entry = { all, request, response, actions };
  cache.set(version, entry);
  return entry;
}

export function isKnownAction(version: OcppVersion, action: string): boolean {
  return loadSchemas(version).request.has(action);
}
