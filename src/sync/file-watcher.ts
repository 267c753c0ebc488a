import { type FSWatcher, lstatSync, readFileSync, statSync, watch } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { TEMP_MARK } from '../files/atomic-write.js';
import { isMirrored, isSkippedFolder, MAX_CONF_PATH_DEPTH } from '../layout/mirrored.js';
import type { Cancel, Clock } from './scheduler.js';

/** Folder moves are handled this long after the first one (ms). */
export const FOLDER_MS = 50;
/** While folders keep moving, their moves are handled at most this often (ms). */
export const FOLDER_STORM_MS = 1_000;
/** A folder whose watch brings this many events before the loop turns is shed for a while. */
export const STORM_EVENTS = 2_000;
/** How often the conf dir itself is checked for having been removed, moved or replaced (ms). */
export const ROOT_CHECK_MS = 1_000;

/** How often files are scanned when the file watcher failed. */
export const SCAN_MS = 5_000;

export interface ConfDirEvents {
  /** A mirrored file may have changed. */
  file(confPath: string): void;
  /** A folder appeared, moved or went: which files it holds is known only by looking again. */
  folder(relDir: string): void;
  error(error: unknown): void;
}

/**
 * Follows the conf dir with one inotify watch per folder (Node's fs.watch,
 * not recursive), reporting only what the mirror rule (layout/mirrored.ts)
 * lets through. Events are hints: the engine reads the file and compares, so
 * a folder's watch names which child changed and nothing more is asked of it.
 *
 * Not chokidar (measured, issue 12): chokidar also watches every file,
 * re-reads a folder (readdir + lstat of each entry) on each of its events and
 * re-creates a file's watch whenever its inode changes, which every atomic
 * save does: about 2 ms of CPU and 20 MB per change and per daemon, and two
 * inotify watches where one will do. It also drops a change within 50 ms of
 * another on the same file. Resolves once every folder is watched.
 */
