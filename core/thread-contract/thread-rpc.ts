/**
 * Thread RPC: request/response calls from piscina worker threads to the main thread.
 *
 * Part of the thread contract (core/thread-contract/, see envelope.ts): the server is created
 * in index.ts, a client in each worker (worker/entry.ts), and state/remote-store.ts carries
 * StateStore calls over them.
 *
 * Owns: the handshake, the message shapes, per-call timeouts and error transport between
 * one ThreadRpcServer (main thread) and any number of ThreadRpcClients (one per worker,
 * or several in one thread). Used by RemoteStateStore so that every worker shares the one
 * MemoryStateStore living on the main thread.
 *
 * Must not: know what is being called (namespaces are opaque), send stacks or internal
 * objects back (errors travel as { name, message, code }), or keep a process alive while
 * idle (every channel is unref'd, every timer too).
 *
 * Why BroadcastChannel: piscina offers no way to give one particular worker a MessagePort,
 * but a BroadcastChannel can be opened by name from any thread. Each client opens its own
 * channel and announces it on a shared one; the server opens the same name and answers:
 *
 *   worker thread (client)                        main thread (server)
 *   ───────────────────────                       ─────────────────────
 *   open  "ocr:rpc:<threadId>"
 *   post  hello{ch, cid}  ── "ocr:rpc:hello" ──▶  open "ocr:rpc:<threadId>", listen
 *   (hello repeats until acked)
 *   ready resolves        ◀── "ocr:rpc:<tid>" ──  post ack{cid}
 *   post  req{cid,id,ns,m,a} ─ "ocr:rpc:<tid>" ▶  handler(m, a, from)
 *   resolve / reject      ◀── "ocr:rpc:<tid>" ──  post res{cid,id,ok,v|e}
 *   close(): post bye{cid} ─ "ocr:rpc:<tid>" ─▶  close the channel when its last client left
 *
 * The ack arrives on the per-worker channel, so it proves the server already listens there:
 * no request is posted before that (calls made earlier wait for `ready`). Hellos repeat
 * because a BroadcastChannel does not buffer for channels opened later: a worker may start
 * before the server exists.
 *
 * BroadcastChannel quirks this file relies on or works around:
 * - Delivery reaches every *other* instance with the same name, in any thread of the
 *   process, the same thread included; never the posting instance itself.
 * - Several clients in one thread share the name "ocr:rpc:<threadId>" and so see each
 *   other's traffic: every message carries the client's random `cid` and clients ignore
 *   replies that are not theirs.
 * - Two servers with the same base name in one process would both answer (and both run
 *   every request). Run exactly one per process, or give each its own `name`.
 * - An unref'd channel does not keep the event loop alive, and a message can sit
 *   undelivered if nothing else does. So a client refs its channel while it has calls in
 *   flight (or is shaking hands) and unrefs it when idle: like a socket with an
 *   outstanding request, an in-flight call keeps the process up until it is answered or
 *   times out; an idle client never does.
 * - A call that timed out may still run on the server afterwards: the request was
 *   delivered, only the answer is ignored. Callers must treat a timeout as "unknown".
 */
import { randomUUID } from 'node:crypto';
import { BroadcastChannel, threadId as currentThreadId } from 'node:worker_threads';
import { errors, fromSerialized, toSerialized, type SerializedError } from '../errors.js';

/** Base of every channel name, overridable to run isolated servers in one process. */
const DEFAULT_NAME = 'ocr:rpc';

export type RpcHandler = (method: string, args: unknown[], from: number) => Promise<unknown> | unknown;

type Hello = { t: 'hello'; ch: string; cid: string };
type Ack = { t: 'ack'; cid: string };
type Req = { t: 'req'; cid: string; id: number; ns: string; m: string; a: unknown[]; from: number };
type Res =
  | { t: 'res'; cid: string; id: number; ok: true; v: unknown }
  | { t: 'res'; cid: string; id: number; ok: false; e: SerializedError };
