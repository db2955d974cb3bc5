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
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
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

/** Busy and total CPU milliseconds of the whole machine so far (all cores, /proc/stat). */
export function machineCpuMs(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = f[3]! + f[4]!;
  return { busy: (total - idle) * TICK_MS, total: total * TICK_MS };
}

/** CPU milliseconds per live thread of `pid`, keyed by `<name>#<tid>`. */
export function threadCpuMs(pid: number): Map<string, { name: string; ms: number }> {
  const out = new Map<string, { name: string; ms: number }>();
  let tids: string[] = [];
  try { tids = readdirSync(`/proc/${pid}/task`); } catch { return out; }
  for (const tid of tids) {
    try {
      const s = parseStat(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'));
      out.set(tid, { name: s.comm, ms: s.ticks * TICK_MS });
    } catch { /* thread exited */ }
  }
  return out;
}

/**
 * Thread CPU between two snapshots: the main thread, the busiest other threads one by one
 * (Node names every thread "node", so worker threads show as the busiest non-main ones),
 * and the rest summed.
 */
export function threadDelta(pid: number, a: Map<string, { name: string; ms: number }>, b: Map<string, { name: string; ms: number }>, top = 4): { name: string; ms: number; threads: number }[] {
  const rows: { name: string; ms: number; threads: number }[] = [];
  for (const [tid, t] of b) rows.push({ name: tid === String(pid) ? 'main' : `tid ${tid}`, ms: t.ms - (a.get(tid)?.ms ?? 0), threads: 1 });
  const main = rows.filter((r) => r.name === 'main');
  const others = rows.filter((r) => r.name !== 'main').sort((x, y) => y.ms - x.ms);
  const rest = others.slice(top);
  const out = [...main, ...others.slice(0, top).filter((r) => r.ms > 0)];
  if (rest.length) out.push({ name: 'other threads', ms: rest.reduce((n, r) => n + r.ms, 0), threads: rest.length });
  return out;
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
}

// Never leave a child (server, load generator) behind when we exit.
const live = new Set<ChildProcess>();
process.once('exit', () => { for (const c of live) c.kill('SIGKILL'); });

/** Kills `child` when this process exits, if it is still running then. */
export function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
}

/** Starts `node --import tsx <script> [...args]` and waits for its JSON ready line. */
export async function startServer(kind: string, script: string, args: string[] = [], opts: { nodeArgs?: string[]; timeoutMs?: number; cwd?: string } = {}): Promise<ServerHandle> {
  const child: ChildProcess = spawn(process.execPath, [...(opts.nodeArgs ?? []), '--import', 'tsx', script, ...args], {
    cwd: opts.cwd,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (l) => { if (stderr.length < 200) stderr.push(l); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const info = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${kind} did not start within ${opts.timeoutMs ?? 60000} ms; stderr: ${stderr.join('\n')}`)), opts.timeoutMs ?? 60000);
    const rl = createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      try {
        const j = JSON.parse(line) as Record<string, unknown>;
        if (j.ready) {
          clearTimeout(timer);
          resolve(j);
        }
      } catch { /* not ours */ }
    });
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`${kind} exited with ${code} before it was ready; stderr: ${stderr.join('\n')}`)); });
  }).catch((err) => { child.kill('SIGKILL'); throw err; });
  let stopped: Promise<void> | undefined;
  const handle: ServerHandle = {
    kind, port: info.port as number, pid: info.pid as number, threads: (info.threads as number) ?? 0, info, stderr, exited,
    stop() {
      return (stopped ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      })());
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
    const child = spawn(process.execPath, ['--import', 'tsx', script, JSON.stringify(opts)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    track(child);
    let result: T | undefined;
    const err: string[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), budgetMs);
    createInterface({ input: child.stdout! }).on('line', (l) => { if (l.startsWith('RESULT ')) result = JSON.parse(l.slice(7)) as T; });
    createInterface({ input: child.stderr! }).on('line', (l) => { if (err.length < 50) err.push(l); });
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (result) resolve(result);
      else reject(new Error(`${script} exited with ${code} and no result:\n${err.join('\n')}`));
    });
  });
}
