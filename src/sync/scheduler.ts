import { LinkEtcdError } from '../errors.js';
import { setBounded } from './bounded.js';

/**
 * When passes run, and over which files. Events only mark files dirty; the
 * scheduler runs one pass at a time over what is dirty, at once for etcd's
 * and for file events (a read that looks cut short waits for a quiet
 * window), looks again where events are known
 * to be dropped, waits for emptied files to settle, retries failures with a
 * growing pause, and runs the periodic full reconcile. Time comes from an
 * injected clock, so tests drive it instead of sleeping.
 */

/** How a file read looks: whole, cut short (no final newline, a parse error), or missing keys of the base. */
export type ReadVerdict = 'whole' | 'cut' | 'keys-gone';

/** Cancels what `schedule` arranged. */
export type Cancel = () => void;

export interface Clock {
  now(): number;
  /** Runs `fn` after `ms`; 0 means as soon as pending I/O callbacks ran. `keepAlive` holds the process open meanwhile. */
  schedule(fn: () => void, ms: number, keepAlive?: boolean): Cancel;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  schedule(fn, ms, keepAlive = false) {
    // setTimeout(0) waits at least 1 ms; an etcd change is worth starting on at once (measured: -1 ms p50).
    if (ms === 0) {
      const immediate = setImmediate(fn);
      return () => clearImmediate(immediate);
    }
    const timer = setTimeout(fn, ms);
    if (!keepAlive) timer.unref();
    return () => clearTimeout(timer);
  },
};

/** What the scheduler runs; the engine does the work. */
export interface SchedulerWork {
  /** One pass over these files; a rejection has them all planned again after RETRY_MS. */
  pass(paths: readonly string[]): Promise<void>;
  /** A pass over every file either side or the base knows. */
  full(): Promise<unknown>;
  /** A drain of the dirty files begins. */
  drainStarted(): void;
  /** A drain ended with nothing dirty left. */
  drained(): void;
  /** A pass failed; its files are retried. */
  passFailed(error: unknown): void;
  /** A full reconcile failed. */
  fullFailed(error: unknown): void;
}

/** Pause before the files of a failed pass are tried again. */
export const RETRY_MS = 500;
/** Longer than chokidar's 50 ms change throttle and its 100 ms atomic-save window. */
export const RECHECK_MS = 150;
/** How long a file must stay empty or gone before its keys are deleted in etcd. */
export const SETTLE_MS = 300;
/** One full reconcile soon, however many reasons to run one come at once. */
export const FULL_QUIET_MS = 200;
/** After etcd changed under our write: long enough for the watch to bring the newer value. */
export const RACE_RETRY_MS = 50;
/** A file that cannot be written is retried after 50 ms, doubling to 5 s: space freed is used within seconds. */
export const BACKOFF_MIN_MS = 50;
export const BACKOFF_MAX_MS = 5_000;
/**
 * Change times kept for the `newest` policy. Past it the oldest are dropped:
 * a key changed that long ago loses a tie to etcd, which is what a key with
 * no known time does anyway.
 */
export const CHANGE_TIMES = 100_000;

export class Scheduler {
  private readonly dirty = new Set<string>();
  /** Files to plan even if they did not change on disk: etcd changed, or their last pass failed. */
  private readonly mustPlan = new Set<string>();
  /** When each dirty file was first seen changed, for the propagation histogram. */
  private readonly dirtySince = new Map<string, number>();
  /** When each side last changed a key (etcd) or a file (files), for the `newest` policy. */
  private readonly changedAt = new Map<string, number>();
  private readonly rechecks = new Map<string, Cancel>();
  private readonly emptiedAt = new Map<string, number>();
  private readonly failures = new Map<string, number>();
  /** The pending retry of each failing file. */
  private readonly retries = new Map<string, Cancel>();
  private readonly later = new Set<Cancel>();
  private cancelKick: Cancel | undefined;
  private cancelFullSoon: Cancel | undefined;
  private cancelPeriodic: Cancel | undefined;
  private running: Promise<void> | undefined;
  private opened = false;
  /** A drain was asked for while one (or an exclusive task) ran. */
  private kickedWhileRunning = false;
  /** A drain is scheduled to start as soon as pending I/O callbacks ran. */
  private immediateKick = false;
  private stopped = false;

  constructor(
    private readonly work: SchedulerWork,
    private readonly quietMs: number,
    readonly clock: Clock = systemClock,
  ) {}

  /** Passes may run from now on: before, a pass would merge against a base not loaded yet. */
  open(): void {
    this.opened = true;
  }

  /** Runs the full reconcile every `ms` (again from now when called again). */
  every(ms: number): void {
    this.cancelPeriodic?.();
    const tick = () => {
      this.cancelPeriodic = this.clock.schedule(tick, ms);
      void this.work.full().catch((e) => {
        if (!this.stopped) this.work.fullFailed(e);
      });
    };
    this.cancelPeriodic = this.clock.schedule(tick, ms);
  }

