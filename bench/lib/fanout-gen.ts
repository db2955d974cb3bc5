/**
 * Fan-out generator: N simulated chargers that answer CSMS-initiated CALLs, and an operator
 * client that sends one command per charger through the server's operator HTTP API, at most C
 * requests outstanding. One process (bench/fanout.ts starts it), apart from the server.
 *
 *   node --import tsx bench/lib/fanout-gen.ts '<FanoutOptions JSON>'   → one line: RESULT {json}
 *
 * Phases: connect all chargers (bounded concurrency) and BootNotification each ─► pre-flight:
 * one command to charger 0, its HTTP answer parsed and its `result` checked ─► warm-up: one
 * command to each of the first W chargers (not measured) ─► the measured phase: `rounds`
 * commands per charger, in round-robin order (round 1 to chargers 0..N-1, then round 2, …),
 * each of C keep-alive connections sending its next request when its previous answer is in
 * (closed loop over C) ─► close.
 *
 * The operator contract is the router's (core/api/http-api.ts), which the reference operator
 * servers copy: POST /api/v1/chargers/<id>/calls/<Action>?timeoutMs=N, `Authorization: Bearer
 * <key>`, JSON body = the CALL's payload; 200 {chargerId, action, result, durationMs}; errors
 * as a status and {error: <kind>}.
 *
 * Chargers: the raw RFC 6455 client of bench/lib/loadgen.ts (rawConnect, readServerFrames,
 * maskedFrame). A CALL from the server is answered at once with a pre-built, schema-valid
 * CALLRESULT for its action (COMMANDS below); an action we do not know gets CALLERROR
 * NotImplemented. After accepting TriggerMessage(Heartbeat) the charger sends the Heartbeat,
 * as the spec wants, and counts the server's answer.
 *
 * The operator client is raw HTTP/1.1 over net.Socket (no pipelining, Content-Length bodies
 * only): the cheapest client we know how to write, so the generator steals little CPU.
 * Latency: from just before the request is written to the read of the whole response.
 *
 * Owns: the chargers, the operator client and what is measured. Must not: start servers.
 */
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { cpus, loadavg } from 'node:os';
import { Histogram, type HistogramSummary } from './histogram.js';
import { cpuFigures, resultChildMain, startCpuWindow, type CpuWindow } from './proc.js';
import {
  bootCallText,
  closeRaw,
  connectAll,
  maskedFrame,
  rawConnect,
  readServerFrames,
  type ServerFrameSink,
} from './loadgen.js';
import { ID_WIDTH, type BenchVersion } from './ocpp-payloads.js';

// ── commands ──────────────────────────────────────────────────────────────────────────────

export type FanoutCommand = 'GetConfiguration' | 'TriggerMessage' | 'ChangeAvailability' | 'GetVariables';

interface CommandDef {
  /** The operator's request body (the CALL payload). */
  request: Record<string, unknown>;
  /** The charger's CALLRESULT payload (schema-valid for the version). */
  answer: Record<string, unknown>;
  /** A substring every correct operator answer's body contains (cheap per-response check). */
  marker: string;
}

/** What the operator asks and what a charger answers, per version and command. */
export const COMMANDS: Record<BenchVersion, Partial<Record<FanoutCommand, CommandDef>>> = {
  '1.6': {
    GetConfiguration: {
      request: { key: ['HeartbeatInterval'] },
      answer: { configurationKey: [{ key: 'HeartbeatInterval', readonly: false, value: '300' }] },
      marker: '"configurationKey"',
    },
    TriggerMessage: {
      request: { requestedMessage: 'Heartbeat' },
      answer: { status: 'Accepted' },
      marker: '"Accepted"',
    },
    ChangeAvailability: {
      request: { connectorId: 0, type: 'Operative' },
      answer: { status: 'Accepted' },
      marker: '"Accepted"',
    },
  },
  '2.0.1': {
    GetVariables: {
      request: { getVariableData: [{ component: { name: 'OCPPCommCtrlr' }, variable: { name: 'HeartbeatInterval' } }] },
      answer: {
        getVariableResult: [
          {
            attributeStatus: 'Accepted',
            attributeType: 'Actual',
            attributeValue: '300',
            component: { name: 'OCPPCommCtrlr' },
            variable: { name: 'HeartbeatInterval' },
          },
        ],
      },
      marker: '"getVariableResult"',
    },
    TriggerMessage: {
      request: { requestedMessage: 'Heartbeat' },
      answer: { status: 'Accepted' },
      marker: '"Accepted"',
    },
    ChangeAvailability: {
      request: { operationalStatus: 'Operative' },
      answer: { status: 'Accepted' },
      marker: '"Accepted"',
    },
  },
};

