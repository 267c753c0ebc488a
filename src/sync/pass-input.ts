import { join } from 'node:path';
import type { FileSnapshot } from './conf-files.js';
import type { BaseEntry, ConflictPolicy, EtcdEntry } from './merge.js';
import type { PlanInput } from './plan.js';
import type { ReadVerdict } from './scheduler.js';

/** What gathering needs of each part; narrow, so a test can hand in plain objects. */
export interface PassSources {
  readonly full: boolean;
  readonly settled: boolean;
  readonly policy: ConflictPolicy;
  readonly files: {
    readonly confDir: string;
    last(path: string): FileSnapshot | undefined;
    remember(path: string, snapshot: FileSnapshot): void;
  };
  readonly etcd: { entriesOf(file: string): Iterable<readonly [string, EtcdEntry]> };
  readonly base: { keysOf(file: string): ReadonlySet<string>; get(key: string): BaseEntry | undefined };
  readonly scheduler: {
    takeMustPlan(path: string): boolean;
    settling(path: string): boolean;
    holdEmptied(path: string, emptied: boolean): boolean;
    holdPartial(path: string, verdict: ReadVerdict): boolean;
    lastChange(side: 'file' | 'etcd', id: string): number | undefined;
  };
  readonly report: {
    unreadableFile(confPath: string, file: string, reason: string, passing?: boolean): void;
    readableFile(confPath: string): void;
  };
}

/**
 * The plan's input for the files of one pass: the three states of each file
 * that may need a plan. A file neither side moved since it was last
 * reconciled (our own write coming back, say) is skipped; an emptied file
 * still settling, or one that does not parse, is planned as unreadable, so
 * it pushes nothing and nothing is written to it.
 */
export function gatherInput(
  paths: readonly string[],
  snapshots: readonly FileSnapshot[],
  from: PassSources,
): PlanInput & { readonly planned: ReadonlySet<string> } {
  const planned = new Set<string>();
  const keyFile = new Map<string, string>();
  const base = new Map<string, BaseEntry>();
  const files = new Map<string, string>();
  const etcd = new Map<string, EtcdEntry>();
  const unreadable = new Set<string>();
  for (const [index, path] of paths.entries()) {
    const snapshot = snapshots[index] as FileSnapshot;
    const mustPlan = from.scheduler.takeMustPlan(path);
    const unchanged = snapshot === from.files.last(path) && !mustPlan;
    if (unchanged && !from.full && !from.scheduler.settling(path)) continue;
    planned.add(path);
    from.files.remember(path, snapshot);
    const emptied =
      snapshot.kind !== 'unreadable' && snapshot.entries.size === 0 && from.base.keysOf(path).size > 0;
    if (!from.settled && from.scheduler.holdEmptied(path, emptied)) {
      // A truncate-then-write or delete-then-create save is read again once it settles.
      unreadable.add(path);
      continue;
    }
    // Read on the event, an editor's save may be caught halfway: what a cut-short read would push
    // (deletions, a half value, an error) waits for the file to be quiet; a whole save goes at once.
    if (!from.settled && from.scheduler.holdPartial(path, readVerdict(snapshot, from.base.keysOf(path)))) {
      unreadable.add(path);
      continue;
    }
    let lossy: string | undefined;
    for (const [key, entry] of from.etcd.entriesOf(path)) {
      etcd.set(key, entry);
      keyFile.set(key, path);
      // etcd values are bytes, decoded with U+FFFD for what is not UTF-8: never write that guess to a file.
      if (lossy === undefined && entry.value.includes('\uFFFD')) lossy = key;
    }
    const reason =
      snapshot.kind === 'unreadable'
        ? snapshot.reason
        : lossy === undefined
          ? undefined
          : `etcd holds a value that is not UTF-8 (or holds U+FFFD) at ${lossy}`;
    if (reason !== undefined) {
      unreadable.add(path);
      from.report.unreadableFile(
        path,
        join(from.files.confDir, path),
        reason,
        snapshot.kind === 'unreadable' && snapshot.passing === true,
      );
    } else from.report.readableFile(path);
    for (const [key, value] of snapshot.entries) {
      files.set(key, value);
      keyFile.set(key, path);
    }
    for (const key of from.base.keysOf(path)) {
      const entry = from.base.get(key);
      if (entry !== undefined) base.set(key, entry);
      keyFile.set(key, path);
    }
  }
  return {
    planned,
    base,
    files,
    etcd,
    fileOf: (key) => keyFile.get(key) ?? '',
    unreadableFiles: unreadable,
    policy: from.policy,
    changedAt: (side, key) =>
      side === 'etcd'
        ? from.scheduler.lastChange('etcd', key)
        : from.scheduler.lastChange('file', keyFile.get(key) ?? ''),
  };
}

/** Whether a read may be a save caught halfway: it lacks a key the base has, does not parse, or stops mid-line. */
export function readVerdict(snapshot: FileSnapshot, baseKeys: ReadonlySet<string>): ReadVerdict {
  if (snapshot.kind === 'unreadable') return 'cut';
  if (snapshot.kind !== 'ok') return 'whole';
  for (const key of baseKeys) if (!snapshot.entries.has(key)) return 'keys-gone';
  if (snapshot.text.length > 0 && !snapshot.text.endsWith('\n')) return 'cut';
  return 'whole';
}
