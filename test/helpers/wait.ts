/**
 * Bounded waits for tests: poll a condition that another thread, process, timer or service
 * makes true (a Redis replay, a worker stopping, a row reaching ClickHouse) instead of
 * sleeping for a guessed time (issue #18). A guessed sleep is either too short on a loaded
 * machine (a flaky failure) or too long everywhere (a slow suite); a polled condition goes on
 * as soon as it holds and fails, naming what it waited for, only when it never does.
 *
 * Owns: the polling loop, its defaults and its timeout error. Must not: sleep without a
 * condition. A test whose subject is time itself (a handler that takes 500 ms, "nothing
 * arrives within 300 ms") keeps its own setTimeout, with a comment saying why.
 */

export interface UntilOptions {
  /** What is awaited, completing "timed out after 10000 ms waiting for …". */
  what: string;
  /**
   * Give up after this long. Only a failing test waits this long, so it is generous: a loaded
   * machine must not turn a slow success into a failure.
   * @default 10_000
   */
  timeoutMs?: number;
  /**
   * Pause between two attempts (each attempt may itself take a while: an HTTP or SQL round trip).
   * @default 20
   */
  everyMs?: number;
}

/** Raised by until() when the condition did not hold in time. */
export class WaitTimeoutError extends Error {
  readonly code = 'OCR_TEST_WAIT_TIMEOUT';
}

type Truthy<T> = Exclude<T, false | 0 | '' | null | undefined>;

/**
 * Calls `cond` until it returns (or resolves to) a truthy value, and resolves with that value,
 * so a wait can hand over what it found: `const rows = await until(async () => (await q()).length
 * >= 3 && ..., { what })`. A throw or rejection counts as "not yet" (a server still starting);
 * the last one is quoted in the timeout error. `cond` is tried at least once, and once more
 * after each pause until the deadline; then until() rejects with WaitTimeoutError.
 */
export async function until<T>(cond: () => T | Promise<T>, opts: UntilOptions): Promise<Truthy<T>> {
  const { what, timeoutMs = 10_000, everyMs = 20 } = opts;
  const started = Date.now();
  let lastError: unknown;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v as Truthy<T>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() - started >= timeoutMs) {
      const cause =
        lastError === undefined ? '' : ` (last error: ${(lastError as Error)?.message ?? String(lastError)})`;
      throw new WaitTimeoutError(`timed out after ${timeoutMs} ms waiting for ${what}${cause}`);
    }
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
