/**
 * Connection registry (socket thread): chargePointId → the live connection on this node.
 *
 * Owns: per-connection state that must never leave the socket thread: the socket, the
 * outbound CALL slot and its queue, counters of bad frames. Must not: do I/O other than
 * socket sends. Inbound ordering lanes are per charger and live in dispatch/lanes.ts.
 */
import type { OcppVersion } from '../protocol/dialect.js';
import type { Socket } from '../transport/transport.js';

export interface PendingCall {
  id: string;
  action: string;
  payload: Record<string, unknown>;
  timeoutMs: number;
  timer: NodeJS.Timeout | null;
  resolve(result: Record<string, unknown>): void;
  reject(err: Error): void;
}

/**
 * One charger's WebSocket on this node. The upgrade creates it (the decision's data), the
 * transport keeps it as its socket's data, and open() attaches the socket: per idle charger
 * the socket thread then holds this object, the transport's socket handle and uWS's own
 * object, and nothing else of ours: no separate upgrade data, no queue until one is needed,
 * vendor and model names shared (bench/micro/conn-memory.ts measures the heap per charger).
 */
export class Connection {
  /** Set when the WebSocket opens. */
  socket!: Socket<Connection>;
  outInFlight: PendingCall | null = null;
  /** CALLs waiting for `outInFlight`; null until the first is queued (most chargers never have one). */
  outQueue: PendingCall[] | null = null;
  badFrames = 0;
  badFramesWindowStart = 0;
  closed = false;
  lastSeen: number;
  /** lastSeen as last written to the registry (periodic flush, gateway.ts). */
  lastSeenPersisted = 0;
  vendor = '';
  model = '';

  constructor(
    readonly id: number,
    readonly cpId: string,
    readonly version: OcppVersion,
    public lenient: boolean,
    readonly remoteAddress: string,
    /** Set when the subprotocol negotiation failed: close right after open (OCPP-J §3.1). */
    readonly rejectReason: string | undefined,
  ) {
    this.lastSeen = Date.now();
  }
}

export class ConnectionRegistry {
  private readonly byId = new Map<string, Connection>();
  private nextId = 1;

  newId(): number {
    return this.nextId++;
  }

  get(cpId: string): Connection | undefined {
    return this.byId.get(cpId);
  }

  set(conn: Connection): Connection | undefined {
    const prev = this.byId.get(conn.cpId);
    this.byId.set(conn.cpId, conn);
    return prev;
  }

  /** Removes `conn` only if it is still the registered connection of its charger. */
  delete(conn: Connection): boolean {
    if (this.byId.get(conn.cpId) !== conn) return false;
    this.byId.delete(conn.cpId);
    return true;
  }

  get size(): number {
    return this.byId.size;
  }

  values(): IterableIterator<Connection> {
    return this.byId.values();
  }

  countByVersion(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const c of this.byId.values()) out[c.version] = (out[c.version] ?? 0) + 1;
    return out;
  }
}
