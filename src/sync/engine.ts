import type { Subscription } from 'rxjs';
import { type Layout, layout, parseKey } from '../layout/mapping.js';
import { defaultLogger, type Logger } from '../log.js';
import type { WatchBatch } from '../middleware/watch.js';
import { Apply } from './apply.js';
import { defaultStateDir } from './base-journal.js';
import { BaseStore } from './base-store.js';
import { SYNC_DEFAULTS } from './defaults.js';
import { EtcdHistory } from './etcd-history.js';
import { EtcdSide } from './etcd-side.js';
import { FileSide } from './file-side.js';
import { followConfDir } from './file-watcher.js';
import { holdingOf } from './guard.js';
import { guardPass } from './guard-pass.js';
import { settleLastRun } from './last-run.js';
import type { ConflictPolicy } from './merge.js';
import { gatherInput } from './pass-input.js';
import { merge } from './plan.js';
import { Scheduler } from './scheduler.js';
import { stageClock } from './stage-clock.js';
import type { PassResult, SyncOptions, SyncReconfiguration } from './sync-options.js';
import { SyncReport, type SyncStatus } from './sync-report.js';

export type {
  PassResult,
  SyncCounters,
  SyncOptions,
  SyncReconfiguration,
  SyncStatus,
} from './sync-options.js';

/**
 * The imperative shell around the plan: keeps the three states (base, files,
 * etcd) current from events, which are only hints ("look at this file
 * again"), and runs one pass at a time over the files they name.
 */
export class SyncEngine {
  private readonly layout: Layout;
  private readonly logger: Logger;
  private readonly report: SyncReport;
  private readonly base: BaseStore;
  private readonly etcd: EtcdSide;
  private readonly files: FileSide;
  private readonly scheduler: Scheduler;
  private readonly apply: Apply;
  private readonly history: EtcdHistory;
  private watchSub: Subscription | undefined;
  private fileWatcher: { close(): Promise<void> } | undefined;
  private readonly foldersToTouch = new Set<string>();
  private touching: Promise<void> | undefined;
  /** When the first change since the last pass was seen (performance.now()), for the `wait` stage. */
  /** The first change seen since the last pass began, and which wait it starts. */
  private changeSeen: { at: number; stage: 'wait' | 'wait_file' } | undefined;
  private clusterId: string | undefined;
  /** The etcd revision seen when the current drain began. */
  private drainTarget = 0;

  constructor(private options: SyncOptions) {
    this.layout = layout(options.prefix ?? SYNC_DEFAULTS.prefix);
    this.logger = options.logger ?? defaultLogger();
    this.report = new SyncReport(this.logger);
    const confDir = options.confDir;
    const stateDir = options.stateDir ?? defaultStateDir();
    this.base = new BaseStore({ stateDir, confDir, prefix: this.layout.prefix });
    this.etcd = new EtcdSide(
      () => this.options.middleware,
      (key) => {
        const parsed = parseKey(this.layout, key);
        if (parsed.ok) return parsed.address.confPath;
        this.report.refused('etcd', key, parsed.reason);
        return undefined;
      },
    );
    this.files = new FileSide(
      confDir,
      this.layout,
      (what, reason) => this.report.refused('file', what, reason),
      options.maxFileBytes ?? SYNC_DEFAULTS.maxFileBytes,
      (phase, seconds) => this.options.onStage?.(phase, seconds),
    );
    this.scheduler = new Scheduler(
      {
        pass: async (paths) => void (await this.pass(paths, { full: false })),
        full: () => this.reconcileAll({ check: true }),
        drainStarted: () => {
          this.drainTarget = this.report.seenUpTo;
        },
        // Everything etcd had sent when this drain began is now in the files.
        drained: () => this.report.applied(this.drainTarget),
        passFailed: (error) => this.report.retried('sync pass', error),
        fullFailed: (error) => this.report.failed('full reconcile', error),
      },
      options.quietMs ?? SYNC_DEFAULTS.quietMs,
    );
    this.history = new EtcdHistory(() => this.options.middleware, this.layout.prefix, this.scheduler.clock, {
      regressed: (what, clusterId) => this.recover(what, clusterId),
      // The prefix can no longer be read: end as refused credentials do, with one line.
      refused: (error) => this.options.onFatal?.(this.report.fatal(error)),
    });
    this.apply = new Apply({
      etcd: this.etcd,
      files: this.files,
      base: this.base,
      scheduler: this.scheduler,
      report: this.report,
      logger: this.logger,
      options: () => this.options,
    });
  }

