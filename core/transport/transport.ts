/**
 * Transport: the seam between the router and a WebSocket/HTTP server library.
 *
 * Owns: the interface. uws-transport.ts implements it with uWebSockets.js (Node); a
 * Bun.serve adapter will implement the same interface (uWS.js is a Node addon and does not
 * load on Bun). Must not: leak library types past this folder.
 */

export interface UpgradeRequest {
  url: string;
  /** Lower-case header names; copied before any await. */
  headers: Record<string, string>;
  remoteAddress: string;
}

export type UpgradeDecision<U> =
  | { accept: true; protocol: string | null; data: U }
  | { accept: false; status: number; message: string; headers?: Record<string, string> };

export const enum SendStatus {
  Sent = 1,
  Backpressure = 0,
  Dropped = 2,
}

export interface Socket<U> {
  readonly data: U;
  send(bytes: Uint8Array | string): SendStatus;
  /**
   * Runs `fn` with writes to this socket coalesced into one syscall (uWS cork). Sends made
   * outside a library callback (e.g. when a worker batch comes back) are otherwise written
   * one by one.
   */
  cork(fn: () => void): void;
  close(code: number, reason: string): void;
  bufferedAmount(): number;
}

export interface HttpRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Record<string, string>;
  body: Uint8Array;
  remoteAddress: string;
}

export interface HttpResponse {
  status: number;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
}

export interface TransportHandlers<U> {
  upgrade(req: UpgradeRequest): Promise<UpgradeDecision<U>>;
  open(socket: Socket<U>): void;
  message(socket: Socket<U>, bytes: Uint8Array, isBinary: boolean): void;
  drain(socket: Socket<U>): void;
  close(socket: Socket<U>, code: number, reason: string): void;
  http(req: HttpRequest): Promise<HttpResponse>;
}

export interface TransportOptions {
  host: string;
  port: number;
  /** Only upgrades under this path are WebSockets; the rest is HTTP. */
  wsPath: string;
  maxPayloadLength: number;
  idleTimeoutSec: number;
  maxBackpressure: number;
  /** Largest accepted HTTP body. */
  maxBodyBytes: number;
  tls?: { keyFile: string; certFile: string; passphrase?: string; caFile?: string };
}

export interface Transport {
  listen(): Promise<number>;
  /** Stops accepting connections; open sockets stay up (graceful shutdown). */
  stopAccepting(): Promise<void>;
  /** Closes everything, open sockets included. */
  close(): Promise<void>;
}
