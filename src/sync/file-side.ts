import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type ConfinedWrite, protectFolder } from '../files/confined.js';
import type { Layout } from '../layout/mapping.js';
import { Gate } from '../middleware/gate.js';
import {
  type FileSnapshot,
  readConfFile,
  removeStaleTemps,
  scanConfDir,
  writeConfFile,
  writeConflictRecord,
} from './conf-files.js';
import type { FileView } from './guard.js';
import type { Conflict, FileWrite } from './merge.js';

/** A full pass over 1,000 files waits on I/O, not on us: several reads in flight. */
const FILE_READ_CONCURRENCY = 16;
/** Files are independent: their fsyncs overlap (measured: 1,000 files in a third of the time). */
const FILE_WRITE_CONCURRENCY = 16;

/** What became of the writes to one file. */
export type FileResult =
  | {
      readonly file: string;
      readonly outcome: 'written' | 'unchanged';
      readonly writes: readonly FileWrite[];
    }
  /**
   * Not written. A LinkEtcdError (a save meanwhile, no space, a check_cmd
   * that said no, a folder in the way) is the file's own: try it again
   * later. Anything else is a bug or worse, for the pass to fail on.
   */
  | { readonly file: string; readonly outcome: 'failed'; readonly error: unknown };

/**
 * The conf dir as the engine sees it: the last snapshot of each file, read
 * again only when its signature changed, and the one way the engine writes
 * a file: an atomic, format-preserving edit refused if the file changed
 * since the plan read it.
 */
export class FileSide {
  private readonly snapshots = new Map<string, FileSnapshot>();
  /**
   * Files this run created from etcd keys. When deletions in etcd leave one
   * with nothing but section headers, it is removed (put-and-delete cycles
   * must not leave `[S]`-only files behind); a file a person made stays.
   */
  private readonly created = new Set<string>();

  constructor(
    readonly confDir: string,
    private readonly layout: Layout,
    /** A section or key name that maps to no safe etcd key. */
    private readonly refuse: (what: string, reason: string) => void,
    private readonly maxBytes: number,
    /** Told how long each step of each file write took. */
    private readonly onPhase?: ConfinedWrite['onPhase'],
  ) {}

  /** Every mirrored file on disk now (none when the conf dir is missing). */
  scan(under = ''): Promise<string[]> {
    return scanConfDir(this.confDir, under).catch(() => [] as string[]);
  }

  last(path: string): FileSnapshot | undefined {
    return this.snapshots.get(path);
  }

  remember(path: string, snapshot: FileSnapshot): void {
    // A missing file's snapshot is never reused: keeping it would grow with every name ever deleted.
    if (snapshot.kind === 'missing') this.snapshots.delete(path);
    else this.snapshots.set(path, snapshot);
  }

  /**
   * Reads the files; one whose signature did not change comes back as the
   * very snapshot known before. `full` reads every file again: a change that
   * kept size and mtime is caught there.
   */
  read(paths: readonly string[], full: boolean): Promise<FileSnapshot[]> {
    const gate = new Gate(FILE_READ_CONCURRENCY);
    return Promise.all(
      paths.map((path) =>
        gate.run(() =>
          readConfFile(
            this.confDir,
            this.layout,
            path,
            this.refuse,
            full ? undefined : this.snapshots.get(path),
            this.maxBytes,
          ),
        ),
      ),
    );
  }

  /** How each file looks for the guard's count: gone (missing or empty on disk), unreadable, unread or its keys. */
  async views(paths: Iterable<string>): Promise<Map<string, FileView>> {
    const views = new Map<string, FileView>();
    for (const path of paths) {
      const snapshot = this.snapshots.get(path);
      if (snapshot?.kind === 'unreadable') {
        views.set(path, 'unreadable');
        continue;
      }
      const present = await stat(join(this.confDir, path)).then(
        (s) => s.size > 0,
        () => false,
      );
      views.set(path, !present ? 'gone' : snapshot === undefined ? 'unread' : snapshot.entries);
    }
    return views;
  }

  /**
   * Writes each file's changes, several files at a time; `done` hears of
   * each file as it finishes (its clock, its base). One file failing stops
   * none of the others.
   */
  async write(
    byFile: ReadonlyMap<string, readonly FileWrite[]>,
    check: ((confPath: string, staged: string) => Promise<void>) | undefined,
    done: (result: FileResult) => void,
  ): Promise<void> {
    const gate = new Gate(FILE_WRITE_CONCURRENCY);
    await Promise.all(
      [...byFile].map(([file, writes]) =>
        gate.run(async () => done(await this.writeOne(file, writes, check))),
      ),
    );
  }

  private async writeOne(
    file: string,
    writes: readonly FileWrite[],
    check: ((confPath: string, staged: string) => Promise<void>) | undefined,
  ): Promise<FileResult> {
    let written: Awaited<ReturnType<typeof writeConfFile>>;
    try {
      written = await writeConfFile(
        this.confDir,
        this.layout,
        file,
        writes,
        this.snapshots.get(file),
        check === undefined ? undefined : (staged) => check(file, staged),
        this.maxBytes,
        this.created.has(file),
        this.onPhase,
      );
    } catch (error) {
      return { file, outcome: 'failed', error };
    }
    if (written.removed) {
      this.created.delete(file);
      this.snapshots.delete(file);
      return { file, outcome: 'written', writes };
    }
    // Our write will come back as a file event; the snapshot must already know it, or it would look like an
    // edit. The file is the planned text with these writes applied, so its keys are too: no parse needed.
    const before = this.snapshots.get(file);
    if (before?.kind !== 'ok' && written.signature !== undefined) this.created.add(file);
    const entries = new Map(before?.kind === 'ok' ? before.entries : []);
    for (const w of writes) {
      if (w.value === undefined) entries.delete(w.key);
      else entries.set(w.key, w.value);
    }
    this.snapshots.set(file, {
      kind: 'ok',
      confPath: file,
      text: written.text,
      entries,
      ...(written.signature === undefined ? {} : { signature: written.signature }),
    });
    return { file, outcome: written.signature === undefined ? 'unchanged' : 'written', writes };
  }

  /** `link/etcd/` is never entered, whatever it is renamed to later (files/confined.ts). */
  protectSettings(): Promise<void> {
    return protectFolder(join(this.confDir, 'link', 'etcd'));
  }

  /** Removes temp files of ours a crash left in `dir` (default the conf dir); returns them. */
  removeStaleTemps(dir: string = this.confDir): Promise<string[]> {
    return removeStaleTemps(dir).catch(() => [] as string[]);
  }

  /** Keeps the losing values of conflicts next to their file; resolves with the record's path. */
  recordConflicts(file: string, conflicts: readonly Conflict[], at: Date, policy?: string): Promise<string> {
    return writeConflictRecord(this.confDir, this.layout, file, conflicts, at, policy);
  }
}
