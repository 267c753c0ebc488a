import { lstatSync, type Stats } from 'node:fs';
import { lstat, readdir, realpath, unlink } from 'node:fs/promises';
import { join, relative } from 'node:path';
import {
  FileChangedError,
  FileWriteError,
  IniSyntaxError,
  LinkEtcdError,
  UnsafePathError,
} from '../errors.js';
import { type FileSignature, signatureOf, TEMP_MARK } from '../files/atomic-write.js';
import {
  type ConfinedWrite,
  createIn,
  fileRefusal,
  inFlightTemps,
  type OpenDir,
  openDir,
  readIn,
  removeIn,
  stillAt,
  tempWriter,
  writeIn,
} from '../files/confined.js';
import { ioFailure } from '../files/io-failure.js';
import { applyIniChanges, type IniChange } from '../ini/edit.js';
import { decodeValue, encodeValue, encodeValueLines } from '../ini/escape.js';
import { parseIni } from '../ini/parse.js';
import { addressRefusal, keyOf, type Layout, parseKey } from '../layout/mapping.js';
import { isMirrored, isSkippedFolder } from '../layout/mirrored.js';
import { SYNC_DEFAULTS } from './defaults.js';
import type { Conflict } from './merge.js';

/** One conf file as last read. */
export type FileSnapshot =
  | { readonly kind: 'missing'; readonly confPath: string; readonly entries: ReadonlyMap<string, string> }
  | {
      readonly kind: 'ok';
      readonly confPath: string;
      readonly text: string;
      /** The version read (or written): a file with the same signature need not be read again. */
      readonly signature?: FileSignature;
      /** etcd key -> value */
      readonly entries: ReadonlyMap<string, string>;
    }
  | {
      readonly kind: 'unreadable';
      readonly confPath: string;
      readonly reason: string;
      /** A race with a move, not the file's fault: looked at again, nothing to fix. */
      readonly passing?: true;
      readonly entries: ReadonlyMap<string, string>;
    };

const EMPTY: ReadonlyMap<string, string> = new Map();

/** Every mirrored conf path under `confDir`, never following a symlink out of it. */
export async function scanConfDir(
  confDir: string,
  under = '',
  /** Which files to list (default: the mirrored ones): conflict records, for `link-etcd conflicts`. */
  keep: (confPath: string) => boolean = isMirrored,
): Promise<string[]> {
  const root = await realpath(confDir);
  const found: string[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return;
    }
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const abs = join(dir, name);
      const info = await lstat(abs).catch(() => undefined);
      // Links are not followed: through one, a path could reach link/etcd/, loop, or leave the conf dir.
      if (info?.isDirectory()) {
        if (!isSkippedFolder(childRel)) await walk(abs, childRel);
      } else if (info?.isFile() && keep(childRel)) found.push(childRel);
    }
  };
  await walk(under === '' ? root : join(root, under), under);
  return found.sort();
}

const MAX_FILE_BYTES = SYNC_DEFAULTS.maxFileBytes;

/**
 * lstat, synchronously (microseconds, on the path of every change; see
 * openDir), or undefined when nothing is there.
 */
function lstatQuiet(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw error;
  }
}

/** Where a conf path's file lies: its folder and its name. */
function split(confPath: string): { dir: string; name: string } {
  const cut = confPath.lastIndexOf('/');
  return cut < 0
    ? { dir: '', name: confPath }
    : { dir: confPath.slice(0, cut), name: confPath.slice(cut + 1) };
}

/**
 * Reads one conf file into etcd keys, through descriptors (files/confined.ts):
 * a file behind a symlink, a FIFO, a socket, a device, a file with several
 * hard links, a file over `maxBytes` or one that is not UTF-8 is
 * `unreadable`, named with why. A file that does not parse is `unreadable`
 * too: it pushes nothing until it is fixed. Names that cannot map to a key
 * are passed to `refuse` and skipped.
 */
