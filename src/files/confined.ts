import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import {
  closeSync,
  constants,
  fstatSync,
  fsync,
  lstatSync,
  mkdirSync,
  openSync,
  readlinkSync,
  readSync,
  realpathSync,
  renameSync,
  unlinkSync,
} from 'node:fs';
import { lstat, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FileChangedError, UnsafePathError } from '../errors.js';
import {
  type FileSignature,
  fillStaged,
  placedSignature,
  type Staged,
  signatureOf,
  TEMP_MARK,
} from './atomic-write.js';

/**
 * File access inside the conf dir that decides on what a descriptor really
 * is, never on a path checked earlier. Folders are opened one segment at a
 * time with O_NOFOLLOW, each below the descriptor of the one above (through
 * Linux's /proc/self/fd/N/<name>, Node's stand-in for openat), so a folder
 * swapped for a symlink between two steps is refused, not followed. Where
 * /proc is missing (not Linux) the same calls work on paths, and the race
 * windows described in docs/SECURITY.md are open.
 */

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_DIRECTORY } = constants;

let procFd: boolean | undefined;
async function hasProcFd(): Promise<boolean> {
  procFd ??= await lstat('/proc/self/fd').then(
    (s) => s.isDirectory(),
    () => false,
  );
  // On Linux a missing /proc is a broken sandbox, not another system: fail closed rather than race.
  if (!procFd && process.platform === 'linux')
    throw new UnsafePathError(
      '/proc/self/fd',
      'is missing: link-etcd needs /proc on Linux to check what it opens',
    );
  return procFd;
}

/**
 * Folders no walk may enter, by device and inode: `link/etcd/` (its name
 * can change under us: `mv link moved` must not make its files mirrored).
 */
const protectedFolders = new Set<string>();
const idOf = (info: { dev: number; ino: number }) => `${info.dev}:${info.ino}`;

/** Marks the folder at `path` (if it exists) as one no walk enters, whatever it is called later. */
export async function protectFolder(path: string): Promise<void> {
  const info = await lstat(path).catch(() => undefined);
  if (info?.isDirectory()) protectedFolders.add(idOf(info));
}

/** A folder of the conf dir, held open. */
export interface OpenDir {
  /** Its descriptor. */
  readonly fd: number;
  /** Its conf-dir-relative path ('' for the conf dir). */
  readonly rel: string;
  /** The path to reach `name` inside it: through the descriptor where /proc allows. */
  at(name: string): string;
  /** fsyncs the folder: what was renamed or created in it survives a crash. */
  sync(): Promise<void>;
  close(): void;
}

const fsyncFd = promisify(fsync);
function heldDir(fd: number, rel: string, logical: string, proc: boolean): OpenDir {
  return {
    fd,
    rel,
    at: (name) => (proc ? `/proc/self/fd/${fd}/${name}` : join(logical, name)),
    sync: () => fsyncFd(fd),
    close: () => closeSync(fd),
  };
}

const DIR_FLAGS = O_RDONLY | O_DIRECTORY | O_NOFOLLOW;

/**
 * Opens the folder `rel` of the conf dir, segment by segment, never through
 * a symlink. `create` makes missing folders (mode 0755, as mkdir -p would).
 * Rejects with ENOENT when a folder is missing and not created, ENOTDIR
 * when a file stands in its place, and UnsafePathError when it is a symlink.
 * The opens, stats and closes are synchronous: each takes microseconds,
 * where a trip through libuv's thread pool takes a tenth of a millisecond,
 * and they are on the path of every change.
 */
export async function openDir(confDir: string, rel: string, create = false): Promise<OpenDir> {
  const proc = await hasProcFd();
  // The conf dir itself may be a symlink (a deploy re-points it): that one is followed, freshly each time.
  let fd = openSync(confDir, O_RDONLY | O_DIRECTORY);
  let logical = confDir;
  let here = '';
  try {
    for (const segment of rel === '' ? [] : rel.split('/')) {
      const next = proc ? `/proc/self/fd/${fd}/${segment}` : join(logical, segment);
      const shown = join(confDir, here, segment);
      let child: number;
      try {
        child = openSync(next, DIR_FLAGS);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' || !create) throw linkError(shown, error);
        try {
          mkdirSync(next, 0o755);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        }
        try {
          child = openSync(next, DIR_FLAGS);
        } catch (e) {
          throw linkError(shown, e);
        }
      }
      closeSync(fd);
      fd = child;
      here = here === '' ? segment : `${here}/${segment}`;
      if (protectedFolders.size > 0 && protectedFolders.has(idOf(fstatSync(fd))))
        throw new UnsafePathError(join(confDir, here), 'is link/etcd/ under another name: never mirrored');
      logical = join(logical, segment);
    }
  } catch (error) {
    closeSync(fd);
    throw error;
  }
  return heldDir(fd, rel, logical, proc);
}

