/**
 * Process plumbing shared by the throwaway service launchers (redis.ts, clickhouse.ts).
 *
 * Owns: finding server binaries, allocating free ports, spawning a server so that it can
 * never outlive the test process, waiting for readiness, and stopping. Must not: know
 * any particular server's flags or protocol; that is the launchers' job.
 *
 * "Never outlive" has two layers, because the test process can die in ways that run no
 * JavaScript (tap's timeout ends with SIGKILL):
 *   1. process.on('exit') kills every live server (normal exit, uncaught error).
 *   2. A watchdog per server, `sh -c 'cat >/dev/null; kill -KILL <pid>'`, holds the read
 *      end of a pipe whose write end only this process has. When this process dies for
 *      any reason the kernel closes the pipe, `cat` sees EOF and the server is killed
 *      (and its temp dir removed, when this module created it). The watchdog runs in its
 *      own process group so that a terminal's Ctrl-C does not take it down before it has
 *      done its job, and so that stop() can end `sh` and `cat` together.
 * @internal test support only
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, openSync, readSync, closeSync, fstatSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

/** Thrown when a server binary is missing; the message says how to install it. */
export class ServiceUnavailableError extends Error {
  readonly code = 'OCR_TEST_SERVICE_MISSING';
  constructor(message: string) {
    super(message);
    this.name = 'ServiceUnavailableError';
  }
}

/**
 * Finds `name` on PATH, then in the sbin directories that a non-root PATH often lacks
 * (Debian installs clickhouse-server to /usr/sbin). `envVar` may point to the binary.
 */
export function findBinary(name: string, envVar: string, installHint: string): string {
  const candidates: string[] = [];
  const fromEnv = process.env[envVar];
  if (fromEnv) candidates.push(fromEnv);
  for (const d of (process.env.PATH ?? '').split(delimiter)) if (d) candidates.push(join(d, name));
  for (const d of ['/usr/sbin', '/usr/local/sbin', '/sbin']) candidates.push(join(d, name));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // try the next one
    }
  }
  throw new ServiceUnavailableError(
    `${name} is not installed (not on PATH${fromEnv ? ` nor at ${envVar}=${fromEnv}` : ''}). Install it with: ${installHint}`,
  );
}

/**
 * A port that was free a moment ago: listen on port 0, read the port, close. Another
 * process may take it before the server binds, so launchers retry with a new port when
 * a server they gave an allocated port exits during startup.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

export function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/** Removes a directory made by makeTempDir (no-op for others). */
export function removeTempDir(dir: string): void {
  if (!tempDirs.delete(dir)) return;
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}

/** The last `bytes` of a file, or '' when it cannot be read. */
export function tailFile(path: string, bytes = 4000): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const size = fstatSync(fd).size;
    const len = Math.min(size, bytes);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    return buf.toString('utf8');
  } catch {
    return '';
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A spawned server guarded by the exit hook and a watchdog. */
export interface ServerProcess {
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves when the server has exited (never rejects). */
  readonly exited: Promise<ExitInfo>;
  readonly hasExited: () => boolean;
  /** Sends `signal`, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<ExitInfo>;
}

const live = new Set<ServerProcess & { watchdog: ChildProcess | undefined }>();
const tempDirs = new Set<string>();
let exitHookInstalled = false;

/** Ends a detached watchdog: `sh` and its `cat` share the group whose id is sh's pid. */
function killGroup(watchdog: ChildProcess | undefined): void {
  if (watchdog?.pid === undefined) return;
  try {
    process.kill(-watchdog.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Only synchronous work is possible here.
  process.on('exit', () => {
    for (const p of live) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      killGroup(p.watchdog);
    }
    for (const dir of tempDirs) {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // a server killed a moment ago may still be releasing files; the OS cleans /tmp
      }
    }
  });
}

/**
 * Spawns `bin args` with stdio ignored (servers log to files in their temp dir). The child
 * is unref'd: a test that forgets to stop its server still ends, and the exit hook kills
 * the server then.
 */
export function spawnServer(bin: string, args: string[], cwd: string): ServerProcess {
  const ownDir = tempDirs.has(cwd) ? cwd : '';
  installExitHook();
  const child = spawn(bin, args, { cwd, stdio: 'ignore' });
  let exitInfo: ExitInfo | undefined;
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
    // spawn failures (ENOENT, EACCES) arrive as 'error' without 'exit'
    child.once('error', () => {
      exitInfo ??= { code: -1, signal: null };
      resolve(exitInfo);
    });
  });
  child.unref();
  let watchdog: ChildProcess | undefined;
  if (child.pid !== undefined) {
    // The pause before rm lets the kernel tear the killed server down first.
    const script = 'cat >/dev/null; kill -KILL "$1" 2>/dev/null; if [ -n "$2" ]; then sleep 1; rm -rf -- "$2"; fi';
    watchdog = spawn('sh', ['-c', script, 'ocr-watchdog', String(child.pid), ownDir], {
      stdio: ['pipe', 'ignore', 'ignore'],
      detached: true,
    });
    watchdog.on('error', () => {}); // no sh: layer 1 still applies
    watchdog.unref();
    // The pipe must not keep the event loop alive either.
    (watchdog.stdin as Socket | null)?.unref();
  }
  const proc = {
    pid: child.pid ?? -1,
    child,
    exited,
    watchdog,
    hasExited: () => exitInfo !== undefined,
    async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<ExitInfo> {
      if (exitInfo === undefined) {
        child.kill(signal);
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
      // Only now: killing the watchdog first would leave a window with no guard.
      killGroup(watchdog);
      live.delete(proc);
      return exitInfo!;
    },
  };
  live.add(proc);
  void exited.then(() => {
    if (!live.has(proc)) return;
    killGroup(watchdog);
    live.delete(proc);
  });
  return proc;
}

/**
 * Polls `probe` until it returns true. Fails early when the server exits, and after
 * `timeoutMs` otherwise; `describe()` supplies log output for the error message.
 */
export async function waitReady(
  proc: ServerProcess,
  probe: () => Promise<boolean>,
  opts: { name: string; timeoutMs: number; describe: () => string },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    if (proc.hasExited()) {
      const info = await proc.exited;
      throw new Error(
        `${opts.name} exited during startup (code ${info.code}, signal ${info.signal}).\n${opts.describe()}`,
      );
    }
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) {
      await proc.stop('SIGKILL');
      throw new Error(`${opts.name} did not become ready within ${opts.timeoutMs} ms.\n${opts.describe()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
