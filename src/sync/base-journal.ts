import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fdatasync,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  writeSync,
} from 'node:fs';
import { mkdir, open, readFile, truncate } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../files/atomic-write.js';
import type { BaseEntry, FileWrite } from './merge.js';

/** What a file write announcement holds: the key, etcd's value (undefined: a delete) and its revision. */
export type FileWriteAnnouncement = Pick<FileWrite, 'key' | 'value' | 'revision'>;

/**
 * Where the daemon keeps its state: `$STATE_DIRECTORY` (systemd's
 * StateDirectory=), else `$XDG_STATE_HOME/link-etcd`, else
 * `~/.local/state/link-etcd`. Outside the conf dir, so it is never mirrored.
 */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  const systemd = env.STATE_DIRECTORY?.split(':')[0];
  if (systemd) return systemd;
  const xdg = env.XDG_STATE_HOME;
  return join(xdg && xdg !== '' ? xdg : join(homedir(), '.local', 'state'), 'link-etcd');
}

/** One journal per (conf dir, prefix, cluster): two daemons on one host never share a base. */
export function journalPath(stateDir: string, confDir: string, prefix: string, cluster: string): string {
  const id = createHash('sha256').update(`${confDir}\0${prefix}\0${cluster}`).digest('hex').slice(0, 16);
  return join(stateDir, `base-${id}.json`);
}

interface JournalFile {
  readonly version: 1;
  readonly confDir: string;
  readonly prefix: string;
  /** [key, value, modRevision] */
  readonly entries: ReadonlyArray<readonly [string, string, number]>;
}

export type LoadedBase =
  | {
      readonly ok: true;
      readonly base: Map<string, BaseEntry>;
      /** Lines in the log over the snapshot: when to fold them into a new snapshot. */
      readonly logEntries?: number;
      /** Pushes announced and not recorded as landed: key -> value sent (null: a delete). */
      readonly pushes?: ReadonlyMap<string, string | null>;
      /** File writes announced and not recorded as landed: key -> etcd's entry written (null: a delete). */
      readonly writes?: ReadonlyMap<string, BaseEntry | null>;
    }
  | {
      readonly ok: false;
      readonly base: Map<string, BaseEntry>;
      readonly reason: string;
      /** No journal at all: a first run, not a problem. */
      readonly first: boolean;
    };

/**
 * The changes since the snapshot, one JSON line each: `[key, value,
 * modRevision]` for a set, `[key]` for a removal. Appended and fsynced at
 * the end of every pass that changed the base, so a pass costs what it
 * changed, not the whole base; folded into a new snapshot once it outgrows it.
 */
export function logPathOf(journal: string): string {
  return journal.replace(/\.json$/, '.log');
}

type LogLine =
  | readonly [string, string, number]
  | readonly [string]
  | { readonly push: readonly unknown[] }
  | { readonly wrote: readonly unknown[] };

/** What a log announced and never recorded as landed: pushes to etcd, writes to files. */
interface Announced {
  readonly pushes: Map<string, string | null>;
  readonly writes: Map<string, BaseEntry | null>;
}

/**
 * Applies the log's lines to `base`; a torn last line (a crash mid-append)
 * is dropped, any other bad line is corruption. Announced pushes (`{"push":
 * [key, value]}`, value null for a delete) not followed by their key's
 * landed line are collected in `announced.pushes`; file writes (`{"wrote":
 * [key, value, modRevision]}`) in `announced.writes`.
 */
function replay(base: Map<string, BaseEntry>, text: string, path: string, announced: Announced): number {
  const lines = text.split('\n');
  let applied = 0;
  for (const [i, line] of lines.entries()) {
    if (line === '') continue;
    let entry: LogLine;
    try {
      entry = JSON.parse(line) as LogLine;
    } catch (error) {
      if (i === lines.length - 1) return applied;
      throw new Error(`${path}:${i + 1}: ${(error as Error).message}`);
    }
    applied++;
    if (!Array.isArray(entry)) {
      const { push, wrote } = entry as { push?: unknown[]; wrote?: unknown[] };
      const [key, value, modRevision] = push ?? wrote ?? [];
      const valid =
        typeof key === 'string' &&
        (typeof value === 'string' || value === null) &&
        (push !== undefined || typeof modRevision === 'number');
      if (!valid) throw new Error(`${path}:${i + 1}: malformed entry`);
      if (push !== undefined) announced.pushes.set(key, value);
      else announced.writes.set(key, value === null ? null : { value, modRevision: modRevision as number });
      continue;
    }
    const [key, value, modRevision] = entry;
    if (typeof key !== 'string') throw new Error(`${path}:${i + 1}: malformed entry`);
    announced.pushes.delete(key);
    announced.writes.delete(key);
    if (value === undefined) base.delete(key);
    else if (typeof value === 'string' && typeof modRevision === 'number')
      base.set(key, { value, modRevision });
    else throw new Error(`${path}:${i + 1}: malformed entry`);
  }
  return applied;
}

/**
 * Announces the writes a pass is about to send to etcd, in the log, before
 * they are sent. Written, not fsynced: it must outlive the process (a
 * SIGKILL between etcd's answer and the base's save), not the machine. At
 * restart an announced value that etcd holds is our own push, not a change
 * made in etcd: the file's later edits then win without a conflict.
 */
