/**
 * A fake clock for unit tests of timer logic (deadlines, TTLs): time moves only when the test
 * says so, so "not before 80 ms, by 88 ms" is checked exactly, on any machine, in no time.
 *
 * Owns: a millisecond counter and the timers set on it. Must not: touch the real timers or
 * Date (code under test receives this clock explicitly, e.g. `new Deadlines(clock)`).
 */

interface FakeTimer {
  at: number;
  seq: number;
  fn: () => void;
}

export class FakeClock {
  #now: number;
  #seq = 0;
  readonly #timers = new Map<number, FakeTimer>();

  constructor(start = 0) {
    this.#now = start;
  }

  /** The current fake time in ms. */
  now = (): number => this.#now;

  /** Like setTimeout: `fn` runs once advance() reaches now + ms (at least 1 ms, as in Node). */
  setTimeout = (fn: () => void, ms: number): number => {
    const seq = ++this.#seq;
    this.#timers.set(seq, { at: this.#now + Math.max(1, ms), seq, fn });
    return seq;
  };

  clearTimeout = (timer: unknown): void => {
    this.#timers.delete(timer as number);
  };

  /** Fake timers hold no process: nothing to do. */
  hold = (): void => {};

  /** Timers set and not yet run or cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  /**
   * Moves time forward by `ms`, running each timer due on the way at its own time (now() reads
   * its due time inside it), earliest first, ties in the order they were set. A timer set by
   * one that runs is run too if it falls due within the step.
   */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      let next: FakeTimer | undefined;
      for (const timer of this.#timers.values())
        if (
          timer.at <= end &&
          (next === undefined || timer.at < next.at || (timer.at === next.at && timer.seq < next.seq))
        )
          next = timer;
      if (next === undefined) break;
      this.#timers.delete(next.seq);
      this.#now = Math.max(this.#now, next.at);
      next.fn();
    }
    this.#now = end;
  }
}
