/**
 * Multi-process mode: a supervisor that runs N router processes on one host.
 *
 * Owns: forking, naming (node id `<base>-p<i>`), restarting crashed processes with backoff,
 * and forwarding shutdown signals. Must not: share anything in memory with the processes:
 * they share the port (uWS sets SO_REUSEPORT, so the kernel spreads connections) and Redis.
 *
 *   supervisor ──fork──► router p0 (own worker pool) ─┐
 *              ──fork──► router p1 (own worker pool) ─┼── same port, shared Redis, node bus
 *              ──fork──► …                            ─┘
 *
 * Why processes and not more threads: one process may open at most 20,000 file descriptors
 * on these machines (a hard limit), and a socket thread saturates one core.
 */
import { fork, type ChildProcess } from 'node:child_process';

export interface SuperviseOptions {
  count: number;
  /** Script each process runs (the CLI), its arguments and Node flags. */
  script: string;
  args: string[];
  execArgv: string[];
  /** Node ids become `<nodeIdBase>-p<i>`. */
  nodeIdBase: string;
  /**
   * Worker threads of each process when the configuration leaves `pool.threads` at 0 ("one
   * per core"): N processes with one worker per core each would run N × cores workers
   * (~43 MB each, bench/storm.ts) competing for the same cores. @default unset (the config decides)
   */
  threadsPerProcess?: number;
  log: { info(o: object, m?: string): void; warn(o: object, m?: string): void; error(o: object, m?: string): void };
  /** Grace period for children at shutdown before SIGKILL. @default 15000 */
  stopTimeoutMs?: number;
}

export function superviseProcesses(opts: SuperviseOptions): Promise<number> {
  const children = new Map<number, ChildProcess>();
  const backoff = new Map<number, number>();
  let stopping = false;

  const start = (i: number) => {
    const startedAt = Date.now();
    const child = fork(opts.script, opts.args, {
      execArgv: opts.execArgv,
      env: {
        ...process.env,
        OCR_PROCESSES: '1',
        OCR_PROCESS_INDEX: String(i),
        OCR_NODE_ID: `${opts.nodeIdBase}-p${i}`,
        ...(opts.threadsPerProcess ? { OCR_POOL_THREADS: String(opts.threadsPerProcess) } : {}),
      },
      stdio: 'inherit',
    });
    children.set(i, child);
    child.on('exit', (code, signal) => {
      children.delete(i);
      if (stopping) return;
      // A process that ran for a minute starts over with a short delay; a crash loop backs off.
      const delay = Date.now() - startedAt > 60_000 ? 1000 : Math.min(30_000, (backoff.get(i) ?? 500) * 2);
      backoff.set(i, delay);
      opts.log.error({ process: i, code, signal, restartInMs: delay }, 'router process exited; restarting');
      setTimeout(() => {
        if (!stopping) start(i);
      }, delay).unref();
    });
  };

  for (let i = 0; i < opts.count; i++) start(i);
  opts.log.info({ processes: opts.count, nodeIdBase: opts.nodeIdBase }, 'supervising router processes');

  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      opts.log.info({ signal }, 'stopping router processes');
      for (const c of children.values()) c.kill('SIGTERM');
      const kill = setTimeout(() => {
        for (const c of children.values()) c.kill('SIGKILL');
      }, opts.stopTimeoutMs ?? 15_000);
      const check = setInterval(() => {
        if (children.size > 0) return;
        clearInterval(check);
        clearTimeout(kill);
        resolve(0);
      }, 50);
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}
