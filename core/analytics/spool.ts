/**
 * Local disk spool for analytics rows that could not (yet) go to ClickHouse.
 *
 * Owns: NDJSON segment files under `<dir>/<table>/`, the size bound of the directory, and
 * the claim protocol that lets any number of threads and processes replay one directory
 * without delivering a segment twice. Must not: know ClickHouse, retry on a timer or log
 * per row; the row buffer (row-buffer.ts) decides when to append, the replayer
 * (replayer.ts) when to replay.
 *
 * A segment's life, one file renamed through these names (rename(2) is atomic within a
 * file system, so exactly one renamer wins and the others get ENOENT):
 *
 *   <ms>-<owner>-<tid>-<seq>.open      appended to by exactly one writer (pid, thread)
 *        │ roll: size ≥ segmentBytes, age ≥ segmentMaxAgeMs, replay() or close()
 *        ▼
 *   <base>.ndjson                      closed; any replayer may claim it
 *        │ claim (rename) ─── ENOENT: another replayer has it, skip
 *        ▼
 *   <base>~<owner>-<tid>.claim         delivered in chunks by its claimer
 *        ├─ all chunks delivered ───────► unlink
 *        ├─ transient failure, chunk 0 ─► rename back to <base>.ndjson
 *        ├─ transient failure, chunk k ─► rest written to <base>-r<k>.ndjson, claim unlinked
 *        └─ permanent failure of chunk ─► that chunk to dead/<base>-c<k>.ndjson, go on
 *
 * `<owner>` is `<pid>.<process start time>` (from /proc on Linux), so a file left behind
 * by a crashed process is recognised even when its pid has been reused, e.g. pid 1 in a
 * restarted container. `recover()` (run on open and before every replay) gives such
 * orphans back: `.open` and `.claim` files of dead owners become `.ndjson` again.
 * Limitation: a worker thread that dies while its process lives leaves its `.open`/`.claim`
 * files until the process restarts, because another thread cannot tell that it is gone.
 *
 * Durability trade-off (no fsync per row): an append returns once the bytes are in the
 * page cache. Rows survive a crash of the process, not of the kernel or the machine,
 * until their segment is rolled: a roll fsyncs the file once before the rename. A torn
 * last line after a crash is skipped on replay and counted as `corrupt`.
 *
 * Delivery is at-least-once, not exactly-once, at one edge: when ClickHouse stores a
 * chunk but the answer is lost, the chunk is sent again (MergeTree does not deduplicate).
 *
 * Size bound: `maxBytes` covers every file in the directory (dead letters included). Each
 * instance rescans on open, on every roll() and replay, and when an append finds it full
 * (at most every `fullRescanMs`: a replayer in another thread or process, or an operator,
 * may have made room since), and adds its own appends in between, so with several writers
 * the bound can be overshot by what the others appended since the last rescan.
 */
