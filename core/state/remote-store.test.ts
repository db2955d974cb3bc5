/**
 * RemoteStateStore: the shared StateStore suite through a real ThreadRpcServer and
 * ThreadRpcClient. Both live on this thread: a BroadcastChannel delivers to the other
 * instances of its name in the posting thread too, so the suite needs no worker (the first
 * subtest pins that). Cross-thread behaviour, RemoteStateStore from two real workers
 * included, is covered in core/thread-contract/thread-rpc.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { BroadcastChannel } from 'node:worker_threads';
import t from 'tap';
import { ThreadRpcClient, ThreadRpcServer } from '../thread-contract/thread-rpc.js';
import { errors } from '../errors.js';
import { storeSuite } from '../../test/helpers/store-suite.js';
import { MemoryStateStore } from './memory-store.js';
import { RemoteStateStore, serveStateStore } from './remote-store.js';

/** Main-thread store + server, and a client + remote view, on unique channel names. */
async function setup() {
  const name = `ocr:rpc:test:${randomUUID()}`;
  const memory = new MemoryStateStore();
  const server = new ThreadRpcServer({ name });
  serveStateStore(server, memory);
  const client = new ThreadRpcClient({ name, readyTimeoutMs: 2000 });
  await client.ready;
  const store = new RemoteStateStore(client, { closeClient: true });
  return {
    memory,
    server,
    client,
    store,
    cleanup: async () => {
      await store.close();
      client.close();
      server.close();
      await memory.close();
    },
  };
}

t.test('BroadcastChannel delivers within one thread', async (t) => {
  const name = `ocr:test:${randomUUID()}`;
  const a = new BroadcastChannel(name);
  const b = new BroadcastChannel(name);
  t.teardown(() => {
    a.close();
    b.close();
  });
  let selfDelivered = false;
  a.onmessage = () => {
    selfDelivered = true;
  };
  const got = new Promise((resolve) => {
    b.onmessage = (ev) => resolve(ev.data);
  });
  a.postMessage({ hello: 1 });
  t.same(await got, { hello: 1 }, 'the other instance in this thread receives it');
  t.equal(selfDelivered, false, 'the posting instance does not');
});

t.test('StateStore suite', async (t) => {
  storeSuite(t, async () => {
    const { store, cleanup } = await setup();
    return { store, cleanup };
  });
});

t.test('the main-thread store holds the data', async (t) => {
  const { memory, store, cleanup } = await setup();
  t.teardown(cleanup);
  t.equal(store.kind, 'remote');
  await store.hset('h', { a: '1' });
  t.same(await memory.hgetall('h'), { a: '1' });
  await memory.set('k', 'from main');
  t.equal(await store.get('k'), 'from main');
});

t.test('only StateStore methods are served; close is not', async (t) => {
  const { memory, client, cleanup } = await setup();
  t.teardown(cleanup);
  for (const m of ['close', 'constructor', '__proto__', 'toString', 'sweep', 'nope']) {
    await t.rejects(client.call('state', m, []), { code: errors.OCR_ERR_STATE_RPC_UNKNOWN.code }, `"${m}" refused`);
  }
  await t.resolves(memory.ping(), 'the shared store is still open');
});

t.test('close() stops the view, not the shared store', async (t) => {
  const name = `ocr:rpc:test:${randomUUID()}`;
  const memory = new MemoryStateStore();
  const server = new ThreadRpcServer({ name });
  serveStateStore(server, memory);
  const client = new ThreadRpcClient({ name });
  const a = new RemoteStateStore(client);
  const b = new RemoteStateStore(client);
  t.teardown(async () => {
    client.close();
    server.close();
    await memory.close();
  });
  await a.set('k', 'v');
  await a.close();
  await t.rejects(a.get('k'), { code: errors.OCR_ERR_STATE_UNAVAILABLE.code });
  t.equal(await b.get('k'), 'v', 'a borrowed client stays open for other users');
  t.equal(await memory.get('k'), 'v');
});

t.test('per-call timeout', async (t) => {
  const name = `ocr:rpc:test:${randomUUID()}`;
  const server = new ThreadRpcServer({ name });
  // A store whose every call hangs: only the RPC timeout can end the wait.
  server.handle('state', () => new Promise(() => {}));
  const client = new ThreadRpcClient({ name });
  t.teardown(() => {
    client.close();
    server.close();
  });
  const store = new RemoteStateStore(client, { timeoutMs: 50 });
  await t.rejects(store.get('k'), { code: errors.OCR_ERR_STATE_RPC_TIMEOUT.code });
});
