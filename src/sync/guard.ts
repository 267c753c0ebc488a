/**
 * The mass-deletion guard, applied to what the merge decided: if the conf dir
 * vanished or emptied (an unmounted volume), or one side lost most of its
 * keys at once, deletions are not carried to the other side until a person
 * confirms. Pure: what each side lost comes in as counts.
 */
import type { EtcdWrite, FileWrite, Side } from './merge.js';

/** Below this many mirrored keys, "lost every key" is a small edit, not a wiped side. */
export const MASS_DELETE_MIN_KEYS = 10;

export interface Loss {
  readonly keys: number;
  readonly files: number;
}

export interface Blocked {
  /** The side that lost keys; its deletions are not carried to the other side. */
  readonly side: Side | 'conf-dir';
  readonly deletions: number;
  readonly of: number;
  readonly files: number;
}

export interface GuardSettings {
  /** A person confirmed: carry mass deletions over. */
  readonly allowMassDelete: boolean;
  /** Share of the base's keys one side may lose at once, across several files, before deletions stop. */
  readonly maxDeleteShare: number;
}

export interface GuardInput extends GuardSettings {
  /** Mirrored keys in the whole base. */
  readonly total: number;
  /** What each side has lost against the whole base (not only the files of this pass). */
  readonly lost: { readonly file: Loss; readonly etcd: Loss };
  /** The conf dir is missing or holds no mirrored file: never delete from etcd because of it. */
  readonly confDirEmpty: boolean;
  /**
   * Sides already held back: their deletions stay held (a put meanwhile must
   * not dilute the share and let them through) until none is left to hold.
   */
  readonly holding: ReadonlySet<Side>;
}

/** The side whose deletions are held, and why, before counting what the plan wanted to delete. */
export function judge(input: GuardInput, side: Side): Blocked | undefined {
  if (input.allowMassDelete) return undefined;
  const lost = input.lost[side];
  if (side === 'file' && input.confDirEmpty && input.total > 0) {
    return { side: 'conf-dir', deletions: lost.keys, of: input.total, files: 0 };
  }
  // Several files losing most keys at once, or a side losing every key it had (an emptied etcd).
  const most = lost.files > 1 && lost.keys > input.total * input.maxDeleteShare;
  const all = input.total >= MASS_DELETE_MIN_KEYS && lost.keys >= input.total;
  if (most || all || input.holding.has(side)) {
    return { side, deletions: lost.keys, of: input.total, files: lost.files };
  }
  return undefined;
}

export interface Guarded<E extends EtcdWrite, F extends FileWrite> {
  readonly toEtcd: readonly E[];
  readonly toFile: readonly F[];
  readonly blocked: readonly Blocked[];
}

/**
 * Drops the deletions a held side would carry over. A deletion in the files
 * goes to etcd (held when the file side is blocked), and the reverse.
 * A guard that held nothing has nothing to report (the keys came back),
 * except an empty conf dir, which is news however little it holds back.
 */
export function guard<E extends EtcdWrite, F extends FileWrite>(
  writes: { readonly toEtcd: readonly E[]; readonly toFile: readonly F[] },
  input: GuardInput,
): Guarded<E, F> {
  const fileSide = judge(input, 'file');
  const etcdSide = judge(input, 'etcd');
  const toEtcd = fileSide ? writes.toEtcd.filter((w) => w.value !== undefined) : writes.toEtcd;
  const toFile = etcdSide ? writes.toFile.filter((w) => w.value !== undefined) : writes.toFile;
  const heldFile = writes.toEtcd.length - toEtcd.length;
  const heldEtcd = writes.toFile.length - toFile.length;
  const blocked: Blocked[] = [];
  if (fileSide && (heldFile > 0 || fileSide.side === 'conf-dir'))
    blocked.push({ ...fileSide, deletions: heldFile });
  if (etcdSide && heldEtcd > 0) blocked.push({ ...etcdSide, deletions: heldEtcd });
  return { toEtcd, toFile, blocked };
}

/** Whether a set of writes deletes anything (only then is the guard worth its counting). */
export function deletes(writes: {
  readonly toEtcd: readonly EtcdWrite[];
  readonly toFile: readonly FileWrite[];
}): boolean {
  return writes.toEtcd.some((w) => w.value === undefined) || writes.toFile.some((w) => w.value === undefined);
}

/** The sides an earlier pass held back. */
export function holdingOf(blocked: readonly Blocked[]): ReadonlySet<Side> {
  return new Set(blocked.map((b) => (b.side === 'etcd' ? 'etcd' : 'file')));
}

/**
 * The guard's state after a pass. A full pass sees everything and decides
 * it; a pass over a few files can only raise it: what it holds replaces the
 * hold of the same side, the other side's hold stays. When it holds nothing
 * while something is held, it asks for a full pass to clear it.
 */
export function nextBlocked(
  current: readonly Blocked[],
  pass: readonly Blocked[],
  full: boolean,
): { readonly blocked: readonly Blocked[]; readonly changed: boolean; readonly askFull: boolean } {
  const sideOf = (b: Blocked) => (b.side === 'etcd' ? 'etcd' : 'file');
  const raised = new Set(pass.map(sideOf));
  // Same order as a plan reports them: the file side first.
  const blocked = full
    ? pass
    : [...current.filter((b) => !raised.has(sideOf(b))), ...pass].sort(
        (a, b) => Number(sideOf(a) === 'etcd') - Number(sideOf(b) === 'etcd'),
      );
  const askFull = !full && pass.length === 0 && current.length > 0;
  return { blocked, changed: JSON.stringify(blocked) !== JSON.stringify(current), askFull };
}

/** How a file of the base looks now, for counting losses across the whole base. */
export type FileView =
  /** Gone or empty on disk: all its keys are lost. */
  | 'gone'
  /** Does not parse: it pushes nothing, deletions included, so it loses nothing. */
  | 'unreadable'
  /** On disk but not read yet: nothing known to be lost. */
  | 'unread'
  | { readonly has: (key: string) => boolean };

/** What each side has lost against the base: keys, and across how many files. */
export function lossesAcross(
  base: Iterable<readonly [file: string, keys: ReadonlySet<string>]>,
  fileView: (file: string) => FileView,
  inEtcd: (key: string) => boolean,
): { readonly file: Loss; readonly etcd: Loss } {
  const file = { keys: 0, files: 0 };
  const etcd = { keys: 0, files: 0 };
  for (const [path, keys] of base) {
    const view = fileView(path);
    if (view === 'unreadable') continue;
    let lostHere = 0;
    if (view === 'gone') lostHere = keys.size;
    else if (view !== 'unread') for (const k of keys) if (!view.has(k)) lostHere++;
    if (lostHere > 0) {
      file.keys += lostHere;
      file.files++;
    }
    let goneHere = 0;
    for (const k of keys) if (!inEtcd(k)) goneHere++;
    if (goneHere > 0) {
      etcd.keys += goneHere;
      etcd.files++;
    }
  }
  return { file, etcd };
}
