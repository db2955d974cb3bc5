/**
 * Polling helpers for tests that wait on an effect another thread or process produces
 * (a Redis replay, a worker stopping): bounded, never a bare sleep.
 */

/** Polls `cond` every `everyMs` until it is true (errors count as false); false after `ms`. */
export async function until(cond: () => Promise<boolean>, ms = 5000, everyMs = 25): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond().catch(() => false)) return true;
    await new Promise((res) => setTimeout(res, everyMs));
  }
  return false;
}
