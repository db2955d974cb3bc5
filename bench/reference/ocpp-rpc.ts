/**
 * ocpp-rpc (v2.x) as a benchmark target: "what a Node user would pick today" for an OCPP-J
 * server (issue #3, STYLE.md §8). Written the way its README's server example is, with
 * strict mode on so it validates like the router does.
 *
 *   node --import tsx bench/reference/ocpp-rpc.ts
 *
 * An RPCServer with `strictMode: true` over protocols ['ocpp1.6', 'ocpp2.0.1']: every inbound
 * CALL is validated against its bundled official JSON schemas (ajv) before the handler runs,
 * and every CALLRESULT against the `.conf` schema before it is sent (a reply that fails is
 * replaced by CALLERROR InternalError; we log those on stderr). Handlers, per client as in
 * its README, return the same replies as bench/reference/ws-json.ts:
 *
 *   Heartbeat           {currentTime}                     (a fresh Date per call)
 *   BootNotification    {status:'Accepted', currentTime, interval:300}
 *   StatusNotification  {}
 *   MeterValues         {}
 *   Authorize           1.6: {idTagInfo:{status:'Accepted'}}   2.0.1: {idTokenInfo:{status:'Accepted'}}
 *   anything else       CALLERROR: strict mode answers ProtocolError (no schema for it) before
 *                       our wildcard handler's NotImplemented; either way the generator counts it
 *
 * Settings, and why (everything else is ocpp-rpc's default):
 *  - Auth: no `server.auth()` callback. ocpp-rpc then accepts every client that offers one of
 *    our subprotocols (it picks the first of `protocols` the client offers), with no password
 *    check: the same "accept all" the other servers do. The identity is the last path segment
 *    (/ocpp/<id>).
 *  - Inbound concurrency: ocpp-rpc 2.2.1 has no inbound queue. Each CALL frame goes straight
 *    from the `ws` 'message' event to `_onCall` (validate, `await handler`, validate, send);
 *    calls of one client overlap, so k in flight per charger are handled as k concurrent
 *    calls. Nothing limits them and there is nothing to set (README: "There is no limit on
 *    inbound calls"; lib/client.js `_onMessage` → `_onCall`, no Queue).
 *  - `callConcurrency` (default 1) limits *outbound* calls (server → charger) only, through
 *    its per-client Queue; the benchmark makes none, so it is left at the default.
 *  - `pingIntervalMs` 30 s (default): a server ping per client every 30 s, outside every
 *    run's window (a run keeps its connections ≈ 8–10 s); the generator answers pings anyway.
 *  - `maxBadMessages` Infinity, `respondWithDetailedErrors` false, `wssOptions` {} (the `ws`
 *    defaults: no permessage-deflate, 100 MiB maxPayload): defaults.
 *  - Same `ws` package (8.x, with native bufferutil / utf-8-validate) as ws-json.ts.
 *
 * Prints one JSON line on stdout once listening:
 * {"ready":true,"port":N,"pid":P,"threads":0,"version":"2.2.1"}.
 * Exits on SIGTERM / SIGINT / stdin closing.
 */
/* eslint-disable @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-member-access, @typescript-eslint/only-throw-error --
   ocpp-rpc's declarations type its clients and errors as `any`. */
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { RPCServer, createRPCError } from 'ocpp-rpc';
import { stopWithParent } from '../lib/proc.js';

const version = (createRequire(import.meta.url)('ocpp-rpc/package.json') as { version: string }).version;

const server = new RPCServer({
  protocols: ['ocpp1.6', 'ocpp2.0.1'],
  strictMode: true,
});

let validationFailures = 0;
server.on('client', (client) => {
  client.on(
    'strictValidationFailure',
    (ev: { method?: string; outbound?: boolean; isCall?: boolean; error?: Error }) => {
      if (++validationFailures <= 5)
        process.stderr.write(
          `ocpp-rpc: strict validation failed (${ev.outbound ? 'outbound' : 'inbound'} ${ev.isCall ? 'call' : 'result'} ${ev.method}): ${ev.error?.message}\n`,
        );
    },
  );
  client.handle('BootNotification', () => ({
    status: 'Accepted',
    currentTime: new Date().toISOString(),
    interval: 300,
  }));
  client.handle('Heartbeat', () => ({ currentTime: new Date().toISOString() }));
  client.handle('StatusNotification', () => ({}));
  client.handle('MeterValues', () => ({}));
  client.handle('Authorize', () =>
    client.protocol === 'ocpp1.6' ? { idTagInfo: { status: 'Accepted' } } : { idTokenInfo: { status: 'Accepted' } },
  );
  client.handle(({ method }: { method: string }) => {
    throw createRPCError('NotImplemented', `${method} is not handled`);
  });
});
server.on('error', (err: Error) => process.stderr.write(`ocpp-rpc: server error: ${err.message}\n`));

const http = await server.listen(0, '127.0.0.1');
process.stdout.write(
  JSON.stringify({ ready: true, port: (http.address() as AddressInfo).port, pid: process.pid, threads: 0, version }) +
    '\n',
);

// Stops with SIGTERM/SIGINT or when the parent goes away.
stopWithParent(() => process.exit(0));
