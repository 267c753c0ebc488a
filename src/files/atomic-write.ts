import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fdatasync,
  fstatSync,
  lstatSync,
  openSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { FileChangedError } from '../errors.js';

/** Temp files of ours start with this, so a restart can find and remove the ones a crash left. */
export const TEMP_MARK = '.link-etcd-';

export interface AtomicWriteOptions {
  /** Mode of a new file. An existing file keeps its own. Default 0o600: configuration may hold secrets. */
  readonly mode?: number;
  /**
   * The caller has just read the file, knows `content` differs and passes
   * the file's own mode in `mode`: skip reading it again (the hot path of
   * the sync daemon).
   */
  readonly known?: boolean;
  /** Runs on the staged temp file before it replaces the old one; a rejection leaves the old file in place. */
  readonly check?: (staged: string) => Promise<void>;
  /**
   * The version the caller planned against (`null`: no file). Checked again
   * right before the rename, after the fsync and any check: a save made
   * meanwhile is not replaced (FileChangedError).
   */
  readonly expect?: FileSignature | null;
  /** Owner to give a new version, as the old one had (needs the right to chown; skipped otherwise). */
  readonly owner?: { readonly uid: number; readonly gid: number };
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
 * fsynced so the rename itself survives a crash. Returns the new file's
 * signature, or undefined (writing nothing) when it already holds `content`.
 */
export async function writeFileAtomic(
  file: string,
  content: string,
  options: AtomicWriteOptions = {},
): Promise<FileSignature | undefined> {
  let mode = options.mode ?? 0o600;
  if (!options.known) {
    try {
      const [current, info] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
      if (current === content) return undefined;
      mode = info.mode & 0o7777;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  const dir = dirname(file);
  const temp = join(dir, `${TEMP_MARK}${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  let staged: Staged;
  try {
    staged = await fillStaged(fd, content, mode, options.owner);
    if (options.check) await options.check(temp);
    // Check and rename back to back, synchronously: a save landing between them would be lost.
    if (options.expect !== undefined) {
      let now: FileSignature | null;
      try {
        now = signatureOf(lstatSync(file));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        now = null;
      }
      if (now !== options.expect) throw new FileChangedError(file);
      renameSync(temp, file);
    } else await rename(temp, file);
  } catch (error) {
    closeSync(fd);
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  const signature = placedSignature(fd, staged);
  await fsyncDir(dir);
  return signature;
}

/**
 * Writes a staged temp file (open descriptor `fd`, left open) whole,
 * fdatasyncs it, gives it `mode` (open()'s passes through the umask; the
 * file's own mode must not) and, when we may, the owner the old version had
 * (the app reading it may run as that user). Everything but the fdatasync is
 * synchronous: microseconds into the page cache, where each trip through
 * libuv's thread pool costs a tenth of a millisecond on the path of every
 * change; the fdatasync waits for the disk, so it leaves the event loop free.
 */
export async function fillStaged(
  fd: number,
  content: string,
  mode: number,
  owner: { readonly uid: number; readonly gid: number } | undefined,
): Promise<Staged> {
  const bytes = Buffer.from(content, 'utf8');
  for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, bytes.length - at);
  // The data and the length that reaches it: all a reader after a crash needs of a new file.
  await new Promise<void>((resolve, reject) => fdatasync(fd, (e) => (e ? reject(e) : resolve())));
  const info = fstatSync(fd);
  if ((info.mode & 0o7777) !== mode) fchmodSync(fd, mode);
  if (owner && (owner.uid !== info.uid || owner.gid !== info.gid)) {
    try {
      fchownSync(fd, owner.uid, owner.gid);
    } catch {
      // Not ours to give: the file keeps the daemon's owner.
    }
  }
  return info;
}

/**
 * The signature of the staged file once it is in place, from its own
 * descriptor: the rename changed its ctime, and a path looked up now could
 * already be someone else's save. Closes the descriptor.
 */
export function placedSignature(fd: number, staged: Staged): FileSignature {
  try {
    const info = fstatSync(fd);
    // A rename changes the ctime, not the size or the mtime: if those moved, someone wrote in place
    // between our rename and this fstat, and their edit must be read, not taken for ours.
    if (info.size !== staged.size || info.mtimeMs !== staged.mtimeMs) return WRITTEN_OVER;
    return signatureOf(info);
  } finally {
    closeSync(fd);
  }
}

/** What a staged file was once written: a rename leaves both as they are. */
export interface Staged {
  readonly size: number;
  readonly mtimeMs: number;
}

/** The signature of a file written over right after our rename: it matches no file, so the next look reads. */
export const WRITTEN_OVER: FileSignature = 'written-over';

/** What identifies one version of a file without reading it: inode, size and change time. */
export type FileSignature = string;

export function signatureOf(info: {
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}): FileSignature {
  return `${info.ino}:${info.size}:${info.mtimeMs}:${info.ctimeMs}`;
}
