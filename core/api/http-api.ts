/**
 * Operator HTTP API (JSON): health/readiness, metrics, charger list and detail, charger
 * provisioning, and any CSMS-initiated action sent to a charger with its answer returned.
 *
 * Owns: routing, authentication (API key, `Authorization: Bearer <key>` or `X-API-Key`),
 * request validation with errors naming the field, and the mapping of internal errors to
 * HTTP statuses. The contract is docs in openapi.ts, served at /openapi.json. Must not: talk
 * to chargers except through the CommandApi. A handful of fixed routes does not justify a
 * router library; each route is one `case`.
 */
import { hashPassword } from '../security/credentials.js';
import { OPENAPI } from './openapi.js';
import type { ApiKeyStore } from './api-keys.js';
import type { CommandError } from '../command/command-api.js';
import type { CommandRoute } from '../cluster/route.js';
import type { ConnectionRegistry } from '../registry/connection-registry.js';
import type { StoreChargerRegistry } from '../state/registry.js';
import type { Metrics } from '../metrics.js';
import type { PinoLogger } from '../log.js';
import type { RouterConfig } from '../options.js';
import type { HttpRequest, HttpResponse } from '../transport/transport.js';

const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8' };

function json(status: number, body: unknown): HttpResponse {
  return { status, headers: JSON_HEADERS, body: JSON.stringify(body) };
}

function problem(status: number, error: string, message: string, extra: Record<string, unknown> = {}): HttpResponse {
  return json(status, { error, message, ...extra });
}

const CHARGER_FIELDS = new Set([
  'password',
  'vendor',
  'model',
  'serialNumber',
  'firmwareVersion',
  'label',
  'bootPolicy',
]);

export interface Readiness {
  ready: boolean;
  checks: Record<string, { ok: boolean; detail?: string }>;
}

export class HttpApi {
  constructor(
    private readonly cfg: RouterConfig,
    private readonly keys: ApiKeyStore,
    private readonly registry: StoreChargerRegistry,
    private readonly connections: ConnectionRegistry,
    private readonly commands: CommandRoute,
    private readonly metrics: Metrics,
    private readonly readiness: () => Promise<Readiness>,
    private readonly log: PinoLogger,
  ) {}

  private authenticate(req: HttpRequest): string | null {
    const auth = req.headers.authorization;
    const key = auth?.toLowerCase().startsWith('bearer ') ? auth.slice(7).trim() : req.headers['x-api-key'];
    return key ? this.keys.check(key) : null;
  }

  async handle(req: HttpRequest): Promise<HttpResponse> {
    try {
      return await this.route(req);
    } catch (err) {
      this.log.error({ err, path: req.path }, 'API request failed');
      return problem(500, 'internal', 'Internal error');
    }
  }

  private async route(req: HttpRequest): Promise<HttpResponse> {
    const { method, path } = req;
    const probes = this.cfg.api.publicProbes;
    if (path === '/health' && method === 'GET' && (probes || this.authenticate(req)))
      return json(200, { status: 'ok' });
    if (path === '/ready' && method === 'GET' && (probes || this.authenticate(req))) {
      const r = await this.readiness();
      return json(r.ready ? 200 : 503, r);
    }
    if (path === '/openapi.json' && method === 'GET') return json(200, OPENAPI);

    const keyName = this.authenticate(req);
    if (!keyName) {
      const known = path === '/metrics' || path === '/health' || path === '/ready' || path.startsWith('/api/');
      if (!known) return problem(404, 'not_found', `No route ${method} ${path}`);
      return {
        ...problem(401, 'unauthorized', 'A valid API key is required (Authorization: Bearer <key> or X-API-Key)'),
        headers: { ...JSON_HEADERS, 'www-authenticate': 'Bearer' },
      };
    }

    if (path === '/metrics' && method === 'GET') {
      return {
        status: 200,
        headers: { 'content-type': this.metrics.registry.contentType },
        body: await this.metrics.registry.metrics(),
      };
    }

    const m = /^\/api\/v1\/chargers(?:\/([^/]+)(?:\/calls\/([A-Za-z0-9]+))?)?\/?$/.exec(path);
    if (!m) return problem(404, 'not_found', `No route ${method} ${path}`);
    let id: string | undefined;
    try {
      id = m[1] === undefined ? undefined : decodeURIComponent(m[1]);
    } catch {
      return problem(400, 'invalid_parameter', 'Charger id is not valid URL encoding', { field: 'chargerId' });
    }
    const action = m[2];

    if (id === undefined) {
      if (method !== 'GET') return problem(405, 'method_not_allowed', `${method} not allowed on ${path}`);
      return this.list(req);
    }
    if (action !== undefined) {
      if (method !== 'POST') return problem(405, 'method_not_allowed', `${method} not allowed on ${path}`);
      return this.call(req, id, action, keyName);
    }
    switch (method) {
      case 'GET':
        return this.detail(id);
      case 'PUT':
        return this.upsert(req, id, keyName);
      case 'DELETE':
        return this.remove(id, keyName);
      default:
        return problem(405, 'method_not_allowed', `${method} not allowed on ${path}`);
    }
  }

