/**
 * Picks the transport for the runtime: uWebSockets.js on Node, Bun.serve on Bun. Each module
 * is imported only on its runtime (the uWS addon does not load on Bun; `Bun` does not exist on
 * Node). Must not: know anything else about either.
 */
import type { Transport, TransportHandlers, TransportOptions } from './transport.js';

export async function createTransport<U>(opts: TransportOptions, handlers: TransportHandlers<U>): Promise<Transport> {
  if ((globalThis as { Bun?: unknown }).Bun) {
    const { BunTransport } = await import('./bun-transport.js');
    return new BunTransport(opts, handlers);
  }
  const { UwsTransport } = await import('./uws-transport.js');
  return new UwsTransport(opts, handlers);
}
