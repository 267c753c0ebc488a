import type { Logger } from '../log.js';
import type { EtcdMiddleware } from '../middleware/middleware.js';
import type { ConflictPolicy } from './merge.js';
import type { Plan } from './plan.js';

export type { SyncCounters, SyncStatus } from './sync-report.js';

/**
 * The steps of a pass, in order: `wait` (from the first change seen to the
 * pass's start, when that was an etcd change; `wait_file` when it was a
 * file event, our own writes' included), `read`, `plan`, `to_etcd`, `to_file` (all file writes), and
 * for each file written `staged` (temp file written and fdatasynced),
 * `visible` (compared and renamed into place: readers see it from here) and
 * `folder_synced` (the rename made durable), then `record` (the base saved).
 */
export type PassStage =
  | 'wait'
  | 'wait_file'
  | 'read'
  | 'plan'
  | 'to_etcd'
  | 'to_file'
  | 'staged'
  | 'visible'
  | 'folder_synced'
  | 'record';

export interface SyncOptions {
  /** The conf dir to mirror. */
  readonly confDir: string;
  /** Key prefix. Default `/`. */
  readonly prefix?: string;
  readonly middleware: EtcdMiddleware;
  /** Where the base journal lives. Default: see defaultStateDir(). */
  readonly stateDir?: string;
  /** Who wins when both sides changed a key. Default `SYNC_DEFAULTS.conflict`. */
  readonly policy?: ConflictPolicy;
  /** Carry mass deletions over (a person confirmed them). Default false. */
  readonly allowMassDelete?: boolean;
  /** Share of mirrored keys one side may lose at once, across several files, before deletions stop. Default `SYNC_DEFAULTS.maxDeleteShare`. */
  readonly maxDeleteShare?: number;
  /** How long a file must be quiet before a read that looks cut short counts. Default `SYNC_DEFAULTS.quietMs`. */
  readonly quietMs?: number;
  /**
   * Forget the base and merge both sides as a union once (nothing is
   * deleted): how to fill a wiped etcd from the files again, and the files
   * from etcd, without `allowMassDelete`.
   */
  readonly rebuildBase?: boolean;
  /** A conf file larger than this (bytes) is refused, not read. Default `SYNC_DEFAULTS.maxFileBytes`. */
  readonly maxFileBytes?: number;
  /**
   * Follow the conf dir's file events (default true). Off, for volumes where
   * inotify sees nothing (NFS, some FUSE mounts) or its limit is spent: file
   * edits are then picked up by the periodic full reconcile alone.
   */
  readonly watchFiles?: boolean;
  /** Full reconcile period (ms). Default `SYNC_DEFAULTS.fullReconcileSeconds`. */
  readonly fullReconcileMs?: number;
  /** Default: JSON lines on stderr at LINK_ETCD_LOG_LEVEL (default warn). */
  readonly logger?: Logger;
  /** Checks a staged file before it replaces `confPath` (a check_cmd hook); rejecting keeps the old file. */
  readonly checkFile?: (confPath: string, staged: string) => Promise<void>;
  /** Called when the etcd watch fails for good; the daemon should exit non-zero. */
  readonly onFatal?: (error: Error) => void;
  /** Called after files were written from etcd (reload hooks, exec mode). */
  readonly onFilesWritten?: (confPaths: readonly string[]) => void;
  /**
   * Called at the end of each step of a pass with the seconds it took: read
   * (stat, and read what changed), plan (merge and guard), to_etcd, to_file
   * (write, fsync, rename; only when the pass wrote that way), record
   * (conflicts and the base's fsync). Where the time between a change and
   * its landing goes.
   */
  readonly onStage?: (stage: PassStage, seconds: number) => void;
  /** Called for each file's writes that landed: the direction, the file, and each key's operation and reason (never a value). */
  readonly onLanded?: (
    direction: 'to_etcd' | 'to_file',
    file: string,
    changes: ReadonlyArray<{ readonly op: 'put' | 'delete'; readonly key: string; readonly reason: string }>,
  ) => void;
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

/** What one reconcile pass decided and did. */
export interface PassResult {
  readonly plan: Plan;
  readonly files: number;
}
