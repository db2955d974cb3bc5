/**
 * Throwaway redis-server for tests: own port, own temp dir, no persistence.
 *
 * Owns: the redis-server command line and its readiness probe (a raw PING over TCP, so
 * this works before and without ioredis). Must not: touch any other Redis, in particular
 * the shared one on 127.0.0.1:6379; ports always come from freePort() or the caller.
 *
 * `restart()` keeps the port, so clients configured with the URL reconnect to the new
 * process: that is how tests inject a Redis outage.
 */
import { connect } from 'node:net';
import { join } from 'node:path';
import {
  findBinary,
  freePort,
  makeTempDir,
  removeTempDir,
  spawnServer,
  tailFile,
  waitReady,
  type ServerProcess,
} from './spawn.js';

export const REDIS_INSTALL_HINT = 'apt-get update && apt-get install -y redis-server';

export interface RedisOptions {
  /** @default a free port */
  port?: number;
  /** Working directory; the caller owns it. @default a new temp dir, removed on stop({ removeDir: true }) or exit */
  dir?: string;
  /** Extra redis-server arguments, e.g. ['--maxmemory', '10mb']. @default [] */
  args?: string[];
  /** @default 10000 */
  startTimeoutMs?: number;
}

export interface StopOptions {
  /** @default 'SIGTERM' */
  signal?: NodeJS.Signals;
  /** SIGKILL after this long. @default 5000 */
  graceMs?: number;
  /** Also delete the temp dir (only one this module created). @default false */
  removeDir?: boolean;
}

export interface RedisService {
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  /** Pid of the current process (changes on restart). */
  readonly pid: number;
  /** Kills the server and waits until it has exited. Idempotent. */
  stop(opts?: StopOptions): Promise<void>;
  /** Stops, then starts again on the same port and dir (empty: nothing is persisted). */
  restart(opts?: Pick<StopOptions, 'signal'>): Promise<void>;
}

/** Resolves true when the server on `port` answers PING with +PONG. */
export function pingRedis(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.on('error', () => done(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
  });
}

export async function startRedis(opts: RedisOptions = {}): Promise<RedisService> {
  const bin = findBinary('redis-server', 'OCR_REDIS_SERVER_BIN', REDIS_INSTALL_HINT);
  const dir = opts.dir ?? makeTempDir('ocr-redis-');
  const timeoutMs = opts.startTimeoutMs ?? 10_000;
  let port = opts.port ?? (await freePort());

  const launch = async (): Promise<ServerProcess> => {
    const logfile = join(dir, 'redis.log');
    const proc = spawnServer(
      bin,
      // --save "" and appendonly no: nothing is written to disk, so a restart is empty.
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
        '--logfile',
        logfile,
        '--daemonize',
        'no',
        ...(opts.args ?? []),
      ],
      dir,
    );
    await waitReady(proc, () => pingRedis(port), {
      name: `redis-server on port ${port}`,
      timeoutMs,
      describe: () => `redis-server log (${logfile}):\n${tailFile(logfile)}`,
    });
    return proc;
  };

  let proc: ServerProcess | undefined;
  // A port from freePort() can be taken before redis binds it: retry with a fresh one.
  for (let attempt = 0; ; attempt++) {
    try {
      proc = await launch();
      break;
    } catch (err) {
      if (opts.port !== undefined || attempt >= 2) throw err;
      port = await freePort();
    }
  }

  let current: ServerProcess = proc;
  const stop = async (s: StopOptions = {}): Promise<void> => {
    await current.stop(s.signal ?? 'SIGTERM', s.graceMs ?? 5000);
    if (s.removeDir) removeTempDir(dir);
  };
  return {
    get url() {
      return `redis://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    dir,
    get pid() {
      return current.pid;
    },
    stop,
    async restart(s: Pick<StopOptions, 'signal'> = {}) {
      await current.stop(s.signal ?? 'SIGTERM', 5000);
      current = await launch();
    },
  };
}