/** What to throw for a folder that could not be opened: a symlink is refused; anything else stays as it is. */
function linkError(path: string, error: unknown): unknown {
  // ENOTDIR (a file where a folder should be) stays too: the caller knows whether that means missing.
  return (error as NodeJS.ErrnoException).code === 'ELOOP'
    ? new UnsafePathError(path, 'is a symlink: link-etcd does not follow links')
    : error;
}

/**
 * Whether a descriptor still lies at `rel` inside the conf dir: a folder
 * opened safely may have been moved out since (its descriptor follows it).
 * Always true without /proc.
 */
export async function stillAt(confDir: string, fd: number, rel: string): Promise<boolean> {
  if (!(await hasProcFd())) return true;
  return stillAtNow(confDir, fd, rel);
}

/** stillAt, synchronously, once /proc has been checked (any openDir did). */
function stillAtNow(confDir: string, fd: number, rel: string): boolean {
  if (procFd !== true) return true;
  const where = readlinkSync(`/proc/self/fd/${fd}`);
  const root = realpathSync.native(confDir);
  return where === (rel === '' ? root : join(root, rel));
}

const KIND: ReadonlyArray<readonly [(s: Stats) => boolean, string]> = [
  [(s) => s.isFIFO(), 'a FIFO'],
  [(s) => s.isSocket(), 'a socket'],
  [(s) => s.isCharacterDevice() || s.isBlockDevice(), 'a device'],
  [(s) => s.isDirectory(), 'a folder'],
  [(s) => s.isSymbolicLink(), 'a symlink'],
];

/** Why a file with these stats is not mirrored: only regular files with one link are. */
export function fileRefusal(info: Stats): string | undefined {
  if (!info.isFile()) {
    const kind = KIND.find(([is]) => is(info))?.[1] ?? 'not a regular file';
    return `is ${kind}: only regular files are mirrored`;
  }
  // A second name could be anywhere, link/etcd/middleware.conf included: which one is real cannot be told.
  if (info.nlink > 1)
    return `has ${info.nlink} hard links: link-etcd cannot tell where else it lives; keep one link`;
  return undefined;
}

export type ReadResult =
  | { readonly kind: 'missing' }
  /** `passing`: a race with a move, not the file's fault; the next look may well read it. */
  | { readonly kind: 'refused'; readonly reason: string; readonly passing?: true }
  | { readonly kind: 'ok'; readonly text: string; readonly signature: FileSignature };

/**
 * Reads `name` in an open folder: O_NOFOLLOW | O_NONBLOCK (a FIFO cannot
 * block us), then fstat decides (a regular file with one link, at most
 * `maxBytes`), then the descriptor's real path is checked, and only then
 * are its bytes read, as strict UTF-8.
 */
export async function readIn(
  confDir: string,
  dir: OpenDir,
  name: string,
  maxBytes: number,
): Promise<ReadResult> {
  let fd: number;
  try {
    fd = openSync(dir.at(name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { kind: 'missing' };
    if (code === 'ELOOP') return { kind: 'refused', reason: 'is a symlink: link-etcd does not follow links' };
    if (code === 'ENXIO') return { kind: 'refused', reason: 'is a socket: only regular files are mirrored' };
    throw error;
  }
  try {
    const info = fstatSync(fd);
    const refusal = fileRefusal(info);
    if (refusal !== undefined) return { kind: 'refused', reason: refusal };
    if (info.size > maxBytes) return { kind: 'refused', reason: tooLarge(info.size, maxBytes) };
    const rel = dir.rel === '' ? name : `${dir.rel}/${name}`;
    if (!(await stillAt(confDir, fd, rel)))
      return { kind: 'refused', reason: 'moved while link-etcd opened it', passing: true };
    const bytes = readAtMost(fd, maxBytes);
    if (bytes.length > maxBytes) return { kind: 'refused', reason: tooLarge(bytes.length, maxBytes) };
    const text = decodeUtf8(bytes);
    if (typeof text !== 'string') return { kind: 'refused', reason: text.reason };
    return { kind: 'ok', text, signature: signatureOf(info) };
  } finally {
    closeSync(fd);
  }
}

function tooLarge(size: number, max: number): string {
  const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
  return `is ${mib(size)}, over max_file_size (${mib(max)}): split the file or raise max_file_size`;
}

/**
 * Up to `max + 1` bytes: one more than allowed tells a file that grew past
 * the limit after fstat. Synchronous: a conf file comes from the page cache
 * in microseconds (4 MiB at most), less than one trip through the thread pool.
 */
function readAtMost(fd: number, max: number): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const want = Math.min(65536, max + 1 - total);
    if (want <= 0) break;
    const buffer = Buffer.allocUnsafe(want);
    const bytesRead = readSync(fd, buffer, 0, want, null);
    if (bytesRead === 0) break;
    chunks.push(buffer.subarray(0, bytesRead));
    total += bytesRead;
  }
  return Buffer.concat(chunks, total);
}