  /** Loads the base, waits for etcd's state, reconciles everything once, then follows both sides live. */
  async start(): Promise<void> {
    await this.prepare();
    // Watch first, then read: an edit made during the first reconcile is an event, not a gap.
    if (this.options.watchFiles !== false)
      this.fileWatcher = await followConfDir(
        this.options.confDir,
        {
          file: (path) => {
            this.changeSeen ??= { at: performance.now(), stage: 'wait_file' };
            this.scheduler.fileChanged(path);
          },
          folder: (dir) => this.touchLater(dir),
          degraded: (why, error) => this.report.degraded(why, error),
          scan: () => void this.reconcileAll().catch((e) => this.report.failed('scan', e)),
        },
        this.scheduler.clock,
      );
    await this.reconcileAll({ settled: true });
    this.scheduler.every(this.options.fullReconcileMs ?? SYNC_DEFAULTS.fullReconcileSeconds * 1000);
    this.history.start(this.clusterId ?? '', this.etcd.revision);
  }

  /** Reconciles once: for `--once` and `--dry-run`. */
  async once(options: { dryRun?: boolean } = {}): Promise<PassResult> {
    // A one-shot run fails on an unreachable etcd (within read_timeout) instead of waiting for it.
    await this.options.middleware.connect();
    await this.prepare(options.dryRun ?? false);
    return this.reconcileAll({ ...options, settled: true });
  }

  /**
   * Finishes the pass in flight, saves the base and lets go of etcd and the
   * files. `save: false` leaves the state dir as it is (`link-etcd status`'s
   * offline dry run writes nothing, a first base journal included).
   */
  async stop(options: { save?: boolean } = {}): Promise<void> {
    this.history.stop();
    this.watchSub?.unsubscribe();
    const closing = this.fileWatcher?.close();
    await this.scheduler.stop();
    await closing;
    if (options.save !== false) await this.base.flush();
  }

  /** What the engine knows of itself, for probes, metrics and tests: a copy, never live state. */
  status(): SyncStatus {
    return this.report.status();
  }

  /** Files changed on some side and not reconciled yet (a copy, sorted): `link-etcd status`'s pending. */
  pendingFiles(): string[] {
    return this.scheduler.pending();
  }

  private policy(): ConflictPolicy {
    return this.options.policy ?? SYNC_DEFAULTS.conflict;
  }

  /**
   * New settings without dropping state (SIGHUP): the base, the file
   * snapshots and the guard stay; a new middleware is followed from a fresh
   * read of etcd, then everything is reconciled once.
   */
  async reconfigure(patch: SyncReconfiguration): Promise<void> {
    const swap = patch.middleware !== undefined && patch.middleware !== this.options.middleware;
    this.options = { ...this.options, ...patch };
    if (patch.fullReconcileMs !== undefined) this.scheduler.every(patch.fullReconcileMs);
    if (swap) await this.followEtcd();
    await this.reconcileAll();
  }

  /**
   * Every file either side or the base knows, reconciled. `check` first
   * reads etcd itself and compares it with the watch's mirror (the periodic
   * reconcile does): events are hints, and a watch can miss what it was
   * never told.
   */
  reconcileAll(options: { dryRun?: boolean; settled?: boolean; check?: boolean } = {}): Promise<PassResult> {
    return this.scheduler.exclusive(async () => {
      if (options.check) await this.checkMirror();
      return this.fullPass(options);
    });
  }