export const DEFAULT_COMMAND: Record<BenchVersion, FanoutCommand> = {
  '1.6': 'GetConfiguration',
  '2.0.1': 'GetVariables',
};

// ── options and result ────────────────────────────────────────────────────────────────────

export interface FanoutOptions {
  /** Chargers connect here. */
  port: number;
  /** The operator API (the router's is on the chargers' port unless api.port is set). */
  apiPort: number;
  apiKey: string;
  serverPid?: number;
  version: BenchVersion;
  command: FanoutCommand;
  chargers: number;
  /** Commands per charger in the measured phase. */
  rounds: number;
  /** Operator requests outstanding at most (keep-alive connections). */
  concurrency: number;
  /** Commands before the measured phase (to chargers 0..W-1), not measured. */
  warmupCommands: number;
  /** The command timeout asked of the server (?timeoutMs); the client gives up 5 s later. */
  timeoutMs: number;
  connectConcurrency: number;
  idPrefix: string;
}

export const DEFAULT_FANOUT: Omit<FanoutOptions, 'port' | 'apiPort' | 'apiKey' | 'command'> = {
  version: '1.6',
  chargers: 1000,
  rounds: 5,
  concurrency: 64,
  warmupCommands: 500,
  timeoutMs: 10_000,
  connectConcurrency: 50,
  idPrefix: `fanout-${process.pid}`,
};

export interface FanoutResult {
  options: Omit<FanoutOptions, 'apiKey'>;
  connect: { ms: number; connected: number; failed: number; failures: string[] };
  preflight: { ok: boolean; status: number; body: string; problem?: string };
  measured: {
    seconds: number;
    commands: number;
    ok: number;
    /** Successful commands per second over the measured phase. */
    commandsPerSec: number;
    /** HTTP request written → response read, successful commands (µs). */
    latencyUs: HistogramSummary;
    /** Failures by kind: the API's `error` field (`http <status> <error>`), or the client's own. */
    failures: Record<string, number>;
    failureSamples: string[];
  };
  chargers: {
    /** CALLs the chargers received from the server (warm-up, pre-flight and measured). */
    callsReceived: number;
    unknownActions: number;
    /** TriggerMessage: Heartbeats sent after accepting, and answered by the server. */
    triggeredSent: number;
    triggeredAnswered: number;
    closed: number;
    unparsed: number;
    samples: string[];
  };
  server?: {
    cpuMs: number;
    cpuUsPerCommand: number;
    cores: number;
    threads: { name: string; ms: number; threads: number }[];
  };
  generator: { cpuMs: number; cpuUsPerCommand: number; cores: number; eventLoopUtilization: number };
  machine: { cores: number; busyCores: number; foreignCores: number; loadavg: number[] };
}

// ── chargers ──────────────────────────────────────────────────────────────────────────────

class Stats {
  callsReceived = 0;
  unknownActions = 0;
  triggeredSent = 0;
  triggeredAnswered = 0;
  closed = 0;
  unparsed = 0;
  samples: string[] = [];
  note(what: string): void {
    if (this.samples.length < 5) this.samples.push(what.slice(0, 300));
  }
}

