import { describe, expect, it } from 'vitest';
import { setBounded } from '../../src/sync/bounded.js';
import {
  BACKOFF_MAX_MS,
  BACKOFF_MIN_MS,
  CHANGE_TIMES,
  FULL_QUIET_MS,
  RACE_RETRY_MS,
  RECHECK_MS,
  RETRY_MS,
  Scheduler,
  type SchedulerWork,
  SETTLE_MS,
} from '../../src/sync/scheduler.js';
import { deferred, ManualClock } from '../support/manual-clock.js';

const QUIET = 20;
const START = 1_000;

interface PassCall {
  readonly at: number;
  readonly paths: readonly string[];
  /** The files the pass found marked must-plan (it consumes the marks, as gatherInput does). */
  readonly mustPlan: readonly string[];
}

/** The engine's side of the scheduler, recording every call with the time it came. */
class FakeWork implements SchedulerWork {
  readonly log: string[] = [];
  readonly passes: PassCall[] = [];
  readonly fulls: number[] = [];
  readonly errors: { readonly what: 'pass' | 'full'; readonly error: unknown }[] = [];
  /** What a pass does; default: succeeds at once. */
  onPass: (paths: readonly string[]) => Promise<void> = async () => {};
  onFull: () => Promise<unknown> = async () => {};
  scheduler!: Scheduler;

  constructor(private readonly clock: ManualClock) {}

  pass(paths: readonly string[]): Promise<void> {
    const mustPlan = paths.filter((p) => this.scheduler.takeMustPlan(p));
    this.passes.push({ at: this.clock.now(), paths: [...paths], mustPlan });
    this.log.push(`pass ${paths.join(',')}`);
    return this.onPass(paths);
  }
  full(): Promise<unknown> {
    this.fulls.push(this.clock.now());
    this.log.push('full');
    return this.onFull();
  }
  drainStarted(): void {
    this.log.push('drainStarted');
  }
  drained(): void {
    this.log.push('drained');
  }
  passFailed(error: unknown): void {
    this.log.push('passFailed');
    this.errors.push({ what: 'pass', error });
  }
  fullFailed(error: unknown): void {
    this.log.push('fullFailed');
    this.errors.push({ what: 'full', error });
  }
}

function setup({ open = true } = {}) {
  const clock = new ManualClock(START);
  const work = new FakeWork(clock);
  const s = new Scheduler(work, QUIET, clock);
  work.scheduler = s;
  if (open) s.open();
  const at = (ms: number) => clock.advanceTo(START + ms);
  const passTimes = () => work.passes.map((p) => p.at - START);
  return { clock, work, s, at, passTimes };
}

describe('ManualClock', () => {
  it('runs callbacks in time order, ties in the order scheduled, and only when advanced', async () => {
    const clock = new ManualClock();
    const ran: string[] = [];
    clock.schedule(() => ran.push('b@20'), 20);
    clock.schedule(() => ran.push('a@10'), 10);
    clock.schedule(() => ran.push('c@20'), 20);
    clock.schedule(() => ran.push('zero'), 0);
    expect(ran).toEqual([]);
    await clock.flush();
    expect(ran).toEqual(['zero']);
    await clock.advance(19);
    expect(ran).toEqual(['zero', 'a@10']);
    expect(clock.now()).toBe(19);
    await clock.advance(1);
    expect(ran).toEqual(['zero', 'a@10', 'b@20', 'c@20']);
  });

  it('runs callbacks scheduled while advancing, at their own time, and lets promises settle between', async () => {
    const clock = new ManualClock();
    const ran: string[] = [];
    clock.schedule(() => {
      ran.push(`outer@${clock.now()}`);
      clock.schedule(() => ran.push(`inner@${clock.now()}`), 5);
      clock.schedule(() => ran.push(`now@${clock.now()}`), 0);
      void Promise.resolve()
        .then(() => undefined)
        .then(() => ran.push('promise'));
    }, 10);
    clock.schedule(() => ran.push(`late@${clock.now()}`), 12);
    await clock.advance(100);
    expect(ran).toEqual(['outer@10', 'promise', 'now@10', 'late@12', 'inner@15']);
    expect(clock.now()).toBe(100);
  });

  it('a cancelled callback never runs', async () => {
    const clock = new ManualClock();
    const ran: string[] = [];
    const cancel = clock.schedule(() => ran.push('x'), 10);
    expect(clock.pending()).toBe(1);
    cancel();
    expect(clock.pending()).toBe(0);
    await clock.advance(100);
    expect(ran).toEqual([]);
  });
});

