/**
 * Gateway: what happens to a charger's connection on the socket thread, from HTTP upgrade to
 * close.
 *
 * Owns: URL and identity validation, subprotocol negotiation, Basic auth at upgrade (async,
 * never blocking other upgrades), unknown-charger policy, duplicate-connection policy, load
 * shedding at upgrade, routing each frame by its peek (CALL/SEND into the charger's ordered
 * lane, CALLRESULT/CALLERROR to the pending CSMS CALL, Heartbeat answered here when nothing
 * else takes part in it), the bad-frame limit, lenient mode per charger and model, and the
 * periodic lastSeenAt flush. Must not: parse payloads or run plugins (workers do).
 *
 *   transport/ (uWS or Bun adapter) ── upgrade, open, message, drain, close ──► Gateway
 *     Gateway ─┬─► security/  Basic auth at upgrade
 *              ├─► state/     the charger's record; lastSeenAt, flushed periodically
 *              ├─► registry/  this node's live connections
 *              ├─► command/   CALLRESULT / CALLERROR of a pending CSMS CALL
 *              └─► dispatch/  CALL into the charger's lane, connect and disconnect events
 *
 * A folder of its own because it is the socket thread's connection layer and fits none of
 * its neighbours: transport/ only adapts a server library and must not know the router,
 * registry/ holds in-memory data without I/O, dispatch/ moves frames to and from workers.
 * The gateway does I/O (the charger registry in the state store) and decides policy (who
 * may connect, which frames need a worker).
 */
import { isEmptyPayload, peekFrame } from '../protocol/peek.js';
import { versionOfSubprotocol, type OcppVersion } from '../protocol/dialect.js';
import { ItemKind } from '../thread-contract/envelope.js';
import { Connection, type ConnectionRegistry } from '../registry/connection-registry.js';
import { basicAuthPassword, verifyPassword, VerifiedCache } from '../security/credentials.js';
import type { Dispatcher } from '../dispatch/dispatcher.js';
import type { CommandApi } from '../command/command-api.js';
import type { StoreChargerRegistry } from '../state/registry.js';
import type { Metrics } from '../metrics.js';
import type { PinoLogger } from '../log.js';
import type { RouterConfig } from '../options.js';
import type { Socket, UpgradeDecision, UpgradeRequest } from '../transport/transport.js';

/**
 * Charge point identity: OCPP 2.0.1 Part 2 A00 limits it to 48 characters from the
 * "unreserved" URL set plus a few; real 1.6 fleets also use ':' (MAC-like ids) and '.'.
 * '{' and '}' are refused because they would break Redis hash tags, '/' because of routing.
 */