/** Index of the closing quote of the JSON string opening at `i`, or -1. */
function endOfString(b: Uint8Array, i: number, end: number): number {
  if (b[i] !== 0x22) return -1;
  for (let k = i + 1; k < end && k < i + 200; k++) {
    if (b[k] === 0x22) return k;
    if (b[k] === 0x5c) return -1;
  }
  return -1;
}

class AnsweringCharger implements ServerFrameSink {
  private sock!: Socket;
  private readonly mask = randomBytes(4);
  private rest: Buffer | null = null;
  private hb = 0;
  phase: 'connect' | 'boot' | 'run' | 'closed' = 'connect';
  closedOnPurpose = false;
  booted: Promise<void>;
  private bootDone!: () => void;
  private bootFail!: (err: Error) => void;

  constructor(
    readonly stats: Stats,
    readonly cpId: string,
    private readonly version: BenchVersion,
    private readonly answers: Map<string, Buffer>,
  ) {
    this.booted = new Promise((resolve, reject) => {
      this.bootDone = resolve;
      this.bootFail = reject;
    });
    this.booted.catch(() => undefined);
  }

  open(port: number): Promise<void> {
    const c = rawConnect(
      port,
      this.cpId,
      this.version,
      (d) => this.onData(d),
      (detail) => this.onClosed(detail),
    );
    this.sock = c.sock;
    return c.ready;
  }

  startBoot(): void {
    this.phase = 'boot';
    this.sock.write(maskedFrame(bootCallText(this.version), 0x1, this.mask));
  }

  private onData(chunk: Buffer): void {
    const b = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    this.rest = null;
    const i = readServerFrames(b, 0, this.sock, this.mask, this);
    if (i < 0) return;
    if (i < b.length) this.rest = Buffer.from(b.subarray(i));
  }

  onFrame(b: Uint8Array, s: number, len: number): void {
    const end = s + len;
    const text = () => Buffer.from(b.buffer, b.byteOffset + s, len).toString();
    const kind = b[s + 1];
    if (b[s] !== 0x5b || b[s + 2] !== 0x2c) {
      this.stats.unparsed++;
      this.stats.note(`unparsed: ${text()}`);
      return;
    }
    const idEnd = endOfString(b, s + 3, end);
    if (idEnd < 0) {
      this.stats.unparsed++;
      this.stats.note(`unparsed: ${text()}`);
      return;
    }
    const id = Buffer.from(b.buffer, b.byteOffset + s + 4, idEnd - s - 4).toString('latin1');
    if (kind === 0x32) {
      // A CALL from the server: answer it at once.
      const actEnd = endOfString(b, idEnd + 2, end);
      if (actEnd < 0) {
        this.stats.unparsed++;
        this.stats.note(`unparsed: ${text()}`);
        return;
      }
      const action = Buffer.from(b.buffer, b.byteOffset + idEnd + 3, actEnd - idEnd - 3).toString('latin1');
      this.stats.callsReceived++;
      const answer = this.answers.get(action);
      if (!answer) {
        this.stats.unknownActions++;
        this.stats.note(`unknown action: ${text()}`);
        this.sock.write(
          maskedFrame(JSON.stringify([4, id, 'NotImplemented', `${action} is not simulated`, {}]), 0x1, this.mask),
        );
        return;
      }
      const reply = Buffer.concat([Buffer.from(`[3,${JSON.stringify(id)},`), answer, Buffer.from(']')]);
      const out = [maskedFrame(reply, 0x1, this.mask)];
      if (action === 'TriggerMessage' && this.phase === 'run') {
        // Accepted: the triggered message follows the CALLRESULT.
        this.stats.triggeredSent++;
        out.push(maskedFrame(`[2,"h${String(++this.hb).padStart(ID_WIDTH - 1, '0')}","Heartbeat",{}]`, 0x1, this.mask));
      }
      this.sock.write(out.length === 1 ? out[0] : Buffer.concat(out));
      return;
    }
    if (kind !== 0x33 && kind !== 0x34) {
      this.stats.unparsed++;
      this.stats.note(`unparsed: ${text()}`);
      return;
    }
    if (this.phase === 'boot' && id === '0'.repeat(ID_WIDTH)) {
      if (kind === 0x33) {
        this.phase = 'run';
        this.bootDone();
      } else this.bootFail(new Error(`BootNotification answered with ${text()}`));
      return;
    }
    if (id.startsWith('h')) {
      if (kind === 0x33) this.stats.triggeredAnswered++;
      else this.stats.note(`triggered Heartbeat answered with ${text()}`);
    }
  }

