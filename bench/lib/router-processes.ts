/**
 * The real router CLI in multi-process mode as a benchmark target: `bin/ocpp-router.js start
 * --config <file> --processes P`, a supervisor forking P router processes that share one port
 * (SO_REUSEPORT) and a throwaway Redis (bench/lib/redis-server.ts), each with its own worker
 * pool of `threads` threads. Used by bench/storm.ts for the 100,000-charger storm, which one
 * process cannot hold (20,000 file descriptors per process here).
 *
 * Config (written to a temp dir, removed at stop): 127.0.0.1 on a free port, log level warn
 * (info would log one line per auto-registered charger), dataDir and spool in the temp dir,
 * Redis state, an API key whose hash is in the config (so the supervisor does not generate
 * one), unknown chargers auto-registered (the default), then the caller's overrides.
 *
 * Ready: every router process (child of the supervisor) holds a listening socket on the port:
 * /proc/net/tcp LISTEN inodes matched against /proc/<pid>/fd, as the CLI prints no ready line.
 *
 * Never left behind: the supervisor runs in its own process group (detached), killed as a
 * group on our exit and by a watchdog if we are SIGKILLed; stop() is SIGTERM to the
 * supervisor (it forwards to its children), then SIGKILL to the group after a grace period.
 *
 * Owns: the lifecycle of one multi-process router and its Redis. Must not: generate load, or
 * reach into core/ (the router is the published CLI; mergeConfig is public API).
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { mergeConfig } from '../../core/index.js';
import { envWithoutRouterConfig, processTree, watchdog } from './proc.js';
import { freePort, startRedis, type BenchRedis } from './redis-server.js';

export interface RouterProcessesOptions {
  processes: number;
  /** Worker threads per router process (pool.threads). */
  threads: number;
  /** Merged over the bench defaults. */
  config: Record<string, unknown>;
  root: string;
  startTimeoutMs?: number;
  /** Node flags of the supervisor, which it passes on to the router processes (fork execArgv), e.g. --cpu-prof. */
  nodeArgs?: string[];
}

export interface RouterProcesses {
  port: number;
  /** The supervisor; the router processes are its children (processTree). */
  pid: number;
  /** Router process pids at ready, by index of appearance. */
  routerPids: number[];
  redis: BenchRedis;
  apiKey: string;
  config: Record<string, unknown>;
  /** Lines the supervisor and routers wrote (stdout + stderr, bounded), for failure reports. */
  output: string[];
  /** Router processes that appeared after ready (restarts after a crash). */
  restarts(): number[];
  /** True while the supervisor runs. */
  alive(): boolean;
  stop(): Promise<void>;
}

/** Socket inodes listening (state 0A) on `port` in /proc/net/tcp and tcp6. */
function listenInodes(port: number): Set<string> {
  const out = new Set<string>();
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c.length > 9 && c[3] === '0A' && c[1].endsWith(`:${hex}`)) out.add(c[9]);
    }
  }
  return out;
}

function holdsSocket(pid: number, inodes: Set<string>): boolean {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m && inodes.has(m[1])) return true;
    } catch {
      /* closed meanwhile */
    }
  }
  return false;
}

const live = new Set<number>();
process.once('exit', () => {
  for (const g of live) {
    try {
      process.kill(-g, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

export async function startRouterProcesses(o: RouterProcessesOptions): Promise<RouterProcesses> {
  const redis = await startRedis();
  const dir = mkdtempSync(join(tmpdir(), 'ocr-bench-router-mp-'));
  try {
    const port = await freePort();
    const apiKey = randomBytes(24).toString('base64url');
    const base: Record<string, unknown> = {
      server: { host: '127.0.0.1', port },
      log: { level: 'warn' },
      dataDir: dir,
      analytics: { spoolDir: join(dir, 'spool') },
      redis: { url: redis.url },
      api: { keys: [{ name: 'bench', sha256: createHash('sha256').update(apiKey).digest('hex') }] },
      pool: { threads: o.threads },
    };
    const config = mergeConfig(base, o.config);
    const file = join(dir, 'router.json');
    writeFileSync(file, JSON.stringify(config, null, 2));
    // No OCR_* variable of ours may leak into the config (the CLI reads them).
    const env = envWithoutRouterConfig();
    const child = spawn(
      process.execPath,
      [
        ...(o.nodeArgs ?? []),
        join(o.root, 'bin/ocpp-router.js'),
        'start',
        '--config',
        file,
        '--processes',
        String(o.processes),
      ],
      {
        cwd: dir,
        env,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const pgid = child.pid!;
    live.add(pgid);
    const disarm = watchdog(-pgid, dir);
    const output: string[] = [];
    for (const s of [child.stdout, child.stderr])
      createInterface({ input: s }).on('line', (l) => {
        if (output.length < 400) output.push(l.slice(0, 1000));
      });
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const alive = () => child.exitCode === null && child.signalCode === null;

    let stopped: Promise<void> | undefined;
    const stop = () =>
      (stopped ??= (async () => {
        if (alive()) {
          child.kill('SIGTERM');
          await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
        }
        try {
          process.kill(-pgid, 'SIGKILL');
        } catch {
          /* group already gone */
        }
        live.delete(pgid);
        disarm();
        await redis.stop();
        rmSync(dir, { recursive: true, force: true });
      })());

    const t0 = Date.now();
    const timeout = o.startTimeoutMs ?? 90_000;
    let routerPids: number[] = [];
    for (;;) {
      if (!alive()) {
        await stop();
        throw new Error(`router supervisor exited before ready:\n${output.join('\n')}`);
      }
      if (Date.now() - t0 > timeout) {
        await stop();
        throw new Error(`router processes not all listening within ${timeout} ms:\n${output.join('\n')}`);
      }
      // With --processes 1 the CLI runs one router itself, without a supervisor.
      const kids = o.processes === 1 ? [pgid] : processTree(pgid).slice(1);
      const inodes = listenInodes(port);
      const listening = kids.filter((p) => holdsSocket(p, inodes));
      if (listening.length >= o.processes) {
        routerPids = listening;
        break;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    const known = new Set(routerPids);
    return {
      port,
      pid: pgid,
      routerPids,
      redis,
      apiKey,
      config,
      output,
      restarts: () =>
        processTree(pgid)
          .slice(1)
          .filter((p) => !known.has(p) && holdsSocket(p, listenInodes(port))),
      alive,
      stop,
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    await redis.stop();
    throw err;
  }
}