export async function readConfFile(
  confDir: string,
  l: Layout,
  confPath: string,
  refuse: (what: string, reason: string) => void,
  previous?: FileSnapshot,
  maxBytes: number = MAX_FILE_BYTES,
): Promise<FileSnapshot> {
  const file = join(confDir, confPath);
  const { dir: rel, name } = split(confPath);
  let dir: OpenDir;
  try {
    dir = await openDir(confDir, rel);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { kind: 'missing', confPath, entries: EMPTY };
    return { kind: 'unreadable', confPath, reason: (error as Error).message, entries: EMPTY };
  }
  try {
    // A signature first: the same version as last time needs no read.
    const info = lstatQuiet(dir.at(name));
    if (info === undefined) return { kind: 'missing', confPath, entries: EMPTY };
    if (previous?.kind === 'ok' && previous.signature === signatureOf(info)) return previous;
    const read = await readIn(confDir, dir, name, maxBytes);
    if (read.kind === 'missing') return { kind: 'missing', confPath, entries: EMPTY };
    if (read.kind === 'refused')
      return {
        kind: 'unreadable',
        confPath,
        reason: `${file} ${read.reason}`,
        entries: EMPTY,
        ...(read.passing ? { passing: true as const } : {}),
      };
    return snapshotOf(l, confPath, read.text, file, refuse, read.signature);
  } catch (error) {
    return { kind: 'unreadable', confPath, reason: (error as Error).message, entries: EMPTY };
  } finally {
    await dir.close();
  }
}

/** Parses a conf file's text into etcd keys: no I/O. */
export function snapshotOf(
  l: Layout,
  confPath: string,
  text: string,
  file: string,
  refuse: (what: string, reason: string) => void = () => undefined,
  signature?: FileSignature,
): FileSnapshot {
  try {
    const doc = parseIni(text, file);
    const entries = new Map<string, string>();
    for (const [section, keys] of doc.sections) {
      for (const [key, raw] of keys) {
        const address = { confPath, section, key };
        const refusal = addressRefusal(address);
        if (refusal !== undefined) refuse(`${file} [${section}] ${key}`, refusal);
        else entries.set(keyOf(l, address), decodeValue(raw));
      }
    }
    return { kind: 'ok', confPath, text, entries, ...(signature === undefined ? {} : { signature }) };
  } catch (error) {
    if (error instanceof IniSyntaxError)
      return { kind: 'unreadable', confPath, reason: error.message, entries: EMPTY };
    throw error;
  }
}

/**
 * Applies key writes to one conf file, keeping everything else in it byte
 * for byte, atomically, through descriptors (files/confined.ts): a folder
 * or file that is a symlink is refused, never followed, and a folder moved
 * out of the conf dir during the write has what was written removed.
 * `basedOn` is the text the plan saw: if the file changed since, nothing is
 * written and FileChangedError asks for a new plan.
 */
export async function writeConfFile(
  confDir: string,
  l: Layout,
  confPath: string,
  writes: ReadonlyArray<{ readonly key: string; readonly value: string | undefined }>,
  basedOn: FileSnapshot | undefined,
  check?: (staged: string) => Promise<void>,
  maxBytes: number = MAX_FILE_BYTES,
  removeIfHollow = false,
  onPhase?: ConfinedWrite['onPhase'],
): Promise<{ text: string; signature: FileSignature | undefined; removed?: true }> {
  const file = join(confDir, confPath);
  const { dir: rel, name } = split(confPath);
  let dir: OpenDir | undefined;
  try {
    dir = await openDir(confDir, rel).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    const info = dir === undefined ? undefined : lstatQuiet(dir.at(name));
    if (info !== undefined && !info.isFile())
      throw new UnsafePathError(file, fileRefusal(info) ?? 'is not a regular file');
    const expected = basedOn?.kind === 'ok' ? basedOn.text : undefined;
    // The same version the plan read needs no second read (measured: -0.1 ms per etcd -> file change).
    const unchanged = info !== undefined && basedOn?.kind === 'ok' && basedOn.signature === signatureOf(info);
    let current = unchanged ? expected : undefined;
    if (!unchanged && dir !== undefined && info !== undefined) {
      const read = await readIn(confDir, dir, name, maxBytes);
      if (read.kind === 'refused') throw new UnsafePathError(file, read.reason);
      current = read.kind === 'ok' ? read.text : undefined;
    }
    if (current !== expected) throw new FileChangedError(file);
    const doc = parseIni(current ?? '', file);
    const changes: IniChange[] = [];
    for (const w of writes) {
      const parsed = parseKey(l, w.key);
      if (!parsed.ok) continue;
      const { section, key } = parsed.address;
      changes.push({ section, key, value: w.value === undefined ? undefined : encodeValueLines(w.value) });
    }
    const text = applyIniChanges(doc, changes);
    if (text === current) return { text, signature: undefined };
    if (removeIfHollow && dir !== undefined && info !== undefined && isHollow(text)) {
      // Created by us from keys that are all gone now: nothing a person wrote is left in it.
      await removeIn(confDir, dir, name, signatureOf(info));
      return { text: '', signature: undefined, removed: true };
    }
    if (Buffer.byteLength(text) > maxBytes)
      throw new FileWriteError(file, `it would grow over max_file_size (${maxBytes} bytes)`);
    dir ??= await openDir(confDir, rel, true);
    const signature = await writeIn(confDir, dir, name, text, {
      mode: info === undefined ? 0o600 : info.mode & 0o7777,
      ...(info === undefined ? {} : { owner: { uid: info.uid, gid: info.gid } }),
      // Re-checked right before the rename: a save made while we staged (or a check_cmd ran) is kept.
      expect: info === undefined ? null : signatureOf(info),
      // Put back if its folder moves while we write: a move must never cost the file.
      ...(info === undefined || current === undefined ? {} : { original: current }),
      ...(onPhase === undefined ? {} : { onPhase }),
      ...(check === undefined ? {} : { check }),
    });
    return { text, signature };
  } catch (error) {
    if (error instanceof LinkEtcdError) throw error;
    // A path that cannot hold a file (a parent is a file, no space, read-only): this file waits, the rest goes on.
    const errno = error as NodeJS.ErrnoException;
    if (typeof errno.code === 'string')
      throw new FileWriteError(file, ioFailure(errno as NodeJS.ErrnoException & { code: string }), {
        cause: error,
      });
    throw error;
  } finally {
    await dir?.close();
  }
}