  unparsed(sample: string): void {
    this.stats.unparsed++;
    this.stats.note(sample);
  }

  onClosed(detail: string): void {
    if (this.phase === 'closed') return;
    const was = this.phase;
    this.phase = 'closed';
    if (!this.closedOnPurpose && was === 'run') {
      this.stats.closed++;
      this.stats.note(`${this.cpId} closed: ${detail}`);
    }
    this.bootFail(new Error(`closed: ${detail}`));
  }

  close(): void {
    this.closedOnPurpose = true;
    closeRaw(this.sock, this.mask);
  }
}

// ── operator client: raw HTTP/1.1 keep-alive ──────────────────────────────────────────────

interface HttpAnswer {
  status: number;
  body: string;
}

class HttpConn {
  private sock: Socket | null = null;
  private buf: Buffer | null = null;
  private waiting: { resolve: (a: HttpAnswer) => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | null =
    null;

  constructor(
    private readonly port: number,
    private readonly clientTimeoutMs: number,
  ) {}

  private socket(): Socket {
    if (this.sock && !this.sock.destroyed) return this.sock;
    const s = connect({ host: '127.0.0.1', port: this.port, noDelay: true });
    s.on('data', (d: Buffer) => this.onData(d));
    s.on('error', (err) => this.fail(new Error(`connection: ${err.message}`)));
    s.on('close', () => {
      if (this.sock === s) this.sock = null;
      this.fail(new Error('connection closed'));
    });
    this.sock = s;
    this.buf = null;
    return s;
  }

  request(head: string, body: Buffer): Promise<HttpAnswer> {
    if (this.waiting) return Promise.reject(new Error('request while one is outstanding'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new Error('client timeout'));
        this.sock?.destroy();
      }, this.clientTimeoutMs);
      this.waiting = { resolve, reject, timer };
      this.socket().write(Buffer.concat([Buffer.from(head, 'latin1'), body]));
    });
  }

  private fail(err: Error): void {
    const w = this.waiting;
    if (!w) return;
    this.waiting = null;
    clearTimeout(w.timer);
    w.reject(err);
  }

  private onData(d: Buffer): void {
    const b = this.buf ? Buffer.concat([this.buf, d]) : d;
    this.buf = b;
    const end = b.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = b.subarray(0, end).toString('latin1');
    const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (!cl) {
      this.fail(new Error(`response without Content-Length: ${head.split('\r\n', 1)[0]}`));
      this.sock?.destroy();
      return;
    }
    const total = end + 4 + Number(cl[1]);
    if (b.length < total) return;
    this.buf = b.length > total ? Buffer.from(b.subarray(total)) : null;
    const w = this.waiting;
    if (!w) return;
    this.waiting = null;
    clearTimeout(w.timer);
    w.resolve({ status: Number(head.slice(9, 12)), body: b.subarray(end + 4, total).toString('utf8') });
    if (/\r\nconnection:\s*close/i.test(head)) this.sock?.destroy();
  }

  close(): void {
    this.sock?.destroy();
  }
}

// ── the run ───────────────────────────────────────────────────────────────────────────────

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** `http <status> <error>` from an error response's JSON body. */
function failureKind(a: HttpAnswer): string {
  try {
    const j = JSON.parse(a.body) as { error?: string; code?: string; callError?: { code?: string } };
    return `http ${a.status} ${j.error ?? '?'}${j.callError?.code ? ` (${j.callError.code})` : j.code ? ` (${j.code})` : ''}`;
  } catch {
    return `http ${a.status}`;
  }
}