describe('Scheduler: when passes run', () => {
  it('in sync, nothing to do: no pass, no full, no timer', async () => {
    const { clock, work } = setup();
    await clock.advance(60_000);
    expect(work.log).toEqual([]);
    expect(clock.pending()).toBe(0);
  });

  it('nothing runs before open(); what was marked then is passed once a drain runs', async () => {
    const { clock, work, s } = setup({ open: false });
    s.fileChanged('a');
    s.etcdChanged([['b', '/b/S/k']]);
    s.touch(['c']);
    await clock.advance(10_000);
    expect(work.log).toEqual([]);
    s.open();
    s.etcdChanged([['d', '/d/S/k']]);
    await clock.flush();
    expect(work.passes).toEqual([{ at: START + 10_000, paths: ['a', 'b', 'c', 'd'], mustPlan: ['b', 'd'] }]);
  });

  it('a file event: one pass over that file at once, again after RECHECK_MS', async () => {
    const { clock, work, s, at, passTimes } = setup();
    s.fileChanged('a');
    expect(s.lastChange('file', 'a')).toBe(START);
    expect(work.passes).toEqual([]);
    await clock.flush();
    expect(work.passes).toEqual([{ at: START, paths: ['a'], mustPlan: [] }]);
    expect(work.log).toEqual(['drainStarted', 'pass a', 'drained']);
    await at(RECHECK_MS - 1);
    expect(passTimes()).toEqual([0]);
    await at(RECHECK_MS);
    expect(work.passes.at(-1)).toEqual({ at: START + RECHECK_MS, paths: ['a'], mustPlan: [] });
    await at(10_000);
    expect(passTimes()).toEqual([0, RECHECK_MS]);
  });

  it('events while a pass runs make one more pass when it ends; each file is rechecked after its own last event', async () => {
    const { clock, work, s, at } = setup();
    const pass = deferred();
    work.onPass = () => pass.promise;
    s.fileChanged('a');
    await clock.flush();
    await at(10);
    s.fileChanged('b');
    await at(15);
    s.fileChanged('a');
    expect(work.passes).toEqual([{ at: START, paths: ['a'], mustPlan: [] }]);
    work.onPass = async () => {};
    pass.resolve();
    await clock.flush();
    expect(work.passes.slice(1)).toEqual([{ at: START + 15, paths: ['b', 'a'], mustPlan: [] }]);
    await at(1_000);
    expect(work.passes.slice(2)).toEqual([
      { at: START + 10 + RECHECK_MS, paths: ['b'], mustPlan: [] },
      { at: START + 15 + RECHECK_MS, paths: ['a'], mustPlan: [] },
    ]);
  });

  it('holdPartial: a cut read waits for the quiet window, a read missing keys for SETTLE_MS, then planned', async () => {
    const { clock, work, s, at } = setup();
    // A whole read is never held, fresh or not.
    expect(s.holdPartial('a', 'whole')).toBe(false);
    s.fileChanged('a');
    await clock.flush();
    await at(5);
    expect(s.holdPartial('a', 'cut')).toBe(true);
    await at(QUIET - 1);
    expect(work.passes.map((p) => p.at - START)).toEqual([0]);
    await at(QUIET);
    expect(work.passes.at(-1)).toEqual({ at: START + QUIET, paths: ['a'], mustPlan: ['a'] });
    // Quiet long enough now for a cut read, not for deletions.
    expect(s.holdPartial('a', 'cut')).toBe(false);
    expect(s.holdPartial('a', 'keys-gone')).toBe(true);
    // (The pass at RECHECK_MS is the event's own recheck, not the hold's.)
    const held = () => work.passes.filter((p) => p.mustPlan.includes('a')).map((p) => p.at - START);
    await at(SETTLE_MS - 1);
    expect(held()).toEqual([QUIET]);
    await at(SETTLE_MS);
    expect(held()).toEqual([QUIET, SETTLE_MS]);
    expect(s.holdPartial('a', 'keys-gone')).toBe(false);
    // A file with no event known (read by a full pass) is never held.
    expect(s.holdPartial('never-changed', 'keys-gone')).toBe(false);
  });

  it('touch: a pass after the quiet window, without a recheck', async () => {
    const { s, at, passTimes, work } = setup();
    s.touch(['x', 'y']);
    await at(1_000);
    expect(passTimes()).toEqual([QUIET]);
    expect(work.passes[0]?.paths).toEqual(['x', 'y']);
  });

  it('etcdChanged: a pass at once, the files marked must-plan (true once), the keys timed', async () => {
    const { clock, work, s } = setup();
    s.etcdChanged([
      ['a', '/a/S/k'],
      ['b', '/b/S/k'],
    ]);
    expect(s.lastChange('etcd', '/a/S/k')).toBe(START);
    expect(s.lastChange('file', 'a')).toBeUndefined();
    await clock.flush();
    expect(work.passes).toEqual([{ at: START, paths: ['a', 'b'], mustPlan: ['a', 'b'] }]);
    expect(s.takeMustPlan('a')).toBe(false);
    // Not consumed by a pass: true once, then false.
    s.etcdChanged([['c', '/c/S/k']]);
    expect(s.takeMustPlan('c')).toBe(true);
    expect(s.takeMustPlan('c')).toBe(false);
    // Untimed (a policy other than newest): planned all the same, no time kept.
    s.etcdChanged([['d', '/d/S/k']], false);
    expect(s.takeMustPlan('d')).toBe(true);
    expect(s.lastChange('etcd', '/d/S/k')).toBeUndefined();
  });

  it('a failed pass: passFailed, no drained, and all its files again after RETRY_MS, must-plan', async () => {
    const { s, at, work } = setup();
    const boom = new Error('boom');
    work.onPass = async () => {
      work.onPass = async () => {};
      throw boom;
    };
    s.touch(['a', 'b']);
    await at(QUIET);
    expect(work.log).toEqual(['drainStarted', 'pass a,b', 'passFailed']);
    expect(work.errors).toEqual([{ what: 'pass', error: boom }]);
    await at(QUIET + RETRY_MS - 1);
    expect(work.passes).toHaveLength(1);
    await at(QUIET + RETRY_MS);
    expect(work.passes.at(-1)).toEqual({
      at: START + QUIET + RETRY_MS,
      paths: ['a', 'b'],
      mustPlan: ['a', 'b'],
    });
    expect(work.log.slice(3)).toEqual(['drainStarted', 'pass a,b', 'drained']);
  });

  it('a drain passes what became dirty meanwhile, then reports drained once', async () => {
    const { clock, s, work } = setup();
    work.onPass = async (paths) => {
      if (paths.includes('a')) s.etcdChanged([['b', '/b/S/k']]);
    };
    s.etcdChanged([['a', '/a/S/k']]);
    await clock.flush();
    // One drain passed both; the kick of b's change then finds nothing left to pass.
    expect(work.log).toEqual(['drainStarted', 'pass a', 'pass b', 'drained', 'drainStarted', 'drained']);
    await clock.advance(1_000);
    expect(work.passes.map((p) => p.paths)).toEqual([['a'], ['b']]);
  });
});

