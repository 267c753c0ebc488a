import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../files/atomic-write.js';
import type { BaseEntry } from './merge.js';

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
  | { readonly ok: true; readonly base: Map<string, BaseEntry> }
  | {
      readonly ok: false;
      readonly base: Map<string, BaseEntry>;
      readonly reason: string;
      /** No journal at all: a first run, not a problem. */
      readonly first: boolean;
    };

/** Reads the base; a missing or corrupt journal is an empty base, with the reason to log. */
export async function loadBase(path: string): Promise<LoadedBase> {
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

/** Writes the base atomically (temp, fsync, rename): a crash leaves the old journal or the new one. */
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
}