export async function runFanout(
  input: Partial<FanoutOptions> & Pick<FanoutOptions, 'port' | 'apiPort' | 'apiKey' | 'command'>,
): Promise<FanoutResult> {
  const opts: FanoutOptions = { ...DEFAULT_FANOUT, ...input };
  const def = COMMANDS[opts.version][opts.command];
  if (!def)
    throw new Error(
      `command ${opts.command} is not simulated for OCPP ${opts.version} (known: ${Object.keys(COMMANDS[opts.version]).join(', ')})`,
    );
  const answers = new Map<string, Buffer>();
  for (const d of Object.entries(COMMANDS[opts.version])) answers.set(d[0], Buffer.from(JSON.stringify(d[1].answer)));
  const stats = new Stats();
  const chargers = Array.from(
    { length: opts.chargers },
    (_, i) => new AnsweringCharger(stats, `${opts.idPrefix}-${i}`, opts.version, answers),
  );

  // Connect + boot, bounded concurrency.
  const { ok, connect } = await connectAll(chargers, opts.port, opts.connectConcurrency);
  if (ok.length === 0) throw new Error(`no charger connected: ${connect.failures.join('; ')}`);

  const body = Buffer.from(JSON.stringify(def.request));
  const headFor = (cpId: string) =>
    `POST /api/v1/chargers/${encodeURIComponent(cpId)}/calls/${opts.command}?timeoutMs=${opts.timeoutMs} HTTP/1.1\r\nHost: 127.0.0.1:${opts.apiPort}\r\n` +
    `Authorization: Bearer ${opts.apiKey}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
  const conns = Array.from(
    { length: Math.min(opts.concurrency, 4096) },
    () => new HttpConn(opts.apiPort, opts.timeoutMs + 5000),
  );

  // Pre-flight: one command, the whole answer checked.
  let preflight: FanoutResult['preflight'];
  try {
    const a = await conns[0].request(headFor(ok[0].cpId), body);
    let problem: string | undefined;
    if (a.status !== 200) problem = `status ${a.status}`;
    else {
      const j = JSON.parse(a.body) as { chargerId?: string; action?: string; result?: unknown };
      if (j.chargerId !== ok[0].cpId || j.action !== opts.command)
        problem = 'chargerId / action of the answer do not match the request';
      else if (JSON.stringify(j.result) !== JSON.stringify(def.answer))
        problem = `result ${JSON.stringify(j.result)} is not what the charger answered (${JSON.stringify(def.answer)})`;
    }
    preflight = { ok: !problem, status: a.status, body: a.body.slice(0, 500), problem };
  } catch (err) {
    preflight = { ok: false, status: 0, body: '', problem: (err as Error).message };
  }

  /** Sends `jobs` (charger indices) over every connection; records into `hist` / `fails`. */
  const fails: Record<string, number> = {};
  const failureSamples: string[] = [];
  const hist = new Histogram();
  let okCount = 0;
  const drive = async (jobs: number[], measure: boolean) => {
    let j = 0;
    await Promise.all(
      conns.map(async (conn) => {
        while (j < jobs.length) {
          const cpId = ok[jobs[j++]].cpId;
          const t0 = performance.now();
          let kind: string | null = null;
          try {
            const a = await conn.request(headFor(cpId), body);
            if (a.status !== 200) kind = failureKind(a);
            else if (!a.body.includes(def.marker)) kind = 'unexpected result';
            if (kind && measure && failureSamples.length < 5)
              failureSamples.push(`${cpId}: ${a.status} ${a.body.slice(0, 300)}`);
          } catch (err) {
            kind = (err as Error).message;
            if (measure && failureSamples.length < 5) failureSamples.push(`${cpId}: ${kind}`);
          }
          if (!measure) continue;
          if (kind) fails[kind] = (fails[kind] ?? 0) + 1;
          else {
            hist.record((performance.now() - t0) * 1000);
            okCount++;
          }
        }
      }),
    );
  };

  let measured: FanoutResult['measured'] = {
    seconds: 0,
    commands: 0,
    ok: 0,
    commandsPerSec: 0,
    latencyUs: hist.summary(),
    failures: {},
    failureSamples: [],
  };
  let w: CpuWindow = { windowMs: 1, side: {}, generatorMs: 0, machineBusyMs: 0, eventLoopUtilization: 0 };
  if (preflight.ok) {
    await drive(
      Array.from({ length: Math.min(opts.warmupCommands, ok.length) }, (_, i) => i),
      false,
    );
    const jobs: number[] = [];
    for (let r = 0; r < opts.rounds; r++) for (let i = 0; i < ok.length; i++) jobs.push(i);
    const endWindow = startCpuWindow(opts.serverPid);
    await drive(jobs, true);
    w = endWindow();
    measured = {
      seconds: +(w.windowMs / 1000).toFixed(3),
      commands: jobs.length,
      ok: okCount,
      commandsPerSec: Math.round(okCount / (w.windowMs / 1000)),
      latencyUs: hist.summary(),
      failures: fails,
      failureSamples,
    };
    // Let the last triggered Heartbeats be answered (bounded).
    const d0 = performance.now();
    while (stats.triggeredAnswered < stats.triggeredSent && performance.now() - d0 < 2000) await sleep(20);
  }
  for (const c of conns) c.close();
  for (const c of ok) c.close();

  const n = measured.commands;
  const wallMs = w.windowMs;
  const srvMs = w.server?.cpuMs ?? 0;
  const cli = cpuFigures(w.generatorMs, n, wallMs);
  const { apiKey: _k, ...shown } = opts;
  const result: FanoutResult = {
    options: shown,
    connect,
    preflight,
    measured,
    chargers: {
      callsReceived: stats.callsReceived,
      unknownActions: stats.unknownActions,
      triggeredSent: stats.triggeredSent,
      triggeredAnswered: stats.triggeredAnswered,
      closed: stats.closed,
      unparsed: stats.unparsed,
      samples: stats.samples,
    },
    generator: {
      cpuMs: Math.round(cli.cpuMs),
      cpuUsPerCommand: cli.usPerUnit,
      cores: cli.cores,
      eventLoopUtilization: +w.eventLoopUtilization.toFixed(3),
    },
    machine: {
      cores: cpus().length,
      busyCores: +(w.machineBusyMs / wallMs).toFixed(3),
      foreignCores: +Math.max(0, (w.machineBusyMs - w.generatorMs - srvMs) / wallMs).toFixed(3),
      loadavg: loadavg().map((x) => +x.toFixed(2)),
    },
  };
  if (opts.serverPid) {
    const f = cpuFigures(srvMs, n, wallMs);
    result.server = { cpuMs: f.cpuMs, cpuUsPerCommand: f.usPerUnit, cores: f.cores, threads: w.server?.threads ?? [] };
  }
  return result;
}

// CLI: one run, result on stdout as `RESULT {json}`.
if (import.meta.url === `file://${process.argv[1]}`) {
  const input = JSON.parse(process.argv[2] ?? '{}') as Partial<FanoutOptions> &
    Pick<FanoutOptions, 'port' | 'apiPort' | 'apiKey' | 'command'>;
  const o = { ...DEFAULT_FANOUT, ...input };
  // Hard bound on the whole process: connects, then every command timing out (at most 30 min).
  const budgetMs =
    120_000 + Math.ceil((o.chargers * o.rounds + o.warmupCommands) / Math.max(1, o.concurrency)) * (o.timeoutMs + 5000);
  await resultChildMain('fanout-gen', Math.min(budgetMs, 30 * 60_000), () => runFanout(input));
}