export async function watchConfDir(
  confDir: string,
  on: ConfDirEvents,
  tuning: { stormEvents?: number; queuedEvents?: number } = {},
): Promise<{ close(): void }> {
  const stormEvents = tuning.stormEvents ?? STORM_EVENTS;
  const queuedEvents = tuning.queuedEvents ?? inotifyQueueLength();
  const watchers = new Map<string, FSWatcher>();
  let closed = false;

  const unwatch = (rel: string) => {
    for (const [dir, watcher] of watchers)
      if (dir === rel || rel === '' || dir.startsWith(`${rel}/`)) {
        watcher.close();
        watchers.delete(dir);
      }
  };

  /** Watches `rel` and every folder below it that can hold mirrored files. */
  const watchTree = async (rel: string): Promise<void> => {
    if (closed || watchers.has(rel) || isSkippedFolder(rel)) return;
    if (rel !== '' && rel.split('/').length >= MAX_CONF_PATH_DEPTH) return;
    const abs = rel === '' ? confDir : join(confDir, rel);
    let watcher: FSWatcher;
    try {
      watcher = watch(abs, { persistent: false }, (event, name) => changed(rel, event, name));
    } catch (error) {
      // Gone or replaced already (its parent's event says so), or not ours to read (its files
      // cannot be mirrored either, and the scan names them): skipped. The inotify limit is
      // reported, and the folders watched so far stay watched.
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR' && code !== 'EACCES' && code !== 'EPERM') on.error(error);
      return;
    }
    // fs.watch follows a symlink: a folder swapped for one between the listing and the watch would
    // have us watch (and list) a tree outside the conf dir.
    // (The conf dir itself may be a symlink a deploy re-points: that one is followed.)
    try {
      if (rel !== '' && !lstatSync(abs).isDirectory()) throw new Error('not a folder any more');
    } catch {
      watcher.close();
      return;
    }
    watcher.on('error', (error) => {
      // A folder removed under its watch: the parent's event reports it.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' && !closed) on.error(error);
    });
    watchers.set(rel, watcher);
    // Watch first, then list: a folder created in between is an event, not a gap.
    const entries = await readdir(abs, { withFileTypes: true }).catch(() => []);
    for (const entry of entries)
      if (entry.isDirectory()) await watchTree(rel === '' ? entry.name : `${rel}/${entry.name}`);
  };

  // Folders that appeared, went or moved, handled together FOLDER_MS after the first move, and at
  // most once a FOLDER_STORM_MS while moves keep coming (chokidar's own pace for re-reading a
  // folder): a process renaming a folder in a loop must not have us rescan its tree 20 times a second.
  const movedFolders = new Set<string>();
  let flushing: ReturnType<typeof setTimeout> | undefined;
  let lastFlush = Number.NEGATIVE_INFINITY;
  const flushSoon = () => {
    const stormy = performance.now() - lastFlush < FOLDER_STORM_MS;
    flushing = setTimeout(() => void flushFolders(), stormy ? FOLDER_STORM_MS : FOLDER_MS).unref();
  };
  const folderMoved = (child: string) => {
    movedFolders.add(child);
    if (flushing === undefined) flushSoon();
  };
  const flushFolders = async () => {
    lastFlush = performance.now();
    const batch = [...movedFolders];
    movedFolders.clear();
    try {
      for (const child of batch) {
        if (closed) return;
        unwatch(child);
        let isFolder = false;
        try {
          // The conf dir itself may be a symlink (shed under a storm, it comes back here).
          isFolder = (child === '' ? statSync(confDir) : lstatSync(join(confDir, child))).isDirectory();
        } catch {
          // Gone.
        }
        if (isFolder) await watchTree(child);
        if (closed) return;
        on.folder(child);
      }
    } finally {
      // Whatever happened, moves still to come are handled: a shed folder must be watched again.
      flushing = undefined;
      if (!closed && movedFolders.size > 0) flushSoon();
    }
  };

  // What the kernel reports is only queued here, and looked at once the loop turns (setImmediate).
  // libuv reads inotify until its queue is empty and calls back for each event before the loop
  // turns again: a process renaming in a loop can keep that queue from ever emptying, and a
  // syscall per event (the lstat below, 10 us under the rename lock) kept the daemon in that
  // read loop for minutes (issue 12). So an event costs a Map entry and a count.
  /** Paths the kernel named since the loop last turned, and whether one was created, removed or moved. */
  const pending = new Map<string, boolean>();
  /** Folders to look at whole: their watch gave no name, or the kernel's queue may have overflowed. */
  const unnamed = new Set<string>();
  /** Events per folder's watch, and in all, since the loop last turned. */
  const burst = new Map<string, number>();
  let burstTotal = 0;
  /** Folders whose watch brought STORM_EVENTS since the loop last turned: shed when it turns. */
  const stormy = new Set<string>();
  let looking: ReturnType<typeof setImmediate> | undefined;
  const changed = (rel: string, event: string, name: string | Buffer | null) => {
    if (closed) return;
    const events = (burst.get(rel) ?? 0) + 1;
    burst.set(rel, events);
    if (events === stormEvents) stormy.add(rel);
    if (++burstTotal >= queuedEvents) {
      // As long as the kernel's queue: it may have overflowed, and libuv drops the event that says
      // so. Everything is looked at again, so every watch that still talks can be closed now (and
      // made again with a look): that is what ends this read loop if a storm outpaces us.
      if (burstTotal === queuedEvents) unnamed.add('');
      return shed(rel);
    }
    // No name (the kernel's queue overflowed, say): look at the whole folder again.
    if (typeof name !== 'string') unnamed.add(rel);
    else if (!name.startsWith(TEMP_MARK)) {
      // Our own temp files come and go on every write: nothing to look at.
      const child = rel === '' ? name : `${rel}/${name}`;
      pending.set(child, pending.get(child) === true || event === 'rename');
    }
    looking ??= setImmediate(lookAtPending);
  };
  const lookAtPending = () => {
    looking = undefined;
    // A folder that brought a storm is shed now, not while its events were counted: closed then,
    // the rest of the burst would go uncounted and an overflow unseen.
    for (const rel of stormy) shed(rel);
    stormy.clear();
    burst.clear();
    burstTotal = 0;
    const batch = [...pending];
    pending.clear();
    for (const rel of unnamed) on.folder(rel);
    unnamed.clear();
    for (const [child, moved] of batch) {
      if (closed) return;
      if (moved && !isSkippedFolder(child)) {
        // Created, removed or moved: a folder's watch follows it, a file is a hint.
        let isFolder = false;
        try {
          isFolder = lstatSync(join(confDir, child)).isDirectory();
        } catch {
          // Gone.
        }
        if (isFolder || watchers.has(child)) {
          folderMoved(child);
          continue;
        }
      }
      if (isMirrored(child)) on.file(child);
    }
  };
  /**
   * Closes a folder's watch (the kernel stops queueing for it) and has it watched afresh and
   * looked at whole, at the pace of folder moves: 50 ms, then once a second while storms go on.
   * The folders below it are watched afresh too: any of them may have moved meanwhile.
   */
  const shed = (rel: string) => {
    const watcher = watchers.get(rel);
    if (watcher === undefined) return;
    watcher.close();
    watchers.delete(rel);
    folderMoved(rel);
    looking ??= setImmediate(lookAtPending);
  };

  // The conf dir itself removed, moved or replaced (a deploy re-pointing it): its watch follows the
  // old folder or ends without a word. A stat every ROOT_CHECK_MS (microseconds) notices, and the
  // tree is watched afresh and looked at again.
  const rootId = () => {
    try {
      const info = statSync(confDir);
      return info.isDirectory() ? `${info.dev}:${info.ino}` : undefined;
    } catch {
      return undefined;
    }
  };
  let root = rootId();
  const rootCheck = setInterval(() => {
    const now = rootId();
    if (now === root) return;
    root = now;
    unwatch('');
    if (now === undefined) return on.folder('');
    void watchTree('').then(() => {
      if (!closed) on.folder('');
    });
  }, ROOT_CHECK_MS).unref();

  await watchTree('');
  return {
    close: () => {
      closed = true;
      clearInterval(rootCheck);
      if (flushing !== undefined) clearTimeout(flushing);
      if (looking !== undefined) clearImmediate(looking);
      unwatch('');
    },
  };
}