  /**
   * A file event: read the file at once, and once more after RECHECK_MS,
   * because events are hints: one can be lost (a watch being re-made after
   * a folder move or a storm, an overflowed kernel queue) and the read may
   * have raced the write it was told of. A read that looks cut short waits
   * for the quiet window (`holdPartial`), not every read.
   */
  fileChanged(path: string): void {
    const now = this.clock.now();
    setBounded(this.changedAt, `file\0${path}`, now, CHANGE_TIMES);
    this.markDirty(path, now);
    this.kick(0);
    this.recheckLater(path, RECHECK_MS);
  }

  /**
   * etcd changed these keys of these files: plan them at once, even if the
   * files did not change. `timed`: keep each key's change time, which only
   * the `newest` policy reads (at 100,000 keys, 8 MB not held otherwise).
   */
  etcdChanged(changes: Iterable<readonly [path: string, key: string]>, timed = true): void {
    const now = this.clock.now();
    for (const [path, key] of changes) {
      if (timed) setBounded(this.changedAt, `etcd\0${key}`, now, CHANGE_TIMES);
      this.markDirty(path, now);
      this.mustPlan.add(path);
    }
    this.kick(0);
  }

  /** The files waiting for a pass now (a copy): what `link-etcd status` calls pending. */
  pending(): string[] {
    return [...this.dirty].sort();
  }

  /** Look at these files again after the quiet window (a folder appeared or went). */
  touch(paths: Iterable<string>): void {
    for (const path of paths) this.dirty.add(path);
    this.kick(this.quietMs);
  }

  /** When a side last changed a key (etcd) or the key's file (files). */
  lastChange(side: 'file' | 'etcd', id: string): number | undefined {
    return this.changedAt.get(`${side}\0${id}`);
  }

  /** Whether the file must be planned even if it looks unchanged; asking consumes the mark. */
  takeMustPlan(path: string): boolean {
    return this.mustPlan.delete(path);
  }

  /** Whether an emptied file is waiting to settle (then it is planned whatever its snapshot says). */
  settling(path: string): boolean {
    return this.emptiedAt.has(path);
  }

  /**
   * A file that just lost all its keys (emptied or removed) may be an editor
   * between its truncate and its write: its emptiness counts only once it
   * has lasted SETTLE_MS. Returns whether to hold the file back now.
   */
  holdEmptied(path: string, emptied: boolean): boolean {
    if (!emptied) {
      this.emptiedAt.delete(path);
      return false;
    }
    const now = this.clock.now();
    const since = this.emptiedAt.get(path);
    if (since === undefined) {
      this.emptiedAt.set(path, now);
      this.recheckLater(path, SETTLE_MS);
      return true;
    }
    if (now - since < SETTLE_MS) {
      this.recheckLater(path, SETTLE_MS - (now - since));
      return true;
    }
    this.emptiedAt.delete(path);
    return false;
  }

  /**
   * A read that may be a save caught halfway counts only once the file has
   * been quiet long enough since its last event; until then it is held and
   * read again. `cut` (no final newline, a parse error) waits the quiet
   * window; `keys-gone` (keys of the base missing: deletions other hosts
   * would apply) waits SETTLE_MS, as an emptied file does, since a writer
   * may pause between lines. A whole save (the usual case) goes at once.
   */
  holdPartial(path: string, verdict: ReadVerdict): boolean {
    if (verdict === 'whole') return false;
    const wait = verdict === 'keys-gone' ? Math.max(SETTLE_MS, this.quietMs) : this.quietMs;
    const last = this.changedAt.get(`file\0${path}`);
    const quietFor = last === undefined ? Number.POSITIVE_INFINITY : this.clock.now() - last;
    if (quietFor >= wait) return false;
    this.planLater(path, wait - quietFor);
    return true;
  }

  /** A file that cannot be written now: planned again after a pause that doubles with each failure. */
  retry(path: string): void {
    const tries = (this.failures.get(path) ?? 0) + 1;
    this.failures.set(path, tries);
    // One retry pending per file: each failure replaces it, or every failed pass would start a chain of its own.
    this.retries.get(path)?.();
    this.retries.set(path, this.planLater(path, Math.min(BACKOFF_MIN_MS * 2 ** (tries - 1), BACKOFF_MAX_MS)));
  }

  /** etcd changed under our write: not dirty now, or the drain would retry before the watch brings the newer value. */
  retrySoon(path: string): void {
    this.planLater(path, RACE_RETRY_MS);
  }

