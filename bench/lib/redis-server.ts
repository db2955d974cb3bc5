/**
 * Throwaway redis-server for benchmarks that need shared state (the router's multi-process
 * mode): a free port, its own temp dir, no persistence (`--save ""`, `--appendonly no`).
 * Mirrors test/services/redis.ts without importing test code.
 *
 * Owns: the redis-server command line, its readiness (raw PING over TCP), stopping it, and
 * never leaving it behind (exit hook + a watchdog that kills it if we are SIGKILLed). Must
 * not: touch any other Redis, in particular the shared one on 127.0.0.1:6379: the port
 * always comes from freePort().
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { track, watchdog } from './proc.js';

export interface BenchRedis {
  url: string;
  port: number;
  pid: number;
  dir: string;
  stop(): Promise<void>;
}

/** A port that was free a moment ago (listen on 0, read, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/** Sends one raw RESP command line and resolves with the first reply line ('' on failure). */
export function redisCommand(port: number, line: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (v: string) => {
      sock.destroy();
      resolve(v);
    };
    sock.setTimeout(timeoutMs, () => done(''));
    sock.on('error', () => done(''));
    sock.on('connect', () => sock.write(line + '\r\n'));
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n');
      if (end >= 0) done(buf.slice(0, end));
    });
  });
}

/** `INFO <section>` as key → value lines (reads the whole bulk reply; {} on failure). */
export function redisInfo(port: number, section: string, timeoutMs = 2000): Promise<Record<string, string>> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    let buf = '';
    const out: Record<string, string> = {};
    const done = () => {
      sock.destroy();
      resolve(out);
    };
    sock.setTimeout(timeoutMs, done);
    sock.on('error', done);
    sock.on('connect', () => sock.write(`INFO ${section}\r\n`));
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      const nl = buf.indexOf('\r\n');
      if (nl < 0 || !buf.startsWith('$')) return;
      const len = Number(buf.slice(1, nl));
      if (Buffer.byteLength(buf, 'latin1') < nl + 2 + len) return;
      for (const line of buf.slice(nl + 2, nl + 2 + len).split('\r\n')) {
        const i = line.indexOf(':');
        if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1);
      }
      done();
    });
  });
}

function findRedis(): string {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin'].filter(Boolean);
  for (const d of [process.env.OCR_REDIS_SERVER_BIN ?? '', ...dirs.map((x) => join(x, 'redis-server'))]) {
    if (!d) continue;
    try {
      accessSync(d, constants.X_OK);
      return d;
    } catch {
      /* next */
    }
  }
  throw new Error('redis-server is not installed (apt-get install -y redis-server)');
}

export async function startRedis(timeoutMs = 10_000): Promise<BenchRedis> {
  const bin = findRedis();
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    if (port === 6379) continue;
    const dir = mkdtempSync(join(tmpdir(), 'ocr-bench-redis-'));
    const child = spawn(
      bin,
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
        join(dir, 'redis.log'),
        '--daemonize',
        'no',
      ],
      { cwd: dir, stdio: 'ignore' },
    );
    track(child);
    const disarm = watchdog(child.pid!, dir);
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const t0 = Date.now();
    let ok = false;
    while (Date.now() - t0 < timeoutMs && child.exitCode === null) {
      if ((await redisCommand(port, 'PING', 500)) === '+PONG') {
        ok = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      disarm();
      rmSync(dir, { recursive: true, force: true });
    };
    if (ok) return { url: `redis://127.0.0.1:${port}`, port, pid: child.pid!, dir, stop };
    await stop();
    if (attempt >= 2) throw new Error(`redis-server did not answer PING on port ${port} within ${timeoutMs} ms`);
  }
}
