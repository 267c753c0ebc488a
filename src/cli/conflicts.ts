import { readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeValue } from '../ini/escape.js';
import { parseIni } from '../ini/parse.js';
import { keyOf, layout } from '../layout/mapping.js';
import type { EtcdMiddleware } from '../middleware/middleware.js';
import { maskValue } from '../secrets.js';
import { scanConfDir } from '../sync/conf-files.js';

/** `<conf path>.conflict-<stamp>`: written by the daemon (sync/conf-files.ts writeConflictRecord). */
const OPEN_RECORD = /^(.+\.conf)\.conflict-(\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z)$/;
/** Where a resolved record goes: the same folder, `.resolved-<stamp>`; never mirrored (no `.conf` ending). */
export const RESOLVED_SUFFIX = '.resolved-';

type Side = 'file' | 'etcd';

/** One key of an open conflict record. Values are the real ones: mask them before printing. */
export interface ConflictEntry {
  /** The record, relative to the conf dir. */
  readonly record: string;
  readonly file: string;
  readonly section: string;
  readonly key: string;
  /** When the conflict was recorded (ISO 8601). */
  readonly at: string;
  readonly winner: Side;
  readonly loser: Side;
  /** undefined: the winner deleted the key. */
  readonly winnerValue: string | undefined;
  readonly loserValue: string;
  /** The conflict policy that decided (records from before it was written down have none). */
  readonly policy?: string;
}

/** An entry as it may be printed or served: values of secret-looking keys masked, and its state now. */
export interface ShownConflict extends Omit<ConflictEntry, 'winnerValue' | 'policy'> {
  readonly winnerValue: string | null;
  /** The conflict policy that decided, or null when the record does not say. */
  readonly policy: string | null;
  /**
   * `open`: the winner's value is on both sides, as the daemon left it;
   * `edited`: the file (or etcd) holds something else since: resolved by hand.
   */
  readonly state: 'open' | 'edited';
  readonly fileValue: string | null;
  readonly etcdValue: string | null;
}

/** Every open conflict record under the conf dir, relative paths, sorted. */
export function findRecords(confDir: string): Promise<string[]> {
  return scanConfDir(confDir, '', (path) => OPEN_RECORD.test(path.slice(path.lastIndexOf('/') + 1))).catch(
    () => [] as string[],
  );
}

/** A value as the engine reads it back from what encodeValue wrote (quoted forms decoded). */
function decode(raw: string): string {
  return decodeValue(parseIni(`[x]\nv = ${raw}\n`, 'record').sections.get('x')?.get('v') ?? raw);
}

/** The entries of one record (see writeConflictRecord for its format). */
export function parseRecord(record: string, text: string): ConflictEntry[] {
  const name = record.slice(record.lastIndexOf('/') + 1);
  const m = OPEN_RECORD.exec(name);
  if (!m) return [];
  const dir = record.includes('/') ? record.slice(0, record.lastIndexOf('/') + 1) : '';
  const file = `${dir}${m[1]}`;
  const header = /^; link-etcd conflict record, (\S+)/.exec(text);
  // Records written before the policy line have none.
  const policy = /^; policy: (\S+)$/m.exec(text)?.[1];
  const at = header?.[1] ?? (m[2] as string).replace(/T(\d\d)-(\d\d)-(\d\d)-(\d{3})Z$/, 'T$1:$2:$3.$4Z');
  const values = parseIni(text, record).sections;
  const out: ConflictEntry[] = [];
  let section = '';
  let pending: { loser: Side; winner: Side; winnerValue: string | undefined } | undefined;
  for (const line of text.split('\n')) {
    const t = line.trim();
    const lost = /^; (file|etcd) lost to (file|etcd) \((.*)\)$/.exec(t);
    if (t.startsWith('[') && t.endsWith(']')) section = t.slice(1, -1);
    else if (lost)
      pending = {
        loser: lost[1] as Side,
        winner: lost[2] as Side,
        winnerValue: lost[3] === 'deleted' ? undefined : decode(lost[3] as string),
      };
    else if (pending && !t.startsWith(';') && !t.startsWith('#') && line.includes('=')) {
      const key = line.slice(0, line.indexOf('=')).trim();
      const loserText = values.get(section)?.get(key);
      const loserValue = loserText === undefined ? undefined : decodeValue(loserText);
      if (loserValue !== undefined)
        out.push({
          record,
          file,
          section,
          key,
          at,
          ...pending,
          loserValue,
          ...(policy === undefined ? {} : { policy }),
        });
      pending = undefined;
    }
  }
  return out;
}

/** Every entry of every open record. */
export async function readConflicts(confDir: string): Promise<ConflictEntry[]> {
  const out: ConflictEntry[] = [];
  for (const record of await findRecords(confDir)) {
    const text = await readFile(join(confDir, record), 'utf8').catch(() => undefined);
    if (text !== undefined) out.push(...parseRecord(record, text));
  }
  return out;
}

async function fileValues(
  confDir: string,
  file: string,
): Promise<ReadonlyMap<string, ReadonlyMap<string, string>>> {
  const text = await readFile(join(confDir, file), 'utf8').catch(() => undefined);
  if (text === undefined) return new Map();
  try {
    return parseIni(text, file).sections;
  } catch {
    return new Map();
  }
}