const CP_ID = /^[A-Za-z0-9._~:@!$&'()*+,;=-]{1,64}$/;

/** Registry writes of one lastSeenAt flush in flight at once (flushLastSeen). */
const LAST_SEEN_WRITES_IN_FLIGHT = 256;

/** Retry-After for shed connections: 5-14 s, spread so that the retries of a storm spread too. */
function retryAfter(): string {
  return String(5 + Math.floor(Math.random() * 10));
}

/** Distinct vendor and model names shared between connections (intern()). */
const NAMES_MAX = 4096;
/** Unreadable/invalid frames tolerated per minute before the socket is closed. */
const BAD_FRAME_LIMIT = 20;

export class Gateway {
  private readonly verified = new VerifiedCache();
  private readonly prefix: string;
  /** Versions whose Heartbeat the socket thread answers itself (see heartbeat()). */
  private fastHeartbeat = new Set<OcppVersion>();
  /** Per version, actions whose CALLRESULTs a plugin observes (see start()). */
  private callResultHooks = new Map<OcppVersion, Set<string>>();
  private lastSeenTimer: NodeJS.Timeout | null = null;
  private flushingLastSeen = false;
  private currentTimeMs = 0;
  private currentTime = '';

  constructor(
    private readonly cfg: RouterConfig,
    private readonly connections: ConnectionRegistry,
    private readonly dispatcher: Dispatcher,
    private readonly commands: CommandApi,
    private readonly registry: StoreChargerRegistry,
    private readonly metrics: Metrics,
    private readonly log: PinoLogger,
  ) {
    this.prefix = cfg.server.path.replace(/\/$/, '') + '/';
  }

  private deny(
    status: number,
    message: string,
    outcome: string,
    headers?: Record<string, string>,
  ): UpgradeDecision<Connection> {
    this.metrics.upgrades.inc({ outcome });
    return { accept: false, status, message, headers };
  }

  /**
   * Enables the socket-thread Heartbeat for these versions (the workers report where the core
   * plugin's handler is Heartbeat's only participant) and starts the periodic lastSeenAt flush.
   */
  start(fastHeartbeat: OcppVersion[], callResultHooks: Partial<Record<OcppVersion, string[]>> = {}): void {
    this.fastHeartbeat = new Set(fastHeartbeat);
    this.callResultHooks = new Map(Object.entries(callResultHooks).map(([v, a]) => [v as OcppVersion, new Set(a)]));
    this.lastSeenTimer = setInterval(() => void this.flushLastSeen(), this.cfg.server.lastSeenFlushSec * 1000);
    this.lastSeenTimer.unref();
  }

  stop(): void {
    if (this.lastSeenTimer) clearInterval(this.lastSeenTimer);
  }

  /**
   * Writes lastSeenAt of chargers seen since the last flush: one hash write each, at most
   * LAST_SEEN_WRITES_IN_FLIGHT at a time, and never two flushes at once. A process may hold
   * tens of thousands of chargers: their writes must not all be in flight together, and
   * during a Redis outage a flush must not queue another full set behind the last.
   */
  async flushLastSeen(): Promise<void> {
    if (this.flushingLastSeen) return;
    this.flushingLastSeen = true;
    try {
      const due: Connection[] = [];
      for (const c of this.connections.values()) if (c.lastSeen > c.lastSeenPersisted) due.push(c);
      for (let i = 0; i < due.length; i += LAST_SEEN_WRITES_IN_FLIGHT) {
        await Promise.all(
          due.slice(i, i + LAST_SEEN_WRITES_IN_FLIGHT).map((c) => {
            const seen = c.lastSeen;
            return this.registry.update(c.cpId, { lastSeenAt: new Date(seen).toISOString() }).then(
              () => {
                c.lastSeenPersisted = seen;
              },
              () => undefined,
            );
          }),
        );
      }
    } finally {
      this.flushingLastSeen = false;
    }
  }

  /**
   * Heartbeat answered on the socket thread: saves the two thread hops of a message whose
   * only effect is "the charger is alive", which keeps its CPU per round trip close to a bare
   * uWS responder's (bench/RESULTS.md, targets of issue #3). Only when (a) no plugin but core
   * takes part in Heartbeat for this version, (b) the payload is exactly {} (anything else,
   * e.g. 2.x customData, is validated in a worker), and (c) the charger has nothing in its
   * lane, so the reply cannot overtake an earlier message's reply. Liveness is
   * conn.lastSeen, written to the registry by flushLastSeen().
   */
  private heartbeat(conn: Connection, id: string, now: number): void {
    if (now !== this.currentTimeMs) {
      this.currentTimeMs = now;
      this.currentTime = new Date(now).toISOString();
    }
    // The peeked id is printable ASCII without quotes or backslashes: safe to embed as is.
    this.dispatcher.send(conn, `[3,"${id}",{"currentTime":"${this.currentTime}"}]`);
    this.metrics.messages.inc({ version: conn.version, action: 'Heartbeat', outcome: 'ok' });
  }

  /** Upgrades between their first await and their decision (server.maxPendingUpgrades). */
  private pendingUpgrades = 0;

  async upgrade(req: UpgradeRequest): Promise<UpgradeDecision<Connection>> {
    if (this.pendingUpgrades >= this.cfg.server.maxPendingUpgrades) {
      // Shed before any work: a reconnect storm is paced by the chargers' retries, not by
      // handshakes queueing on the registry until they time out.
      return this.deny(503, 'Too many connection attempts, retry later', 'shed', { 'retry-after': retryAfter() });
    }
    this.pendingUpgrades++;
    try {
      return await this.decideUpgrade(req);
    } finally {
      this.pendingUpgrades--;
    }
  }

  private async decideUpgrade(req: UpgradeRequest): Promise<UpgradeDecision<Connection>> {
    if (!req.url.startsWith(this.prefix)) return this.deny(404, 'Not found', 'bad_path');
    const raw = req.url.slice(this.prefix.length);
    let cpId: string;
    try {
      cpId = decodeURIComponent(raw);
    } catch {
      return this.deny(400, 'Invalid charge point id encoding', 'bad_id');
    }
    if (!CP_ID.test(cpId)) return this.deny(400, 'Invalid charge point id', 'bad_id');
    if (this.dispatcher.saturated)
      return this.deny(503, 'Overloaded, retry later', 'shed', { 'retry-after': retryAfter() });

    // Subprotocol: the server picks its most preferred of the offered ones (RFC 6455 §4.2.2).
    const offered = (req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    let protocol: string | null = null;
    let version: OcppVersion;
    let rejectReason: string | undefined;
    if (offered.length === 0) {
      version = versionOfSubprotocol(this.cfg.server.defaultProtocol)!;
      this.log.info({ cpId }, 'charger offered no subprotocol; using the configured default');
    } else {
      protocol = this.cfg.server.protocols.find((p) => offered.some((o) => o.toLowerCase() === p)) ?? null;
      if (protocol) version = versionOfSubprotocol(protocol)!;
      else {
        // OCPP-J §3.1: complete the handshake without a protocol, then close.
        version = '1.6';
        rejectReason = `No supported subprotocol in: ${offered.join(', ')}`;
      }
    }

    if (this.cfg.server.duplicateConnection === 'reject' && this.connections.get(cpId)) {
      return this.deny(409, 'Charge point already connected', 'duplicate');
    }

    let record;
    try {
      record = await this.registry.get(cpId);
    } catch (err) {
      this.log.error({ err, cpId }, 'registry unavailable at upgrade');
      return this.deny(503, 'Registry unavailable, retry later', 'state_unavailable', { 'retry-after': '5' });
    }
    const challenge = { 'www-authenticate': 'Basic realm="ocpp", charset="UTF-8"' };
    const password = basicAuthPassword(req.headers.authorization, cpId);
    if (!record) {
      if (this.cfg.security.unknownChargers === 'reject') return this.deny(404, 'Unknown charge point', 'unknown');
      if (this.cfg.security.requireAuth) return this.deny(401, 'Credentials required', 'unauthorized', challenge);
      try {
        await this.registry.register(cpId, {});
        this.log.info({ cpId }, 'auto-registered unknown charger');
      } catch (err) {
        this.log.error({ err, cpId }, 'auto-registration failed');
        return this.deny(503, 'Registry unavailable, retry later', 'state_unavailable', { 'retry-after': '5' });
      }
    } else if (record.passwordHash) {
      if (password === null) return this.deny(401, 'Credentials required', 'unauthorized', challenge);
      if (!this.verified.has(cpId, password, record.passwordHash)) {
        if (!(await verifyPassword(password, record.passwordHash))) {
          this.log.warn({ cpId, remoteAddress: req.remoteAddress }, 'charger authentication failed');
          return this.deny(401, 'Invalid credentials', 'unauthorized', challenge);
        }
        this.verified.add(cpId, password, record.passwordHash);
      }
    } else if (this.cfg.security.requireAuth) {
      return this.deny(401, 'Credentials required', 'unauthorized', challenge);
    }
    this.metrics.upgrades.inc({ outcome: rejectReason ? 'no_protocol' : 'accepted' });
    const conn = new Connection(
      this.connections.newId(),
      cpId,
      version,
      this.isLenient(cpId),
      req.remoteAddress,
      rejectReason,
    );
    return { accept: true, protocol, data: conn };
  }

  private isLenient(cpId: string, vendor = '', model = ''): boolean {
    const l = this.cfg.lenient;
    return l.all || l.chargers.includes(cpId) || l.models.some((m) => m.vendor === vendor && m.model === model);
  }

  open(socket: Socket<Connection>): void {
    const conn = socket.data;
    if (conn.rejectReason) {
      conn.closed = true; // never registered: its frames and its close are ignored
      socket.close(1002, conn.rejectReason.slice(0, 120));
      return;
    }
    if (this.cfg.server.duplicateConnection === 'reject' && this.connections.get(conn.cpId)) {
      // Two upgrades of one identity can both pass the check in upgrade() (it awaits the
      // registry in between); the second to open loses.
      this.metrics.upgrades.inc({ outcome: 'duplicate' });
      conn.closed = true;
      socket.close(4009, 'Charge point already connected');
      return;
    }
    conn.socket = socket;
    const prev = this.connections.set(conn);
    if (prev) {
      // Same identity connected again (charger rebooted, NAT rebinding): the new one wins.
      this.log.info({ cpId: conn.cpId }, 'charger reconnected; closing the previous connection');
      this.detach(prev, 4000, 'Replaced by a new connection');
      prev.socket.close(4000, 'Replaced by a new connection');
    }
    this.metrics.connections.inc({ version: conn.version });
    this.registry
      .markConnected(conn.cpId, this.cfg.nodeId, conn.id, conn.version)
      .catch((err) => this.log.error({ err, cpId: conn.cpId }, 'could not record connection'));
    this.dispatcher.event(conn, ItemKind.Connect, null);
  }

  message(socket: Socket<Connection>, bytes: Uint8Array): void {
    const conn = socket.data;
    if (conn.closed) return;
    const now = Date.now();
    conn.lastSeen = now;
    const p = peekFrame(bytes);
    if (p && (p.type === 3 || p.type === 4)) {
      const pending = this.commands.match(conn, p.id);
      if (pending) {
        // Settled here, so a caller never waits for a worker slot (which a handler awaiting
        // this very answer might hold); workers only run the observer hooks.
        const ok = this.commands.settleFrame(conn, pending, bytes);
        // Workers record CALLERRORs and run onCallResult / onCallError hooks; a valid
        // CALLRESULT that no plugin observes needs neither, so it is not parsed and validated
        // a second time in a worker (bench/RESULTS.md, "Fan-out").
        if (!ok || this.callResultHooks.get(conn.version)?.has(pending.action))
          this.dispatcher.reply(conn, bytes, pending);
      }
      return;
    }
    if (
      p &&
      p.type === 2 &&
      p.action === 'Heartbeat' &&
      this.fastHeartbeat.has(conn.version) &&
      this.dispatcher.isIdle(conn.cpId) &&
      isEmptyPayload(bytes, p.payloadAt!)
    ) {
      return this.heartbeat(conn, p.id, now);
    }
    if (p && p.type === 5 && conn.version === '2.1') {
      // CALLRESULTERROR: the charger could not process our CALLRESULT. Nothing to answer.
      // Not the frame itself: its details may echo our payload (id tags).
      this.log.warn(
        { cpId: conn.cpId, messageId: p.id, bytes: bytes.length },
        'charger rejected a CALLRESULT (CALLRESULTERROR)',
      );
      this.metrics.dropped.inc({ reason: 'callresulterror' });
      return;
    }
    this.dispatcher.frame(conn, bytes, now, p && p.type !== 6 ? p.id : null, p?.action ?? null);
  }

  /** Called by the dispatcher for every invalid frame: repeat offenders are disconnected. */
  badFrame(conn: Connection): void {
    const now = Date.now();
    if (now - conn.badFramesWindowStart > 60_000) {
      conn.badFramesWindowStart = now;
      conn.badFrames = 0;
    }
    if (++conn.badFrames > BAD_FRAME_LIMIT && !conn.closed) {
      this.log.warn({ cpId: conn.cpId }, 'too many invalid frames; closing the connection');
      this.metrics.dropped.inc({ reason: 'bad_frame_limit' });
      conn.socket.close(1008, 'Too many invalid frames');
    }
  }

  drain(_socket: Socket<Connection>): void {
    // uWS flushed its buffer; nothing is held back on our side (replies are never queued
    // beyond uWS's own bounded buffer).
  }

  close(socket: Socket<Connection>, code: number, reason: string): void {
    const conn = socket.data;
    if (conn.closed) return;
    this.detach(conn, code, reason);
  }

  private detach(conn: Connection, code: number, reason: string): void {
    conn.closed = true;
    this.metrics.connections.dec({ version: conn.version });
    this.commands.disconnected(conn);
    if (this.connections.delete(conn)) {
      this.registry
        .markDisconnected(conn.cpId, this.cfg.nodeId, conn.id)
        .catch((err) => this.log.error({ err, cpId: conn.cpId }, 'could not record disconnection'));
    }
    this.dispatcher.event(conn, ItemKind.Disconnect, { code, reason });
  }

  /**
   * Vendor and model names arrive as a fresh string per BootNotification (decoded from the
   * worker's result); a fleet has a few dozen of them, so each connection keeps a shared one.
   * Bounded: past NAMES_MAX distinct names (a fleet of oddities) they are kept as they come.
   */
  private readonly names = new Map<string, string>();
  private intern(name: string): string {
    const known = this.names.get(name);
    if (known !== undefined) return known;
    if (this.names.size < NAMES_MAX) this.names.set(name, name);
    return name;
  }

  /** Re-evaluates lenient mode once BootNotification told us the model. */
  identity(conn: Connection, vendor: string, model: string): void {
    conn.vendor = this.intern(vendor);
    conn.model = this.intern(model);
    conn.lenient = this.isLenient(conn.cpId, vendor, model);
  }
}
