/**
 * Processes under test: spawning a reference server in its own process, and reading a
 * process's CPU time from /proc (Linux).
 *
 * Owns: server process lifecycle (start, wait for its ready line, stop, never leave one
 * behind) and CPU accounting. Must not: generate load.
 *
 * CPU time: /proc/<pid>/stat utime + stime, which covers every thread of the process,
 * including threads that already exited (worker threads, GC helpers, libuv pool). Its unit
 * is the clock tick (USER_HZ, 100 on Linux), so resolution is 10 ms: over a 5 s window of
 * a busy server that is well under 1 %. The per-thread breakdown (/proc/<pid>/task/*) is a
 * diagnostic only: it names where the time went (main thread vs workers vs GC).
 *
 * Memory: VmRSS of /proc/<pid>/status covers every thread of the process (threads share one
 * address space). A server of several processes (the router's multi-process mode) is the
 * process tree under its root pid (processTree); its RSS is the sum over that tree, which
 * counts pages shared between processes (Node's text, shared libraries) once per process.
 * Pss (/proc/<pid>/smaps_rollup) splits shared pages between their users, so its sum does
 * not double-count; we report both.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';

/** USER_HZ. Linux has used 100 on every mainstream architecture for decades. */
const TICK_MS = 10;

function parseStat(text: string): { comm: string; ticks: number } {
  // comm is in parentheses and may contain spaces; fields after it are space-separated.
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  const comm = text.slice(open + 1, close);
  const f = text.slice(close + 2).split(' ');
  // After ")": f[0] is field 3 (state); utime is field 14, stime field 15.
  return { comm, ticks: Number(f[11]) + Number(f[12]) };
}

/** CPU milliseconds (user + system, all threads) used so far by `pid`. */
export function processCpuMs(pid: number): number {
  return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8')).ticks * TICK_MS;
}

/** `pid` and all its descendants (children, their children, …), root first. Empty if `pid` is gone. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const t = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(t.slice(t.lastIndexOf(')') + 2).split(' ', 3)[1]);
      const list = children.get(ppid);
      if (list) list.push(Number(e));
      else children.set(ppid, [Number(e)]);
    } catch {
      /* exited meanwhile */
    }
  }
  const out: number[] = [];
  try {
    readFileSync(`/proc/${pid}/stat`);
  } catch {
    return out;
  }
  const queue = [pid];
  while (queue.length && out.length < 10_000) {
    const p = queue.shift()!;
    out.push(p);
    queue.push(...(children.get(p) ?? []));
  }
  return out;
}

/** VmRSS of `pid` in KB (every thread; NaN if it is gone). */
export function rssKB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** Pss of `pid` in KB (shared pages split between the processes mapping them; NaN if unreadable). */
export function pssKB(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** Open file descriptors of `pid` (sockets included; NaN if unreadable). */
export function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

/** Per process of a tree: RSS, PSS, fds; and their sums (CPU: processCpuMs per pid). */
export interface TreeSample {
  pids: number[];
  rssKB: number[];
  pssKB: number[];
  fds: number[];
  totalRssKB: number;
  totalPssKB: number;
}

export function sampleTree(pids: number[], withPss = true): TreeSample {
  const rss = pids.map(rssKB);
  const pss = withPss ? pids.map(pssKB) : pids.map(() => NaN);
  const fds = pids.map(fdCount);
  const sum = (a: number[]) => a.reduce((n, v) => n + (Number.isFinite(v) ? v : 0), 0);
  return { pids, rssKB: rss, pssKB: pss, fds, totalRssKB: sum(rss), totalPssKB: sum(pss) };
}

/** CPU milliseconds used so far by each pid of `pids` (0 for one that is gone), summed. */
export function treeCpuMs(pids: number[]): number {
  let ms = 0;
  for (const p of pids) {
    try {
      ms += processCpuMs(p);
    } catch {
      /* gone */
    }
  }
  return ms;
}

/** Busy and total CPU milliseconds of the whole machine so far (all cores, /proc/stat). */
export function machineCpuMs(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = f[3] + f[4];
  return { busy: (total - idle) * TICK_MS, total: total * TICK_MS };
}

/** CPU milliseconds per live thread of `pid`, keyed by `<name>#<tid>`. */
export function threadCpuMs(pid: number): Map<string, { name: string; ms: number }> {
  const out = new Map<string, { name: string; ms: number }>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const s = parseStat(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'));
      out.set(tid, { name: s.comm, ms: s.ticks * TICK_MS });
    } catch {
      /* thread exited */
    }
  }
  return out;
}

/**
 * Thread CPU between two snapshots: the main thread, the busiest other threads one by one
 * (Node names every thread "node", so worker threads show as the busiest non-main ones),
 * and the rest summed.
 */
