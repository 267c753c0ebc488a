import { journalPath, loadBase, saveBase } from './base-journal.js';
import { KeyIndex } from './key-index.js';
import type { BaseEntry } from './merge.js';
import { type Cancel, type Clock, systemClock } from './scheduler.js';

/** Bases up to this size are saved after every pass that changed them (measured here: 0.4 ms for 100 keys, 3.7 ms for 10,000, 8.8 ms for 20,000; 54 ms for 100,000). */
export const IMMEDIATE_SAVE_KEYS = 20_000;
/** Larger bases are saved at most this often. */
export const SAVE_PERIOD_MS = 200;

/**
 * The base (the last value both sides agreed on, per key), indexed by conf
 * file, and its journal on disk. The base is what a restart merges against,
 * so it is saved as soon as a pass changed it: a crash right after a write
 * must not leave a base that predates it (an edit reverted while the daemon
 * was down would then be overwritten).
 */
export class BaseStore {
  private base = new Map<string, BaseEntry>();
  private readonly index = new KeyIndex();
  private journal = '';
  private unsaved = false;
  private cancelSave: Cancel | undefined;

  constructor(
    private readonly where: { readonly stateDir: string; readonly confDir: string; readonly prefix: string },
    private readonly onSaveError: (error: unknown) => void,
    private readonly clock: Clock = systemClock,
  ) {}

  /**
   * Loads the journal of this conf dir, prefix and cluster (however the
   * endpoints are spelled). Returns why it could not be used, if it could not.
   */
  async load(clusterId: string, fileOf: (key: string) => string | undefined): Promise<string | undefined> {
    this.journal = journalPath(this.where.stateDir, this.where.confDir, this.where.prefix, clusterId);
    const loaded = await loadBase(this.journal);
    this.base = loaded.base;
    this.index.clear();
    for (const key of this.base.keys()) {
      const file = fileOf(key);
      if (file !== undefined) this.index.add(file, key);
    }
    return loaded.ok ? undefined : loaded.reason;
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
    this.unsaved = true;
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

  /** Records what both sides now agree on (undefined: the key is gone from both). */
  set(key: string, entry: BaseEntry | undefined, file: string | undefined): void {
    if (entry === undefined) {
      this.base.delete(key);
      if (file !== undefined) this.index.delete(file, key);
    } else {
      this.base.set(key, entry);
      if (file !== undefined) this.index.add(file, key);
    }
    this.unsaved = true;
  }

  /** Saves a changed base now, or, past IMMEDIATE_SAVE_KEYS keys (tens of ms a save), within SAVE_PERIOD_MS. */
  async save(): Promise<void> {
    if (!this.unsaved) return;
    if (this.base.size <= IMMEDIATE_SAVE_KEYS) {
      this.cancelSave?.();
      this.cancelSave = undefined;
      await this.saveNow();
      return;
    }
    if (this.cancelSave !== undefined) return;
    this.cancelSave = this.clock.schedule(
      () => {
        this.cancelSave = undefined;
        void this.saveNow().catch(this.onSaveError);
        // Held open until saved: a run that ends meanwhile must not leave a base older than its writes.
      },
      SAVE_PERIOD_MS,
      true,
    );
  }

  /** Saves what is not saved yet, and stops the deferred save: for stop(). */
  async flush(): Promise<void> {
    this.cancelSave?.();
    this.cancelSave = undefined;
    if (this.unsaved) await this.saveNow();
  }

  private async saveNow(): Promise<void> {
    this.unsaved = false;
    await saveBase(this.journal, this.where.confDir, this.where.prefix, this.base);
  }
}
