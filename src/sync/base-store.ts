import {
  announceFileWrites,
  announcePushes,
  appendBase,
  type FileWriteAnnouncement,
  journalPath,
  loadBase,
  saveBase,
} from './base-journal.js';
import { KeyIndex } from './key-index.js';
import type { BaseEntry } from './merge.js';

/** The log is folded into a new snapshot once it holds more entries than this or than the base has keys. */
export const COMPACT_MIN_ENTRIES = 1_000;

/**
 * The base (the last value both sides agreed on, per key), indexed by conf
 * file, and its journal on disk. The base is what a restart merges against,
 * so every pass that changed it appends its changes to the journal's log and
 * fsyncs before it ends: a crash right after a write must not leave a base
 * that predates it (an edit reverted while the daemon was down would then be
 * overwritten). A pass costs what it changed; the log is folded into a
 * snapshot once it outgrows the base.
 */
export class BaseStore {
  private base = new Map<string, BaseEntry>();
  private readonly index = new KeyIndex();
  private journal = '';
  /** Changes not in the journal yet: key -> entry (undefined: removed). */
  private readonly pending = new Map<string, BaseEntry | undefined>();
  /** Entries in the log over the last snapshot; the snapshot must be written whole when undefined. */
  private logEntries: number | undefined = 0;
  /** Pushes the last run announced and did not record as landed (from the log, until settled). */
  private announced: ReadonlyMap<string, string | null> = new Map();
  /** File writes the last run announced and did not record as landed (until the first full pass). */
  private announcedWrites: ReadonlyMap<string, BaseEntry | null> = new Map();

  constructor(
    private readonly where: { readonly stateDir: string; readonly confDir: string; readonly prefix: string },
  ) {}

  /**
   * Loads the journal of this conf dir, prefix and cluster (however the
   * endpoints are spelled). Returns why it could not be used, if it could
   * not, and whether it was simply never written (a first start).
   */
  async load(
    clusterId: string,
    fileOf: (key: string) => string | undefined,
  ): Promise<{ readonly reason: string; readonly first: boolean } | undefined> {
    this.journal = journalPath(this.where.stateDir, this.where.confDir, this.where.prefix, clusterId);
    const loaded = await loadBase(this.journal);
    this.base = loaded.base;
    this.pending.clear();
    // A journal that could not be read is rewritten whole at the first save.
    this.logEntries = loaded.ok ? (loaded.logEntries ?? 0) : undefined;
    this.announced = loaded.ok ? (loaded.pushes ?? new Map()) : new Map();
    this.announcedWrites = loaded.ok ? (loaded.writes ?? new Map()) : new Map();
    this.index.clear();
    for (const key of this.base.keys()) {
      const file = fileOf(key);
      if (file !== undefined) this.index.add(file, key);
    }
    return loaded.ok ? undefined : { reason: loaded.reason, first: loaded.first };
  }

  /**
   * Drops the base (its journal is rewritten at the next save): the next
   * full pass merges both sides as a union. `clusterId` names the cluster
   * whose journal it is from now on.
   */
  forget(clusterId: string): void {
    this.journal = journalPath(this.where.stateDir, this.where.confDir, this.where.prefix, clusterId);
    this.base = new Map();
    this.index.clear();
    this.pending.clear();
    this.logEntries = undefined;
    this.announced = new Map();
    this.announcedWrites = new Map();
  }

  get journalFile(): string {
    return this.journal;
  }

  get size(): number {
    return this.base.size;
  }

  get(key: string): BaseEntry | undefined {
    return this.base.get(key);
  }

  keysOf(file: string): ReadonlySet<string> {
    return this.index.keysOf(file);
  }

  files(): IterableIterator<string> {
    return this.index.files();
  }

  /** Each file of the base with its keys. */
  *byFile(): IterableIterator<readonly [string, ReadonlySet<string>]> {
    for (const file of [...this.index.files()]) yield [file, this.index.keysOf(file)];
  }

  /**
   * Announces pushes about to be sent (see announcePushes). Best effort: a
   * state dir that cannot take the line costs this protection, not the push;
   * the base's save after it reports the disk.
   */
  announce(writes: ReadonlyArray<{ readonly key: string; readonly value: string | undefined }>): void {
    if (writes.length === 0 || this.journal === '') return;
    try {
      announcePushes(this.journal, writes);
      if (this.logEntries !== undefined) this.logEntries += writes.length;
    } catch {
      // See above.
    }
  }

