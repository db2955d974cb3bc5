/**
 * ocpp-rpc (v2.x) with an operator endpoint: "what a Node user would pick today" for
 * CSMS-initiated commands fanned out to chargers (bench/fanout.ts). The charger side is set up
 * as in bench/reference/ocpp-rpc.ts (RPCServer, strictMode, the same per-client handlers); the
 * operator side is what its README suggests: keep the RPCClient of each identity and
 * `await client.call(method, params)`.
 *
 *   node --import tsx bench/reference/ocpp-rpc-operator.ts '{"apiKeySha256":"<64 hex>"}'
 *
 * Operator: the router's route and contract (core/api/http-api.ts), over node:http:
 *   POST /api/v1/chargers/<id>/calls/<Action>[?timeoutMs=N]   Authorization: Bearer <key>
 *   body: the CALL's payload (JSON.parse'd; strict mode validates it against the request schema)
 *   200 {"chargerId","action","result","durationMs"}   (the CALLRESULT, validated by strict mode)
 *   401 unauthorized, 400 invalid_json, 404 not_connected, 504 timeout, 502 call_error (a
 *   CALLERROR from the charger or a strict-mode validation failure, its code in `code`).
 *
 * Settings: strictMode true; `callConcurrency` 1 (its default: one outbound CALL in flight
 * per charger, later ones queued, as OCPP-J and the router do); `callTimeoutMs` from the
 * request (default 30 s, the router's default). The http server is ours (RPCServer's
 * handleUpgrade on its 'upgrade' event, as its README shows) so the operator route can live
 * on the same port; keepAliveTimeout 60 s so the operator's connections stay open.
 *
 * Prints one JSON line on stdout once listening: {"ready":true,"port":N,"pid":P,"threads":0}.
 * Exits on SIGTERM / SIGINT / stdin closing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { RPCServer, createRPCError } from 'ocpp-rpc';
import { stopWithParent } from '../lib/proc.js';

// Its errors are spread into module.exports, which Node's ESM named-export detection misses.
const { TimeoutError } = createRequire(import.meta.url)('ocpp-rpc') as typeof import('ocpp-rpc');

const cfg = JSON.parse(process.argv[2] ?? '{}') as { apiKeySha256?: string };
if (!/^[0-9a-f]{64}$/.test(cfg.apiKeySha256 ?? '')) {
  process.stderr.write('ocpp-rpc-operator: apiKeySha256 (64 hex digits) is required\n');
  process.exit(1);
}
const keyHash = Buffer.from(cfg.apiKeySha256!, 'hex');

interface Client {
  identity: string;
  protocol?: string;
  call(method: string, params: unknown, options?: { callTimeoutMs?: number }): Promise<unknown>;
  handle(...args: unknown[]): void;
  on(ev: string, fn: (...a: never[]) => void): void;
  once(ev: string, fn: () => void): void;
}

const server = new RPCServer({ protocols: ['ocpp1.6', 'ocpp2.0.1'], strictMode: true });
const clients = new Map<string, Client>();
let validationFailures = 0;
server.on('client', (c: unknown) => {
  const client = c as Client;
  clients.set(client.identity, client);
  client.once('close', () => {
    if (clients.get(client.identity) === client) clients.delete(client.identity);
  });
  client.on(
    'strictValidationFailure',
    (ev: { method?: string; outbound?: boolean; isCall?: boolean; error?: Error }) => {
      if (++validationFailures <= 5)
        process.stderr.write(
          `ocpp-rpc-operator: strict validation failed (${ev.outbound ? 'outbound' : 'inbound'} ${ev.isCall ? 'call' : 'result'} ${ev.method}): ${ev.error?.message}\n`,
        );
    },
  );
  // The charger side, as bench/reference/ocpp-rpc.ts.
  client.handle('BootNotification', () => ({
    status: 'Accepted',
    currentTime: new Date().toISOString(),
    interval: 300,
  }));
  client.handle('Heartbeat', () => ({ currentTime: new Date().toISOString() }));
  client.handle('StatusNotification', () => ({}));
  client.handle('MeterValues', () => ({}));
  client.handle(({ method }: { method: string }) => {
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- an RPCError, typed `any` by ocpp-rpc
    throw createRPCError('NotImplemented', `${method} is not handled`);
  });
});
server.on('error', (err: Error) => process.stderr.write(`ocpp-rpc-operator: server error: ${err.message}\n`));

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res
    .writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) })
    .end(text);
}

const ROUTE = /^\/api\/v1\/chargers\/([^/]+)\/calls\/([A-Za-z0-9]+)$/;

async function operator(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://x');
  const m = ROUTE.exec(url.pathname);
  if (!m || req.method !== 'POST') return send(res, 404, { error: 'not_found' });
  const auth = req.headers.authorization ?? '';
  const key = auth.toLowerCase().startsWith('bearer ') ? auth.slice(7).trim() : String(req.headers['x-api-key'] ?? '');
  if (!key || !timingSafeEqual(createHash('sha256').update(key).digest(), keyHash))
    return send(res, 401, { error: 'unauthorized', message: 'A valid API key is required' });
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  let params: unknown = {};
  try {
    if (chunks.length) params = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    return send(res, 400, { error: 'invalid_json' });
  }
  let id: string;
  try {
    id = decodeURIComponent(m[1]);
  } catch {
    return send(res, 400, { error: 'invalid_parameter' });
  }
  const action = m[2];
  const client = clients.get(id);
  if (!client) return send(res, 404, { error: 'not_connected', message: `Charge point ${id} is not connected` });
  const t = url.searchParams.get('timeoutMs');
  const started = Date.now();
  try {
    const result = await client.call(action, params, { callTimeoutMs: t ? Number(t) : 30_000 });
    send(res, 200, { chargerId: id, action, result, durationMs: Date.now() - started });
  } catch (e) {
    const err = e as Error & { rpcErrorCode?: string };
    if (err instanceof TimeoutError) return send(res, 504, { error: 'timeout', message: err.message });
    send(res, 502, { error: 'call_error', code: err.rpcErrorCode ?? err.name, message: err.message });
  }
}

const http = createServer((req, res) => {
  operator(req, res).catch((err: Error) => {
    if (!res.headersSent) send(res, 500, { error: 'internal', message: err.message });
  });
});
http.keepAliveTimeout = 60_000;
http.on('upgrade', server.handleUpgrade);
http.listen(0, '127.0.0.1', () => {
  process.stdout.write(
    JSON.stringify({ ready: true, port: (http.address() as AddressInfo).port, pid: process.pid, threads: 0 }) + '\n',
  );
});
http.on('error', (err) => {
  process.stderr.write(`ocpp-rpc-operator: ${err.message}\n`);
  process.exit(1);
});

// Stops with SIGTERM/SIGINT or when the parent goes away.
stopWithParent(() => process.exit(0));