describe('Scheduler: retries', () => {
  /** Calls `retry` and returns how long until the file's pass ran. */
  async function retryDelay(env: ReturnType<typeof setup>, path: string): Promise<number> {
    const from = env.clock.now();
    const before = env.work.passes.length;
    env.s.retry(path);
    await env.clock.advance(BACKOFF_MAX_MS + 1);
    const runs = env.work.passes.slice(before);
    expect(runs).toEqual([{ at: expect.any(Number), paths: [path], mustPlan: [path] }]);
    return (runs[0]?.at ?? Number.NaN) - from;
  }

  it('retry(path): a backoff of 50 ms doubling to 5 s, reset by landed', async () => {
    const env = setup();
    const delays: number[] = [];
    for (let i = 0; i < 12; i++) delays.push(await retryDelay(env, 'a'));
    expect(BACKOFF_MIN_MS).toBe(50);
    expect(delays).toEqual([50, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000, 5000]);
    // Another file has its own count.
    expect(await retryDelay(env, 'b')).toBe(50);
    env.s.landed('a');
    expect(await retryDelay(env, 'a')).toBe(50);
    expect(await retryDelay(env, 'a')).toBe(100);
  });

  it('retrySoon: after RACE_RETRY_MS, must-plan, and it does not grow the backoff', async () => {
    const env = setup();
    const { s, clock, work } = env;
    for (let i = 0; i < 3; i++) {
      const from = clock.now();
      s.retrySoon('a');
      await clock.advance(RACE_RETRY_MS - 1);
      expect(work.passes).toHaveLength(i);
      await clock.advance(1);
      expect(work.passes[i]).toEqual({ at: from + RACE_RETRY_MS, paths: ['a'], mustPlan: ['a'] });
    }
    expect(await retryDelay(env, 'a')).toBe(BACKOFF_MIN_MS);
  });
});