import { readdir, readFile, rename, stat, unlink, mkdir, writeFile } from 'node:fs/promises';
import { close, fsync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { errors } from '../errors.js';

export interface SpoolOptions {
  /** Spool directory; created if absent. Rows of table T live in `<dir>/T/`. */
  dir: string;
  /**
   * Upper bound on the bytes of all files in `dir`. When full, new rows are dropped and
   * counted in `stats().dropped`.
   * @default 1073741824 (1 GiB)
   */
  maxBytes?: number;
  /**
   * A segment is rolled (closed, made replayable) once it holds this many bytes.
   * @default 8388608 (8 MiB)
   */
  segmentBytes?: number;
  /**
   * A segment is rolled by the next append, or by `rollAged()`, once it is this old.
   * @default 60000
   */
  segmentMaxAgeMs?: number;
  /**
   * When an append finds the spool full, the directory is measured again first if the last
   * measurement is at least this old (others may have freed space); a full spool is thus
   * rescanned at most this often.
   * @default 1000
   */
  fullRescanMs?: number;
  /**
   * Rows per `deliver()` call during replay.
   * @default 5000
   */
  replayChunkRows?: number;
  /** pino-compatible logger for quarantined and corrupt data. @default silent */
  log?: SpoolLogger;
}

/** The subset of a pino logger the spool uses. */
export interface SpoolLogger {
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface SpoolStats {
  /** Bytes in the directory, as last scanned plus own appends since. */
  bytes: number;
  /** Rows appended by this instance. */
  appended: number;
  /** Rows refused by this instance because the spool was full or closed. */
  dropped: number;
  /** Rows delivered by this instance's replays. */
  delivered: number;
  /** Rows moved to `dead/` because delivery failed permanently. */
  quarantined: number;
  /** Unparseable lines skipped during replay (torn writes after a crash). */
  corrupt: number;
}

export type SpoolRow = Record<string, unknown>;

/** Delivers one chunk of one table; a rejection keeps the rows in the spool. */
export type DeliverFn = (table: string, rows: SpoolRow[]) => Promise<void>;

export interface ReplayOptions {
  /**
   * Says whether a delivery error is permanent (the data itself is refused, e.g. a parse
   * error). Permanent failures move the chunk to `dead/` and replay goes on; any other
   * failure stops the replay and keeps the rows for the next one.
   * @default () => false
   */
  isPermanent?: (err: unknown) => boolean;
  /** Checked between chunks; returning true ends the replay early (e.g. on close). */
  shouldStop?: () => boolean;
}

export interface ReplayResult {
  /** Segments fully handled (delivered or quarantined) and removed. */
  segments: number;
  rows: number;
  quarantined: number;
  /** The transient error that stopped this replay, if any. */
  error?: unknown;
}

const DEFAULTS = {
  maxBytes: 1024 * 1024 * 1024,
  segmentBytes: 8 * 1024 * 1024,
  segmentMaxAgeMs: 60_000,
  fullRescanMs: 1000,
  replayChunkRows: 5000,
} as const;

const TABLE_NAME = /^[A-Za-z0-9_]+$/;
const DEAD_DIR = 'dead';
const OPEN_RE = /^\d+-(\d+)\.(\d+)-\d+-\d+\.open$/;
const OWNED_RE = /^(.+)~(\d+)\.(\d+)-\d+\.(claim|tmp)$/;

/** Start time of a process in clock ticks since boot, or undefined when it does not exist. */
function procStartTime(pid: number | 'self'): string | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) may contain spaces and parentheses, so count from the last ')'.
    // The remaining fields start at field 3; starttime is field 22.
    return s.slice(s.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

// '0' when /proc is unavailable (not Linux): liveness then falls back to kill(pid, 0).
const OWN_START = procStartTime('self') ?? '0';
const OWNER = `${process.pid}.${OWN_START}`;
let segmentSeq = 0;

function ownerAlive(pid: number, start: string): boolean {
  if (pid === process.pid && start === OWN_START) return true;
  if (start !== '0' && OWN_START !== '0') return procStartTime(pid) === start;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const fsyncAsync = promisify(fsync);
const closeAsync = promisify(close);

function isEnoent(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}

interface ActiveSegment {
  fd: number;
  path: string;
  base: string;
  bytes: number;
  openedAt: number;
}

const silentLog: SpoolLogger = { warn() {}, error() {} };

export class Spool {
  readonly dir: string;
  readonly #maxBytes: number;
  readonly #segmentBytes: number;
  readonly #segmentMaxAgeMs: number;
  readonly #fullRescanMs: number;
  readonly #chunkRows: number;
  readonly #log: SpoolLogger;
  readonly #active = new Map<string, ActiveSegment>();
  /** Segments being finished in the background (#retire). */
  readonly #retiring = new Set<Promise<void>>();
  readonly #tableDirs = new Set<string>();
  // Appends, rolls and rescans are serialised on this chain so that one writer never
  // interleaves two batches in a segment or rolls a file under a pending write.
  #lock: Promise<unknown> = Promise.resolve();
  #ready: Promise<void> | undefined;
  #replayRun: Promise<ReplayResult> | undefined;
  #closed = false;
  #usedBytes = 0;
  #scannedAt = 0;
  #stats = { appended: 0, dropped: 0, delivered: 0, quarantined: 0, corrupt: 0 };

  constructor(opts: SpoolOptions) {
    if (!opts || typeof opts.dir !== 'string' || opts.dir === '') {
      throw new errors.OCR_ERR_CONFIG_INVALID('analytics spool needs a `dir`');
    }
    this.dir = opts.dir;
    this.#maxBytes = opts.maxBytes ?? DEFAULTS.maxBytes;
    this.#segmentBytes = opts.segmentBytes ?? DEFAULTS.segmentBytes;
    this.#segmentMaxAgeMs = opts.segmentMaxAgeMs ?? DEFAULTS.segmentMaxAgeMs;
    this.#fullRescanMs = opts.fullRescanMs ?? DEFAULTS.fullRescanMs;
    this.#chunkRows = Math.max(1, opts.replayChunkRows ?? DEFAULTS.replayChunkRows);
    this.#log = opts.log ?? silentLog;
  }

  /** Creates the directory, gives back orphans of dead processes, measures the size. Idempotent. */
  open(): Promise<void> {
    this.#ready ??= (async () => {
      await mkdir(this.dir, { recursive: true });
      await this.recover();
      await this.#exclusive(() => this.#rescan());
    })();
    return this.#ready;
  }

  /**
   * Resolves once the segments rolled so far are closed and replayable. Appends roll full
   * and aged segments without waiting for that (the fsync, close and rename run in the
   * background); roll(), rollAged(), replay and close() wait for it themselves.
   */
  async settled(): Promise<void> {
    await Promise.all([...this.#retiring]);
  }

  /** The size bound (SpoolOptions.maxBytes). */
  get maxBytes(): number {
    return this.#maxBytes;
  }

  stats(): SpoolStats {
    return { bytes: this.#usedBytes, ...this.#stats };
  }

  /**
   * Appends rows to `table`'s current segment. Returns how many were accepted (the first
   * ones); the rest were refused because the spool is full (or closed) and are counted.
   * Rejects with OCR_ERR_ANALYTICS_SPOOL on an I/O error (e.g. ENOSPC); its
   * `details.appended` says how many of the first rows were written before it.
   */
  append(table: string, rows: readonly SpoolRow[]): Promise<number> {
    if (rows.length === 0) return this.appendEncoded(table, EMPTY, 0);
    let text = '';
    for (const row of rows) text += JSON.stringify(row) + '\n';
    return this.appendEncoded(table, Buffer.from(text), rows.length);
  }

  /**
   * Appends `rows` rows already encoded as NDJSON (`data`: whole lines, each ending in
   * '\n'), as the analytics sink buffers them. Same contract as `append()`. The bytes go
   * to disk as they are; they are split only at line ends, where a segment rolls or the
   * spool is full.
   */
  appendEncoded(table: string, data: Uint8Array, rows: number): Promise<number> {
    if (!TABLE_NAME.test(table) || table === DEAD_DIR) {
      return Promise.reject(new errors.OCR_ERR_ANALYTICS_SPOOL(`invalid table name ${JSON.stringify(table)}`));
    }
    if (rows === 0 || data.length === 0) return Promise.resolve(0);
    return this.open().then(() =>
      this.#exclusive(() => this.#appendLocked(table, Buffer.from(data.buffer, data.byteOffset, data.length), rows)),
    );
  }

  /** Closes this writer's segments (all, or one table's) so that they can be replayed. */
  roll(table?: string): Promise<void> {
    return this.open().then(() =>
      this.#exclusive(async () => {
        for (const t of table === undefined ? [...this.#active.keys()] : [table]) await this.#rollLocked(t);
        await this.#rescan();
      }),
    );
  }

  /** Rolls this writer's segments older than `segmentMaxAgeMs`, for writers that went idle. */
  rollAged(now = Date.now()): Promise<void> {
    return this.open().then(() =>
      this.#exclusive(async () => {
        for (const [t, seg] of [...this.#active]) {
          if (now - seg.openedAt >= this.#segmentMaxAgeMs) await this.#rollLocked(t);
        }
      }),
    );
  }

  /**
   * Gives back segments left by processes that no longer exist: their `.open` and `.claim`
   * files become claimable `.ndjson` segments; their temporary files are removed.
   * Returns the number of segments recovered. Safe to run concurrently with others.
   */
  async recover(): Promise<number> {
    let recovered = 0;
    for (const table of await this.#tables()) {
      const tdir = join(this.dir, table);
      for (const name of await readdirOrEmpty(tdir)) {
        let target: string | undefined;
        const o = OPEN_RE.exec(name);
        if (o !== null) {
          if (ownerAlive(Number(o[1]), o[2])) continue;
          target = name.slice(0, -'.open'.length) + '.ndjson';
        } else {
          const c = OWNED_RE.exec(name);
          if (c === null || ownerAlive(Number(c[2]), c[3])) continue;
          if (c[4] === 'tmp') {
            await unlink(join(tdir, name)).catch(() => {});
            continue;
          }
          target = `${c[1]}.ndjson`;
        }
        try {
          await rename(join(tdir, name), join(tdir, target));
          recovered++;
        } catch (err) {
          if (!isEnoent(err)) throw err; // another recoverer got there first
        }
      }
    }
    return recovered;
  }

  /**
   * Claims every closed segment (own segments are rolled first) and hands its rows to
   * `deliver` in chunks of `replayChunkRows`, oldest segment first. A segment is deleted
   * only after all its chunks were delivered. Stops at the first transient failure and
   * reports it in `error`; the undelivered rows stay in the spool. Concurrent calls on
   * one instance share one run.
   */
  replay(deliver: DeliverFn, opts: ReplayOptions = {}): Promise<ReplayResult> {
    this.#replayRun ??= this.#replay(deliver, opts).finally(() => {
      this.#replayRun = undefined;
    });
    return this.#replayRun;
  }

  /** Rolls own segments; later appends are dropped. Replays in flight finish. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.open();
    await this.#exclusive(async () => {
      this.#closed = true;
      for (const t of [...this.#active.keys()]) await this.#rollLocked(t);
    });
    await this.#replayRun?.catch(() => {});
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn, fn);
    this.#lock = run.catch(() => {});
    return run;
  }

  async #appendLocked(table: string, data: Buffer, rows: number): Promise<number> {
    if (this.#closed) {
      this.#stats.dropped += rows;
      return 0;
    }
    let accepted = rows;
    let rest = data;
    let room = this.#maxBytes - this.#usedBytes;
    if (rest.length > room && Date.now() - this.#scannedAt >= this.#fullRescanMs) {
      // Full by our count, which only grows between scans: measure again before refusing.
      await this.#rescan().catch((err: unknown) => {
        throw new errors.OCR_ERR_ANALYTICS_SPOOL((err as Error).message, { cause: err });
      });
      room = this.#maxBytes - this.#usedBytes;
    }
    if (rest.length > room) {
      // Full: keep the whole lines that fit, drop this row and the rest.
      const cut = room > 0 ? rest.lastIndexOf(NL, room - 1) + 1 : 0;
      rest = rest.subarray(0, cut);
      accepted = countLines(rest);
    }
    // Synchronous writes, and rolls finished in the background (#retire): an append is one
    // step, whatever its size. Each await of an asynchronous write waits for an event-loop
    // turn, and a loaded worker turns its loop only every 100-300 ms, so an append of a few
    // MB crossing segment rolls (fsync, close, rename, open) would span many turns while the
    // sink's buffers fill (bench/RESULTS.md, "Why MeterValues k = 8 dropped rows"). A write
    // to the page cache costs the thread about what copying the bytes costs.
    let written = 0;
    try {
      while (rest.length > 0) {
        const seg = this.#segment(table);
        const fits = this.#segmentBytes - seg.bytes;
        if (rest.length <= fits) {
          this.#write(seg, rest);
          written += rest.length;
          break;
        }
        // Roll at the last line end that still fits; a line longer than a whole segment
        // gets a segment of its own.
        let cut = fits > 0 ? rest.lastIndexOf(NL, fits - 1) + 1 : 0;
        if (cut === 0) {
          if (seg.bytes > 0) {
            void this.#retire(table);
            continue;
          }
          cut = rest.indexOf(NL) + 1 || rest.length;
        }
        this.#write(seg, rest.subarray(0, cut));
        written += cut;
        rest = rest.subarray(cut);
        void this.#retire(table);
      }
    } catch (err) {
      // A failed write may have left part of a line: later lines go to a fresh segment, so
      // only this one is torn (skipped as corrupt on replay; the caller still has the row).
      void this.#retire(table);
      const ok = countLines(data.subarray(0, written));
      this.#stats.appended += ok;
      this.#stats.dropped += rows - ok;
      throw new errors.OCR_ERR_ANALYTICS_SPOOL((err as Error).message, { cause: err, details: { appended: ok } });
    }
    this.#stats.appended += accepted;
    this.#stats.dropped += rows - accepted;
    return accepted;
  }

  /** Writes all of `bytes` at the end of the segment (synchronously; see #appendLocked). */
  #write(seg: ActiveSegment, bytes: Buffer): void {
    let off = 0;
    try {
      while (off < bytes.length) off += writeSync(seg.fd, bytes, off, bytes.length - off);
    } finally {
      seg.bytes += off;
      this.#usedBytes += off;
    }
  }

  /** The writer's open segment of `table`, rolled first when too old. */
  #segment(table: string): ActiveSegment {
    let seg = this.#active.get(table);
    if (seg !== undefined && Date.now() - seg.openedAt >= this.#segmentMaxAgeMs) {
      void this.#retire(table);
      seg = undefined;
    }
    if (seg === undefined) {
      const tdir = join(this.dir, table);
      if (!this.#tableDirs.has(table)) {
        mkdirSync(tdir, { recursive: true });
        this.#tableDirs.add(table);
      }
      const now = Date.now();
      const base = `${String(now).padStart(13, '0')}-${OWNER}-${threadId}-${++segmentSeq}`;
      const path = join(tdir, `${base}.open`);
      seg = { fd: openSync(path, 'ax'), path, base, bytes: 0, openedAt: now };
      this.#active.set(table, seg);
    }
    return seg;
  }

  /**
   * Takes `table`'s segment out of use at once and finishes it in the background: fsync (one
   * per segment, not per row: closed segments survive a power loss), close, and rename to
   * `.ndjson`, replayable. Resolves when it is finished; never rejects (a failure is logged:
   * the rows stay in the `.open` file, which a later process recovers).
   */
  #retire(table: string): Promise<void> {
    const seg = this.#active.get(table);
    if (seg === undefined) return Promise.resolve();
    this.#active.delete(table);
    const done = (async () => {
      try {
        try {
          if (seg.bytes > 0) await fsyncAsync(seg.fd);
        } finally {
          await closeAsync(seg.fd);
        }
        if (seg.bytes === 0) await unlink(seg.path).catch(() => {});
        else await rename(seg.path, join(this.dir, table, `${seg.base}.ndjson`));
      } catch (err) {
        this.#log.error(
          { event: 'ocr.analytics.spool_roll_failed', file: seg.path, err },
          'analytics spool segment could not be closed; it is recovered by the next start',
        );
      }
    })();
    this.#retiring.add(done);
    void done.finally(() => this.#retiring.delete(done));
    return done;
  }

  /** Rolls `table`'s segment and waits until it is replayable; then also every earlier roll. */
  async #rollLocked(table: string): Promise<void> {
    await this.#retire(table);
    await this.settled();
  }

  async #tables(): Promise<string[]> {
    const entries = await readdir(this.dir, { withFileTypes: true }).catch((err: unknown) => {
      if (isEnoent(err)) return [];
      throw err;
    });
    return entries
      .filter((e) => e.isDirectory() && TABLE_NAME.test(e.name) && e.name !== DEAD_DIR)
      .map((e) => e.name)
      .sort();
  }

  async #rescan(): Promise<void> {
    let total = 0;
    for (const table of await this.#tables()) {
      for (const sub of [join(this.dir, table), join(this.dir, table, DEAD_DIR)]) {
        for (const name of await readdirOrEmpty(sub)) {
          try {
            const st = await stat(join(sub, name));
            if (st.isFile()) total += st.size;
          } catch (err) {
            if (!isEnoent(err)) throw err; // claimed and deleted meanwhile
          }
        }
      }
    }
    this.#usedBytes = total;
    this.#scannedAt = Date.now();
  }

  async #replay(deliver: DeliverFn, opts: ReplayOptions): Promise<ReplayResult> {
    await this.open();
    await this.recover();
    await this.#exclusive(async () => {
      for (const t of [...this.#active.keys()]) await this.#rollLocked(t);
    });
    const result: ReplayResult = { segments: 0, rows: 0, quarantined: 0 };
    try {
      for (const table of await this.#tables()) {
        const tdir = join(this.dir, table);
        const closed = (await readdirOrEmpty(tdir)).filter((n) => n.endsWith('.ndjson')).sort();
        for (const name of closed) {
          if (opts.shouldStop?.()) return result;
          const base = name.slice(0, -'.ndjson'.length);
          const claim = join(tdir, `${base}~${OWNER}-${threadId}.claim`);
          try {
            await rename(join(tdir, name), claim);
          } catch (err) {
            if (isEnoent(err)) continue; // claimed by another replayer
            throw err;
          }
          const ok = await this.#deliverSegment(table, tdir, base, claim, deliver, opts, result);
          if (!ok) return result;
        }
      }
      return result;
    } finally {
      await this.#exclusive(() => this.#rescan());
    }
  }

  /** Delivers one claimed segment. Returns false when a transient failure stopped it. */
  async #deliverSegment(
    table: string,
    tdir: string,
    base: string,
    claim: string,
    deliver: DeliverFn,
    opts: ReplayOptions,
    result: ReplayResult,
  ): Promise<boolean> {
    const rows = this.#parse(await readFile(claim, 'utf8'), claim);
    for (let i = 0; i < rows.length; i += this.#chunkRows) {
      const chunk = rows.slice(i, i + this.#chunkRows);
      if (opts.shouldStop?.()) {
        await this.#putBack(tdir, base, claim, rows, i);
        return false;
      }
      try {
        await deliver(table, chunk);
      } catch (err) {
        if (opts.isPermanent?.(err)) {
          const deadDir = join(tdir, DEAD_DIR);
          await mkdir(deadDir, { recursive: true });
          await writeAtomically(
            join(deadDir, `${base}-c${i}.ndjson`),
            chunk,
            join(tdir, `${base}-c${i}~${OWNER}-${threadId}.tmp`),
          );
          this.#stats.quarantined += chunk.length;
          result.quarantined += chunk.length;
          this.#log.error(
            { event: 'ocr.analytics.spool_quarantined', table, rows: chunk.length, err },
            'analytics rows refused permanently; moved to dead/',
          );
          continue;
        }
        await this.#putBack(tdir, base, claim, rows, i);
        result.error = err;
        return false;
      }
      this.#stats.delivered += chunk.length;
      result.rows += chunk.length;
    }
    await unlink(claim);
    result.segments++;
    return true;
  }

  /** Returns rows [from..] to the spool as a closed segment, keeping segment order. */
  async #putBack(tdir: string, base: string, claim: string, rows: SpoolRow[], from: number): Promise<void> {
    if (from === 0) {
      await rename(claim, join(tdir, `${base}.ndjson`));
      return;
    }
    // Part of the segment was delivered: write only the rest, so it is not sent twice.
    // `<base>-r<k>` sorts right after `<base>`, so replay order is kept.
    const restBase = `${base}-r${from}`;
    await writeAtomically(
      join(tdir, `${restBase}.ndjson`),
      rows.slice(from),
      join(tdir, `${restBase}~${OWNER}-${threadId}.tmp`),
    );
    await unlink(claim);
  }

  #parse(text: string, file: string): SpoolRow[] {
    const rows: SpoolRow[] = [];
    let corrupt = 0;
    for (const line of text.split('\n')) {
      if (line === '') continue;
      try {
        const v: unknown = JSON.parse(line);
        if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
          rows.push(v as SpoolRow);
          continue;
        }
      } catch {
        // fall through: counted below
      }
      corrupt++;
    }
    if (corrupt > 0) {
      this.#stats.corrupt += corrupt;
      this.#log.warn({ event: 'ocr.analytics.spool_corrupt', file, lines: corrupt }, 'skipped unparseable spool lines');
    }
    return rows;
  }
}

const NL = 0x0a;
const EMPTY = new Uint8Array(0);

function countLines(b: Buffer): number {
  let n = 0;
  for (let i = b.indexOf(NL); i !== -1; i = b.indexOf(NL, i + 1)) n++;
  return n;
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if (isEnoent(err)) return [];
    throw err;
  }
}

/** Writes rows as NDJSON to `tmp`, then renames to `dest`: readers never see half a file. */
async function writeAtomically(dest: string, rows: SpoolRow[], tmp: string): Promise<void> {
  await writeFile(tmp, rows.map((r) => JSON.stringify(r)).join('\n') + '\n', { flag: 'w' });
  await rename(tmp, dest);
}
