import { LinkEtcdError } from '../errors.js';
import type { Logger } from '../log.js';
import { maskValue } from '../secrets.js';
import { setBounded } from './bounded.js';
import { type Blocked, nextBlocked } from './guard.js';
import type { Conflict, ConflictPolicy } from './merge.js';
import type { Plan } from './plan.js';

export interface SyncCounters {
  toEtcd: number;
  toFile: number;
  conflicts: number;
  refused: number;
  parseErrors: number;
  retries: number;
  /** Transactions etcd refused, by reason (failureReason). */
  pushFailures: Record<string, number>;
  /** File writes that failed, by reason. */
  fileWriteFailures: Record<string, number>;
  /** Keys a full reconcile found different in etcd than in the watch's mirror. */
  divergence: number;
  /** Times etcd's history went back (wiped, restored) or its cluster changed under the daemon. */
  regressions: number;
}

/** A short label for why a write failed, for metrics: what an operator acts on. */
export function failureReason(error: unknown): string {
  if (!(error instanceof LinkEtcdError)) return 'other';
  const byCode: Partial<Record<string, string>> = {
    ETCD_TOO_LARGE: 'too_large',
    ETCD_NO_SPACE: 'no_space',
    ETCD_AUTH: 'permission',
    HOOK_REFUSED: 'hook_refused',
    UNSAFE_PATH: 'unsafe_path',
  };
  const known = byCode[error.code];
  if (known !== undefined) return known;
  const errno = (error.cause as NodeJS.ErrnoException | undefined)?.code;
  if (errno === 'ENOSPC' || errno === 'EDQUOT') return 'no_space';
  if (errno === 'EACCES' || errno === 'EPERM' || errno === 'EROFS') return 'permission';
  return 'other';
}

/** What a running engine knows of itself: a copy, safe to keep. */
export interface SyncStatus {
  /** The first full reconcile finished, nothing is held by the guard, and etcd is followed. */
  readonly ready: boolean;
  /** The etcd watch failed for good (refused credentials, say): the engine is frozen. */
  readonly fatal: Error | undefined;
  /** Deletions held back by the mass-deletion guard. */
  readonly blocked: readonly Blocked[];
  /** Files that cannot be mirrored now, with why: they do not parse, or cannot be written on one side. */
  readonly failing: ReadonlyArray<{ readonly file: string; readonly reason: string }>;
  /** Why the daemon cannot keep both sides in sync now; empty when it can (then `ready`). */
  readonly reasons: readonly string[];
  /** The newest etcd revision the watch delivered, and the newest whose changes are all in the files. */
  readonly seenRevision: number;
  readonly appliedRevision: number;
  /** When the last full reconcile ended (ms since the epoch). */
  readonly lastFullReconcile: number | undefined;
  readonly counters: Readonly<SyncCounters>;
  /** Names refused since the start (at most the first REFUSED_LISTED): a file's key, or an etcd key; why. */
  readonly refused: ReadonlyArray<{ readonly what: string; readonly reason: string }>;
}

/** Refused names remembered (so each is logged once); past it the oldest may be logged again. */
const REMEMBERED_NAMES = 10_000;

/** Refused names a status lists. */
const REFUSED_LISTED = 100;

/** Keys named in one log line; the count is always there. */
const LOGGED_KEYS = 10;

/**
 * The engine's account of itself: every log line it writes about what it
 * did, the counters the metrics read, and the state `status()` returns.
 * Each thing is said once: a refused key, an unreadable file's reason.
 */
export class SyncReport {
  readonly counters: SyncCounters = {
    toEtcd: 0,
    toFile: 0,
    conflicts: 0,
    refused: 0,
    parseErrors: 0,
    retries: 0,
    pushFailures: {},
    fileWriteFailures: {},
    divergence: 0,
    regressions: 0,
  };
  blocked: readonly Blocked[] = [];
  private fatalError: Error | undefined;
  private seenRevision = 0;
  private appliedRevision = 0;
  /** Files one direction cannot write now: file -> direction -> why. */
  private readonly stuck = new Map<string, Map<'to_etcd' | 'to_file', string>>();
  /** Set while etcd's history went back and the union merge has not finished. */
  private regressionHeld: string | undefined;
  /** Set while the file watcher failed and a periodic scan stands in for it. */
  private watcherDegraded: string | undefined;
  private lastFullReconcile: number | undefined;
  /** Names refused and already logged; bounded, so put-and-delete cycles of new names cannot grow it. */
  private readonly refusedOnce = new Map<string, string>();
  private readonly unreadable = new Map<string, string>();

