/**
 * The reconciler: a pure function from the last agreed state (the base) and
 * both sides' current state to the writes that make them agree again. The
 * merge table (merge.ts) decides each key; the guard (guard.ts) then holds
 * back mass deletions. No I/O, no clock: time enters only as the observation
 * times the caller passes.
 */
import { type Blocked, type GuardSettings, guard, type Loss } from './guard.js';
import {
  type BaseEntry,
  type ChangedAt,
  type Conflict,
  type ConflictPolicy,
  decide,
  type EtcdEntry,
  type EtcdWrite,
  type FileWrite,
  type Side,
} from './merge.js';

export interface PlanInput {
  readonly base: ReadonlyMap<string, BaseEntry>;
  /** Key -> value of every key the files hold, for files that parsed. */
  readonly files: ReadonlyMap<string, string>;
  readonly etcd: ReadonlyMap<string, EtcdEntry>;
  /** Which file a key belongs to; keys of files that did not parse are left alone on both sides. */
  readonly fileOf: (key: string) => string;
  readonly unreadableFiles: ReadonlySet<string>;
  readonly policy: ConflictPolicy;
  /** When each side last changed a key, for the `newest` policy. */
  readonly changedAt?: ChangedAt;
}

/** What the merge decided, before the guard. */
export interface Merged {
  readonly toEtcd: readonly EtcdWrite[];
  readonly toFile: readonly FileWrite[];
  /** Keys both sides already agree on whose base is stale (set) or gone (undefined). */
  readonly base: ReadonlyArray<readonly [string, BaseEntry | undefined]>;
  readonly conflicts: readonly Conflict[];
}

export interface Plan extends Merged {
  readonly blocked: readonly Blocked[];
}

/** Every key of the input through the merge table; keys of unreadable files are left alone. */
export function merge(input: PlanInput): Merged {
  const toEtcd: EtcdWrite[] = [];
  const toFile: FileWrite[] = [];
  const base: Array<readonly [string, BaseEntry | undefined]> = [];
  const conflicts: Conflict[] = [];
  const visit = (key: string): void => {
    if (input.unreadableFiles.has(input.fileOf(key))) return;
    const d = decide(
      key,
      input.base.get(key),
      input.files.get(key),
      input.etcd.get(key),
      input.policy,
      input.changedAt,
    );
    if (d.kind === 'base') base.push([key, d.entry]);
    else if (d.kind === 'to-etcd') toEtcd.push(d.write);
    else if (d.kind === 'to-file') toFile.push(d.write);
    if (d.kind !== 'none' && d.kind !== 'base' && d.conflict) conflicts.push(d.conflict);
  };
  // Each key once, without building a union of all three (100,000 keys: three arrays and a set saved).
  for (const key of input.base.keys()) visit(key);
  for (const key of input.files.keys()) if (!input.base.has(key)) visit(key);
  for (const key of input.etcd.keys()) if (!input.base.has(key) && !input.files.has(key)) visit(key);
  return { toEtcd, toFile, base, conflicts };
}

/** Base keys a side has lost, and across how many files, counted from the input alone. */
export function losses(
  input: Pick<PlanInput, 'base' | 'files' | 'etcd' | 'fileOf' | 'unreadableFiles'>,
  side: Side,
): Loss {
  const files = new Set<string>();
  let keys = 0;
  for (const key of input.base.keys()) {
    const file = input.fileOf(key);
    if (input.unreadableFiles.has(file)) continue;
    const present = side === 'file' ? input.files.has(key) : input.etcd.has(key);
    if (!present) {
      keys++;
      files.add(file);
    }
  }
  return { keys, files: files.size };
}

const NO_LOSS: Loss = { keys: 0, files: 0 };

export interface PlanGuard extends GuardSettings {
  readonly confDirEmpty: boolean;
  /** What each side lost across the whole base, when the input covers only some files. Default: counted from the input. */
  readonly overall?: { readonly total: number; readonly file: Loss; readonly etcd: Loss };
  readonly holding?: ReadonlySet<Side>;
}

/**
 * Merge, then guard: the writes that bring both sides to agreement, each
 * with its reason, the conflicts decided on the way, and the deletions held
 * back.
 */
export function plan(input: PlanInput, settings: PlanGuard): Plan {
  const merged = merge(input);
  const guarded = guard(merged, {
    allowMassDelete: settings.allowMassDelete,
    maxDeleteShare: settings.maxDeleteShare,
    confDirEmpty: settings.confDirEmpty,
    holding: settings.holding ?? new Set(),
    total: settings.overall?.total ?? input.base.size,
    // Counting is a walk over the whole base: skipped when nothing would be held anyway.
    lost:
      settings.overall ??
      (settings.allowMassDelete
        ? { file: NO_LOSS, etcd: NO_LOSS }
        : { file: losses(input, 'file'), etcd: losses(input, 'etcd') }),
  });
  return { ...merged, ...guarded };
}
