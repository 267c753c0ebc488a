import { Gate } from '../middleware/gate.js';
import type { EtcdMiddleware } from '../middleware/middleware.js';
import type { WatchBatch } from '../middleware/watch.js';
import { EtcdView } from './etcd-view.js';
import { KeyIndex } from './key-index.js';
import type { EtcdEntry, EtcdWrite } from './merge.js';

/** Files are independent transactions: several in flight hide the round trips (measured: 1,000 files pushed in 1.44 s instead of 1.73 s). */
const ETCD_WRITE_CONCURRENCY = 8;

/** What became of one transaction of one file's keys. */
export type PushResult =
  | { readonly file: string; readonly writes: readonly EtcdWrite[]; readonly revision: number }
  /** Someone else wrote first: nothing was written; the watch brings their value. */
  | { readonly file: string; readonly writes: readonly EtcdWrite[]; readonly revision: undefined }
  /** etcd refused or failed the transaction; the file's later chunks were not tried. */
  | {
      readonly file: string;
      readonly writes: readonly EtcdWrite[];
      readonly revision: undefined;
      readonly error: unknown;
    };

/**
 * etcd as the engine sees it (the watch's state with our own writes laid
 * over it), indexed by conf file, and the one way the engine writes to it:
 * a transaction per file that compares every key's revision with the one
 * the plan saw.
 */
export class EtcdSide {
  private readonly view = new EtcdView();
  private readonly index = new KeyIndex();

  constructor(
    private readonly middleware: () => EtcdMiddleware,
    /** The conf file a key maps to, or undefined (then it is refused and never mirrored). */
    readonly fileOf: (key: string) => string | undefined,
  ) {}

  /**
   * Takes in one watch batch. The first of a subscription (start, SIGHUP)
   * replaces what was known, index included; later ones return the changed
   * keys that map to a file, with their file.
   */
  take(batch: WatchBatch): Array<readonly [file: string, key: string]> {
    if (batch.initial) {
      this.view.attach(batch.state, batch.revision);
      this.index.clear();
      for (const key of batch.state.keys()) {
        const file = this.fileOf(key);
        if (file !== undefined) this.index.add(file, key);
      }
      return [];
    }
    this.view.caughtUp(batch.revision);
    const changed: Array<readonly [string, string]> = [];
    for (const change of batch.changes) {
      const file = this.fileOf(change.key);
      if (file === undefined) continue;
      if (this.view.has(change.key)) this.index.add(file, change.key);
      else this.index.delete(file, change.key);
      changed.push([file, change.key]);
    }
    return changed;
  }

  has(key: string): boolean {
    return this.view.has(key);
  }

  get(key: string): EtcdEntry | undefined {
    return this.view.get(key);
  }

  /** The revision up to which etcd's changes have been taken in. */
  get revision(): number {
    return this.view.revision;
  }

  /** Forgets our own writes still overlaid: etcd's history went back (their revisions are of the old one). */
  forgetOwnWrites(): void {
    this.view.reset();
  }

  /**
   * The keys whose etcd state differs from `snapshot` (read at `revision`),
   * leaving out what the watch simply has not delivered yet or changed since.
   */
  divergence(snapshot: ReadonlyMap<string, EtcdEntry>, revision: number): string[] {
    const watched = this.view.revision;
    const differ: string[] = [];
    for (const [key, s] of snapshot) {
      if (this.fileOf(key) === undefined || s.modRevision > watched) continue;
      const mine = this.view.get(key);
      if (mine !== undefined && mine.modRevision > revision) continue;
      if (mine?.value !== s.value || mine.modRevision !== s.modRevision) differ.push(key);
    }
    // A key the mirror has that etcd had not at `revision`: only decidable once the watch reached it.
    if (watched >= revision) {
      for (const file of this.index.files()) {
        for (const key of this.index.keysOf(file)) {
          const mine = this.view.get(key);
          if (mine !== undefined && mine.modRevision <= revision && !snapshot.has(key)) differ.push(key);
        }
      }
    }
    return differ;
  }

  files(): IterableIterator<string> {
    return this.index.files();
  }

  /** No mirrored key under the prefix. */
  isEmpty(): boolean {
    return this.index.files().next().done === true;
  }

  /** The keys etcd holds for one file, with their values and revisions. */
  *entriesOf(file: string): IterableIterator<readonly [string, EtcdEntry]> {
    for (const key of this.index.keysOf(file)) {
      const entry = this.view.get(key);
      if (entry !== undefined) yield [key, entry];
    }
  }

  /**
   * Writes each file's keys as transactions of at most etcd's max-txn-ops,
   * several files at a time; `done` hears of each one as it completes, a
   * failure included: one file that etcd refuses stops no other file.
   */
  async push(
    byFile: ReadonlyMap<string, readonly EtcdWrite[]>,
    done: (result: PushResult) => Promise<void> | void,
  ): Promise<void> {
    if (byFile.size === 0) return;
    const max = (await this.middleware().settings()).maxTxnOps;
    const gate = new Gate(ETCD_WRITE_CONCURRENCY);
    const jobs = [...byFile].map(([file, writes]) =>
      gate.run(async () => {
        for (let i = 0; i < writes.length; i += max) {
          const chunk = writes.slice(i, i + max);
          const result = await this.pushChunk(file, chunk).catch(
            (error: unknown): PushResult => ({ file, writes: chunk, revision: undefined, error }),
          );
          await done(result);
          if (result.revision === undefined) break;
        }
      }),
    );
    await Promise.all(jobs);
  }

  private async pushChunk(file: string, writes: readonly EtcdWrite[]): Promise<PushResult> {
    const revision = await this.middleware().writeIfUnchanged(writes);
    if (revision === undefined) return { file, writes, revision };
    for (const w of writes) {
      this.view.wrote(w.key, w.value, revision);
      if (w.value === undefined) this.index.delete(file, w.key);
      else this.index.add(file, w.key);
    }
    return { file, writes, revision };
  }
}