type Bye = { t: 'bye'; cid: string };
type Msg = Hello | Ack | Req | Res | Bye;

function isMsg(x: unknown): x is Msg {
  return (
    typeof x === 'object' &&
    x !== null &&
    typeof (x as { t?: unknown }).t === 'string' &&
    typeof (x as { cid?: unknown }).cid === 'string'
  );
}

export interface ThreadRpcServerOptions {
  /**
   * Base name of the channels (`<name>:hello`, `<name>:<threadId>`). Only clients with
   * the same name reach this server.
   * @default 'ocr:rpc'
   */
  name?: string;
}

interface ServedChannel {
  bc: BroadcastChannel;
  clients: Set<string>;
}

/** Serves every client of the process. Runs on the main thread; one per process and name. */
export class ThreadRpcServer {
  readonly #name: string;
  readonly #hello: BroadcastChannel;
  readonly #channels = new Map<string, ServedChannel>();
  readonly #handlers = new Map<string, RpcHandler>();
  #closed = false;

  constructor(opts: ThreadRpcServerOptions = {}) {
    this.#name = opts.name ?? DEFAULT_NAME;
    this.#hello = new BroadcastChannel(`${this.#name}:hello`);
    this.#hello.onmessage = (ev) => this.#onHello(ev.data);
    this.#hello.unref();
  }

  /** Number of per-client channels open. @internal (tests) */
  get channelCount(): number {
    return this.#channels.size;
  }

  /**
   * Routes calls to `namespace` to `fn`. What `fn` returns (or resolves to) must be
   * structured-cloneable; what it throws is sent back as { name, message, code }.
   */
  handle(namespace: string, fn: RpcHandler): void {
    if (this.#handlers.has(namespace)) {
      throw new errors.OCR_ERR_CONFIG_INVALID(`thread RPC namespace "${namespace}" already has a handler`);
    }
    this.#handlers.set(namespace, fn);
  }

  #onHello(msg: unknown): void {
    if (this.#closed || !isMsg(msg) || msg.t !== 'hello' || typeof msg.ch !== 'string') return;
    // Only open names of our own family: a stray hello must not make us join any channel.
    if (!msg.ch.startsWith(`${this.#name}:`) || msg.ch === `${this.#name}:hello`) return;
    let served = this.#channels.get(msg.ch);
    if (served === undefined) {
      const bc = new BroadcastChannel(msg.ch);
      served = { bc, clients: new Set() };
      const s = served;
      bc.onmessage = (ev) => this.#onMessage(msg.ch, s, ev.data);
      bc.unref();
      this.#channels.set(msg.ch, served);
    }
    served.clients.add(msg.cid);
    // Acking on the per-client channel, after listening on it, is what makes `ready` safe.
    // A repeated hello (the first ack crossed a resend) is simply acked again.
    const ack: Ack = { t: 'ack', cid: msg.cid };
    served.bc.postMessage(ack);
  }

  #onMessage(ch: string, served: ServedChannel, msg: unknown): void {
    if (this.#closed || !isMsg(msg)) return;
    if (msg.t === 'req') {
      void this.#serve(served, msg);
    } else if (msg.t === 'bye') {
      served.clients.delete(msg.cid);
      if (served.clients.size === 0) {
        served.bc.close();
        this.#channels.delete(ch);
      }
    }
    // Replies and acks we posted ourselves are never delivered back to us; anything else
    // on the channel (another client's request is ours too) needs no action.
  }