  private async fullPass(options: { dryRun?: boolean; settled?: boolean }): Promise<PassResult> {
    await this.files.protectSettings();
    const removed = options.dryRun ? [] : await this.files.removeStaleTemps();
    if (removed.length > 0) this.logger.info({ removed }, 'removed temp files a crash left behind');
    const scanned = await this.files.scan();
    // With the files a reason names: one renamed away or removed is looked at, and its reason goes.
    const paths = new Set([
      ...scanned,
      ...this.etcd.files(),
      ...this.base.files(),
      ...this.report.troubledFiles(),
    ]);
    const result = await this.pass([...paths].sort(), {
      full: true,
      dryRun: options.dryRun ?? false,
      confDirEmpty: scanned.length === 0,
      settled: options.settled ?? false,
    });
    this.report.reconciled(this.scheduler.clock.now());
    // A full pass planned every file against etcd as of the watch's revision.
    if (!options.dryRun) this.report.applied(this.etcd.revision);
    return result;
  }

  /** etcd read afresh against the watch's mirror: what differs is followed again from a fresh read. */
  private async checkMirror(): Promise<void> {
    const { revision, entries } = await this.options.middleware.snapshot(this.layout.prefix);
    const differ = this.etcd.divergence(entries, revision);
    if (differ.length === 0) return;
    this.report.diverged(differ);
    await this.followEtcd();
  }

  /**
   * etcd's history went back (wiped, restored from a snapshot) or another
   * cluster answers: our revisions and the base mean nothing against it. The
   * prefix is read afresh and both sides merged as a union, as with a lost
   * base: nothing is deleted because etcd forgot it, and every conflict
   * loser is recorded.
   */
  private async recover(what: string, clusterId: string): Promise<void> {
    this.report.regression(what);
    await this.scheduler.exclusive(async () => {
      this.etcd.forgetOwnWrites();
      this.base.forget(clusterId);
      await this.followEtcd();
      await this.fullPass({ settled: true });
    });
    this.history.reset(clusterId, this.etcd.revision);
    this.report.recovered();
  }