const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The text, or where it stops being UTF-8: never a lossy U+FFFD rewrite of someone's bytes. */
export function decodeUtf8(bytes: Uint8Array): string | { readonly reason: string } {
  try {
    return strict.decode(bytes);
  } catch {
    // The first offset where a valid prefix ends, for the error message.
    let low = 0;
    let high = bytes.length;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (validPrefix(bytes.subarray(0, mid))) low = mid;
      else high = mid - 1;
    }
    return { reason: `is not valid UTF-8 (byte offset ${low}): save it as UTF-8` };
  }
}

function validPrefix(bytes: Uint8Array): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes, { stream: true });
    return true;
  } catch {
    return false;
  }
}

/** The steps of one file write: staged (written and fdatasynced), visible (renamed into place), folder_synced. */
export type WritePhase = 'staged' | 'visible' | 'folder_synced';

export interface ConfinedWrite {
  readonly mode: number;
  readonly owner?: { readonly uid: number; readonly gid: number };
  /** The signature the target must still have right before the rename (`null`: must not exist). */
  readonly expect: FileSignature | null;
  /** Runs on the staged temp file (its logical path) before it replaces the target. */
  readonly check?: (staged: string) => Promise<void>;
  /** Told how long each step of the write took (seconds). */
  readonly onPhase?: (phase: WritePhase, seconds: number) => void;
  /**
   * The text the target had (the version `expect` names): put back if its
   * folder turns out to have moved while we wrote, so the move keeps the
   * person's file as it was.
   */
  readonly original?: string;
}

/**
 * Replaces `name` in an open folder with `content`: a short temp name
 * created O_EXCL | O_NOFOLLOW, written, fsynced, renamed over the target
 * (a rename never follows a symlink), the folder fsynced. The folder must
 * still be where it should, checked right before the rename and again after
 * it: if it moved, nothing is replaced, or what was replaced is put back
 * (`undoMovedWrite`), and the write is refused.
 */
export async function writeIn(
  confDir: string,
  dir: OpenDir,
  name: string,
  content: string,
  options: ConfinedWrite,
): Promise<FileSignature> {
  const temp = tempName();
  inFlightTemps.add(temp);
  try {
    return await stageAndRename(confDir, dir, name, temp, content, options);
  } finally {
    inFlightTemps.delete(temp);
  }
}

/**
 * A temp file name: short whatever the target's name (a name up to NAME_MAX
 * still has room for it), and naming its writer, so a restart can tell a
 * crash's leftovers from a live write.
 */
function tempName(): string {
  return `${TEMP_MARK}${process.pid}-${randomBytes(8).toString('hex')}.tmp`;
}

/** Temp names of this process's writes in progress: never stale. */
export const inFlightTemps = new Set<string>();

/** The pid in a temp name of ours, or undefined for a name without one. */
export function tempWriter(name: string): number | undefined {
  const m = /^\.link-etcd-(\d+)-[0-9a-f]{16}\.tmp$/.exec(name);
  return m === null ? undefined : Number(m[1]);
}