/** How many events the kernel queues for an inotify instance before it drops them (Linux's default: 16,384). */
function inotifyQueueLength(): number {
  try {
    const n = Number(readFileSync('/proc/sys/fs/inotify/max_queued_events', 'utf8'));
    return Number.isSafeInteger(n) && n > 0 ? n : 16_384;
  } catch {
    return 16_384;
  }
}

/**
 * watchConfDir, and what stands in for it when it fails (the inotify
 * limit, say): a scan every SCAN_MS, and a `degraded` report naming what to
 * raise, until the daemon restarts.
 */
export async function followConfDir(
  confDir: string,
  on: Omit<ConfDirEvents, 'error'> & { degraded(why: string, error: unknown): void; scan(): void },
  clock: Clock,
): Promise<{ close(): Promise<void> }> {
  let cancelScan: Cancel | undefined;
  const degrade = (error: unknown) => {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOSPC' || code === 'EMFILE'
        ? `the file watcher hit the inotify limit (${code}): raise fs.inotify.max_user_watches (sysctl); scanning every ${SCAN_MS / 1000} s meanwhile`
        : `the file watcher failed (${error instanceof Error ? error.message : String(error)}); scanning every ${SCAN_MS / 1000} s meanwhile`;
    on.degraded(why, error);
    if (cancelScan !== undefined) return;
    const scan = () => {
      cancelScan = clock.schedule(scan, SCAN_MS);
      on.scan();
    };
    cancelScan = clock.schedule(scan, SCAN_MS);
  };
  const watcher = await watchConfDir(confDir, { ...on, error: degrade });
  return {
    close: async () => {
      cancelScan?.();
      watcher.close();
    },
  };
}