  async #serve(served: ServedChannel, req: Req): Promise<void> {
    let res: Res;
    const fn = this.#handlers.get(req.ns);
    if (fn === undefined) {
      res = {
        t: 'res',
        cid: req.cid,
        id: req.id,
        ok: false,
        e: toSerialized(new errors.OCR_ERR_STATE_RPC_UNKNOWN(`namespace "${req.ns}"`)),
      };
    } else {
      try {
        const v = await fn(req.m, Array.isArray(req.a) ? req.a : [], req.from);
        res = { t: 'res', cid: req.cid, id: req.id, ok: true, v };
      } catch (err) {
        res = { t: 'res', cid: req.cid, id: req.id, ok: false, e: toSerialized(err) };
      }
    }
    // The client may have said bye, or the server closed, while the handler ran.
    if (this.#closed || this.#channels.get(served.bc.name) !== served) return;
    try {
      served.bc.postMessage(res);
    } catch (err) {
      // The result was not structured-cloneable (DataCloneError): answer with that error
      // rather than let the caller wait for its timeout.
      served.bc.postMessage({ t: 'res', cid: req.cid, id: req.id, ok: false, e: toSerialized(err) } satisfies Res);
    }
  }

  /** Stops serving: closes every channel. In-flight handlers finish but are not answered. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#hello.close();
    for (const { bc } of this.#channels.values()) bc.close();
    this.#channels.clear();
    this.#handlers.clear();
  }
}

export interface ThreadRpcClientOptions {
  /**
   * Names this client's channel `<name>:<threadId>` and is passed to handlers as `from`.
   * @default worker_threads.threadId
   */
  threadId?: number;
  /**
   * `ready` (and every call waiting on it) rejects with OCR_ERR_STATE_RPC_TIMEOUT when no
   * server acked within this time.
   * @default 5000
   */
  readyTimeoutMs?: number;
  /**
   * Timeout of a call that passes none.
   * @default 5000
   */
  timeoutMs?: number;
  /**
   * Interval between hellos until the server acks.
   * @default 50
   */
  helloIntervalMs?: number;
  /** Base channel name; must match the server's. @default 'ocr:rpc' */
  name?: string;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** One per worker thread (several per thread work too). */
export class ThreadRpcClient {
  /** Resolves once the server listens on this client's channel; rejects on timeout or close. */
  readonly ready: Promise<void>;
  readonly #threadId: number;
  readonly #cid = randomUUID();
  readonly #bc: BroadcastChannel;
  readonly #timeoutMs: number;
  readonly #pending = new Map<number, Pending>();
  #hello: BroadcastChannel | undefined;
  #helloTimer: NodeJS.Timeout | undefined;
  #readyTimer: NodeJS.Timeout | undefined;
  #settleReady: ((err?: Error) => void) | undefined;
  #isReady = false;
  #closed = false;
  #nextId = 0;
  /** Reasons to keep the event loop alive: the handshake plus each call in flight. */
  #holds = 0;