export function announcePushes(
  path: string,
  writes: ReadonlyArray<{ readonly key: string; readonly value: string | undefined }>,
): void {
  let text = '';
  for (const w of writes) text += `${JSON.stringify({ push: [w.key, w.value ?? null] })}\n`;
  appendUnsynced(path, text);
}

/**
 * Announces the etcd values a pass is about to write into files, as
 * announcePushes does for etcd: at restart, a file that holds an announced
 * value got it from etcd, and is not an edit that conflicts with etcd's
 * later changes.
 */
export function announceFileWrites(path: string, writes: ReadonlyArray<FileWriteAnnouncement>): void {
  let text = '';
  for (const w of writes) text += `${JSON.stringify({ wrote: [w.key, w.value ?? null, w.revision] })}\n`;
  appendUnsynced(path, text);
}

function appendUnsynced(path: string, text: string): void {
  const log = logPathOf(path);
  if (!existsSync(log)) mkdirSync(join(path, '..'), { recursive: true, mode: 0o700 });
  const fd = openSync(log, 'a', 0o600);
  try {
    appendWhole(fd, text);
  } finally {
    closeSync(fd);
  }
}

/**
 * Appends `text` whole or not at all: writeSync may write part of it and
 * return (a disk filling up); a partial line left in the middle of the log
 * would make the next load call the journal corrupt and drop the base.
 */
function appendWhole(fd: number, text: string): void {
  const start = fstatSync(fd).size;
  const bytes = Buffer.from(text, 'utf8');
  try {
    for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, bytes.length - at);
  } catch (error) {
    try {
      ftruncateSync(fd, start);
    } catch {
      // The torn tail is then the log's last line, which a load drops.
    }
    throw error;
  }
}

/** Reads the base (snapshot, then the log over it); a missing or corrupt journal is an empty base, with the reason to log. */
export async function loadBase(path: string): Promise<LoadedBase> {
  const loaded = await loadSnapshot(path);
  if (!loaded.ok && !loaded.first) return loaded;
  const log = await readFile(logPathOf(path), 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (log === undefined) return loaded;
  try {
    const announced: Announced = { pushes: new Map(), writes: new Map() };
    const logEntries = replay(loaded.base, log, logPathOf(path), announced);
    return { ok: true, base: loaded.base, logEntries, ...announced };
  } catch (error) {
    return {
      ok: false,
      base: new Map(),
      reason: `corrupt base journal ${(error as Error).message}`,
      first: false,
    };
  }
}

async function loadSnapshot(path: string): Promise<LoadedBase> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const first = code === 'ENOENT';
    return { ok: false, base: new Map(), reason: first ? 'no base journal yet' : String(error), first };
  }
  try {
    const data = JSON.parse(text) as JournalFile;
    if (data.version !== 1 || !Array.isArray(data.entries)) throw new Error('not a version 1 journal');
    const base = new Map<string, BaseEntry>();
    for (const [key, value, modRevision] of data.entries) {
      if (typeof key !== 'string' || typeof value !== 'string' || typeof modRevision !== 'number') {
        throw new Error('malformed entry');
      }
      base.set(key, { value, modRevision });
    }
    return { ok: true, base };
  } catch (error) {
    return {
      ok: false,
      base: new Map(),
      reason: `corrupt base journal ${path}: ${(error as Error).message}`,
      first: false,
    };
  }
}

/**
 * Appends the changes of one pass to the log and fsyncs it (one write, one
 * fdatasync, whatever the base's size). The open and the write are
 * synchronous (microseconds into the page cache); only the fdatasync goes
 * through the thread pool, so the event loop stays free while the disk works.
 */
export async function appendBase(
  path: string,
  changes: ReadonlyMap<string, BaseEntry | undefined>,
): Promise<void> {
  let text = '';
  for (const [key, entry] of changes)
    text += `${JSON.stringify(entry === undefined ? [key] : [key, entry.value, entry.modRevision])}\n`;
  const log = logPathOf(path);
  const created = !existsSync(log);
  if (created) mkdirSync(join(path, '..'), { recursive: true, mode: 0o700 });
  const fd = openSync(log, 'a', 0o600);
  try {
    appendWhole(fd, text);
    // fdatasync: the appended bytes and the length that reaches them, which is all a replay needs.
    await new Promise<void>((resolve, reject) => fdatasync(fd, (e) => (e ? reject(e) : resolve())));
  } finally {
    closeSync(fd);
  }
  // A new log's name must survive a crash too.
  if (created) await fsyncFolder(join(path, '..'));
}

async function fsyncFolder(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Writes the whole base as a new snapshot (temp, fsync, rename) and then
 * empties the log. A crash in between leaves the log's lines, which the
 * snapshot already holds: replayed over it they change nothing.
 */
export async function saveBase(
  path: string,
  confDir: string,
  prefix: string,
  base: ReadonlyMap<string, BaseEntry>,
): Promise<void> {
  const entries = [...base].map(([key, e]) => [key, e.value, e.modRevision] as const);
  const data: JournalFile = { version: 1, confDir, prefix, entries };
  await mkdir(join(path, '..'), { recursive: true, mode: 0o700 });
  await writeFileAtomic(path, JSON.stringify(data), { mode: 0o600 });
  await truncate(logPathOf(path)).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
}
