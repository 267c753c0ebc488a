import type { LinkEtcdError } from '../errors.js';
import type { Logger } from '../log.js';
import { maskValue } from '../secrets.js';
import { setBounded } from './bounded.js';
import type { Blocked } from './guard.js';
import type { Conflict, ConflictPolicy } from './merge.js';
import type { Plan } from './plan.js';

export interface SyncCounters {
  toEtcd: number;
  toFile: number;
  conflicts: number;
  refused: number;
  parseErrors: number;
  retries: number;
}

/** What a running engine knows of itself: a copy, safe to keep. */
export interface SyncStatus {
  /** The first full reconcile finished, nothing is held by the guard, and etcd is followed. */
  readonly ready: boolean;
  /** The etcd watch failed for good (refused credentials, say): the engine is frozen. */
  readonly fatal: Error | undefined;
  /** Deletions held back by the mass-deletion guard. */
  readonly blocked: readonly Blocked[];
  /** Files that cannot be mirrored now, with why: they do not parse, or cannot be written. */
  readonly failing: ReadonlyArray<{ readonly file: string; readonly reason: string }>;
  /** The newest etcd revision whose changes are all in the files. */
  readonly appliedRevision: number;
  /** When the last full reconcile ended (ms since the epoch). */
  readonly lastFullReconcile: number | undefined;
  readonly counters: Readonly<SyncCounters>;
}

/** Refused names remembered (so each is logged once); past it the oldest may be logged again. */
const REMEMBERED_NAMES = 10_000;

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
  };
  blocked: readonly Blocked[] = [];
  private ready = false;
  private fatalError: Error | undefined;
  private appliedRevision = 0;
  private lastFullReconcile: number | undefined;
  /** Names refused and already logged; bounded, so put-and-delete cycles of new names cannot grow it. */
  private readonly refusedOnce = new Map<string, true>();
  private readonly unreadable = new Map<string, string>();
  private readonly unwritableFiles = new Map<string, string>();

  constructor(private readonly logger: Logger) {}

  status(): SyncStatus {
    return {
      ready: this.ready,
      fatal: this.fatalError,
      blocked: [...this.blocked],
      failing: [...this.unreadable, ...this.unwritableFiles].map(([file, reason]) => ({ file, reason })),
      appliedRevision: this.appliedRevision,
      lastFullReconcile: this.lastFullReconcile,
      counters: { ...this.counters },
    };
  }

  /** A name on one side that maps to nothing safe on the other: said once per name. */
  refused(side: 'file' | 'etcd', what: string, reason: string): void {
    if (this.refusedOnce.has(what)) return;
    setBounded(this.refusedOnce, what, true, REMEMBERED_NAMES);
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
  unreadableFile(confPath: string, file: string, reason: string): void {
    if (this.unreadable.get(confPath) === reason) return;
    this.unreadable.set(confPath, reason);
    this.counters.parseErrors++;
    this.logger.error({ file }, `${reason}: nothing is pushed from this file until it is fixed`);
  }

  readableFile(confPath: string): void {
    this.unreadable.delete(confPath);
  }

  /** A file that could not be written now; it is tried again. */
  unwritable(confPath: string, error: LinkEtcdError): void {
    this.unwritableFiles.set(confPath, error.message);
    this.logger.error({ file: confPath, code: error.code }, `${error.message}: not written`);
  }

  /** Writes that landed: one log line per file and transaction, and the counters. */
  landed(
    direction: 'to_etcd' | 'to_file',
    file: string,
    writes: ReadonlyArray<{ key: string; value: string | undefined; reason: string }>,
    extra: Record<string, unknown>,
  ): void {
    this.unwritableFiles.delete(file);
    if (this.logger.isLevelEnabled('info')) {
      const changes = writes
        .slice(0, LOGGED_KEYS)
        .map((w) => [w.value === undefined ? 'delete' : 'put', w.key, w.reason]);
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

  /** The guard's new state: logged once per change; readiness follows it. */
  block(blocked: readonly Blocked[]): void {
    this.blocked = blocked;
    this.ready =
      blocked.length === 0 && this.lastFullReconcile !== undefined && this.fatalError === undefined;
    for (const b of blocked) {
      this.logger.error(
        { side: b.side, deletions: b.deletions, of: b.of, files: b.files },
        b.side === 'conf-dir'
          ? 'the conf dir is missing or empty: no deletion is carried to etcd; restore the files or restart with --allow-mass-delete'
          : `${b.side} lost ${b.deletions} of ${b.of} mirrored keys across ${b.files} files at once: deletions are held back; restore them or restart with --allow-mass-delete`,
      );
    }
  }

  /** A full reconcile ended. */
  reconciled(at: number, dryRun: boolean): void {
    this.lastFullReconcile = at;
    if (!dryRun) this.ready = this.blocked.length === 0 && this.fatalError === undefined;
  }

  /** Every etcd change up to `revision` is in the files. */
  applied(revision: number): void {
    this.appliedRevision = Math.max(this.appliedRevision, revision);
  }

  /** The etcd watch failed for good. */
  fatal(error: unknown): Error {
    this.fatalError = error instanceof Error ? error : new Error(String(error));
    this.ready = false;
    this.failed('etcd watch', error);
    return this.fatalError;
  }

  failed(what: string, error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    this.logger.error({ err: error }, `${what} failed: ${message}`);
  }
}