  /** Announces etcd values about to be written into files (see announceFileWrites); best effort, as announce. */
  announceFileWrites(writes: ReadonlyArray<FileWriteAnnouncement>): void {
    if (writes.length === 0 || this.journal === '') return;
    try {
      announceFileWrites(this.journal, writes);
      if (this.logEntries !== undefined) this.logEntries += writes.length;
    } catch {
      // As announce.
    }
  }

  /** The keys of the last run's file writes that wait to be settled. */
  announcedWriteKeys(): IterableIterator<string> {
    return this.announcedWrites.keys();
  }

  /** Whether file writes of the last run wait to be settled against the files (settleWritten). */
  get hasAnnouncedWrites(): boolean {
    return this.announcedWrites.size > 0;
  }

  /**
   * File writes of the last run that the files hold but the base never
   * recorded become the base: the file got that value from etcd. `inFile`
   * gives a key's value in its file as read now (undefined: not there;
   * null: the file could not be read, so nothing is known). Call once, with
   * every file read. Returns how many.
   */
  settleWritten(
    inFile: (key: string) => string | undefined | null,
    fileOf: (key: string) => string | undefined,
  ): number {
    let settled = 0;
    for (const [key, entry] of this.announcedWrites) {
      const now = inFile(key);
      if (now === null) continue;
      const base = this.base.get(key);
      if (
        entry === null ? now === undefined && base !== undefined : now === entry.value && base?.value !== now
      ) {
        this.set(key, entry ?? undefined, fileOf(key));
        settled++;
      }
    }
    this.logEntries = undefined;
    this.announcedWrites = new Map();
    return settled;
  }

  /**
   * Pushes of the last run that etcd holds but the base never recorded (the
   * process died between etcd's answer and the save) become the base: they
   * were ours. Returns how many. Call once etcd's state is known.
   */
  settleAnnounced(
    inEtcd: (key: string) => BaseEntry | undefined,
    fileOf: (key: string) => string | undefined,
  ): number {
    let settled = 0;
    for (const [key, value] of this.announced) {
      const now = inEtcd(key);
      const base = this.base.get(key);
      if (value === null) {
        // A delete we sent, and etcd lacks the key: the base must not hold it either.
        if (now === undefined && base !== undefined) {
          this.set(key, undefined, fileOf(key));
          settled++;
        }
      } else if (now?.value === value && (base?.value !== value || base.modRevision !== now.modRevision)) {
        this.set(key, now, fileOf(key));
        settled++;
      }
    }
    // The log's announcements are spent: the next save writes a snapshot and empties the log (the
    // file writes' once they are settled too).
    if (this.announced.size > 0 && this.announcedWrites.size === 0) this.logEntries = undefined;
    this.announced = new Map();
    return settled;
  }

  /** Records what both sides now agree on (undefined: the key is gone from both). */
  set(key: string, entry: BaseEntry | undefined, file: string | undefined): void {
    if (entry === undefined) {
      this.base.delete(key);
      if (file !== undefined) this.index.delete(file, key);
    } else {
      this.base.set(key, entry);
      if (file !== undefined) this.index.add(file, key);
    }
    this.pending.set(key, entry);
  }

  /** Makes the pass's changes durable: appended to the log, or folded into a new snapshot when the log outgrew it. */
  async save(): Promise<void> {
    if (this.pending.size === 0 && this.logEntries !== undefined) return;
    const entries = (this.logEntries ?? Number.POSITIVE_INFINITY) + this.pending.size;
    try {
      if (entries > Math.max(COMPACT_MIN_ENTRIES, this.base.size)) {
        this.pending.clear();
        this.logEntries = 0;
        await saveBase(this.journal, this.where.confDir, this.where.prefix, this.base);
        return;
      }
      const changes = new Map(this.pending);
      this.pending.clear();
      this.logEntries = entries;
      await appendBase(this.journal, changes);
    } catch (error) {
      // What did not reach the disk is in memory: the next save writes the whole snapshot.
      this.logEntries = undefined;
      throw error;
    }
  }

  /** Saves what is not saved yet: for stop(). */
  async flush(): Promise<void> {
    await this.save();
  }
}