  constructor(opts: ThreadRpcClientOptions = {}) {
    const name = opts.name ?? DEFAULT_NAME;
    this.#threadId = opts.threadId ?? currentThreadId;
    this.#timeoutMs = opts.timeoutMs ?? 5000;
    const ch = `${name}:${this.#threadId}`;

    // Our channel must listen before the first hello goes out, or the ack could be missed.
    this.#bc = new BroadcastChannel(ch);
    this.#bc.onmessage = (ev) => this.#onMessage(ev.data);
    this.#bc.unref();

    this.ready = new Promise<void>((resolve, reject) => {
      this.#settleReady = (err) => {
        this.#settleReady = undefined;
        clearInterval(this.#helloTimer);
        clearTimeout(this.#readyTimer);
        this.#hello?.close();
        this.#hello = undefined;
        this.#release();
        if (err === undefined) {
          this.#isReady = true;
          resolve();
        } else {
          reject(err);
        }
      };
    });
    // Nobody is obliged to await `ready` (call() does); a failed handshake must not become
    // an unhandled rejection that kills the worker.
    this.ready.catch(() => {});

    this.#hold();
    const readyTimeoutMs = opts.readyTimeoutMs ?? 5000;
    this.#readyTimer = setTimeout(
      () => this.#settleReady?.(new errors.OCR_ERR_STATE_RPC_TIMEOUT('ready', readyTimeoutMs)),
      readyTimeoutMs,
    );
    this.#readyTimer.unref();

    this.#hello = new BroadcastChannel(`${name}:hello`);
    this.#hello.unref();
    const hello: Hello = { t: 'hello', ch, cid: this.#cid };
    this.#hello.postMessage(hello);
    this.#helloTimer = setInterval(() => this.#hello?.postMessage(hello), opts.helloIntervalMs ?? 50);
    this.#helloTimer.unref();
  }

  #hold(): void {
    if (this.#holds++ === 0) this.#bc.ref();
  }

  #release(): void {
    if (--this.#holds === 0 && !this.#closed) this.#bc.unref();
  }

  #onMessage(msg: unknown): void {
    // Other clients of this thread share the channel name: only our cid concerns us.
    if (!isMsg(msg) || msg.cid !== this.#cid) return;
    if (msg.t === 'ack') {
      this.#settleReady?.();
    } else if (msg.t === 'res') {
      const p = this.#pending.get(msg.id);
      if (p === undefined) return; // timed out already; the late answer is dropped
      this.#pending.delete(msg.id);
      clearTimeout(p.timer);
      this.#release();
      if (msg.ok) p.resolve(msg.v);
      else p.reject(fromSerialized(msg.e));
    }
  }

  /**
   * Calls `method` of `namespace` on the main thread with `args` (structured-cloned).
   * Rejects with OCR_ERR_STATE_RPC_TIMEOUT after `timeoutMs` (the wait for `ready`
   * included), with the server's error re-created (same name, message and code), or with
   * OCR_ERR_STATE_UNAVAILABLE once the client is closed.
   */
  call(namespace: string, method: string, args: unknown[], timeoutMs: number = this.#timeoutMs): Promise<unknown> {
    if (this.#closed) return Promise.reject(new errors.OCR_ERR_STATE_UNAVAILABLE('thread RPC client is closed'));
    return new Promise((resolve, reject) => {
      const id = ++this.#nextId;
      const timer = setTimeout(() => {
        if (this.#pending.delete(id)) {
          this.#release();
          reject(new errors.OCR_ERR_STATE_RPC_TIMEOUT(`${namespace}.${method}`, timeoutMs));
        }
      }, timeoutMs);
      timer.unref();
      this.#pending.set(id, { resolve, reject, timer });
      this.#hold();
      const req: Req = { t: 'req', cid: this.#cid, id, ns: namespace, m: method, a: args, from: this.#threadId };
      if (this.#isReady) {
        this.#post(req);
      } else {
        this.ready.then(
          () => {
            if (this.#pending.has(id)) this.#post(req);
          },
          (err: Error) => this.#fail(id, err),
        );
      }
    });
  }

  #post(req: Req): void {
    try {
      this.#bc.postMessage(req);
    } catch (err) {
      // DataCloneError: an argument cannot cross threads. Fail now, not at the timeout.
      this.#fail(req.id, err as Error);
    }
  }

  #fail(id: number, err: Error): void {
    const p = this.#pending.get(id);
    if (p === undefined) return;
    this.#pending.delete(id);
    clearTimeout(p.timer);
    this.#release();
    p.reject(err);
  }

  /**
   * Rejects every call in flight with OCR_ERR_STATE_UNAVAILABLE, tells the server this
   * client is gone (so it can close its side of the channel) and closes the channels.
   */
  close(): void {
    if (this.#closed) return;
    const closedErr = () => new errors.OCR_ERR_STATE_UNAVAILABLE('thread RPC client is closed');
    this.#settleReady?.(closedErr());
    for (const id of [...this.#pending.keys()]) this.#fail(id, closedErr());
    this.#closed = true;
    // Even before the ack: the server may have opened our channel for a hello whose ack we
    // never saw. With nobody listening, the bye is simply dropped.
    const bye: Bye = { t: 'bye', cid: this.#cid };
    this.#bc.postMessage(bye);
    this.#bc.close();
  }
}
