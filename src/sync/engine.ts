import { stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { type FSWatcher, watch as watchFiles } from 'chokidar';
import type { Subscription } from 'rxjs';
import { LinkEtcdError } from '../errors.js';
import { type Layout, layout, mirroredRefusal, parseKey } from '../layout/mapping.js';
import { defaultLogger, type Logger } from '../log.js';
import { Gate } from '../middleware/gate.js';
import type { EtcdMiddleware } from '../middleware/middleware.js';
import type { WatchBatch } from '../middleware/watch.js';
import { defaultStateDir, journalPath, loadBase, saveBase } from './base-journal.js';
import { EtcdView } from './etcd-view.js';
import {
  type FileSnapshot,
  readConfFile,
  removeStaleTemps,
  StaleFileError,
  scanConfDir,
  writeConfFile,
  writeConflictRecord,
} from './file-side.js';
import { KeyIndex } from './key-index.js';
import {
  type BaseEntry,
  type Blocked,
  type Conflict,
  type ConflictPolicy,
  type EtcdEntry,
  type EtcdWrite,
  type FileWrite,
  type Loss,
  type Plan,
  type PlanInput,
  plan,
} from './plan.js';

export interface SyncOptions {
  /** The conf dir to mirror. */
  readonly confDir: string;
  /** Key prefix. Default `/`. */
  readonly prefix?: string;
  readonly middleware: EtcdMiddleware;
  /** Where the base journal lives. Default: see defaultStateDir(). */
  readonly stateDir?: string;
  /** Who wins when both sides changed a key. Default `etcd-wins`. */
  readonly policy?: ConflictPolicy;
  /** Carry mass deletions over (a person confirmed them). Default false. */
  readonly allowMassDelete?: boolean;
  /** Share of mirrored keys one side may lose at once, across several files, before deletions stop. Default 0.5. */
  readonly maxDeleteShare?: number;
  /** Quiet time after a file event before the file is read. Default 10 ms. */
  readonly quietMs?: number;
  /** Full reconcile period. Default 5 minutes. */
  readonly fullReconcileMs?: number;
  /** Default: JSON lines on stderr at LINK_ETCD_LOG_LEVEL (default warn). */
  readonly logger?: Logger;
  /** Checks a staged file before it replaces `confPath` (a check_cmd hook); rejecting keeps the old file. */
  readonly checkFile?: (confPath: string, staged: string) => Promise<void>;
  /** Called when the etcd watch fails for good; the daemon should exit non-zero. */
  readonly onFatal?: (error: Error) => void;
  /** Called after files were written from etcd (reload hooks, exec mode). */
  readonly onFilesWritten?: (confPaths: readonly string[]) => void;
  /** Called when changes land: the direction, keys written, seconds since the change was first seen. */
  readonly onApplied?: (direction: 'to_etcd' | 'to_file', keys: number, seconds: number) => void;
}

/** What SIGHUP may change in a running engine. */
export type SyncReconfiguration = Partial<
  Pick<
    SyncOptions,
    | 'middleware'
    | 'policy'
    | 'allowMassDelete'
    | 'maxDeleteShare'
    | 'fullReconcileMs'
    | 'checkFile'
    | 'onFilesWritten'
  >
>;

export interface SyncCounters {
  toEtcd: number;
  toFile: number;
  conflicts: number;
  refused: number;
  parseErrors: number;
  retries: number;
}

/** What one reconcile pass decided and did. */
export interface PassResult {
  readonly plan: Plan;
  readonly files: number;
}

const RETRY_MS = 500;
const FILE_WRITE_CONCURRENCY = 16;
const ETCD_WRITE_CONCURRENCY = 8;
const FILE_READ_CONCURRENCY = 16;
const FULL_QUIET_MS = 200;
/** Bases up to this size are saved after every pass that changed them (measured here: 0.4 ms for 100 keys, 3.7 ms for 10,000, 8.8 ms for 20,000; 54 ms for 100,000). */
const IMMEDIATE_SAVE_KEYS = 20_000;
/** Keys named in one log line; the count is always there. */
const LOGGED_KEYS = 10;
/** Longer than chokidar's 50 ms change throttle and its 100 ms atomic-save window. */
const RECHECK_MS = 150;
/** How long a file must stay empty or gone before its keys are deleted in etcd. */
const SETTLE_MS = 300;

/**
 * The imperative shell around `plan`: keeps the three states (base, files,
 * etcd) current from events, which are only hints ("look at this file
 * again"), runs one pass at a time over the files they name, and applies the
 * plan: etcd writes as transactions that compare each key's revision, file
 * writes as atomic format-preserving edits.
 */
export class SyncEngine {
  private readonly confDir: string;
  private readonly layout: Layout;
  private readonly logger: Logger;
  private policy: ConflictPolicy;
  private readonly quietMs: number;
  private base = new Map<string, BaseEntry>();
  private readonly baseIndex = new KeyIndex();
  /** etcd as we know it, our own writes included before their events come back. */
  private readonly etcd = new EtcdView();
  private readonly etcdIndex = new KeyIndex();
  private readonly files = new Map<string, FileSnapshot>();
  private readonly changedAt = new Map<string, number>();
  private readonly dirty = new Set<string>();
  private readonly rechecks = new Map<string, NodeJS.Timeout>();
  private readonly emptiedAt = new Map<string, number>();
  /** Files to plan even if they did not change on disk: etcd changed, or their last pass failed. */
  private readonly mustPlan = new Set<string>();
  private fullSoon: NodeJS.Timeout | undefined;
  private prepared = false;
  private readonly fileRetries = new Map<string, number>();
  /** Set when the etcd watch failed for good (refused credentials, say): the engine is frozen. */
  fatal: Error | undefined;
  /** When each dirty file was first seen changed, for the propagation histogram. */
  private readonly dirtySince = new Map<string, number>();
  /** The etcd revision of the newest batch seen, and of the newest one whose files are all written. */
  private seenRevision = 0;
  appliedRevision = 0;
  private readonly refusedOnce = new Set<string>();
  private readonly reportedUnreadable = new Map<string, string>();
  private journal = '';
  private watchSub: Subscription | undefined;
  private fileWatcher: FSWatcher | undefined;
  private fullTimer: NodeJS.Timeout | undefined;
  private kickTimer: NodeJS.Timeout | undefined;
  private saveTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private baseDirty = false;
  blocked: readonly Blocked[] = [];
  ready = false;
  lastFullReconcile: number | undefined;
  readonly counters: SyncCounters = {
    toEtcd: 0,
    toFile: 0,
    conflicts: 0,
    refused: 0,
    parseErrors: 0,
    retries: 0,
  };

  constructor(private options: SyncOptions) {
    this.confDir = options.confDir;
    this.layout = layout(options.prefix ?? '/');
    this.logger = options.logger ?? defaultLogger();
    this.policy = options.policy ?? 'etcd-wins';
    this.quietMs = options.quietMs ?? 10;
  }

  /** Loads the base, waits for etcd's state, reconciles everything once, then follows both sides live. */
  async start(): Promise<void> {
    await this.prepare();
    // Watch first, then read: an edit made during the first reconcile is an event, not a gap.
    await this.followFiles();
    await this.reconcileAll({ settled: true });
    const period = this.options.fullReconcileMs ?? 300_000;
    this.fullTimer = setInterval(
      () => void this.reconcileAll().catch((e) => this.fail('full reconcile', e)),
      period,
    );
    this.fullTimer.unref();
  }

  /** Reconciles once: for `--once` and `--dry-run`. */
  async once(options: { dryRun?: boolean } = {}): Promise<PassResult> {
    // A one-shot run fails on an unreachable etcd (within read_timeout) instead of waiting for it.
    await this.options.middleware.connect();
    await this.prepare(options.dryRun ?? false);
    return this.reconcileAll({ ...options, settled: true });
  }

  /** Finishes the pass in flight, saves the base and lets go of etcd and the files. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.fullTimer);
    clearTimeout(this.kickTimer);
    clearTimeout(this.saveTimer);
    clearTimeout(this.fullSoon);
    for (const timer of this.rechecks.values()) clearTimeout(timer);
    this.watchSub?.unsubscribe();
    await this.fileWatcher?.close();
    await this.running;
    if (this.baseDirty) await this.saveNow();
  }

  private async prepare(dryRun = false): Promise<void> {
    // A dry run changes nothing, temp files included.
    const removed = dryRun ? [] : await removeStaleTemps(this.confDir);
    // The journal's own temp files, left by a crash during a save.
    if (!dryRun) await removeStaleTemps(this.options.stateDir ?? defaultStateDir()).catch(() => undefined);
    if (removed.length > 0) this.logger.info({ removed }, 'removed temp files left by an earlier crash');
    await this.followEtcd();
    // The base belongs to this conf dir, prefix and cluster: however the endpoints are spelled.
    const clusterId = await this.options.middleware.clusterId();
    this.journal = journalPath(
      this.options.stateDir ?? defaultStateDir(),
      this.confDir,
      this.layout.prefix,
      clusterId,
    );
    const loaded = await loadBase(this.journal);
    // Missing (a first run, or a lost state dir) or corrupt: a warning either way, as the union of both
    // sides brings back what was deleted on one side since the lost base.
    if (!loaded.ok)
      this.logger.warn({ journal: this.journal }, `${loaded.reason}: merging both sides as a union`);
    this.base = loaded.base;
    for (const key of this.base.keys()) {
      const file = this.fileOfKey(key);
      if (file !== undefined) this.baseIndex.add(file, key);
    }
    // Passes may run from now on: before, a pass would merge against an empty base.
    this.prepared = true;
  }

  /** Subscribes to etcd and resolves once its state is read: an unreachable etcd must never look empty. */
  private followEtcd(): Promise<void> {
    this.watchSub?.unsubscribe();
    return new Promise<void>((resolve, reject) => {
      this.watchSub = this.options.middleware.batches(this.layout.prefix).subscribe({
        next: (batch) => {
          this.onBatch(batch);
          if (batch.initial) resolve();
        },
        error: (error: unknown) => {
          reject(error);
          // No retry will help (refused credentials, the wrong cluster): stop serving a frozen view.
          this.fatal = error instanceof Error ? error : new Error(String(error));
          this.ready = false;
          this.fail('etcd watch', error);
          this.options.onFatal?.(this.fatal);
        },
      });
    });
  }

  /**
   * New settings without dropping state (SIGHUP): the base, the file
   * snapshots and the guard stay; a new middleware is followed from a fresh
   * read of etcd, then everything is reconciled once.
   */
  async reconfigure(patch: SyncReconfiguration): Promise<void> {
    const swap = patch.middleware !== undefined && patch.middleware !== this.options.middleware;
    this.options = { ...this.options, ...patch };
    this.policy = this.options.policy ?? 'etcd-wins';
    if (patch.fullReconcileMs !== undefined) {
      clearInterval(this.fullTimer);
      this.fullTimer = setInterval(
        () => void this.reconcileAll().catch((e) => this.fail('full reconcile', e)),
        patch.fullReconcileMs,
      );
      this.fullTimer.unref();
    }
    if (swap) await this.followEtcd();
    await this.reconcileAll();
  }

  private fileOfKey(key: string): string | undefined {
    const parsed = parseKey(this.layout, key);
    if (parsed.ok) return parsed.address.confPath;
    if (!this.refusedOnce.has(key)) {
      this.refusedOnce.add(key);
      this.counters.refused++;
      this.logger.warn(
        { key, reason: parsed.reason },
        'etcd key refused: it maps to no safe file, nothing is written',
      );
    }
    return undefined;
  }

  private onBatch(batch: WatchBatch): void {
    const now = Date.now();
    if (batch.initial) {
      // A new subscription (start, SIGHUP): its state replaces the old one at once, index included.
      this.etcd.attach(batch.state, batch.revision);
      this.etcdIndex.clear();
      for (const key of batch.state.keys()) {
        const file = this.fileOfKey(key);
        if (file !== undefined) this.etcdIndex.add(file, key);
      }
      return;
    }
    this.seenRevision = Math.max(this.seenRevision, batch.revision);
    this.etcd.caughtUp(batch.revision);
    for (const change of batch.changes) {
      const file = this.fileOfKey(change.key);
      if (file === undefined) continue;
      if (this.etcd.has(change.key)) this.etcdIndex.add(file, change.key);
      else this.etcdIndex.delete(file, change.key);
      this.changedAt.set(`etcd\0${change.key}`, now);
      if (!this.dirtySince.has(file)) this.dirtySince.set(file, now);
      this.dirty.add(file);
      this.mustPlan.add(file);
    }
    this.kick(0);
  }

  private followFiles(): Promise<void> {
    const watcher = watchFiles(this.confDir, {
      ignoreInitial: true,
      // Links are not mirrored (see file-side.ts): no need to watch through them.
      followSymlinks: false,
      ignored: (path: string, stats) => {
        const rel = relative(this.confDir, path).split(sep).join('/');
        if (rel === '') return false;
        if (rel.split('/').some((part) => part.startsWith('.'))) return true;
        const lower = rel.toLowerCase();
        if (lower === 'link/etcd' || lower.startsWith('link/etcd/')) return true;
        return stats?.isFile() === true && mirroredRefusal(rel) !== undefined;
      },
    });
    watcher.on('all', (event, path) => {
      const rel = relative(this.confDir, path).split(sep).join('/');
      if (event === 'addDir' || event === 'unlinkDir') {
        // A folder appeared, moved or went: which files it holds is known only by looking again.
        void this.markTree(rel).catch((e) => this.fail('rescan', e));
        return;
      }
      if (mirroredRefusal(rel) !== undefined) return;
      this.changedAt.set(`file\0${rel}`, Date.now());
      if (!this.dirtySince.has(rel)) this.dirtySince.set(rel, Date.now());
      this.dirty.add(rel);
      this.kick(this.quietMs);
      this.recheckLater(rel);
    });
    watcher.on('error', (error) =>
      this.logger.warn({ err: error }, 'file watcher error; the periodic reconcile goes on'),
    );
    this.fileWatcher = watcher;
    return new Promise((resolve) => watcher.once('ready', () => resolve()));
  }

  /**
   * chokidar drops a change that comes within ~50 ms of another on the same
   * file (its throttle, and its atomic-save handling): so every event also
   * asks for one more look once that window has passed.
   */
  private recheckLater(rel: string, ms = RECHECK_MS): void {
    clearTimeout(this.rechecks.get(rel));
    const timer = setTimeout(() => {
      this.rechecks.delete(rel);
      this.dirty.add(rel);
      this.kick(0);
    }, ms);
    timer.unref();
    this.rechecks.set(rel, timer);
  }

  /** Runs a pass over the dirty files after `ms`, one pass at a time. */
  private kick(ms: number): void {
    if (this.stopped || !this.prepared) return;
    clearTimeout(this.kickTimer);
    const run = () => {
      // The pass in flight re-checks `dirty` when it ends.
      if (this.running) return;
      this.running = this.drain().finally(() => {
        this.running = undefined;
      });
    };
    // setTimeout(0) waits at least 1 ms; an etcd change is worth starting on at once (measured: -1 ms p50).
    if (ms === 0) setImmediate(run);
    else this.kickTimer = setTimeout(run, ms);
  }

  private async drain(): Promise<void> {
    const target = this.seenRevision;
    while (this.dirty.size > 0 && !this.stopped) {
      const paths = [...this.dirty];
      this.dirty.clear();
      try {
        await this.pass(paths, false);
      } catch (error) {
        for (const p of paths) {
          this.dirty.add(p);
          this.mustPlan.add(p);
        }
        this.fail('sync pass', error);
        this.counters.retries++;
        this.kick(RETRY_MS);
        return;
      }
    }
    // Everything etcd had sent when this drain began is now in the files.
    if (this.dirty.size === 0) this.appliedRevision = Math.max(this.appliedRevision, target);
  }

  /** Every file either side or the base knows, reconciled. */
  async reconcileAll(options: { dryRun?: boolean; settled?: boolean } = {}): Promise<PassResult> {
    // One pass at a time: every waiter re-checks, so two callers cannot both start one.
    while (this.running) await this.running;
    const work = (async () => {
      const scanned = await scanConfDir(this.confDir).catch(() => [] as string[]);
      const paths = new Set<string>([...scanned, ...this.etcdIndex.files(), ...this.baseIndex.files()]);
      const result = await this.pass(
        [...paths].sort(),
        options.dryRun ?? false,
        true,
        scanned.length === 0,
        options.settled ?? false,
      );
      this.lastFullReconcile = Date.now();
      if (!options.dryRun) this.ready = this.blocked.length === 0;
      return result;
    })();
    this.running = work.then(
      () => undefined,
      () => undefined,
    );
    try {
      return await work;
    } finally {
      this.running = undefined;
      if (this.dirty.size > 0) this.kick(0);
    }
  }

  /**
   * `settled`: take emptied files at their word (start, --once), instead of
   * waiting to see whether a save is in progress.
   */
  private async pass(
    paths: readonly string[],
    dryRun: boolean,
    full = false,
    confDirEmpty = false,
    settled = false,
  ): Promise<PassResult> {
    const keyFile = new Map<string, string>();
    const base = new Map<string, BaseEntry>();
    const files = new Map<string, string>();
    const etcd = new Map<string, EtcdEntry>();
    const unreadable = new Set<string>();
    // Files are read several at a time (a full pass over 1,000 files waits on I/O, not on us).
    const gate = new Gate(FILE_READ_CONCURRENCY);
    const snapshots = await Promise.all(
      paths.map((path) =>
        gate.run(() =>
          readConfFile(
            this.confDir,
            this.layout,
            path,
            (what, reason) => {
              if (this.refusedOnce.has(what)) return;
              this.refusedOnce.add(what);
              this.counters.refused++;
              this.logger.warn({ key: what, reason }, 'file key refused: it maps to no safe etcd key');
            },
            // A full pass reads every file again: a change that kept size and mtime is caught here.
            full ? undefined : this.files.get(path),
          ),
        ),
      ),
    );
    for (const [index, path] of paths.entries()) {
      const snapshot = snapshots[index] as FileSnapshot;
      const unchanged = snapshot === this.files.get(path) && !this.mustPlan.has(path);
      this.mustPlan.delete(path);
      // Neither side moved since this file was last reconciled (our own write coming back, say): nothing to plan.
      if (unchanged && !full && !this.emptiedAt.has(path)) continue;
      this.files.set(path, snapshot);
      if (!settled && this.mayBeMidSave(path, snapshot)) {
        // Pushes nothing now: a truncate-then-write or delete-then-create save is read again once it settles.
        unreadable.add(path);
        continue;
      }
      if (snapshot.kind === 'unreadable') {
        unreadable.add(path);
        if (this.reportedUnreadable.get(path) !== snapshot.reason) {
          this.reportedUnreadable.set(path, snapshot.reason);
          this.counters.parseErrors++;
          this.logger.error(
            { file: join(this.confDir, path) },
            `${snapshot.reason}: nothing is pushed from this file until it is fixed`,
          );
        }
      } else this.reportedUnreadable.delete(path);
      for (const [key, value] of snapshot.entries) {
        files.set(key, value);
        keyFile.set(key, path);
      }
      for (const key of this.etcdIndex.keysOf(path)) {
        const entry = this.etcd.get(key);
        if (entry !== undefined) etcd.set(key, entry);
        keyFile.set(key, path);
      }
      for (const key of this.baseIndex.keysOf(path)) {
        const entry = this.base.get(key);
        if (entry !== undefined) base.set(key, entry);
        keyFile.set(key, path);
      }
    }
    const planInput: PlanInput = {
      base,
      files,
      etcd,
      fileOf: (key) => keyFile.get(key) ?? '',
      unreadableFiles: unreadable,
      policy: this.policy,
      changedAt: (side, key) =>
        this.changedAt.get(side === 'etcd' ? `etcd\0${key}` : `file\0${keyFile.get(key)}`),
      guard: {
        confDirEmpty,
        allowMassDelete: this.options.allowMassDelete ?? false,
        maxDeleteShare: this.options.maxDeleteShare ?? 0.5,
        // Held back once, held back until the keys return or a person confirms.
        holding: new Set(this.blocked.map((b) => (b.side === 'etcd' ? 'etcd' : 'file'))),
      },
    };
    // A partial pass's own counts cannot judge a mass deletion: plan unguarded first, and if that
    // deletes anything, plan again with the guard fed the whole picture.
    let p = plan(full ? planInput : { ...planInput, guard: { ...planInput.guard, allowMassDelete: true } });
    const deletes =
      p.toEtcd.some((w) => w.value === undefined) || p.toFile.some((w) => w.value === undefined);
    if (deletes && !full && !planInput.guard.allowMassDelete) {
      // A pass over a few files cannot tell one removed file from the first of many, nor an emptied
      // conf dir (an unmounted volume) from a deleted file: ask the whole.
      const mirrored = await scanConfDir(this.confDir).catch(() => [] as string[]);
      p = plan({
        ...planInput,
        guard: {
          ...planInput.guard,
          confDirEmpty: mirrored.length === 0,
          overall: await this.overallLosses(),
        },
      });
    }
    if (dryRun) return { plan: p, files: paths.length };
    this.reportBlocked(p.blocked, full);
    await this.applyEtcd(p.toEtcd, keyFile);
    await this.applyFiles(p.toFile, keyFile);
    await this.recordConflicts(p.conflicts, keyFile);
    for (const [key, entry] of p.base) this.setBase(key, entry, keyFile.get(key));
    // Files this pass found nothing to do for: their next change starts a new clock.
    for (const path of paths) if (!this.dirty.has(path)) this.dirtySince.delete(path);
    await this.saveBase();
    return { plan: p, files: paths.length };
  }

  /**
   * A file that just lost all its keys (emptied or removed) may be an editor
   * between its truncate and its write: its emptiness counts only once it
   * has lasted SETTLE_MS.
   */
  private mayBeMidSave(path: string, snapshot: FileSnapshot): boolean {
    const emptied =
      snapshot.kind !== 'unreadable' && snapshot.entries.size === 0 && this.baseIndex.keysOf(path).size > 0;
    if (!emptied) {
      this.emptiedAt.delete(path);
      return false;
    }
    const since = this.emptiedAt.get(path);
    const now = Date.now();
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

  /** What each side has lost against the whole base: files gone or emptied, keys gone from etcd. */
  private async overallLosses(): Promise<{ total: number; file: Loss; etcd: Loss }> {
    const file = { keys: 0, files: 0 };
    const etcd = { keys: 0, files: 0 };
    for (const path of [...this.baseIndex.files()]) {
      const keys = this.baseIndex.keysOf(path);
      const exists = await stat(join(this.confDir, path)).then(
        (s) => s.size > 0,
        () => false,
      );
      const snapshot = this.files.get(path);
      // A file that does not parse pushes nothing, deletions included: it is not a loss.
      if (snapshot?.kind === 'unreadable') continue;
      const lostHere = exists
        ? [...keys].filter((k) => snapshot !== undefined && !snapshot.entries.has(k)).length
        : keys.size;
      if (lostHere > 0) {
        file.keys += lostHere;
        file.files++;
      }
      const goneHere = [...keys].filter((k) => !this.etcd.has(k)).length;
      if (goneHere > 0) {
        etcd.keys += goneHere;
        etcd.files++;
      }
    }
    return { total: this.base.size, file, etcd };
  }

  /** Marks every file under a folder dirty: those on disk now, and those either side or the base knows. */
  private async markTree(rel: string): Promise<void> {
    const inside = (path: string) => path.startsWith(`${rel}/`);
    const onDisk = await scanConfDir(this.confDir, rel).catch(() => [] as string[]);
    for (const path of [...onDisk, ...this.baseIndex.files(), ...this.etcdIndex.files()]) {
      if (inside(path)) this.dirty.add(path);
    }
    this.kick(this.quietMs);
  }

  /** A full pass decides the guard's state; a pass over a few files can only raise it (and asks for a full one when clear). */
  private reportBlocked(blocked: readonly Blocked[], full: boolean): void {
    const before = JSON.stringify(this.blocked);
    if (full || blocked.length > 0) this.blocked = blocked;
    else if (this.blocked.length > 0) this.kickFull();
    if (JSON.stringify(this.blocked) === before) return;
    this.ready = this.blocked.length === 0 && this.lastFullReconcile !== undefined;
    for (const b of this.blocked) {
      this.logger.error(
        { side: b.side, deletions: b.deletions, of: b.of, files: b.files },
        b.side === 'conf-dir'
          ? 'the conf dir is missing or empty: no deletion is carried to etcd; restore the files or restart with --allow-mass-delete'
          : `${b.side} lost ${b.deletions} of ${b.of} mirrored keys across ${b.files} files at once: deletions are held back; restore them or restart with --allow-mass-delete`,
      );
    }
  }

  /** One full reconcile soon, however many reasons to run one come at once. */
  private kickFull(): void {
    if (this.stopped || this.fullSoon) return;
    this.fullSoon = setTimeout(() => {
      this.fullSoon = undefined;
      void this.reconcileAll().catch((e) => this.fail('full reconcile', e));
    }, FULL_QUIET_MS);
    this.fullSoon.unref();
  }

  private setBase(key: string, entry: BaseEntry | undefined, file: string | undefined): void {
    if (entry === undefined) {
      this.base.delete(key);
      if (file !== undefined) this.baseIndex.delete(file, key);
    } else {
      this.base.set(key, entry);
      if (file !== undefined) this.baseIndex.add(file, key);
    }
    this.baseDirty = true;
  }

  private async applyEtcd(writes: readonly EtcdWrite[], keyFile: ReadonlyMap<string, string>): Promise<void> {
    if (writes.length === 0) return;
    const max = (await this.options.middleware.settings()).maxTxnOps;
    // Files are independent transactions: several in flight hide the round trips
    // (measured: 1,000 files pushed in 1.44 s instead of 1.73 s).
    const gate = new Gate(ETCD_WRITE_CONCURRENCY);
    const jobs = [...groupBy(writes, (w) => keyFile.get(w.key) ?? '')].map(([file, fileWrites]) =>
      gate.run(async () => {
        for (let i = 0; i < fileWrites.length; i += max)
          await this.pushChunk(file, fileWrites.slice(i, i + max));
      }),
    );
    const failed = (await Promise.allSettled(jobs)).find(
      (r): r is PromiseRejectedResult => r.status === 'rejected',
    );
    if (failed) throw failed.reason;
  }

  /** One transaction of one file's keys, each compared with the revision the plan saw. */
  private async pushChunk(file: string, chunk: readonly EtcdWrite[]): Promise<void> {
    const revision = await this.options.middleware.writeIfUnchanged(chunk);
    if (revision === undefined) {
      // Someone else wrote first: the watch brings their value, and the next pass merges it.
      this.logger.info(
        { file, keys: chunk.map((w) => w.key) },
        'etcd changed under the write: merging again',
      );
      this.counters.retries++;
      // Not dirty now: the drain would retry at once, before the watch brings the newer value.
      setTimeout(() => {
        this.dirty.add(file);
        this.mustPlan.add(file);
        this.kick(0);
      }, RETRY_MS / 10).unref();
      return;
    }
    for (const w of chunk) {
      this.etcd.wrote(w.key, w.value, revision);
      if (w.value === undefined) this.etcdIndex.delete(file, w.key);
      else this.etcdIndex.add(file, w.key);
      this.setBase(
        w.key,
        w.value === undefined ? undefined : { value: w.value, modRevision: revision },
        file,
      );
    }
    this.landed('to_etcd', file, chunk, { revision });
  }

  private async applyFiles(
    writes: readonly FileWrite[],
    keyFile: ReadonlyMap<string, string>,
  ): Promise<void> {
    // Files are independent: their fsyncs overlap (measured: 1,000 files in a third of the time).
    const gate = new Gate(FILE_WRITE_CONCURRENCY);
    const jobs = [...groupBy(writes, (w) => keyFile.get(w.key) ?? '')].map(([file, fileWrites]) =>
      gate.run(() => this.applyFile(file, fileWrites)),
    );
    const results = await Promise.allSettled(jobs);
    const written = results.flatMap((r) =>
      r.status === 'fulfilled' && r.value !== undefined ? [r.value] : [],
    );
    if (written.length > 0) this.options.onFilesWritten?.(written);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Writes one file; resolves with its conf path when it changed on disk. */
  private async applyFile(file: string, fileWrites: readonly FileWrite[]): Promise<string | undefined> {
    let written: { text: string; signature: string | undefined };
    try {
      const check = this.options.checkFile;
      written = await writeConfFile(
        this.confDir,
        this.layout,
        file,
        fileWrites,
        this.files.get(file),
        check === undefined ? undefined : (staged) => check(file, staged),
      );
    } catch (error) {
      if (error instanceof StaleFileError) {
        // Someone saved meanwhile: merge again, soon, but not in a tight loop (each try may run a check_cmd).
        this.retryLater(file);
        return undefined;
      }
      if (error instanceof LinkEtcdError) {
        // The base still says the file is behind: tried again later (no space, a check_cmd that said no,
        // a folder in the way), with a growing pause, and on the file's next change.
        this.logger.error({ file }, `${error.message}: not written`);
        this.retryLater(file);
        return undefined;
      }
      throw error;
    }
    for (const w of fileWrites) {
      this.setBase(
        w.key,
        w.value === undefined ? undefined : { value: w.value, modRevision: w.revision },
        file,
      );
    }
    this.landed('to_file', file, fileWrites);
    // Our write will come back as a file event; the snapshot must already know it, or it would look like an
    // edit. The file is the planned text with these writes applied, so its keys are too: no parse needed.
    const before = this.files.get(file);
    const entries = new Map(before?.kind === 'ok' ? before.entries : []);
    for (const w of fileWrites) {
      if (w.value === undefined) entries.delete(w.key);
      else entries.set(w.key, w.value);
    }
    this.files.set(file, {
      kind: 'ok',
      confPath: file,
      text: written.text,
      entries,
      ...(written.signature === undefined ? {} : { signature: written.signature }),
    });
    return written.signature === undefined ? undefined : file;
  }

  private async recordConflicts(
    conflicts: readonly Conflict[],
    keyFile: ReadonlyMap<string, string>,
  ): Promise<void> {
    for (const [file, list] of groupBy(conflicts, (c) => keyFile.get(c.key) ?? '')) {
      this.counters.conflicts += list.length;
      let record: string | undefined;
      try {
        record = await writeConflictRecord(this.confDir, this.layout, file, list, new Date());
      } catch (error) {
        this.logger.error(
          { err: error, file },
          'could not write the conflict record; the losing values are in this log',
        );
      }
      for (const c of list) {
        this.logger.error(
          {
            key: c.key,
            winner: c.winner,
            loser: c.loser,
            lostValue: isSecretKey(c.key) ? '***' : c.loserValue,
            record,
          },
          `conflict on ${c.key}: ${c.winner} wins (${this.policy}), the ${c.loser} value is kept in ${record ?? 'this log'}`,
        );
      }
    }
  }

  /** Plans a file again after a pause that doubles with each failure (50 ms to 30 s), reset when it lands. */
  private retryLater(file: string): void {
    const tries = (this.fileRetries.get(file) ?? 0) + 1;
    this.fileRetries.set(file, tries);
    const delay = Math.min(50 * 2 ** (tries - 1), 30_000);
    setTimeout(() => {
      this.dirty.add(file);
      this.mustPlan.add(file);
      this.kick(0);
    }, delay).unref();
  }

  /** Writes that landed: one log line per file and transaction, the counters, the propagation clock. */
  private landed(
    direction: 'to_etcd' | 'to_file',
    file: string,
    writes: ReadonlyArray<{ key: string; value: string | undefined; reason: string }>,
    extra: Record<string, unknown> = {},
  ): void {
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
    this.fileRetries.delete(file);
    const since = this.dirtySince.get(file);
    this.dirtySince.delete(file);
    if (since !== undefined) this.options.onApplied?.(direction, writes.length, (Date.now() - since) / 1000);
  }

  /**
   * The base is what a restart merges against, so it is saved as soon as a
   * pass changed it: a crash right after a write must not leave a base that
   * predates it (an edit reverted while the daemon was down would then be
   * overwritten). Past IMMEDIATE_SAVE_KEYS keys a save costs tens of
   * milliseconds, so large bases are saved at most every 200 ms instead.
   */
  private async saveBase(): Promise<void> {
    if (!this.baseDirty) return;
    if (this.base.size <= IMMEDIATE_SAVE_KEYS) {
      clearTimeout(this.saveTimer);
      this.saveTimer = undefined;
      await this.saveNow();
      return;
    }
    if (this.saveTimer !== undefined) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      void this.saveNow().catch((e) => this.fail('saving the base', e));
    }, 200);
  }

  private async saveNow(): Promise<void> {
    this.baseDirty = false;
    await saveBase(this.journal, this.confDir, this.layout.prefix, this.base);
  }

  private fail(what: string, error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    this.logger.error({ err: error }, `${what} failed: ${message}`);
  }
}

/**
 * Keys whose values stay out of logs: their last segment names a password,
 * secret, token, credential or private/API key. The conflict record file
 * (mode 0600, next to the conf file) still keeps the losing value.
 */
export const SECRET_KEY = /(pass(word|wd|phrase)?|secret|token|credential|private[_-]?key|api[_-]?key)$/i;

function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key.slice(key.lastIndexOf('/') + 1));
}

function groupBy<T>(items: readonly T[], keyOf: (item: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = keyOf(item);
    const list = out.get(k);
    if (list) list.push(item);
    else out.set(k, [item]);
  }
  return out;
}

/** Whether the conf dir exists (a missing one is the unmounted-volume case of the guard). */
export async function confDirExists(dir: string): Promise<boolean> {
  return (await stat(dir).catch(() => undefined))?.isDirectory() === true;
}