  constructor(private readonly logger: Logger) {}

  status(): SyncStatus {
    const reasons = this.reasons();
    return {
      ready: reasons.length === 0,
      reasons,
      fatal: this.fatalError,
      blocked: [...this.blocked],
      failing: this.failing(),
      seenRevision: this.seenRevision,
      appliedRevision: this.appliedRevision,
      lastFullReconcile: this.lastFullReconcile,
      counters: {
        ...this.counters,
        pushFailures: { ...this.counters.pushFailures },
        fileWriteFailures: { ...this.counters.fileWriteFailures },
      },
      refused: [...this.refusedOnce].slice(0, REFUSED_LISTED).map(([what, reason]) => ({ what, reason })),
    };
  }

  /** A name on one side that maps to nothing safe on the other: said once per name. */
  refused(side: 'file' | 'etcd', what: string, reason: string): void {
    if (this.refusedOnce.has(what)) return;
    setBounded(this.refusedOnce, what, reason, REMEMBERED_NAMES);
    this.counters.refused++;
    // `from` tells the two apart without reading the message.
    if (side === 'etcd')
      this.logger.warn(
        { key: what, reason, from: side },
        'etcd key refused: it maps to no safe file, nothing is written',
      );
    else this.logger.warn({ key: what, reason, from: side }, 'file key refused: it maps to no safe etcd key');
  }

  /** A file that does not parse: said once per reason. */
  unreadableFile(confPath: string, file: string, reason: string, passing = false): void {
    if (this.unreadable.get(confPath) === reason) return;
    this.unreadable.set(confPath, reason);
    this.counters.parseErrors++;
    if (passing)
      this.logger.warn(
        { file },
        `${reason}: read again on its next change; nothing is pushed from it meanwhile`,
      );
    else this.logger.error({ file }, `${reason}: nothing is pushed from this file until it is fixed`);
  }

  readableFile(confPath: string): void {
    this.unreadable.delete(confPath);
  }

  /**
   * Files named in a reason right now (unreadable, or failing to write or
   * push): looked at again with their folder and by the full reconcile,
   * whether or not they still exist, so that a reason outlives no file.
   */
  troubledFiles(): string[] {
    return [...new Set([...this.unreadable.keys(), ...this.stuck.keys()])];
  }

  private failing(): Array<{ file: string; reason: string }> {
    const out = [...this.unreadable].map(([file, reason]) => ({ file, reason }));
    for (const [file, byDirection] of this.stuck)
      for (const reason of byDirection.values()) out.push({ file, reason });
    return out;
  }

  private reasons(): string[] {
    const reasons: string[] = [];
    if (this.fatalError !== undefined)
      reasons.push(`the etcd watch failed for good: ${this.fatalError.message}`);
    if (this.lastFullReconcile === undefined) reasons.push('the first reconcile has not finished');
    if (this.regressionHeld !== undefined) reasons.push(this.regressionHeld);
    if (this.watcherDegraded !== undefined) reasons.push(this.watcherDegraded);
    for (const b of this.blocked)
      reasons.push(`mass deletion held back (${b.side}: ${b.deletions} of ${b.of} keys)`);
    for (const { file, reason } of this.failing()) reasons.push(`${file}: ${reason}`);
    return reasons;
  }

  /** etcd refused a file's transaction: the file is failing until a write of it lands. */
  pushFailed(file: string, error: unknown): void {
    this.stick(file, 'to_etcd', error, this.counters.pushFailures, 'not written to etcd');
  }

  /** A file could not be written now; it is tried again. */
  fileWriteFailed(file: string, error: unknown): void {
    this.stick(file, 'to_file', error, this.counters.fileWriteFailures, 'not written');
  }

