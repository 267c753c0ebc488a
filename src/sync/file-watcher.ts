import { relative, sep } from 'node:path';
import { type FSWatcher, watch } from 'chokidar';
import { isMirrored, isSkippedFolder } from '../layout/mirrored.js';
import type { Cancel, Clock } from './scheduler.js';

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
 * Follows the conf dir with chokidar, reporting only what the mirror rule
 * (layout/mirrored.ts) lets through. Events are hints: the engine reads the
 * file again and compares. Resolves once the initial scan is done.
 */
export async function watchConfDir(confDir: string, on: ConfDirEvents): Promise<FSWatcher> {
  const rel = (path: string) => relative(confDir, path).split(sep).join('/');
  const watcher = watch(confDir, {
    ignoreInitial: true,
    // Links are not mirrored (see conf-files.ts): no need to watch through them.
    followSymlinks: false,
    ignored: (path: string, stats) => {
      const r = rel(path);
      if (isSkippedFolder(r)) return true;
      return stats?.isFile() === true && !isMirrored(r);
    },
  });
  watcher.on('all', (event, path) => {
    const r = rel(path);
    if (event === 'addDir' || event === 'unlinkDir') on.folder(r);
    else if (isMirrored(r)) on.file(r);
  });
  watcher.on('error', on.error);
  await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  return watcher;
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
  const watcher = await watchConfDir(confDir, {
    ...on,
    error: (error) => {
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
    },
  });
  return {
    close: async () => {
      cancelScan?.();
      await watcher.close();
    },
  };
}