describe('Scheduler: emptied files settle', () => {
  it('not emptied: not held, not settling, nothing scheduled', () => {
    const { clock, s } = setup();
    expect(s.holdEmptied('a', false)).toBe(false);
    expect(s.settling('a')).toBe(false);
    expect(clock.pending()).toBe(0);
  });

  it('holds an emptied file for SETTLE_MS, looks at it again then, and lets go', async () => {
    const { s, at, work } = setup();
    const verdicts: boolean[] = [];
    work.onPass = async (paths) => {
      for (const p of paths) verdicts.push(s.holdEmptied(p, true));
    };
    expect(s.holdEmptied('a', true)).toBe(true);
    expect(s.settling('a')).toBe(true);
    await at(100);
    // Still empty a little later: still held, the recheck stays at SETTLE_MS from the first sight.
    expect(s.holdEmptied('a', true)).toBe(true);
    await at(SETTLE_MS - 1);
    expect(work.passes).toEqual([]);
    await at(SETTLE_MS);
    expect(work.passes).toEqual([{ at: START + SETTLE_MS, paths: ['a'], mustPlan: [] }]);
    expect(verdicts).toEqual([false]);
    expect(s.settling('a')).toBe(false);
    // Settled and let go: nothing more is scheduled for it.
    await at(10_000);
    expect(work.passes).toHaveLength(1);
  });

  it('a file that fills again before SETTLE_MS stops settling', async () => {
    const { s, at } = setup();
    expect(s.holdEmptied('a', true)).toBe(true);
    await at(100);
    expect(s.holdEmptied('a', false)).toBe(false);
    expect(s.settling('a')).toBe(false);
    // Emptied again: the clock starts over.
    expect(s.holdEmptied('a', true)).toBe(true);
    await at(100 + SETTLE_MS - 1);
    expect(s.holdEmptied('a', true)).toBe(true);
    await at(100 + SETTLE_MS);
    expect(s.holdEmptied('a', true)).toBe(false);
  });
});

describe('Scheduler: propagation clock', () => {
  it('landed: ms since the change was first seen, once', async () => {
    const { s, at } = setup();
    s.fileChanged('a');
    await at(10);
    s.fileChanged('a');
    await at(45);
    expect(s.landed('a')).toBe(45);
    expect(s.landed('a')).toBeUndefined();
  });

  it('settled: files a pass found nothing to do for start a new clock, dirty ones keep theirs', async () => {
    const { s, at, work } = setup();
    const pass = deferred();
    work.onPass = () => pass.promise;
    s.fileChanged('a');
    await at(QUIET);
    // b changes while a's pass runs: it stays dirty.
    s.fileChanged('b');
    await at(QUIET + 5);
    s.settled(['a', 'b']);
    expect(s.landed('a')).toBeUndefined();
    expect(s.landed('b')).toBe(5);
  });
});