export function threadDelta(
  pid: number,
  a: Map<string, { name: string; ms: number }>,
  b: Map<string, { name: string; ms: number }>,
  top = 4,
): { name: string; ms: number; threads: number }[] {
  const rows: { name: string; ms: number; threads: number }[] = [];
  for (const [tid, t] of b)
    rows.push({ name: tid === String(pid) ? 'main' : `tid ${tid}`, ms: t.ms - (a.get(tid)?.ms ?? 0), threads: 1 });
  const main = rows.filter((r) => r.name === 'main');
  const others = rows.filter((r) => r.name !== 'main').sort((x, y) => y.ms - x.ms);
  const rest = others.slice(top);
  const out = [...main, ...others.slice(0, top).filter((r) => r.ms > 0)];
  if (rest.length) out.push({ name: 'other threads', ms: rest.reduce((n, r) => n + r.ms, 0), threads: rest.length });
  return out;
}

/** What a generator measured over its window (startCpuWindow … its stop function). */
export interface CpuWindow {
  /** Wall time of the window (performance.now()). */
  windowMs: number;
  /** The server process, all its threads (absent without a server pid). */
  server?: { cpuMs: number; threads: { name: string; ms: number; threads: number }[] };
  /** CPU ms per named side process (e.g. its Redis), over the same window. */
  side: Record<string, number>;
  /** This process (the generator), user + system. */
  generatorMs: number;
  /** The whole machine's busy CPU ms. */
  machineBusyMs: number;
  eventLoopUtilization: number;
}

/**
 * Starts a measured window: CPU of the server (and its threads), of side processes, of this
 * process and of the machine, and this event loop's utilisation. The returned function ends
 * it. Snapshots are taken in the same order at both ends, so the window is the same for all.
 */
export function startCpuWindow(serverPid?: number, sidePids: Record<string, number> = {}): () => CpuWindow {
  const srv0 = serverPid ? { cpu: processCpuMs(serverPid), threads: threadCpuMs(serverPid) } : undefined;
  const sides = Object.entries(sidePids);
  const side0 = sides.map(([, pid]) => processCpuMs(pid));
  const cli0 = process.cpuUsage();
  const m0 = machineCpuMs();
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  return () => {
    const windowMs = performance.now() - t0;
    const srv1 = serverPid ? { cpu: processCpuMs(serverPid), threads: threadCpuMs(serverPid) } : undefined;
    const side1 = sides.map(([, pid]) => processCpuMs(pid));
    const cli = process.cpuUsage(cli0);
    const m1 = machineCpuMs();
    const elu = performance.eventLoopUtilization(elu0);
    return {
      windowMs,
      server:
        srv0 && srv1
          ? { cpuMs: srv1.cpu - srv0.cpu, threads: threadDelta(serverPid!, srv0.threads, srv1.threads) }
          : undefined,
      side: Object.fromEntries(sides.map(([name], i) => [name, side1[i] - side0[i]])),
      generatorMs: (cli.user + cli.system) / 1000,
      machineBusyMs: m1.busy - m0.busy,
      eventLoopUtilization: elu.utilization,
    };
  };
}

/** CPU figures of one process over a window: ms, µs per unit of work, average cores busy. */
export function cpuFigures(
  ms: number,
  units: number,
  windowMs: number,
): { cpuMs: number; usPerUnit: number; cores: number } {
  return { cpuMs: ms, usPerUnit: units ? +((ms * 1000) / units).toFixed(2) : 0, cores: +(ms / windowMs).toFixed(3) };
}

/**
 * The CLI of a generator script run by runResultChild: a hard bound on the whole process
 * (exit 3 after `budgetMs`, whatever happens), `RESULT {json}` on stdout, then exit 0 after a
 * moment (close frames leave) without waiting for anyone. A throw exits 1 with the message.
 */
export async function resultChildMain(name: string, budgetMs: number, run: () => Promise<unknown>): Promise<void> {
  setTimeout(() => {
    process.stderr.write(`${name}: exceeded its ${budgetMs} ms budget\n`);
    process.exit(3);
  }, budgetMs).unref();
  const result = await run();
  process.stdout.write('RESULT ' + JSON.stringify(result) + '\n');
  setTimeout(() => process.exit(0), 200);
}

export interface ServerHandle {
  kind: string;
  port: number;
  pid: number;
  /** Worker threads the server reports (0 for the bare responder). */
  threads: number;
  /** The ready line, parsed (the router includes its resolved config). */
  info: Record<string, unknown>;
  /** Lines the server wrote on stderr (kept for the report if it fails). */
  stderr: string[];
  exited: Promise<number | null>;
  stop(): Promise<void>;
  /**
   * The server's own counters, for servers whose ready line says `"stats": true` and that
   * answer a `stats` line on stdin with a `{"stats": {...}}` line on stdout (the router:
   * batches and items); null at once from the others, and after a second without an answer.
   * A diagnostic beside the measurements, never part of them.
   */
  stats(): Promise<Record<string, number> | null>;
}

// Never leave a child (server, load generator) behind when we exit.
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/**
 * Kills `target` (a pid, or a process group as -pgid) with SIGKILL when this process dies, however
 * it dies (SIGKILL included, when no exit handler runs): a detached `sh` holds the read end of a
 * pipe only we write to; at EOF it kills the target and removes `dir` if given (mirrors
 * test/services/spawn.ts). Returns a function that disarms it (after a clean stop).
 */