  /** Writes to a file landed: its backoff resets; returns ms since its change was first seen. */
  landed(path: string, stillFailing = false): number | undefined {
    // A file still failing in the other direction keeps its pause: a landing here does not make that work.
    if (!stillFailing) {
      this.failures.delete(path);
      this.retries.get(path)?.();
      this.retries.delete(path);
    }
    const since = this.dirtySince.get(path);
    this.dirtySince.delete(path);
    return since === undefined ? undefined : this.clock.now() - since;
  }

  /** Files a pass found nothing to do for: their next change starts a new clock. */
  settled(paths: readonly string[]): void {
    for (const path of paths) if (!this.dirty.has(path)) this.dirtySince.delete(path);
  }

  /** One full reconcile soon, however many reasons to run one come at once. */
  requestFull(): void {
    if (this.stopped || this.cancelFullSoon) return;
    this.cancelFullSoon = this.clock.schedule(() => {
      this.cancelFullSoon = undefined;
      void this.work.full().catch((e) => {
        if (!this.stopped) this.work.fullFailed(e);
      });
    }, FULL_QUIET_MS);
  }

  /** Runs `task` when no pass is in flight, and no pass starts until it is done. */
  async exclusive<T>(task: () => Promise<T>): Promise<T> {
    // Every waiter re-checks, so two callers cannot both start.
    while (this.running) await this.running;
    // Nothing starts once stop() began: it would outlive stop() and write after the base was saved.
    if (this.stopped) throw new LinkEtcdError('CLOSED', 'the sync engine is stopped');
    const work = task();
    this.running = work.then(
      () => undefined,
      () => undefined,
    );
    try {
      return await work;
    } finally {
      this.running = undefined;
      if (this.dirty.size > 0) this.kick(0);
      else this.again();
    }
  }

  /** Stops every timer and waits for the pass in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelKick?.();
    this.cancelFullSoon?.();
    this.cancelPeriodic?.();
    for (const cancel of this.rechecks.values()) cancel();
    for (const cancel of this.later) cancel();
    while (this.running) await this.running;
  }

  private markDirty(path: string, now: number): void {
    if (!this.dirtySince.has(path)) this.dirtySince.set(path, now);
    this.dirty.add(path);
  }

  private recheckLater(path: string, ms: number): void {
    this.rechecks.get(path)?.();
    this.rechecks.set(
      path,
      this.clock.schedule(() => {
        this.rechecks.delete(path);
        this.dirty.add(path);
        this.kick(0);
      }, ms),
    );
  }

  private planLater(path: string, ms: number): Cancel {
    const cancelTimer = this.clock.schedule(() => {
      this.later.delete(cancel);
      if (this.retries.get(path) === cancel) this.retries.delete(path);
      this.dirty.add(path);
      this.mustPlan.add(path);
      this.kick(0);
    }, ms);
    const cancel: Cancel = () => {
      cancelTimer();
      this.later.delete(cancel);
    };
    this.later.add(cancel);
    return cancel;
  }

  /** Runs a drain of the dirty files after `ms`, one pass at a time. */
  private kick(ms: number): void {
    if (this.stopped || !this.opened) return;
    // A sooner start replaces a later one; an immediate one is never put off by a later kick.
    this.cancelKick?.();
    this.cancelKick = undefined;
    const run = () => {
      if (this.stopped) return;
      // The pass in flight re-checks `dirty` when it ends; a drain after it reports what was seen
      // meanwhile as applied (our own writes coming back mark nothing dirty, but they were seen).
      if (this.running) {
        this.kickedWhileRunning = true;
        return;
      }
      // This drain covers whatever asked for one so far.
      this.kickedWhileRunning = false;
      this.running = this.drain().finally(() => {
        this.running = undefined;
        this.again();
      });
    };
    if (ms === 0) {
      // One immediate drain covers every kick before it runs: a burst of events costs one.
      if (this.immediateKick) return;
      this.immediateKick = true;
      this.clock.schedule(() => {
        this.immediateKick = false;
        run();
      }, 0);
    } else
      this.cancelKick = this.clock.schedule(
        () => {
          this.cancelKick = undefined;
          run();
        },
        ms,
        true,
      );
  }

  /** One more drain if something asked for one while work was in flight. */
  private again(): void {
    if (!this.kickedWhileRunning) return;
    this.kickedWhileRunning = false;
    this.kick(0);
  }

  private async drain(): Promise<void> {
    this.work.drainStarted();
    while (this.dirty.size > 0 && !this.stopped) {
      const paths = [...this.dirty];
      this.dirty.clear();
      try {
        await this.work.pass(paths);
      } catch (error) {
        for (const path of paths) {
          this.dirty.add(path);
          this.mustPlan.add(path);
        }
        this.work.passFailed(error);
        this.kick(RETRY_MS);
        return;
      }
    }
    if (this.dirty.size === 0) this.work.drained();
  }
}