  private parseBody(req: HttpRequest): { ok: true; value: Record<string, unknown> } | { ok: false; res: HttpResponse } {
    const ct = req.headers['content-type'] ?? '';
    if (req.body.length > 0 && !ct.includes('json'))
      return { ok: false, res: problem(415, 'unsupported_media_type', 'Body must be application/json') };
    if (req.body.length === 0) return { ok: true, value: {} };
    let v: unknown;
    try {
      v = JSON.parse(new TextDecoder().decode(req.body));
    } catch {
      return { ok: false, res: problem(400, 'invalid_json', 'Body is not valid JSON', { field: 'body' }) };
    }
    if (!v || typeof v !== 'object' || Array.isArray(v))
      return { ok: false, res: problem(400, 'invalid_body', 'Body must be a JSON object', { field: 'body' }) };
    return { ok: true, value: v as Record<string, unknown> };
  }

  private async summary(id: string) {
    const [rec, statuses] = await Promise.all([this.registry.get(id), this.registry.statuses(id)]);
    if (!rec) return null;
    const conn = this.connections.get(id);
    const { passwordHash, session: _s, ...pub } = rec;
    return {
      ...pub,
      hasPassword: Boolean(passwordHash),
      connected: Boolean(conn) || Boolean(rec.nodeId),
      connectedHere: Boolean(conn),
      lastSeenAt: conn ? new Date(conn.lastSeen).toISOString() : rec.lastSeenAt,
      remoteAddress: conn?.remoteAddress,
      connectors: statuses,
    };
  }

  private async list(req: HttpRequest): Promise<HttpResponse> {
    const limitRaw = req.query.get('limit');
    const limit = limitRaw === null ? 100 : Number(limitRaw);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
      return problem(400, 'invalid_parameter', 'limit must be an integer from 1 to 1000', { field: 'limit' });
    const after = req.query.get('after') ?? undefined;
    const ids = await this.registry.list({ after, limit });
    const items = (await Promise.all(ids.map((i) => this.summary(i)))).filter(Boolean);
    return json(200, {
      items,
      next: ids.length === limit ? ids[ids.length - 1] : null,
      total: await this.registry.count(),
    });
  }

  private async detail(id: string): Promise<HttpResponse> {
    const s = await this.summary(id);
    return s ? json(200, s) : problem(404, 'not_found', `Charger ${id} is not registered`, { field: 'chargerId' });
  }

