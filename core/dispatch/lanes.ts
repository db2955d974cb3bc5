/**
 * Lanes: each charger's place in the dispatch order, so that its items run one batch at a time
 * and in the order they arrived, across batches and across threads.
 *
 * Owns: the lane table (charge point id → LaneState), what each lane state means, the items
 * waiting behind a lane's batch in flight (backlog) and the callers waiting for it (waiters),
 * and sweeping lanes that stayed idle. Must not: build, send or settle batches. The lane
 * transitions are made by batcher.ts as batches are built, sent and come back; the bound on a
 * charger's queued items is applied by the Dispatcher before an item gets here.
 *
 *   Idle ──item──► InBatch (items in the batch being built) ──flush──► InFlight
 *   InFlight ──item──► backlog   InFlight ──batch done──► Idle, or InBatch with the backlog
 *
 * A worker runs a charger's items of one batch in order (core/worker/runtime.ts); a lane never
 * has items in two batches at once, so that is enough for strict order across the router.
 */
import type { Connection } from '../registry/connection-registry.js';
import type { ItemKind } from '../thread-contract/envelope.js';

/** Lane states (file header). */
export const enum Lane {
  Idle = 0,
  InBatch = 1,
  InFlight = 2,
}

/**
 * A charger's ordered lane. Keyed by charge point id, not by connection: when a charger
 * reconnects, the old connection's in-flight work, its Disconnect and the new connection's
 * Connect and frames stay in one order.
 */
export interface LaneState {
  /** Idle: no item in the batch being built or in flight, and so none in the backlog or waiters (the batcher's release() empties both). */
  state: Lane;
  /** Items of this lane in the batch being built (bounded by backlogPerCharger with the backlog). */
  inBatch: number;
  backlog: BacklogItem[];
  /** Resolved when the lane's in-flight batch has come back and its replies are sent. */
  waiters: Array<() => void>;
  /** Given an item since the last sweep of idle lanes (see LANE_SWEEP_MS). */
  used: boolean;
}

/** An item of a lane, as it waits in the backlog and as it joins a batch. */
export interface BacklogItem {
  conn: Connection;
  kind: ItemKind;
  bytes: Uint8Array | undefined;
  receivedAt: number;
  peekId: string | null;
  /** Action of a CALL/SEND frame (from the peek), else null. */
  action: string | null;
  extra: unknown;
}

/**
 * How long an idle lane stays in the map before it is swept (between one and two periods).
 * Why not delete a lane once idle: a charger sending every 100 ms would add and delete its
 * lane for every message, and the map's rehashed tables, each alive a few hundred
 * milliseconds, are promoted garbage on the socket thread, whose old generation's growth sets
 * the rate of mark-compacts (bench/RESULTS.md, "Where the 10,000 msg/s tail comes from"). A
 * lane is a few dozen bytes; those of chargers quiet for a period go.
 */
const LANE_SWEEP_MS = 1000;

export class Lanes {
  private readonly table = new Map<string, LaneState>();
  private readonly sweep: NodeJS.Timeout;
  /** Items waiting in the backlogs of all lanes. */
  backlogFrames = 0;

  constructor() {
    this.sweep = setInterval(() => this.sweepIdle(), LANE_SWEEP_MS);
    this.sweep.unref();
  }

  get(cpId: string): LaneState | undefined {
    return this.table.get(cpId);
  }

  /** The charger's lane, created Idle if it has none. */
  open(cpId: string): LaneState {
    let l = this.table.get(cpId);
    if (!l) this.table.set(cpId, (l = { state: Lane.Idle, inBatch: 0, backlog: [], waiters: [], used: true }));
    return l;
  }

  /** True when the charger has nothing queued or in flight (socket-thread answers are safe). */
  isIdle(cpId: string): boolean {
    const l = this.table.get(cpId);
    return l === undefined || l.state === Lane.Idle;
  }

  /**
   * Resolves once the charger's current batch (if any) has come back and its replies are
   * sent. A CSMS CALL made from an `after` hook waits for this, so it never reaches the
   * charger before the reply to the message that caused it.
   */
  after(cpId: string): Promise<void> {
    const l = this.table.get(cpId);
    if (!l || l.state !== Lane.InFlight) return Promise.resolve();
    return new Promise((resolve) => l.waiters.push(resolve));
  }

  /** Lanes with work queued, in a batch or in flight (idle ones wait for the sweep). */
  busy(): number {
    let n = 0;
    for (const l of this.table.values()) if (l.state !== Lane.Idle) n++;
    return n;
  }

  /** Stops the sweep (shutdown). */
  close(): void {
    clearInterval(this.sweep);
  }

  /** Deletes the lanes that stayed idle since the last sweep (LANE_SWEEP_MS). */
  private sweepIdle(): void {
    for (const [k, l] of this.table) {
      if (l.used) l.used = false;
      else if (l.state === Lane.Idle) this.table.delete(k);
    }
  }
}