describe('Scheduler: full reconciles', () => {
  it('requestFull: many calls make one full() FULL_QUIET_MS after the first', async () => {
    const { s, at, work } = setup();
    s.requestFull();
    s.requestFull();
    await at(100);
    s.requestFull();
    await at(FULL_QUIET_MS - 1);
    expect(work.fulls).toEqual([]);
    await at(FULL_QUIET_MS);
    expect(work.fulls).toEqual([START + FULL_QUIET_MS]);
    await at(5_000);
    expect(work.fulls).toHaveLength(1);
    s.requestFull();
    await at(5_000 + FULL_QUIET_MS);
    expect(work.fulls).toEqual([START + FULL_QUIET_MS, START + 5_000 + FULL_QUIET_MS]);
  });

  it('requestFull: a failed full is reported', async () => {
    const { s, at, work } = setup();
    const boom = new Error('full failed');
    work.onFull = () => Promise.reject(boom);
    s.requestFull();
    await at(FULL_QUIET_MS);
    expect(work.errors).toEqual([{ what: 'full', error: boom }]);
  });

  it('every(ms): a full periodically; every again re-arms from now; failures reported, the period goes on', async () => {
    const { s, at, work } = setup();
    s.every(1_000);
    await at(999);
    expect(work.fulls).toEqual([]);
    await at(3_000);
    expect(work.fulls.map((t) => t - START)).toEqual([1_000, 2_000, 3_000]);
    await at(3_200);
    s.every(500);
    await at(4_300);
    expect(work.fulls.map((t) => t - START)).toEqual([1_000, 2_000, 3_000, 3_700, 4_200]);
    work.onFull = () => Promise.reject(new Error('x'));
    await at(4_700);
    expect(work.log.at(-1)).toBe('fullFailed');
    work.onFull = async () => {};
    await at(5_200);
    expect(work.fulls.map((t) => t - START)).toEqual([1_000, 2_000, 3_000, 3_700, 4_200, 4_700, 5_200]);
  });
});

describe('Scheduler: exclusive', () => {
  it('runs one at a time, however many callers ask (3 concurrent full reconciles never overlap)', async () => {
    const { clock, s } = setup();
    let active = 0;
    let most = 0;
    const spans: string[] = [];
    const reconcile = (name: string) =>
      s.exclusive(async () => {
        active++;
        most = Math.max(most, active);
        spans.push(`${name}+${clock.now() - START}`);
        await new Promise<void>((resolve) => clock.schedule(resolve, 10));
        spans.push(`${name}-${clock.now() - START}`);
        active--;
        return name;
      });
    const results = Promise.all([reconcile('x'), reconcile('y'), reconcile('z')]);
    await clock.advance(100);
    expect(await results).toEqual(['x', 'y', 'z']);
    expect(most).toBe(1);
    expect(spans).toEqual(['x+0', 'x-10', 'y+10', 'y-20', 'z+20', 'z-30']);
  });

  it('a failing task rejects its own caller only', async () => {
    const { clock, s } = setup();
    const boom = new Error('task failed');
    const failing = expect(s.exclusive(() => Promise.reject(boom))).rejects.toBe(boom);
    const next = expect(s.exclusive(async () => 'ran')).resolves.toBe('ran');
    await clock.flush();
    await failing;
    await next;
  });

  it('events that arrive together start one drain, not one each', async () => {
    const { clock, s, work } = setup();
    s.fileChanged('a');
    s.etcdChanged([['b', '/b/S/k']]);
    s.fileChanged('c');
    await clock.flush();
    expect(work.log).toEqual(['drainStarted', 'pass a,b,c', 'drained']);
  });

  it('no drain starts while an exclusive task runs; one runs after it if something is dirty', async () => {
    const { clock, s, work } = setup();
    const task = deferred();
    const done = s.exclusive(() => task.promise);
    s.etcdChanged([['a', '/a/S/k']]);
    s.fileChanged('b');
    await clock.advance(1_000);
    expect(work.log).toEqual([]);
    task.resolve();
    await done;
    await clock.flush();
    expect(work.log).toEqual(['drainStarted', 'pass a,b', 'drained']);
  });

  it('an etcd batch that marks nothing (our own write coming back) while a drain runs gets one drain after it', async () => {
    const { clock, s, work } = setup();
    const pass = deferred();
    work.onPass = () => pass.promise;
    s.etcdChanged([['a', '/a/S/k']]);
    await clock.flush();
    // Our write's event arrives while the pass that made it is still recording.
    s.etcdChanged([]);
    await clock.flush();
    expect(work.log).toEqual(['drainStarted', 'pass a']);
    pass.resolve();
    await clock.flush();
    // The second drain is what reports the revision it brought as applied (the lag back to 0).
    expect(work.log).toEqual(['drainStarted', 'pass a', 'drained', 'drainStarted', 'drained']);
    await clock.advance(1_000);
    expect(work.log).toHaveLength(5);
  });

  it('after an exclusive task with nothing dirty, no drain runs', async () => {
    const { clock, s, work } = setup();
    await Promise.all([s.exclusive(async () => 1), clock.flush()]);
    await clock.advance(1_000);
    expect(work.log).toEqual([]);
  });

  it('waits for the drain in flight', async () => {
    const { clock, s, work } = setup();
    const pass = deferred();
    work.onPass = () => pass.promise;
    s.etcdChanged([['a', '/a/S/k']]);
    await clock.flush();
    let started = false;
    const done = s.exclusive(async () => {
      started = true;
    });
    await clock.advance(1_000);
    expect(started).toBe(false);
    pass.resolve();
    await clock.flush();
    expect(started).toBe(true);
    await done;
  });
});