  private async upsert(req: HttpRequest, id: string, keyName: string): Promise<HttpResponse> {
    if (!/^[A-Za-z0-9._~:@!$&'()*+,;=-]{1,64}$/.test(id))
      return problem(400, 'invalid_parameter', 'Invalid charger id', { field: 'chargerId' });
    const body = this.parseBody(req);
    if (!body.ok) return body.res;
    const fields: Record<string, string> = {};
    for (const [k, v] of Object.entries(body.value)) {
      if (!CHARGER_FIELDS.has(k)) return problem(400, 'unknown_field', `Unknown field "${k}"`, { field: k });
      if (typeof v !== 'string') return problem(400, 'invalid_field', `Field "${k}" must be a string`, { field: k });
      if (k === 'password') {
        // OCPP 1.6 security whitepaper / 2.0.1: BasicAuthPassword is 16 to 40 characters.
        if (v.length < 16 || v.length > 40)
          return problem(400, 'invalid_field', 'password must be 16 to 40 characters (OCPP BasicAuthPassword)', {
            field: 'password',
          });
        fields.passwordHash = await hashPassword(v);
      } else if (k === 'bootPolicy' && !['Accepted', 'Pending', 'Rejected'].includes(v)) {
        return problem(400, 'invalid_field', 'bootPolicy must be one of Accepted, Pending, Rejected', {
          field: 'bootPolicy',
        });
      } else fields[k] = v;
    }
    const created = await this.registry.register(id, {});
    await this.registry.update(id, fields);
    this.log.info(
      { cpId: id, apiKey: keyName, fields: Object.keys(fields).map((f) => (f === 'passwordHash' ? 'password' : f)) },
      created ? 'charger registered via API' : 'charger updated via API',
    );
    return json(created ? 201 : 200, await this.summary(id));
  }

  private async remove(id: string, keyName: string): Promise<HttpResponse> {
    if (!(await this.registry.get(id)))
      return problem(404, 'not_found', `Charger ${id} is not registered`, { field: 'chargerId' });
    await this.registry.remove(id);
    this.connections.get(id)?.socket.close(4001, 'Charger removed');
    this.log.info({ cpId: id, apiKey: keyName }, 'charger removed via API');
    return { status: 204 };
  }

  private async call(req: HttpRequest, id: string, action: string, keyName: string): Promise<HttpResponse> {
    const body = this.parseBody(req);
    if (!body.ok) return body.res;
    const t = req.query.get('timeoutMs');
    const timeoutMs = t === null ? undefined : Number(t);
    if (timeoutMs !== undefined && (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 600_000)) {
      return problem(400, 'invalid_parameter', 'timeoutMs must be an integer from 100 to 600000', {
        field: 'timeoutMs',
      });
    }
    const started = Date.now();
    try {
      const result = await this.commands.call(id, action, body.value, { timeoutMs });
      this.log.info({ cpId: id, action, apiKey: keyName }, 'command answered');
      return json(200, { chargerId: id, action, result, durationMs: Date.now() - started });
    } catch (e) {
      const err = e as CommandError & { details?: Record<string, unknown> };
      // A command routed to another node names it: the operator's next look is that node.
      const node = err.details?.nodeId === undefined ? {} : { node: err.details.nodeId };
      switch (err.code) {
        case 'OCR_ERR_CMD_NOT_CONNECTED':
          return problem(404, 'not_connected', err.message, { field: 'chargerId', ...node });
        case 'OCR_ERR_CMD_UNKNOWN_ACTION':
          return problem(400, 'unknown_action', err.message, { field: 'action' });
        case 'OCR_ERR_CMD_INVALID_PAYLOAD':
          return problem(400, 'invalid_payload', err.message, {
            // eslint-disable-next-line @typescript-eslint/no-base-to-string -- a JSON pointer string from ajv
            field: `body${err.details?.path === '/' ? '' : String(err.details?.path ?? '').replace(/\//g, '.')}`,
            keyword: err.details?.keyword,
          });
        case 'OCR_ERR_CMD_BUSY':
          return problem(409, 'busy', err.message);
        case 'OCR_ERR_CMD_TIMEOUT':
          return problem(504, 'timeout', err.message, node);
        case 'OCR_ERR_CMD_DISCONNECTED':
          return problem(502, 'disconnected', err.message);
        case 'OCR_ERR_CMD_CALL_ERROR':
          return problem(502, 'call_error', 'The charger answered with a CALLERROR', { callError: err.callError });
        case 'OCR_ERR_CMD_INVALID_RESPONSE':
          return problem(502, 'invalid_response', err.message, { callError: err.callError });
        default:
          throw err;
      }
    }
  }
}