/** The entries with their state now (file and etcd read), values masked. */
export async function showConflicts(
  confDir: string,
  prefix: string,
  entries: readonly ConflictEntry[],
  etcd: EtcdMiddleware | undefined,
): Promise<ShownConflict[]> {
  const l = layout(prefix);
  const out: ShownConflict[] = [];
  for (const e of entries) {
    const sections = await fileValues(confDir, e.file);
    const fileText = sections.get(e.section)?.get(e.key);
    const fileValue = fileText === undefined ? undefined : decodeValue(fileText);
    const etcdKey = keyOf(l, { confPath: e.file, section: e.section, key: e.key });
    const etcdValue =
      etcd === undefined ? undefined : (await etcd.snapshot(etcdKey)).entries.get(etcdKey)?.value;
    const winnerInPlace = fileValue === e.winnerValue && (etcd === undefined || etcdValue === e.winnerValue);
    const mask = (v: string | undefined) => (v === undefined ? null : maskValue(e.key, v));
    out.push({
      record: e.record,
      file: e.file,
      section: e.section,
      key: e.key,
      at: e.at,
      winner: e.winner,
      loser: e.loser,
      winnerValue: mask(e.winnerValue),
      loserValue: maskValue(e.key, e.loserValue),
      policy: e.policy ?? null,
      state: winnerInPlace ? 'open' : 'edited',
      fileValue: mask(fileValue),
      etcdValue: mask(etcdValue),
    });
  }
  return out;
}

/** One line per entry, for a person. */
export function describeConflicts(shown: readonly ShownConflict[]): string[] {
  if (shown.length === 0) return ['no open conflicts'];
  return shown.map(
    (c) =>
      `${c.file} [${c.section}] ${c.key}: ${c.winner} won with ${c.winnerValue ?? '(deleted)'}${c.policy === null ? '' : ` (${c.policy})`}, ${c.loser} lost ${c.loserValue} (${c.at}, ${c.record})${c.state === 'edited' ? ' - edited since: resolved by hand?' : ''}`,
  );
}

/** `file` is a conf path or a record; `key` is `KEY` or `SECTION/KEY`. */
export function selectConflicts(
  entries: readonly ConflictEntry[],
  file: string,
  key: string | undefined,
): ConflictEntry[] {
  const slash = key?.lastIndexOf('/') ?? -1;
  const section = key !== undefined && slash >= 0 ? key.slice(0, slash) : undefined;
  const name = key !== undefined && slash >= 0 ? key.slice(slash + 1) : key;
  return entries.filter(
    (e) =>
      (e.file === file || e.record === file) &&
      (name === undefined || (e.key === name && (section === undefined || e.section === section))),
  );
}

/**
 * Applies the kept value and archives what was resolved. The value goes to
 * etcd (a compare-and-swap on the key's revision): the daemon carries it
 * into the file like any other etcd change. Keeping the winner writes
 * nothing: it is on both sides already.
 */
export async function resolveConflicts(
  confDir: string,
  prefix: string,
  chosen: readonly ConflictEntry[],
  keep: 'winner' | 'loser',
  etcd: EtcdMiddleware,
): Promise<string[]> {
  const l = layout(prefix);
  if (keep === 'loser') {
    for (const e of chosen) {
      const etcdKey = keyOf(l, { confPath: e.file, section: e.section, key: e.key });
      const now = (await etcd.snapshot(etcdKey)).entries.get(etcdKey);
      const landed = await etcd.writeIfUnchanged([
        { key: etcdKey, value: e.loserValue, expectRevision: now?.modRevision ?? 0 },
      ]);
      if (landed === undefined && now?.value !== e.loserValue)
        throw new Error(`${etcdKey} changed in etcd meanwhile: run link-etcd conflicts again`);
    }
  }
  const archived: string[] = [];
  const byRecord = new Map<string, ConflictEntry[]>();
  for (const e of chosen) byRecord.set(e.record, [...(byRecord.get(e.record) ?? []), e]);
  for (const [record, done] of byRecord) {
    const abs = join(confDir, record);
    const text = await readFile(abs, 'utf8');
    const all = parseRecord(record, text);
    const resolvedName = record.replace(/\.conflict-(?=[^/]*$)/, RESOLVED_SUFFIX);
    const note = `; resolved ${new Date().toISOString()}: kept the ${keep}'s value\n`;
    if (all.every((e) => done.some((d) => d.section === e.section && d.key === e.key))) {
      // Appended, not renamed over: an archive of an earlier partial resolve keeps its entries.
      await writeFile(join(confDir, resolvedName), `${text}${note}`, { flag: 'a', mode: 0o600 });
      await unlink(abs);
    } else {
      // Some keys stay open: they stay in the record, the resolved ones are moved to the archive.
      const { kept, moved } = splitRecord(text, done);
      await writeFile(join(confDir, resolvedName), `${moved}${note}`, { flag: 'a', mode: 0o600 });
      await writeFile(abs, kept, { mode: 0o600 });
    }
    archived.push(resolvedName);
  }
  return archived;
}

/** The record's lines without the entries of `done` (each is a `; ... lost to ...` line and its `key = value`). */
function splitRecord(text: string, done: readonly ConflictEntry[]): { kept: string; moved: string } {
  const lines = text.split('\n');
  const kept: string[] = [];
  const moved: string[] = [];
  let section = '';
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const t = line.trim();
    if (t.startsWith('[') && t.endsWith(']')) section = t.slice(1, -1);
    const next = lines[i + 1] ?? '';
    const key = next.includes('=') ? next.slice(0, next.indexOf('=')).trim() : undefined;
    if (/^; (file|etcd) lost to /.test(t) && done.some((d) => d.section === section && d.key === key)) {
      moved.push(`[${section}]`, line, next);
      i++;
      // A value continued on indented lines goes with it.
      while (i + 1 < lines.length && /^[ \t]+\S/.test(lines[i + 1] as string))
        moved.push(lines[++i] as string);
      continue;
    }
    kept.push(line);
  }
  return { kept: kept.join('\n'), moved: `${moved.join('\n')}\n` };
}