describe('Scheduler: stop', () => {
  it('cancels every timer and waits for the pass in flight; a drain stopped with files dirty is not drained', async () => {
    const { clock, s, work } = setup();
    const pass = deferred();
    work.onPass = () => pass.promise;
    s.every(1_000);
    s.requestFull();
    s.etcdChanged([['a', '/a/S/k']]);
    await clock.flush();
    expect(work.log).toEqual(['drainStarted', 'pass a']);
    s.fileChanged('b');
    s.retry('c');
    s.retrySoon('d');
    s.holdEmptied('e', true);
    let stopped = false;
    const stopping = s.stop().then(() => {
      stopped = true;
    });
    await clock.flush();
    expect(stopped).toBe(false);
    pass.resolve();
    await stopping;
    expect(clock.pending()).toBe(0);
    // Events after stop start nothing.
    s.fileChanged('f');
    s.etcdChanged([['g', '/g/S/k']]);
    s.requestFull();
    await clock.advance(120_000);
    expect(work.log).toEqual(['drainStarted', 'pass a']);
  });

  it('stop with nothing running resolves at once', async () => {
    const { s, clock } = setup();
    s.every(1_000);
    await s.stop();
    expect(clock.pending()).toBe(0);
  });
});

describe('Scheduler: stop vs a queued exclusive task', () => {
  // An exclusive task (a full reconcile) queued behind the pass in flight must not start after stop()
  // began (it would outlive stop() and write after the base was saved): it is refused instead.
  it('whatever started before stop() resolved has also ended; a task queued behind it is refused', async () => {
    const { clock, s, work } = setup();
    const pass = deferred();
    work.onPass = () => pass.promise;
    s.etcdChanged([['a', '/a/S/k']]);
    await clock.flush();
    const events: string[] = [];
    const waiting = s.exclusive(async () => {
      events.push('task start');
      await new Promise<void>((resolve) => clock.schedule(resolve, 10));
      events.push('task end');
    });
    const refused = expect(waiting).rejects.toMatchObject({ code: 'CLOSED' });
    const stopping = s.stop().then(() => events.push('stopped'));
    pass.resolve();
    await clock.advance(100);
    await Promise.allSettled([stopping, waiting]);
    const beforeStopped = events.slice(0, events.indexOf('stopped'));
    expect(beforeStopped.includes('task start')).toBe(beforeStopped.includes('task end'));
    await refused;
  });
});

describe('memory a hostile writer cannot grow', () => {
  it('setBounded keeps the newest entries up to its cap', () => {
    const map = new Map<string, number>();
    for (let i = 0; i < 1000; i++) setBounded(map, `k${i}`, i, 100);
    expect(map.size).toBe(100);
    expect(map.has('k899')).toBe(false);
    expect(map.get('k999')).toBe(999);
    // Touching an old entry makes it the newest.
    setBounded(map, 'k900', -1, 100);
    setBounded(map, 'new', 0, 100);
    expect(map.has('k900')).toBe(true);
    expect(map.has('k901')).toBe(false);
  });

  it('forgets the change times of the oldest keys past CHANGE_TIMES', async () => {
    const { s } = setup();
    const keys = Array.from({ length: CHANGE_TIMES + 10 }, (_, i) => [`f${i % 7}.conf`, `/k${i}`] as const);
    s.etcdChanged(keys);
    expect(s.lastChange('etcd', '/k0')).toBeUndefined();
    expect(s.lastChange('etcd', `/k${CHANGE_TIMES + 9}`)).toBeDefined();
  });
});