/** Only section headers and blank lines: no key, no comment. */
function isHollow(text: string): boolean {
  return text.split('\n').every((line) => {
    const t = line.trim();
    return t === '' || (t.startsWith('[') && t.endsWith(']'));
  });
}

/** Keeps the losing values of conflicts next to their file, where a person finds them; never mirrored. */
export async function writeConflictRecord(
  confDir: string,
  l: Layout,
  confPath: string,
  conflicts: readonly Conflict[],
  at: Date,
  policy?: string,
): Promise<string> {
  const stamp = at.toISOString().replace(/[:.]/g, '-');
  const file = join(confDir, `${confPath}.conflict-${stamp}`);
  const lines = [
    `; link-etcd conflict record, ${at.toISOString()}`,
    '; Both the file and etcd changed these keys since they last agreed.',
    '; The values below LOST; the winner is in the file and in etcd.',
    ...(policy === undefined ? [] : [`; policy: ${policy}`]),
  ];
  const bySection = new Map<string, string[]>();
  for (const c of conflicts) {
    const parsed = parseKey(l, c.key);
    if (!parsed.ok) continue;
    const entries = bySection.get(parsed.address.section) ?? [];
    entries.push(
      `; ${c.loser} lost to ${c.winner} (${c.winnerValue === undefined ? 'deleted' : encodeValue(c.winnerValue)})`,
    );
    entries.push(`${parsed.address.key} = ${encodeValue(c.loserValue)}`);
    bySection.set(parsed.address.section, entries);
  }
  for (const [section, entries] of bySection) lines.push('', `[${section}]`, ...entries);
  const { dir: rel, name } = split(`${confPath}.conflict-${stamp}`);
  const dir = await openDir(confDir, rel);
  try {
    await createIn(dir, name, `${lines.join('\n')}\n`, 0o600);
    // Both values are in it: a folder moved out of the conf dir meanwhile must not keep them.
    if (!(await stillAt(confDir, dir.fd, rel))) {
      await unlink(dir.at(name)).catch(() => undefined);
      throw new UnsafePathError(file, 'was moved out of the conf dir while link-etcd wrote it: removed');
    }
  } finally {
    await dir.close();
  }
  return file;
}

/**
 * Removes the temp files a crash left behind: ours only (they carry our
 * mark). A temp name says which process wrote it: one whose writer is gone
 * is removed whatever its age, one of this process only if no write of ours
 * holds it now (a daemon that is pid 1 in every container start is its own
 * predecessor), one of a live process never. Names without a pid (the
 * journal's, or an older version's) go once they are a minute old.
 */
export async function removeStaleTemps(confDir: string, olderThanMs = 60_000): Promise<string[]> {
  const removed: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const abs = join(dir, entry.name);
      if (entry.isDirectory() && !entry.name.startsWith('.')) await walk(abs);
      else if (entry.isFile() && entry.name.startsWith(TEMP_MARK) && entry.name.endsWith('.tmp')) {
        const writer = tempWriter(entry.name);
        if (writer === undefined) {
          const info = await lstat(abs).catch(() => undefined);
          if (info === undefined || Date.now() - info.mtimeMs < olderThanMs) continue;
        } else if (writer === process.pid ? inFlightTemps.has(entry.name) : isAlive(writer)) continue;
        await unlink(abs).catch(() => undefined);
        removed.push(relative(confDir, abs));
      }
    }
  };
  await walk(confDir);
  return removed;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: alive, someone else's.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
