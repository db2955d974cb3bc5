/**
 * Charger registry over a StateStore: the record of each charger (identity, credentials
 * hash, vendor, model, firmware, version, boots, last seen, holding node) and connector/EVSE
 * status.
 *
 * Owns: the core keys `ocr:{cpId}:core:charger`, `ocr:{cpId}:core:status` and the index
 * `ocr:idx:chargers`. Must not: decide policy (BootNotification acceptance is plugin work).
 */
import type { ChargerRecord, ChargerRegistry, ConnectorStatus } from '../plugin-api.js';
import { chargerIndexKey, chargerKey, connectorStatusKey } from './keys.js';
import type { StateStore } from './store.js';

function clean(fields: Partial<ChargerRecord>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null) out[k] = String(v);
  return out;
}

export class StoreChargerRegistry implements ChargerRegistry {
  constructor(readonly store: StateStore) {}

  async get(cpId: string): Promise<ChargerRecord | null> {
    const h = await this.store.hgetall(chargerKey(cpId));
    return Object.keys(h).length === 0 ? null : { ...h, id: cpId };
  }

  async update(cpId: string, fields: Partial<ChargerRecord>): Promise<void> {
    const f = clean(fields);
    if (Object.keys(f).length) await this.store.hset(chargerKey(cpId), f);
  }

  /** Creates the record when absent; returns false when it already existed. */
  async register(cpId: string, fields: Partial<ChargerRecord>): Promise<boolean> {
    const created = await this.store.casHash(chargerKey(cpId), 'registeredAt', null, {
      ...clean(fields),
      registeredAt: new Date().toISOString(),
    });
    await this.store.indexAdd(chargerIndexKey(), cpId);
    return created;
  }

  async remove(cpId: string): Promise<void> {
    await this.store.del(chargerKey(cpId), connectorStatusKey(cpId));
    await this.store.indexRemove(chargerIndexKey(), cpId);
  }

  async list(opts: { after?: string; limit?: number }): Promise<string[]> {
    return this.store.indexRange(chargerIndexKey(), opts);
  }

  count(): Promise<number> {
    return this.store.indexCount(chargerIndexKey());
  }

  setStatus(cpId: string, key: string, status: ConnectorStatus): Promise<void> {
    return this.store.hset(connectorStatusKey(cpId), { [key]: JSON.stringify(status) });
  }

  async statuses(cpId: string): Promise<Record<string, ConnectorStatus>> {
    const h = await this.store.hgetall(connectorStatusKey(cpId));
    const out: Record<string, ConnectorStatus> = {};
    for (const [k, v] of Object.entries(h)) {
      try {
        out[k] = JSON.parse(v) as ConnectorStatus;
      } catch {
        /* a foreign value: skip, never crash the API */
      }
    }
    return out;
  }

  /**
   * Claims the connection for `nodeId` (connection `connectionId`). Newer connections always
   * win; used so an API on any node can tell which node holds a charger.
   */
  async markConnected(cpId: string, nodeId: string, connectionId: number, version: string): Promise<void> {
    const key = chargerKey(cpId);
    const now = new Date().toISOString();
    // Issued together, not one after the other: one connection runs a client's commands in
    // order, so HDEL still follows HSET, and both leave in one write (one round trip, not two).
    await Promise.all([
      this.store.hset(key, {
        nodeId,
        connectionId: String(connectionId),
        session: `${nodeId}#${connectionId}`,
        connectedAt: now,
        ocppVersion: version,
        lastSeenAt: now,
      }),
      this.store.hdel(key, 'disconnectedAt'),
    ]);
  }

  /** Clears the holder only if it is still this connection (a newer one may have replaced it). */
  async markDisconnected(cpId: string, nodeId: string, connectionId: number): Promise<boolean> {
    const now = new Date().toISOString();
    // Connection ids are per node, so the session token names both.
    return this.store.casHash(
      chargerKey(cpId),
      'session',
      `${nodeId}#${connectionId}`,
      { disconnectedAt: now, lastSeenAt: now },
      ['nodeId', 'connectionId', 'connectedAt', 'session'],
    );
  }
}
