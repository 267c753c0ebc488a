import type { Cancel, Clock } from '../../src/sync/scheduler.js';

interface Timer {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
}

/**
 * A clock a test drives by hand: nothing runs until `advance` (or `flush`)
 * says so. Callbacks run in time order (ties in the order scheduled),
 * including ones scheduled while advancing; between callbacks the promise
 * jobs they started get to run, so async work settles without real sleeps.
 * `schedule(fn, 0)` runs on the next `advance(0)` / `flush()`, never at once.
 */
export class ManualClock implements Clock {
  private time: number;
  private seq = 0;
  private readonly timers = new Set<Timer>();

  constructor(start = 0) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  schedule(fn: () => void, ms: number): Cancel {
    const timer: Timer = { at: this.time + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.add(timer);
    return () => {
      this.timers.delete(timer);
    };
  }

  /** Moves time forward by `ms`, running every callback that falls due on the way. */
  async advance(ms: number): Promise<void> {
    const until = this.time + ms;
    await settle();
    for (;;) {
      const next = this.due(until);
      if (next === undefined) break;
      this.timers.delete(next);
      this.time = next.at;
      next.fn();
      await settle();
    }
    this.time = until;
    await settle();
  }

  /** Runs what is due now (`schedule(fn, 0)` included) and lets the promises it started settle. */
  flush(): Promise<void> {
    return this.advance(0);
  }

  /** Moves to an absolute time (not backwards). */
  advanceTo(time: number): Promise<void> {
    if (time < this.time) throw new Error(`the clock is at ${this.time}, cannot go back to ${time}`);
    return this.advance(time - this.time);
  }

  /** How many callbacks are waiting to run. */
  pending(): number {
    return this.timers.size;
  }

  private due(until: number): Timer | undefined {
    let best: Timer | undefined;
    for (const t of this.timers) {
      if (t.at > until) continue;
      if (best === undefined || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    }
    return best;
  }
}

/** Lets every promise job queued so far (and those they queue) run: a macrotask turn, a few times over. */
export async function settle(turns = 3): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** A promise the test resolves or rejects by hand. */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