  private stick(
    file: string,
    direction: 'to_etcd' | 'to_file',
    error: unknown,
    counter: Record<string, number>,
    what: string,
  ): void {
    const reason = failureReason(error);
    counter[reason] = (counter[reason] ?? 0) + 1;
    const message = error instanceof Error ? error.message : String(error);
    const byDirection = this.stuck.get(file) ?? new Map<'to_etcd' | 'to_file', string>();
    // Named once per reason: a retry that fails the same way says nothing new.
    if (byDirection.get(direction) !== message) {
      const code = error instanceof LinkEtcdError ? error.code : undefined;
      const hint =
        reason === 'permission' && direction === 'to_etcd'
          ? ': check the role of the etcd user (etcdctl role get)'
          : '';
      this.logger.error({ file, code, reason, direction }, `${message}: ${what}${hint}`);
    }
    byDirection.set(direction, message);
    this.stuck.set(file, byDirection);
  }

  /** A direction of a file has nothing left to write (it landed, or the plan has nothing for it). */
  unstuck(file: string, direction: 'to_etcd' | 'to_file'): void {
    const byDirection = this.stuck.get(file);
    if (byDirection === undefined) return;
    byDirection.delete(direction);
    if (byDirection.size === 0) this.stuck.delete(file);
  }

  /** Whether a file cannot be written in some direction now. */
  failingFile(file: string): boolean {
    return this.stuck.has(file);
  }

  /** Whether some file cannot be written from etcd now (then the files lag behind etcd). */
  private get filesBehind(): boolean {
    for (const byDirection of this.stuck.values()) if (byDirection.has('to_file')) return true;
    return false;
  }

  /** Writes that landed: one log line per file and transaction, and the counters. */
  landed(
    direction: 'to_etcd' | 'to_file',
    file: string,
    writes: ReadonlyArray<{ key: string; value: string | undefined; reason: string }>,
    extra: Record<string, unknown>,
    /** Only some of the file's writes landed (deletions under NOSPACE): it is still failing. */
    partly = false,
    /** The values before (the base's), for `[op, key, reason, from, to]`, masked as every logged value is. */
    before?: ReadonlyMap<string, string | undefined>,
  ): void {
    if (!partly) this.unstuck(file, direction);
    if (this.logger.isLevelEnabled('info')) {
      const shown = (key: string, value: string | undefined) =>
        value === undefined ? null : maskValue(key, value);
      const changes = writes
        .slice(0, LOGGED_KEYS)
        .map((w) => [
          w.value === undefined ? 'delete' : 'put',
          w.key,
          w.reason,
          shown(w.key, before?.get(w.key)),
          shown(w.key, w.value),
        ]);
      this.logger.info(
        { file, ...extra, keys: writes.length, changes },
        direction === 'to_etcd' ? 'written to etcd' : 'written to the file',
      );
    }
    if (direction === 'to_etcd') this.counters.toEtcd += writes.length;
    else this.counters.toFile += writes.length;
  }

  /** The plan of one pass, once, at debug level (each landed write has its own line at info). */
  planned(plan: Plan, files: number, full: boolean): void {
    if (!this.logger.isLevelEnabled('debug')) return;
    const counts = {
      toEtcd: plan.toEtcd.length,
      toFile: plan.toFile.length,
      conflicts: plan.conflicts.length,
    };
    this.logger.debug({ files, full, ...counts, blocked: plan.blocked }, 'planned');
  }

  /** Someone else wrote etcd between our read and our transaction: merged again soon. */
  raced(file: string, writes: ReadonlyArray<{ key: string }>): void {
    this.logger.info({ file, keys: writes.map((w) => w.key) }, 'etcd changed under the write: merging again');
    this.counters.retries++;
  }

  /** A pass failed as a whole; its files are tried again. */
  retried(what: string, error: unknown): void {
    this.failed(what, error);
    this.counters.retries++;
  }

  conflicts(list: readonly Conflict[], policy: ConflictPolicy, record: string | undefined): void {
    this.counters.conflicts += list.length;
    for (const c of list) {
      this.logger.error(
        {
          key: c.key,
          winner: c.winner,
          loser: c.loser,
          lostValue: maskValue(c.key, c.loserValue),
          record,
        },
        `conflict on ${c.key}: ${c.winner} wins (${policy}), the ${c.loser} value is kept in ${record ?? 'this log'}`,
      );
    }
  }

