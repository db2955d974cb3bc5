/**
 * CLI: `ocpp-router [start] [--config FILE] [--port N]`, `ocpp-router api-key create`,
 * `ocpp-router charger set-password ID`. Argument parsing is node:util parseArgs (part of
 * Node, no dependency needed for three subcommands).
 */
import { parseArgs } from 'node:util';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../core/paths.js';
import { buildConfig, readConfigFile } from '../core/options.js';
import { ApiKeyStore } from '../core/api/api-keys.js';
import { superviseProcesses } from '../core/cluster/processes.js';
import { createLogger } from '../core/log.js';
import { availableParallelism, hostname } from 'node:os';

const HELP = `ocpp-router — OCPP 1.6 / 2.0.1 / 2.1 router and central system

Usage:
  ocpp-router [start] [--config FILE] [--port N]   start the router
  ocpp-router api-key create [--name NAME]         create an operator API key (printed once)
  ocpp-router config check [--config FILE]         validate a configuration and print it
  ocpp-router --help | --version

Options:
  -c, --config FILE   configuration file (.json, or .js/.ts default-exporting an object);
                      default: $OCR_CONFIG, else config/default.json when present
  -p, --port N        charger port (same as OCR_SERVER_PORT)
  -P, --processes N   router processes sharing the port (same as OCR_PROCESSES; needs Redis)
  -n, --name NAME     name of the API key (api-key create)

Every configuration key can be set from the environment as OCR_<SECTION>_<KEY>,
e.g. OCR_REDIS_URL=redis://10.0.0.5:6379 OCR_CLICKHOUSE_URL=http://ch:8123
OCR_SECURITY_UNKNOWN_CHARGERS=reject OCR_SECURITY_REQUIRE_AUTH=true.
Chargers connect at ws://HOST:PORT/ocpp/<chargePointId> (default port 9000).
`;

async function loadInput(file: string | undefined): Promise<Record<string, unknown>> {
  const path = file ?? process.env.OCR_CONFIG;
  if (path) return readConfigFile(path);
  // The shipped defaults: absent means built-in defaults; present but broken is a startup error.
  const shipped = join(projectRoot, 'config', 'default.json');
  return existsSync(shipped) ? readConfigFile(shipped) : {};
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      port: { type: 'string', short: 'p' },
      processes: { type: 'string', short: 'P' },
      name: { type: 'string', short: 'n' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values.version) {
    const pkg = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version: string };
    process.stdout.write(`${pkg.version}\n`);
    return 0;
  }
  const [cmd = 'start', sub] = positionals;
  const input = await loadInput(values.config);
  if (values.port) process.env.OCR_SERVER_PORT = values.port;
  if (values.processes) process.env.OCR_PROCESSES = values.processes;

  if (cmd === 'api-key' && sub === 'create') {
    const cfg = buildConfig(input);
    const store = new ApiKeyStore([], ApiKeyStore.fileIn(cfg.dataDir));
    const key = await store.create(values.name ?? 'cli');
    process.stdout.write(`${key}\n`);
    process.stderr.write(`Stored its SHA-256 in ${ApiKeyStore.fileIn(cfg.dataDir)}. The key is not shown again.\n`);
    return 0;
  }
  if (cmd === 'config' && sub === 'check') {
    const cfg = buildConfig(input);
    process.stdout.write(
      JSON.stringify(
        { ...cfg, clickhouse: { ...cfg.clickhouse, password: cfg.clickhouse.password ? '[redacted]' : '' } },
        null,
        2,
      ) + '\n',
    );
    return 0;
  }
  if (cmd !== 'start') {
    process.stderr.write(`Unknown command "${positionals.join(' ')}".\n\n${HELP}`);
    return 2;
  }
  const cfg = buildConfig(input);
  if (cfg.processes > 1) {
    // Supervisor: create the API key once (not N times in a race), then fork the routers.
    const keys = new ApiKeyStore(cfg.api.keys, ApiKeyStore.fileIn(cfg.dataDir));
    await keys.load();
    if (cfg.api.enabled && keys.size === 0) {
      const key = await keys.create('generated-at-first-start');
      process.stderr.write(
        `\nNo API key was configured; created one (stored hashed in ${ApiKeyStore.fileIn(cfg.dataDir)}):\n\n  ${key}\n\nUse it as "Authorization: Bearer <key>". It is not shown again.\n\n`,
      );
    }
    const base =
      (input.nodeId as string | undefined) ?? process.env.OCR_NODE_ID ?? hostname().replace(/[^A-Za-z0-9._-]/g, '-');
    return superviseProcesses({
      count: cfg.processes,
      script: process.argv[1],
      args: process.argv
        .slice(2)
        .filter((a, i, all) => !/^(-P|--processes)(=|$)/.test(a) && !/^(-P|--processes)$/.test(all[i - 1] ?? '')),
      execArgv: process.execArgv,
      nodeIdBase: base,
      // pool.threads 0 means one worker per core for the host, not per process.
      threadsPerProcess:
        cfg.pool.threads === 0 ? Math.max(1, Math.floor(availableParallelism() / cfg.processes)) : undefined,
      log: createLogger(cfg.log, { role: 'supervisor' }),
    });
  }
  // A process of --processes whose supervisor died (SIGKILL, OOM) stops too, also while it
  // is still starting: left running it would keep the port (SO_REUSEPORT) beside the
  // processes of a restarted supervisor.
  const supervised = process.send !== undefined && process.env.OCR_PROCESS_INDEX !== undefined;
  if (supervised && !process.connected) return 0;
  let router: Awaited<ReturnType<(typeof import('../core/index.js'))['createRouter']>> | undefined;
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    if (!router) process.exit(0); // still starting: nothing to drain
    router.log.info({ signal }, 'shutting down');
    await router.close();
    process.exit(0);
  };
  if (supervised) process.once('disconnect', () => void stop('supervisor gone'));
  // Imported here, not at the top: a supervisor of --processes never runs a router, and core
  // with its dependencies is ~20 MB of its RSS (bench/storm.ts, 100k chargers).
  const { createRouter } = await import('../core/index.js');
  router = await createRouter(input, { instance: Number(process.env.OCR_PROCESS_INDEX ?? 0) });
  if (stopping) {
    // The supervisor went away while this process was starting.
    await router.close();
    process.exit(0);
  }
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  return -1;
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: Error & { code?: string }) => {
    process.stderr.write(`ocpp-router: ${err.code ? `${err.code}: ` : ''}${err.message}\n`);
    process.exit(1);
  },
);