async function stageAndRename(
  confDir: string,
  dir: OpenDir,
  name: string,
  temp: string,
  content: string,
  options: ConfinedWrite,
): Promise<FileSignature> {
  let last = performance.now();
  const phase = (name: WritePhase) => {
    const now = performance.now();
    options.onPhase?.(name, (now - last) / 1000);
    last = now;
  };
  const shown = join(confDir, dir.rel, name);
  const fd = openSync(dir.at(temp), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, options.mode);
  let staged: Staged;
  try {
    staged = await fillStaged(fd, content, options.mode, options.owner);
    phase('staged');
    if (options.check) await options.check(join(confDir, dir.rel, temp));
    // A folder moved since it was opened (the fdatasync above is the long wait): nothing is replaced.
    if (!stillAtNow(confDir, dir.fd, dir.rel))
      throw new UnsafePathError(
        shown,
        'was moved while link-etcd wrote it: nothing replaced; it is looked at again',
      );
    // The check and the rename run back to back, synchronously: awaited, a save landing between them
    // (a busy thread pool made that gap up to 9 ms) would be replaced without a trace. Node has no
    // renameat2(RENAME_EXCHANGE) to close it entirely; a microsecond is what is left.
    compareAndRename(dir.at(temp), dir.at(name), options.expect, shown);
  } catch (error) {
    closeSync(fd);
    await unlink(dir.at(temp)).catch(() => undefined);
    throw error;
  }
  // Recognised later by this signature without a read: taken from our descriptor after the rename.
  const signature = placedSignature(fd, staged);
  phase('visible');
  await dir.sync();
  phase('folder_synced');
  if (!(await stillAt(confDir, dir.fd, dir.rel)))
    throw await undoMovedWrite(dir, name, signature, shown, options);
  return signature;
}

/**
 * The folder moved (within the conf dir or out of it) between the check
 * before our rename and the one after: undo what we did there, and only
 * that. A file that was not there before is removed; one that was gets its
 * text back (its mode and owner too), so the person who moved the folder
 * finds their file as it was, never nothing. Either way only if the file is
 * still our version: a save made since is theirs to keep.
 */
async function undoMovedWrite(
  dir: OpenDir,
  name: string,
  ours: FileSignature,
  shown: string,
  options: ConfinedWrite,
): Promise<UnsafePathError> {
  const moved = 'was moved while link-etcd wrote it';
  try {
    if (options.expect === null) {
      if (signatureNow(dir.at(name)) === ours) unlinkSync(dir.at(name));
      return new UnsafePathError(shown, `${moved}: what it wrote was removed; it is looked at again`);
    }
    if (options.original === undefined)
      return new UnsafePathError(shown, `${moved}: left as written; it is looked at again`);
    const temp = tempName();
    inFlightTemps.add(temp);
    const fd = openSync(dir.at(temp), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, options.mode);
    try {
      await fillStaged(fd, options.original, options.mode, options.owner);
      compareAndRename(dir.at(temp), dir.at(name), ours, shown);
    } finally {
      closeSync(fd);
      await unlink(dir.at(temp)).catch(() => undefined);
      inFlightTemps.delete(temp);
    }
    await dir.sync();
    return new UnsafePathError(shown, `${moved}: its text was put back as it was; it is looked at again`);
  } catch (error) {
    // A save of theirs since (FileChangedError) or a folder gone: what is there is not ours to touch.
    return new UnsafePathError(
      shown,
      `${moved}: not undone (${error instanceof Error ? error.message : String(error)}); it is looked at again`,
    );
  }
}

/** The signature of `path` now, or null when nothing is there. */
function signatureNow(path: string): FileSignature | null {
  try {
    return signatureOf(lstatSync(path));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/** Renames `temp` over `target` only if `target` is still the version `expect` names (null: none). */
export function compareAndRename(
  temp: string,
  target: string,
  expect: FileSignature | null,
  shown: string,
): void {
  if (signatureNow(target) !== expect) throw new FileChangedError(shown);
  renameSync(temp, target);
}

/** Creates `name` in an open folder, failing if anything (a symlink included) is already there. */
export async function createIn(dir: OpenDir, name: string, content: string, mode: number): Promise<void> {
  const handle = await open(dir.at(name), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
  try {
    await handle.writeFile(content, 'utf8');
  } finally {
    await handle.close();
  }
}

/** Removes `name` from an open folder if it is still the version `expect` names. */
export async function removeIn(
  confDir: string,
  dir: OpenDir,
  name: string,
  expect: FileSignature,
): Promise<void> {
  // Back to back, synchronously, for the same reason as compareAndRename.
  if (signatureNow(dir.at(name)) !== expect) throw new FileChangedError(join(confDir, dir.rel, name));
  unlinkSync(dir.at(name));
  await dir.sync();
}
