/**
 * Thread RPC over real BroadcastChannels: in one thread (a BroadcastChannel delivers to
 * other instances of the same name in the posting thread too), then across real worker
 * threads, one and two at a time. Also checks that idle channels never keep a process up.
 *
 * Unlike most unit tests this file starts threads and a child process (STYLE.md §7 keeps
 * unit tests thread-free): the handshake and the unref behaviour only show up for real.
 * Each server gets a unique channel name, so tests in this process cannot cross-talk.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { BroadcastChannel, threadId, Worker } from 'node:worker_threads';
import t, { type Test } from 'tap';
import { until } from '../../test/helpers/wait.js';
import { errors } from '../errors.js';
import { MemoryStateStore } from '../state/memory-store.js';
import { serveStateStore } from '../state/remote-store.js';
import { ThreadRpcClient, ThreadRpcServer } from './thread-rpc.js';

const uniqueName = () => `ocr:rpc:test:${randomUUID()}`;

/**
 * Every message posted on channel `name` by others, as the server and clients see it: a
 * BroadcastChannel delivers to every other instance of its name, so an extra one observes
 * the traffic without taking part. Closed in teardown.
 */
function observe(t: Test, name: string): Array<{ t: string; [k: string]: unknown }> {
  const seen: Array<{ t: string; [k: string]: unknown }> = [];
  const bc = new BroadcastChannel(name);
  bc.onmessage = (ev) => seen.push(ev.data as { t: string });
  bc.unref();
  t.teardown(() => bc.close());
  return seen;
}

interface Driven {
  threadId: number;
  send(cmd: Record<string, unknown>): Promise<unknown>;
  terminate(): Promise<number>;
}

/**
 * Starts test/fixtures/rpc-worker.ts in a worker thread. Node 20 does not run `--import`
 * preloads in workers, so an eval bootstrap registers tsx before importing the fixture.
 */
