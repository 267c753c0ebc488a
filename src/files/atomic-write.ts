import { randomBytes } from 'node:crypto';
import { chmod, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Temp files of ours start with this, so a restart can find and remove the ones a crash left. */
export const TEMP_MARK = '.link-etcd-';

export interface AtomicWriteOptions {
  /** Mode of a new file. An existing file keeps its own. Default 0o600: configuration may hold secrets. */
  readonly mode?: number;
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Replaces `file` with `content` so a reader sees the old file or the new
 * one, never a mix, and a crash leaves one of the two: a temp file with a
 * random name in the same folder (exclusive create), written, fsynced,
 * chmodded to the file's mode, renamed over the file, then the folder
 * fsynced so the rename itself survives a crash. Returns false, writing
 * nothing, when the file already holds `content`.
 */
export async function writeFileAtomic(
  file: string,
  content: string,
  options: AtomicWriteOptions = {},
): Promise<boolean> {
  let mode = options.mode ?? 0o600;
  try {
    const [current, info] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
    if (current === content) return false;
    mode = info.mode & 0o7777;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const dir = dirname(file);
  const temp = join(dir, `${TEMP_MARK}${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', mode);
  try {
    try {
      await handle.writeFile(content, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    // open()'s mode passes through the umask; the file's own mode must not.
    await chmod(temp, mode);
    await rename(temp, file);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  await fsyncDir(dir);
  return true;
}
