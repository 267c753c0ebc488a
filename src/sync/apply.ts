import { FileChangedError, LinkEtcdError } from '../errors.js';
import type { Logger } from '../log.js';
import type { BaseStore } from './base-store.js';
import { SYNC_DEFAULTS } from './defaults.js';
import type { EtcdSide, PushResult } from './etcd-side.js';
import type { FileSide } from './file-side.js';
import type { Plan } from './plan.js';
import type { Scheduler } from './scheduler.js';
import type { SyncOptions } from './sync-options.js';
import type { SyncReport } from './sync-report.js';

/**
 * Carries a plan out: etcd writes as one transaction per file comparing each
 * key's revision, file writes as atomic format-preserving edits, conflict
 * records next to their files. What lands moves the base; what cannot land
 * now is scheduled again.
 */
export class Apply {
  constructor(
    private readonly parts: {
      readonly etcd: EtcdSide;
      readonly files: FileSide;
      readonly base: BaseStore;
      readonly scheduler: Scheduler;
      readonly report: SyncReport;
      readonly logger: Logger;
      readonly options: () => SyncOptions;
    },
  ) {}

  /**
   * One file that etcd refuses (too large, out of space, a role that may not
   * write) fails alone: it is named, counted and retried with a short
   * backoff while every other file goes on. An unreachable etcd fails the
   * pass, as it fails every file alike.
   */
  async etcd(plan: Plan, fileOf: (key: string) => string): Promise<void> {
    let unreachable: unknown;
    // Before they leave: a crash between etcd's answer and the base's save must not turn our own
    // push into a conflict with the file's next edit at restart.
    this.parts.base.announce(plan.toEtcd);
    await this.parts.etcd.push(
      groupBy(plan.toEtcd, (w) => fileOf(w.key)),
      async (result) => {
        if ('error' in result) {
          const error = result.error;
          if (error instanceof LinkEtcdError && error.code === 'ETCD_UNAVAILABLE') {
            unreachable ??= error;
            return;
          }
          this.parts.report.pushFailed(result.file, error);
          this.parts.scheduler.retry(result.file);
          // Out of space, etcd still takes deletions (they free space): those of this file go through,
          // and the file stays failing for the rest.
          const deletions = result.writes.filter((w) => w.value === undefined);
          if (error instanceof LinkEtcdError && error.code === 'ETCD_NO_SPACE' && deletions.length > 0) {
            if (deletions.length < result.writes.length)
              await this.parts.etcd.push(new Map([[result.file, deletions]]), (r) =>
                this.landedInEtcd(r, true),
              );
          }
          return;
        }
        this.landedInEtcd(result);
      },
    );
    if (unreachable !== undefined) throw unreachable;
  }

  private landedInEtcd(result: PushResult, partly = false): void {
    if ('error' in result) return;
    if (result.revision === undefined) {
      // Someone else wrote first: the watch brings their value, and the next pass merges it.
      this.parts.report.raced(result.file, result.writes);
      this.parts.scheduler.retrySoon(result.file);
      return;
    }
    const before = this.before(result.writes);
    for (const w of result.writes) {
      const entry = w.value === undefined ? undefined : { value: w.value, modRevision: result.revision };
      this.parts.base.set(w.key, entry, result.file);
    }
    this.landed('to_etcd', result.file, result.writes, { revision: result.revision }, partly, before);
  }

  async files(plan: Plan, fileOf: (key: string) => string): Promise<void> {
    let unexpected: unknown;
    const written: string[] = [];
    // As for pushes: a crash between a rename and the base's save must not make etcd's own value,
    // now in the file, look like an edit at restart.
    this.parts.base.announceFileWrites(plan.toFile);
    await this.parts.files.write(
      groupBy(plan.toFile, (w) => fileOf(w.key)),
      this.parts.options().checkFile,
      (result) => {
        if (result.outcome === 'failed') {
          if (!(result.error instanceof LinkEtcdError)) unexpected ??= result.error;
          else {
            // The base still says the file is behind: tried again later with a growing pause, and on its next change.
            if (!(result.error instanceof FileChangedError))
              this.parts.report.fileWriteFailed(result.file, result.error);
            this.parts.scheduler.retry(result.file);
          }
          return;
        }
        const before = this.before(result.writes);
        for (const w of result.writes) {
          // The base shares etcd's entry where they agree: at 100,000 keys, one copy of each value, not two.
          const inEtcd = this.parts.etcd.get(w.key);
          const entry =
            w.value === undefined
              ? undefined
              : inEtcd?.value === w.value && inEtcd.modRevision === w.revision
                ? inEtcd
                : { value: w.value, modRevision: w.revision };
          this.parts.base.set(w.key, entry, result.file);
        }
        this.landed('to_file', result.file, result.writes, {}, false, before);
        if (result.outcome === 'written') written.push(result.file);
      },
    );
    if (written.length > 0) this.parts.options().onFilesWritten?.(written);
    if (unexpected !== undefined) throw unexpected;
  }

  async conflicts(plan: Plan, fileOf: (key: string) => string): Promise<void> {
    for (const [file, list] of groupBy(plan.conflicts, (c) => fileOf(c.key))) {
      const record = await this.parts.files
        .recordConflicts(file, list, new Date(), this.parts.options().policy ?? SYNC_DEFAULTS.conflict)
        .catch((error: unknown) => {
          this.parts.logger.error(
            { err: error, file },
            'could not write the conflict record; the losing values are in this log',
          );
          return undefined;
        });
      this.parts.report.conflicts(list, this.parts.options().policy ?? SYNC_DEFAULTS.conflict, record);
    }
  }

  /** What both sides agreed on before these writes (the value a log line says changed), when the log shows it. */
  private before(
    writes: ReadonlyArray<{ key: string }>,
  ): ReadonlyMap<string, string | undefined> | undefined {
    if (!this.parts.logger.isLevelEnabled('info')) return undefined;
    return new Map(writes.map((w) => [w.key, this.parts.base.get(w.key)?.value]));
  }

  private landed(
    direction: 'to_etcd' | 'to_file',
    file: string,
    writes: ReadonlyArray<{ key: string; value: string | undefined; reason: string }>,
    extra: Record<string, unknown> = {},
    partly = false,
    before?: ReadonlyMap<string, string | undefined>,
  ): void {
    this.parts.report.landed(direction, file, writes, extra, partly, before);
    this.parts.options().onLanded?.(
      direction,
      file,
      writes.map((w) => ({ op: w.value === undefined ? 'delete' : 'put', key: w.key, reason: w.reason })),
    );
    const ms = this.parts.scheduler.landed(file, this.parts.report.failingFile(file));
    if (ms !== undefined) this.parts.options().onApplied?.(direction, writes.length, ms / 1000);
  }
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
