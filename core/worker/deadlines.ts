/**
 * Deadlines of plugin hook calls, without a timer per call: every async hook call of every
 * frame has one (pool.hookTimeoutMs, or the hook's own timeoutMs), and almost none fire.
 *
 * Why not setTimeout + Promise.race per call: at 10,000 StatusNotifications a
 * second on the socket thread that pair was its third-largest allocation site (a Timeout, a
 * race array, two promises and their reactions per call: ≈ 670 bytes of garbage each,
 * bench/trace-report.ts), and a timer-list insert and removal per call.
 *
 * How: calls with the same timeout expire in the order they started, so each timeout value
 * keeps its pending calls in a doubly-linked list, oldest first; a call that settles unlinks
 * itself (and is garbage at once: nothing else holds it). One timer per Deadlines is armed
 * at the oldest pending deadline, but never sooner than `granularityMs` from now (timeoutMs /
 * 10, between 1 and 100 ms), so a deadline fires between its time and its time + granularity.
 * When it wakes to find that call settled, it re-arms at the new oldest: under steady load,
 * about once per timeout.
 *
 * Owns: when a deadline fires. Must not: know what a hook is (the caller's `expire` says what
 * a missed deadline does).
 */

/**
 * The time source and the one timer of a Deadlines. The default is the process's own
 * (performance.now, setTimeout); tests pass a fake one to step time instead of sleeping
 * (test/helpers/clock.ts).
 */
export interface DeadlineClock {
  /** Milliseconds on a monotonic scale (performance.now()). */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(timer: unknown): void;
  /** Whether `timer` keeps the process alive (Node's ref/unref). */
  hold(timer: unknown, on: boolean): void;
}

const realClock: DeadlineClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout),
  hold: (timer, on) => void (on ? (timer as NodeJS.Timeout).ref() : (timer as NodeJS.Timeout).unref()),
};

export class Deadline {
  prev: Deadline | null = null;
  next: Deadline | null = null;
  constructor(
    readonly list: PendingList,
    readonly at: number,
    readonly expire: () => void,
  ) {}
}

/** The pending calls of one timeout value, oldest first. */
class PendingList {
  first: Deadline | null = null;
  last: Deadline | null = null;
}

export class Deadlines {
  readonly #lists = new Map<number, PendingList>();
  readonly #clock: DeadlineClock;
  #pending = 0;
  #timer: unknown = null;
  #granularityMs = 100;

  /** @param clock the time source; the default is the real one (see DeadlineClock). */
  constructor(clock: DeadlineClock = realClock) {
    this.#clock = clock;
  }

  /** Calls `expire` once `timeoutMs` have passed, unless settle() was called with the result first. */
  add(timeoutMs: number, expire: () => void): Deadline {
    let list = this.#lists.get(timeoutMs);
    if (list === undefined) {
      this.#lists.set(timeoutMs, (list = new PendingList()));
      this.#granularityMs = Math.min(this.#granularityMs, Math.max(1, Math.floor(timeoutMs / 10)));
    }
    const d = new Deadline(list, this.#clock.now() + timeoutMs, expire);
    d.prev = list.last;
    if (list.last !== null) list.last.next = d;
    else list.first = d;
    list.last = d;
    if (this.#timer === null) this.#arm(d.at);
    else if (this.#pending === 0) this.#clock.hold(this.#timer, true);
    this.#pending++;
    return d;
  }

  /** The guarded call ended (success or failure): its deadline will not fire. Idempotent. */
  settle(d: Deadline): void {
    const list = d.list;
    if (d.prev === null && list.first !== d) return; // already settled or expired
    if (d.prev !== null) d.prev.next = d.next;
    else list.first = d.next;
    if (d.next !== null) d.next.prev = d.prev;
    else list.last = d.prev;
    d.prev = d.next = null;
    // The timer stays armed (it re-arms lazily, see the file header) but, with no call
    // pending, must not hold the process open for a hook timeout after the last one settled.
    if (--this.#pending === 0 && this.#timer !== null) this.#clock.hold(this.#timer, false);
  }

  /** Calls whose deadline is pending. */
  get size(): number {
    return this.#pending;
  }

  #arm(at: number): void {
    const now = this.#clock.now();
    this.#timer = this.#clock.setTimeout(() => this.#sweep(), Math.max(at - now, this.#granularityMs));
  }

  #sweep(): void {
    this.#timer = null;
    const now = this.#clock.now();
    let next = Infinity;
    for (const list of this.#lists.values()) {
      let d = list.first;
      while (d !== null && d.at <= now) {
        this.settle(d);
        d.expire();
        d = list.first;
      }
      if (d !== null && d.at < next) next = d.at;
    }
    if (next !== Infinity && this.#timer === null) this.#arm(next);
  }

  /** Stops the timer; pending deadlines never fire (the thread is closing). */
  close(): void {
    if (this.#timer !== null) this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
    for (const list of this.#lists.values()) list.first = list.last = null;
    this.#pending = 0;
  }
}