export function watchdog(target: number, dir = ''): () => void {
  const script = 'cat >/dev/null; kill -KILL -- "$1" 2>/dev/null; if [ -n "$2" ]; then sleep 1; rm -rf -- "$2"; fi';
  const w = spawn('sh', ['-c', script, 'bench-watchdog', String(target), dir], {
    stdio: ['pipe', 'ignore', 'ignore'],
    detached: true,
  });
  w.on('error', () => undefined);
  w.unref();
  (w.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  return () => {
    if (w.pid !== undefined) {
      try {
        process.kill(-w.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  };
}

let onSignal: (() => void) | undefined;

/**
 * Kills `child` when this process exits, if it is still running then. The first call also makes
 * SIGINT / SIGTERM to this process an exit (the default dies without running exit handlers, so
 * a child without a link to us, a load generator, would run on to its own budget): children are
 * sent SIGTERM, given ≤ 2 s, then the exit hook SIGKILLs what is left.
 */
export function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!onSignal) {
    onSignal = () => {
      for (const c of live) c.kill('SIGTERM');
      const t0 = Date.now();
      const poll = setInterval(() => {
        if (live.size === 0 || Date.now() - t0 > 2000) process.exit(130);
      }, 50);
      poll.unref?.();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  }
}

/** Our environment without OCR_* variables: the router reads its config from them (OCR_REDIS_URL…). */
export function envWithoutRouterConfig(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OCR_')));
}

/** Starts `node --import tsx <script> [...args]` and waits for its JSON ready line. */
export async function startServer(
  kind: string,
  script: string,
  args: string[] = [],
  opts: { nodeArgs?: string[]; timeoutMs?: number; cwd?: string } = {},
): Promise<ServerHandle> {
  // No OCR_* variable of ours reaches a server: the router would take e.g. OCR_REDIS_URL over
  // its bench config and use a Redis that is not the benchmark's own.
  const child: ChildProcess = spawn(process.execPath, [...(opts.nodeArgs ?? []), '--import', 'tsx', script, ...args], {
    cwd: opts.cwd,
    env: envWithoutRouterConfig(),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (l) => {
    if (stderr.length < 200) stderr.push(l);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const statsWaiters: ((s: Record<string, number> | null) => void)[] = [];
  const info = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(new Error(`${kind} did not start within ${opts.timeoutMs ?? 60000} ms; stderr: ${stderr.join('\n')}`)),
      opts.timeoutMs ?? 60000,
    );
    const rl = createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      try {
        const j = JSON.parse(line) as Record<string, unknown>;
        if (j.ready) {
          clearTimeout(timer);
          resolve(j);
        } else if (j.stats) {
          statsWaiters.shift()?.(j.stats as Record<string, number>);
        }
      } catch {
        /* not ours */
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${kind} exited with ${code} before it was ready; stderr: ${stderr.join('\n')}`));
    });
  }).catch((err) => {
    child.kill('SIGKILL');
    throw err;
  });
  let stopped: Promise<void> | undefined;
  const handle: ServerHandle = {
    kind,
    port: info.port as number,
    pid: info.pid as number,
    threads: (info.threads as number) ?? 0,
    info,
    stderr,
    exited,
    stop() {
      return (stopped ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      })());
    },
    stats() {
      if (info.stats !== true || child.exitCode !== null || child.signalCode !== null || !child.stdin?.writable)
        return Promise.resolve(null);
      return new Promise((resolve) => {
        const waiter = (s: Record<string, number> | null) => {
          clearTimeout(timer);
          resolve(s);
        };
        const timer = setTimeout(() => {
          const i = statsWaiters.indexOf(waiter);
          if (i >= 0) statsWaiters.splice(i, 1);
          resolve(null);
        }, 1000);
        statsWaiters.push(waiter);
        child.stdin!.write('stats\n');
      });
    },
  };
  track(child);
  return handle;
}

/**
 * Server side of the ready-line protocol: stop on SIGTERM/SIGINT, or when the parent goes away
 * (its stdin pipe closes), so a crashed benchmark never leaves a server running.
 */
export function stopWithParent(stop: () => void): void {
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
}

/**
 * Runs a generator script (`node --import tsx <script> <json opts>`) in its own process and
 * resolves with the JSON of its `RESULT ` line; killed after `budgetMs`.
 */
export function runResultChild<T>(script: string, opts: unknown, budgetMs: number, root: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, JSON.stringify(opts)], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    track(child);
    let result: T | undefined;
    const err: string[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), budgetMs);
    createInterface({ input: child.stdout }).on('line', (l) => {
      if (l.startsWith('RESULT ')) result = JSON.parse(l.slice(7)) as T;
    });
    createInterface({ input: child.stderr }).on('line', (l) => {
      if (err.length < 50) err.push(l);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (result) resolve(result);
      else reject(new Error(`${script} exited with ${code} and no result:\n${err.join('\n')}`));
    });
  });
}
