import { relative, sep } from 'node:path';
import { type FSWatcher, watch } from 'chokidar';
import { isMirrored, isSkippedFolder } from '../layout/mirrored.js';

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