function startRpcWorker(name: string): Driven {
  const tsx = import.meta.resolve('tsx/esm/api');
  const fixture = new URL('../../test/fixtures/rpc-worker.ts', import.meta.url).href;
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(fixture)}); });`;
  const worker = new Worker(boot, { eval: true, workerData: { name } });
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  let next = 0;
  worker.on(
    'message',
    (r: { id: number; ok: boolean; v?: unknown; e?: { name: string; message: string; code?: string } }) => {
      const p = pending.get(r.id);
      pending.delete(r.id);
      if (r.ok) p?.resolve(r.v);
      else p?.reject(Object.assign(new Error(r.e!.message), r.e));
    },
  );
  worker.on('error', (err) => {
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  });
  return {
    threadId: worker.threadId,
    send: (cmd) =>
      new Promise((resolve, reject) => {
        const id = ++next;
        pending.set(id, { resolve, reject });
        worker.postMessage({ ...cmd, id });
      }),
    terminate: () => worker.terminate(),
  };
}

/** A server with an 'echo' and a 'test' namespace, and a connected client on this thread. */
async function pair(t: Test, clientOpts: ConstructorParameters<typeof ThreadRpcClient>[0] = {}) {
  const name = uniqueName();
  const server = new ThreadRpcServer({ name });
  server.handle('echo', (method, args, from) => ({ method, args, from }));
  server.handle('test', async (method, args) => {
    switch (method) {
      case 'fail': {
        const err = new Error('nope') as Error & { code: string };
        err.code = 'E_TEST';
        err.stack = 'SERVER-SIDE-STACK';
        throw err;
      }
      case 'callError': {
        const err = new errors.OCR_ERR_CMD_CALL_ERROR('CP-1', 'Reset', 'NotSupported', 'no', {
          details: { nodeId: 'n1' },
          cause: new Error('not to travel'),
        }) as Error & { callError?: unknown };
        err.callError = { code: 'NotSupported', description: 'no', details: {} };
        throw err;
      }
      case 'throwString':
        // eslint-disable-next-line @typescript-eslint/only-throw-error -- what is tested
        throw 'just a string';
      case 'hang':
        return new Promise(() => {});
      case 'slow':
        // The subject: a handler that takes args[0] ms (longer than its caller's timeout).
        await new Promise((resolve) => setTimeout(resolve, args[0] as number));
        return 'slow done';
      case 'uncloneable':
        return () => {};
      default:
        return null;
    }
  });
  const client = new ThreadRpcClient({ name, readyTimeoutMs: 2000, ...clientOpts });
  t.teardown(() => {
    client.close();
    server.close();
  });
  await client.ready;
  return { name, server, client, threadId: clientOpts.threadId ?? threadId };
}

t.test('same thread: BroadcastChannel delivers, calls round-trip', async (t) => {
  const { client } = await pair(t);
  t.same(
    await client.call('echo', 'hello', [1, 'two', { three: [3] }, null]),
    { method: 'hello', args: [1, 'two', { three: [3] }, null], from: 0 },
    'from is the main thread id (0)',
  );
  const many = await Promise.all(Array.from({ length: 100 }, (_, i) => client.call('echo', 'n', [i])));
  t.same(
    many.map((r) => (r as { args: number[] }).args[0]),
    Array.from({ length: 100 }, (_, i) => i),
    '100 concurrent calls each get their own answer',
  );
});

t.test('errors travel as { name, message, code, statusCode, details }, never a stack or cause', async (t) => {
  const { client } = await pair(t);
  const err = (await client.call('test', 'fail', []).catch((e: unknown) => e)) as Error & { code?: string };
  t.equal(err.code, 'E_TEST');
  t.equal(err.message, 'nope');
  t.equal(err.name, 'Error');
  t.notMatch(err.stack ?? '', /SERVER-SIDE-STACK/, 'the server’s stack does not travel');
  const typed = (await client.call('test', 'callError', []).catch((e: unknown) => e)) as Error & {
    code?: string;
    statusCode?: number;
    details?: unknown;
  };
  t.match(
    typed,
    { code: 'OCR_ERR_CMD_CALL_ERROR', statusCode: 502, details: { nodeId: 'n1' }, callError: { code: 'NotSupported' } },
    'a catalogue error whole, with the charger’s CALLERROR',
  );
  t.equal(typed.cause, undefined, 'no cause');
  await t.rejects(client.call('test', 'throwString', []), { message: 'just a string' }, 'non-Error throws');
  await t.rejects(client.call('nope', 'x', []), { code: errors.OCR_ERR_STATE_RPC_UNKNOWN.code }, 'unknown namespace');
  await t.rejects(
    client.call('test', 'uncloneable', []),
    { name: 'DataCloneError' },
    'an uncloneable result is an error, not a hang',
  );
  await t.rejects(
    client.call('echo', 'x', [() => {}]),
    { name: 'DataCloneError' },
    'an uncloneable argument fails at once',
  );
});

t.test('timeouts reject with OCR_ERR_STATE_RPC_TIMEOUT; late answers are dropped', async (t) => {
  const { name, client, threadId: tid } = await pair(t);
  const traffic = observe(t, `${name}:${tid}`);
  const t0 = Date.now();
  await t.rejects(client.call('test', 'hang', [], 50), { code: errors.OCR_ERR_STATE_RPC_TIMEOUT.code });
  const elapsed = Date.now() - t0;
  t.ok(elapsed >= 45 && elapsed < 500, `timed out after ${elapsed}ms`);
  await t.rejects(client.call('test', 'slow', [80], 20), { code: errors.OCR_ERR_STATE_RPC_TIMEOUT.code });
  // Once the late answer is on the channel, the next call's answer can only come after it
  // (one sender, one receiver: in order), so the client has to drop it first.
  await until(() => traffic.some((m) => m.t === 'res' && m.v === 'slow done'), {
    what: 'the late answer of the timed-out call to be posted',
  });
  t.equal(
    await client.call('test', 'slow', [1]),
    'slow done',
    'the late answer of the timed-out call did not disturb this one',
  );
});

t.test('ready: waits for a server that starts later, or times out', async (t) => {
  const name = uniqueName();
  const hellos = observe(t, `${name}:hello`);
  const client = new ThreadRpcClient({ name, readyTimeoutMs: 2000, helloIntervalMs: 20 });
  const early = client.call('echo', 'early', []);
  // No server yet: the client repeats its hello; after two, it is known to be waiting.
  await until(() => hellos.filter((m) => m.t === 'hello').length >= 2, { what: 'the client to say hello twice' });
  const server = new ThreadRpcServer({ name });
  server.handle('echo', (method) => method);
  t.teardown(() => {
    client.close();
    server.close();
  });
  await client.ready;
  t.equal(await early, 'early', 'a call made before ready is posted after the ack');

  const lonely = new ThreadRpcClient({ name: uniqueName(), readyTimeoutMs: 80 });
  t.teardown(() => lonely.close());
  const call = lonely.call('echo', 'x', [], 5000);
  await t.rejects(lonely.ready, { code: errors.OCR_ERR_STATE_RPC_TIMEOUT.code }, 'no server: ready times out');
  await t.rejects(call, { code: errors.OCR_ERR_STATE_RPC_TIMEOUT.code }, 'and calls waiting on it fail with it');
});

t.test('close: pending calls fail, later calls fail, the server drops the channel', async (t) => {
  const { server, client } = await pair(t);
  t.equal(server.channelCount, 1);
  const pending = client.call('test', 'hang', [], 5000);
  client.close();
  await t.rejects(pending, { code: errors.OCR_ERR_STATE_UNAVAILABLE.code });
  await t.rejects(client.call('echo', 'x', []), { code: errors.OCR_ERR_STATE_UNAVAILABLE.code });
  await until(() => server.channelCount === 0, { what: 'the server to handle the bye' });
  t.equal(server.channelCount, 0, 'bye closed the per-client channel');
  t.doesNotThrow(() => client.close(), 'close is idempotent');
});

t.test('a namespace has one handler', async (t) => {
  const server = new ThreadRpcServer({ name: uniqueName() });
  t.teardown(() => server.close());
  server.handle('a', () => 1);
  t.throws(() => server.handle('a', () => 2), { code: errors.OCR_ERR_CONFIG_INVALID.code });
});

t.test('two clients sharing one thread id each get their own answers', async (t) => {
  const { name, server, client: a } = await pair(t, { threadId: 7 });
  const b = new ThreadRpcClient({ name, threadId: 7 });
  t.teardown(() => b.close());
  await b.ready;
  t.equal(server.channelCount, 1, 'one channel for the shared name');
  const [ra, rb] = await Promise.all([
    Promise.all(Array.from({ length: 20 }, (_, i) => a.call('echo', 'a', [i]))),
    Promise.all(Array.from({ length: 20 }, (_, i) => b.call('echo', 'b', [i]))),
  ]);
  t.ok(
    ra.every(
      (r, i) =>
        (r as { method: string; args: number[]; from: number }).method === 'a' &&
        (r as { args: number[] }).args[0] === i,
    ),
  );
  t.ok(
    rb.every(
      (r, i) => (r as { method: string; args: number[] }).method === 'b' && (r as { args: number[] }).args[0] === i,
    ),
  );
  t.equal((ra[0] as { from: number }).from, 7, 'from is the client’s threadId');
  a.close();
  // a's bye and b's call reach the server's one channel instance in the order they were
  // posted, so once b is answered the server has handled the bye.
  t.same(await b.call('echo', 'still', []), { method: 'still', args: [], from: 7 });
  t.equal(server.channelCount, 1, 'the channel stays while b uses it');
});

t.test('worker threads: two workers at once, errors and timeouts across threads', async (t) => {
  const name = uniqueName();
  const server = new ThreadRpcServer({ name });
  server.handle('echo', (method, args, from) => ({ method, args, from }));
  server.handle('test', async (method) => {
    if (method === 'fail') throw Object.assign(new Error('bad'), { code: 'E_REMOTE' });
    return new Promise(() => {});
  });
  const w1 = startRpcWorker(name);
  const w2 = startRpcWorker(name);
  t.teardown(async () => {
    await Promise.all([w1.terminate(), w2.terminate()]);
    server.close();
  });
  await Promise.all([w1.send({ op: 'ready' }), w2.send({ op: 'ready' })]);
  t.equal(server.channelCount, 2, 'one channel per worker');

  const [r1, r2] = await Promise.all([
    Promise.all(Array.from({ length: 30 }, (_, i) => w1.send({ op: 'call', ns: 'echo', m: 'w1', args: [i] }))),
    Promise.all(Array.from({ length: 30 }, (_, i) => w2.send({ op: 'call', ns: 'echo', m: 'w2', args: [i] }))),
  ]);
  t.ok(
    r1.every((r, i) => {
      const x = r as { method: string; args: number[]; from: number };
      return x.method === 'w1' && x.args[0] === i && x.from === w1.threadId;
    }),
    'worker 1 got only its own answers, with its threadId as `from`',
  );
  t.ok(
    r2.every((r, i) => {
      const x = r as { method: string; args: number[]; from: number };
      return x.method === 'w2' && x.args[0] === i && x.from === w2.threadId;
    }),
    'worker 2 got only its own answers',
  );
  await t.rejects(w1.send({ op: 'call', ns: 'test', m: 'fail', args: [] }), { code: 'E_REMOTE', message: 'bad' });
  await t.rejects(w2.send({ op: 'call', ns: 'test', m: 'hang', args: [], timeoutMs: 50 }), {
    code: errors.OCR_ERR_STATE_RPC_TIMEOUT.code,
  });
});

t.test('RemoteStateStore from two workers: atomicity holds across threads', async (t) => {
  const name = uniqueName();
  const memory = new MemoryStateStore();
  const server = new ThreadRpcServer({ name });
  serveStateStore(server, memory);
  const workers = [startRpcWorker(name), startRpcWorker(name)];
  t.teardown(async () => {
    await Promise.all(workers.map((w) => w.terminate()));
    server.close();
    await memory.close();
  });
  const claims = await Promise.all(
    workers.flatMap((w, wi) =>
      Array.from({ length: 25 }, (_, i) =>
        w.send({ op: 'state', m: 'casHash', args: ['lock', 'owner', null, { owner: `w${wi}-${i}` }] }),
      ),
    ),
  );
  t.equal(claims.filter((c) => c === true).length, 1, 'one winner among 50 claims from two threads');
  await Promise.all(
    workers.flatMap((w) => Array.from({ length: 100 }, () => w.send({ op: 'state', m: 'incr', args: ['ctr'] }))),
  );
  t.equal(await memory.get('ctr'), '200', 'no lost increments');
  await t.rejects(
    workers[0].send({ op: 'state', m: 'incr', args: ['lock'] }),
    { name: 'ReplyError', message: /^WRONGTYPE/ },
    'store errors reach the worker',
  );
});

t.test('idle server and client do not keep a process alive', async (t) => {
  const mod = new URL('./thread-rpc.ts', import.meta.url).href;
  const code = `
    const { ThreadRpcServer, ThreadRpcClient } = await import(${JSON.stringify(mod)});
    const server = new ThreadRpcServer();
    server.handle('echo', (m) => m);
    const client = new ThreadRpcClient();
    await client.ready;
    console.log(await client.call('echo', 'done', []));
  `;
  const res = spawnSync(process.execPath, ['--import=tsx', '--input-type=module', '-e', code], {
    timeout: 10_000,
    encoding: 'utf8',
  });
  t.equal(res.signal, null, 'exited by itself (not killed by the 10s timeout)');
  t.equal(res.status, 0, res.stderr);
  t.equal(res.stdout.trim(), 'done', 'the in-flight call kept it alive until answered');
});