  private async prepare(dryRun = false): Promise<void> {
    // A dry run changes nothing, temp files included. The journal's own are in the state dir.
    if (!dryRun) await this.files.removeStaleTemps(this.options.stateDir ?? defaultStateDir());
    // Two round trips at once: the cluster's id (which journal is ours) and the prefix's state.
    const [, clusterId] = await Promise.all([this.followEtcd(), this.options.middleware.clusterId()]);
    this.clusterId = clusterId;
    const problem = this.options.rebuildBase
      ? { reason: 'the base is rebuilt (--rebuild-base)', first: false }
      : await this.base.load(this.clusterId, (key) => this.etcd.fileOf(key));
    if (this.options.rebuildBase) this.base.forget(this.clusterId);
    await settleLastRun({ base: this.base, etcd: this.etcd, files: this.files, logger: this.logger });
    // Missing (a first run, or a lost state dir), corrupt or dropped on purpose: the union of both sides
    // brings back what was deleted on one side since the lost base, and deletes nothing. With etcd
    // empty on a first start there is nothing a union could bring back: no cause for a warning.
    if (problem !== undefined) {
      const quiet = problem.first && this.etcd.isEmpty();
      this.logger[quiet ? 'info' : 'warn'](
        { journal: this.base.journalFile },
        `${problem.reason}: merging both sides as a union`,
      );
    }
    // A dry run plans once and writes nothing: no etcd change may start a pass behind its back.
    if (!dryRun) this.scheduler.open();
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
          const fatal = this.report.fatal(error);
          this.options.onFatal?.(fatal);
        },
      });
    });
  }

  private onBatch(batch: WatchBatch): void {
    const changed = this.etcd.take(batch);
    this.report.seen(batch.revision);
    this.history.saw(batch.revision);
    if (!batch.initial) {
      this.changeSeen ??= { at: performance.now(), stage: 'wait' };
      this.scheduler.etcdChanged(changed, this.policy() === 'newest');
    }
  }

  /**
   * Folders to look at again, one scan at a time: a folder renamed in a loop
   * must not pile up scans of its tree.
   */
  private touchLater(dir: string): void {
    this.foldersToTouch.add(dir);
    this.touching ??= (async () => {
      while (this.foldersToTouch.size > 0) {
        const dirs = [...this.foldersToTouch];
        this.foldersToTouch.clear();
        for (const d of dirs) await this.touchTree(d);
      }
    })()
      .catch((e: unknown) => this.report.failed('rescan', e))
      .finally(() => {
        this.touching = undefined;
        if (this.foldersToTouch.size > 0) this.touchLater([...this.foldersToTouch][0] as string);
      });
  }

  /** Marks every file under a folder dirty: those on disk now, and those either side or the base knows. */
  private async touchTree(dir: string): Promise<void> {
    const inside = (path: string) => dir === '' || path.startsWith(`${dir}/`);
    const onDisk = await this.files.scan(dir);
    const known = [...this.base.files(), ...this.etcd.files(), ...this.report.troubledFiles()];
    this.scheduler.touch([...onDisk, ...known].filter(inside));
  }

  /**
   * One pass over some files (or all: `full`). `settled` takes emptied files
   * at their word (start, --once) instead of waiting to see whether a save
   * is in progress.
   */
  private async pass(
    paths: readonly string[],
    how: { full: boolean; dryRun?: boolean; confDirEmpty?: boolean; settled?: boolean },
  ): Promise<PassResult> {
    // The wait: from the first change seen since the last pass to this one's start.
    if (this.changeSeen !== undefined)
      this.options.onStage?.(this.changeSeen.stage, (performance.now() - this.changeSeen.at) / 1000);
    this.changeSeen = undefined;
    const lap = stageClock(this.options.onStage);
    // 1. Read the files, and gather the three states of those that need a plan.
    const snapshots = await this.files.read(paths, how.full);
    lap('read');
    const input = gatherInput(paths, snapshots, {
      full: how.full,
      settled: how.settled ?? false,
      policy: this.policy(),
      files: this.files,
      etcd: this.etcd,
      base: this.base,
      scheduler: this.scheduler,
      report: this.report,
    });
    // 2. Merge: each key through the table.
    const merged = merge(input);
    // 3. Guard: hold back mass deletions.
    const plan = await guardPass(merged, input, {
      full: how.full,
      confDirEmpty: how.confDirEmpty ?? false,
      allowMassDelete: this.options.allowMassDelete ?? SYNC_DEFAULTS.allowMassDelete,
      maxDeleteShare: this.options.maxDeleteShare ?? SYNC_DEFAULTS.maxDeleteShare,
      holding: holdingOf(this.report.blocked),
      whole: { files: this.files, base: this.base, etcd: this.etcd },
    });
    this.report.planned(plan, paths.length, how.full);
    lap('plan');
    if (how.dryRun) return { plan, files: paths.length };
    // 4. Apply: etcd first, then the files, then the conflict records.
    if (this.report.guardAfter(plan.blocked, how.full)) this.scheduler.requestFull();
    await this.apply.etcd(plan, input.fileOf);
    if (plan.toEtcd.length > 0) lap('to_etcd');
    await this.apply.files(plan, input.fileOf);
    if (plan.toFile.length > 0) lap('to_file');
    await this.apply.conflicts(plan, input.fileOf);
    // 5. Record what both sides now agree on.
    for (const [key, entry] of plan.base) this.base.set(key, entry, input.fileOf(key));
    this.report.planDone(plan, input.planned, input.fileOf, input.unreadableFiles);
    this.scheduler.settled(paths);
    await this.base.save();
    lap('record');
    return { plan, files: paths.length };
  }
}
