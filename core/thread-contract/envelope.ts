/**
 * Typed items exchanged between the socket thread and the workers [piscina types.ts].
 *
 * core/thread-contract/ holds what crosses between the socket thread and the worker threads:
 * this file (what a batch item means), codec.ts (its bytes) and thread-rpc.ts (calls from a
 * worker back to the socket thread). It is a folder of its own because both sides import it:
 * dispatch/ and index.ts on the socket thread, worker/ and state/ in the workers; so neither
 * side reaches into the other's folder to agree on the contract.
 *
 * Owns: the meaning of each batch item's metadata tuple. Must not: encode bytes (codec.ts).
 * Tuples rather than objects: msgpackr packs them smaller and faster, and the batch is hot.
 * Result i of a batch answers item i; the socket thread keeps its own per-item context
 * (which socket, which pending call) beside the batch, so none of that crosses threads.
 */
import type { OcppVersion } from '../protocol/dialect.js';
import type { InlineSupport } from '../worker/plugin-loader.js';

export const enum ItemKind {
  Frame = 0,
  Connect = 1,
  Disconnect = 2,
  Reply = 3,
}

/** [kind, connectionId, cpId, version, flags (ItemFlag bits), receivedAt, extra] */
export type ItemMeta = [ItemKind, number, string, OcppVersion, number, number, unknown];

export const enum ItemFlag {
  /** Validate leniently (charger or model configured as quirky). */
  Lenient = 1,
  /** The charger has writes in the state journal: journal its writes too (core/state/journal.ts). */
  Journal = 2,
}

export interface DisconnectExtra {
  code: number;
  reason: string;
}
export interface ReplyExtra {
  action: string;
  request: Record<string, unknown>;
}

export const enum Outcome {
  Ok = 0,
  Error = 1,
  Ignored = 2,
}

/** Result of a Frame item: [outcome, action, errorCode, deviations, identity, unmatched, micros] */
export type FrameResultMeta = [
  Outcome,
  string,
  string | null,
  string[] | null,
  { vendor: string; model: string } | null,
  { id: string; type: number } | null,
  number,
];
/** Result of Connect / Disconnect / Reply items (Reply: observer hooks only; the caller was settled on the socket thread). */
export type EventResultMeta = [Outcome];

/** Non-batch tasks. */
export interface PingTask {
  op: 'ping';
}
export interface PingResult {
  threadId: number;
  plugins: { name: string; version: string; inline: boolean }[];
  /**
   * Versions in which Heartbeat has no participant but the core plugin's handler (no other
   * handler, no hook): the socket thread may answer it itself (gateway.ts).
   */
  socketThreadHeartbeat: OcppVersion[];
  /**
   * Per version, the actions some plugin observes with an `onCallResult` hook. A charger's
   * valid CALLRESULT to any other CSMS CALL needs no worker at all (gateway.ts).
   */
  callResultHooks: Partial<Record<OcppVersion, string[]>>;
  /** What the socket thread may run itself, by the plugins' `inline` declarations (dispatch/inline-policy.ts). */
  inline: InlineSupport;
}
