/**
 * Throwaway clickhouse-server for tests: own data dir, own three ports, small caches.
 *
 * Owns: the clickhouse-server command line (the packaged config.xml with path, log and
 * port overrides) and its readiness probe (GET /ping → "Ok."). Must not: use the default
 * ports (8123, 9000, 9009): the router and the shared services own those. Every port
 * comes from freePort() or the caller.
 *
 * `restart()` keeps ports and data dir: databases and rows written before survive, which
 * is what a ClickHouse outage looks like to the analytics sink.
 *
 * The packaged config sizes caches for a dedicated server (5 GiB mark cache); tests get
 * 128 MiB caches, so a test server stays around 100 MB RSS.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  findBinary,
  freePort,
  makeTempDir,
  removeTempDir,
  spawnServer,
  tailFile,
  waitReady,
  ServiceUnavailableError,
  type ServerProcess,
} from './spawn.js';
import type { StopOptions } from './redis.js';

export const CLICKHOUSE_INSTALL_HINT = 'apt-get update && apt-get install -y clickhouse-server';

export interface ClickHouseOptions {
  /** @default a free port */
  httpPort?: number;
  /** Native protocol port; unused by the router but must not be 9000. @default a free port */
  tcpPort?: number;
  /** @default a free port */
  interserverPort?: number;
  /** Data directory; the caller owns it. @default a new temp dir */
  dir?: string;
  /** @default '/etc/clickhouse-server/config.xml' */
  configFile?: string;
  /** Extra `--key=value` config overrides. @default [] */
  args?: string[];
  /** @default 30000 */
  startTimeoutMs?: number;
}

export interface ClickHouseService {
  /** `http://127.0.0.1:<httpPort>` */
  readonly url: string;
  readonly httpPort: number;
  readonly tcpPort: number;
  readonly dir: string;
  /** Pid of the current process (changes on restart). */
  readonly pid: number;
  /** Kills the server and waits until it has exited. Data stays unless removeDir. */
  stop(opts?: StopOptions): Promise<void>;
  /** Stops, then starts again on the same ports with the same data. */
  restart(opts?: Pick<StopOptions, 'signal'>): Promise<void>;
}

export type { StopOptions };

/** Resolves true when `GET <url>/ping` answers "Ok.". */
export async function pingClickHouse(url: string, timeoutMs = 1000): Promise<boolean> {
  try {
    const res = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(timeoutMs) });
    return res.ok && (await res.text()).startsWith('Ok.');
  } catch {
    return false;
  }
}

export async function startClickHouse(opts: ClickHouseOptions = {}): Promise<ClickHouseService> {
  const bin = findBinary('clickhouse-server', 'OCR_CLICKHOUSE_SERVER_BIN', CLICKHOUSE_INSTALL_HINT);
  const configFile = opts.configFile ?? '/etc/clickhouse-server/config.xml';
  if (!existsSync(configFile)) {
    throw new ServiceUnavailableError(
      `ClickHouse config ${configFile} is missing (package not fully installed?). Install it with: ${CLICKHOUSE_INSTALL_HINT}`,
    );
  }
  const dir = opts.dir ?? makeTempDir('ocr-clickhouse-');
  const timeoutMs = opts.startTimeoutMs ?? 30_000;
  const auto = opts.httpPort === undefined || opts.tcpPort === undefined || opts.interserverPort === undefined;
  const ports = {
    http: opts.httpPort ?? (await freePort()),
    tcp: opts.tcpPort ?? (await freePort()),
    interserver: opts.interserverPort ?? (await freePort()),
  };
  const errLog = join(dir, 'clickhouse-server.err.log');

  const launch = async (): Promise<ServerProcess> => {
    mkdirSync(join(dir, 'tmp'), { recursive: true });
    const url = `http://127.0.0.1:${ports.http}`;
    const proc = spawnServer(
      bin,
      [
        `--config-file=${configFile}`,
        '--',
        `--path=${dir}/`,
        `--tmp_path=${dir}/tmp/`,
        `--user_files_path=${dir}/user_files/`,
        `--format_schema_path=${dir}/format_schemas/`,
        `--logger.log=${join(dir, 'clickhouse-server.log')}`,
        `--logger.errorlog=${errLog}`,
        `--http_port=${ports.http}`,
        `--tcp_port=${ports.tcp}`,
        `--interserver_http_port=${ports.interserver}`,
        '--mark_cache_size=134217728',
        '--uncompressed_cache_size=134217728',
        ...(opts.args ?? []),
      ],
      dir,
    );
    await waitReady(proc, () => pingClickHouse(url), {
      name: `clickhouse-server on http port ${ports.http}`,
      timeoutMs,
      describe: () => `clickhouse-server error log (${errLog}), last lines:\n${tailFile(errLog)}`,
    });
    return proc;
  };

  let proc: ServerProcess | undefined;
  for (let attempt = 0; ; attempt++) {
    try {
      proc = await launch();
      break;
    } catch (err) {
      // A port from freePort() can be taken before the server binds it.
      if (!auto || attempt >= 2) throw err;
      ports.http = opts.httpPort ?? (await freePort());
      ports.tcp = opts.tcpPort ?? (await freePort());
      ports.interserver = opts.interserverPort ?? (await freePort());
    }
  }

  let current: ServerProcess = proc;
  return {
    get url() {
      return `http://127.0.0.1:${ports.http}`;
    },
    get httpPort() {
      return ports.http;
    },
    get tcpPort() {
      return ports.tcp;
    },
    dir,
    get pid() {
      return current.pid;
    },
    async stop(s: StopOptions = {}) {
      // SIGTERM is a graceful shutdown that takes ~2.5 s on 18.16; tests that only need
      // the server gone can pass SIGKILL (MergeTree parts are already on disk).
      await current.stop(s.signal ?? 'SIGTERM', s.graceMs ?? 10_000);
      if (s.removeDir) removeTempDir(dir);
    },
    async restart(s: Pick<StopOptions, 'signal'> = {}) {
      await current.stop(s.signal ?? 'SIGTERM', 10_000);
      current = await launch();
    },
  };
}