  /** A planned file with nothing left to write in a direction is not failing there any more. */
  planDone(
    plan: Plan,
    planned: ReadonlySet<string>,
    fileOf: (key: string) => string,
    unreadable: ReadonlySet<string>,
  ): void {
    if (this.stuck.size === 0) return;
    const writing = {
      to_etcd: new Set(plan.toEtcd.map((w) => fileOf(w.key))),
      to_file: new Set(plan.toFile.map((w) => fileOf(w.key))),
    };
    // A file not read this time (a save in progress, settling) planned nothing: that says nothing of its writes.
    for (const path of planned)
      if (!unreadable.has(path))
        for (const direction of ['to_etcd', 'to_file'] as const)
          if (!writing[direction].has(path)) this.unstuck(path, direction);
  }

  /** The guard's state after a pass (guard.ts nextBlocked); true when a full pass should clear it. */
  guardAfter(pass: readonly Blocked[], full: boolean): boolean {
    const next = nextBlocked(this.blocked, pass, full);
    if (next.changed) this.block(next.blocked);
    return next.askFull;
  }

  /** The guard's new state: logged once per change; readiness follows it. */
  block(blocked: readonly Blocked[]): void {
    this.blocked = blocked;
    for (const b of blocked) {
      this.logger.error(
        { side: b.side, deletions: b.deletions, of: b.of, files: b.files },
        b.side === 'conf-dir'
          ? 'the conf dir is missing or empty: no deletion is carried to etcd; restore the files or restart with --allow-mass-delete'
          : b.side === 'etcd'
            ? `etcd lost ${b.deletions} of ${b.of} mirrored keys across ${b.files} files at once: deletions are held back; if etcd was wiped, restart with --rebuild-base to fill it again from the files; if the deletions are meant, restart with --allow-mass-delete`
            : `file lost ${b.deletions} of ${b.of} mirrored keys across ${b.files} files at once: deletions are held back; restore them or restart with --allow-mass-delete`,
      );
    }
  }

  /** A full reconcile ended. */
  reconciled(at: number): void {
    this.lastFullReconcile = at;
  }

  /** The watch delivered etcd's changes up to `revision`. */
  seen(revision: number): void {
    this.seenRevision = Math.max(this.seenRevision, revision);
  }

  /** Every etcd change up to `revision` is in the files, unless a file cannot be written. */
  applied(revision: number): void {
    if (!this.filesBehind) this.appliedRevision = Math.max(this.appliedRevision, revision);
  }

  /** etcd's history went back or its cluster changed: held until the union merge is done. */
  regression(what: string): void {
    this.counters.regressions++;
    this.regressionHeld = `${what}: merging both sides as a union`;
    this.logger.error(
      { regression: what },
      `${what}: the base means nothing against a rewritten history; re-reading etcd and merging both sides as a union (nothing is deleted, every conflict loser is recorded)`,
    );
    // The revisions start again: what was seen and applied was of the old history.
    this.seenRevision = 0;
    this.appliedRevision = 0;
  }

  recovered(): void {
    if (this.regressionHeld === undefined) return;
    this.regressionHeld = undefined;
    this.logger.warn('the union merge after etcd went back is done: both sides agree again');
  }

  /** The file watcher failed: said once, and readiness says it until a restart. */
  degraded(why: string, error: unknown): void {
    if (this.watcherDegraded === undefined) this.logger.error({ err: error }, why);
    this.watcherDegraded = `degraded: ${why}`;
  }

  /** The newest etcd revision the watch delivered. */
  get seenUpTo(): number {
    return this.seenRevision;
  }

  /** A full reconcile found the watch's mirror different from etcd. */
  diverged(keys: readonly string[]): void {
    this.counters.divergence += keys.length;
    this.logger.warn(
      { keys: keys.length, sample: keys.slice(0, LOGGED_KEYS) },
      'the etcd watch missed changes (found by the full reconcile): following etcd again from a fresh read',
    );
  }

  /** The etcd watch failed for good. */
  fatal(error: unknown): Error {
    this.fatalError = error instanceof Error ? error : new Error(String(error));
    this.failed('etcd watch', error);
    return this.fatalError;
  }

  failed(what: string, error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    this.logger.error({ err: error }, `${what} failed: ${message}`);
  }
}
