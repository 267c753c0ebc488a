/**
 * The reconciler: a pure function from the last agreed state (the base) and
 * both sides' current state to the writes that make them agree again. No I/O,
 * no clock: time enters only as the observation times the caller passes.
 */

export type Side = 'file' | 'etcd';
export type ConflictPolicy = 'etcd-wins' | 'file-wins' | 'newest';
export const CONFLICT_POLICIES: readonly ConflictPolicy[] = ['etcd-wins', 'file-wins', 'newest'];

export interface EtcdEntry {
  readonly value: string;
  readonly modRevision: number;
}

/** The last value both sides agreed on, and the etcd mod revision it had. */
export type BaseEntry = EtcdEntry;

export interface PlanInput {
  readonly base: ReadonlyMap<string, BaseEntry>;
  /** Key -> value of every key the files hold, for files that parsed. */
  readonly files: ReadonlyMap<string, string>;
  readonly etcd: ReadonlyMap<string, EtcdEntry>;
  /** Which file a key belongs to; keys of files that did not parse are left alone on both sides. */
  readonly fileOf: (key: string) => string;
  readonly unreadableFiles: ReadonlySet<string>;
  readonly policy: ConflictPolicy;
  /** When each side last changed a key, for the `newest` policy (ms; larger is newer). */
  readonly changedAt?: (side: Side, key: string) => number | undefined;
  /** Mass-deletion guard. */
  readonly guard: MassDeleteGuard;
}

export interface MassDeleteGuard {
  /** The conf dir is missing or holds no mirrored file: never delete from etcd because of it. */
  readonly confDirEmpty: boolean;
  /** A person confirmed: carry mass deletions over. */
  readonly allowMassDelete: boolean;
  /** Share of the base's keys one side may lose at once, across several files, before deletions stop. */
  readonly maxDeleteShare: number;
  /**
   * What each side has lost overall, when the plan covers only some files
   * (a pass over the files that changed): the guard judges the whole, or a
   * mass deletion would slip through one file at a time. Default: counted
   * from this input.
   */
  readonly overall?: { readonly total: number; readonly file: Loss; readonly etcd: Loss };
  /**
   * Sides already held back by an earlier pass: their deletions stay held
   * (a put in the meantime must not dilute the share and let them through)
   * until none is left to hold, when the lost keys came back.
   */
  readonly holding?: ReadonlySet<Side>;
}

/** Below this many mirrored keys, "lost every key" is a small edit, not a wiped side. */
export const MASS_DELETE_MIN_KEYS = 10;

export interface Loss {
  readonly keys: number;
  readonly files: number;
}

export interface EtcdWrite {
  readonly key: string;
  /** Undefined: delete. */
  readonly value: string | undefined;
  /** The mod revision the key must still have (0: must not exist), or the write is retried later. */
  readonly expectRevision: number;
  readonly reason: string;
}

export interface FileWrite {
  readonly key: string;
  readonly value: string | undefined;
  /** The etcd revision this value has, for the base. 0 for a deletion. */
  readonly revision: number;
  readonly reason: string;
}

export interface Conflict {
  readonly key: string;
  readonly winner: Side;
  readonly loser: Side;
  readonly winnerValue: string | undefined;
  readonly loserValue: string;
}

export interface Blocked {
  /** The side that lost keys; its deletions are not carried to the other side. */
  readonly side: Side | 'conf-dir';
  readonly deletions: number;
  readonly of: number;
  readonly files: number;
}

export interface Plan {
  readonly toEtcd: readonly EtcdWrite[];
  readonly toFile: readonly FileWrite[];
  /** Keys both sides already agree on whose base is stale (set) or gone (undefined). */
  readonly base: ReadonlyArray<readonly [string, BaseEntry | undefined]>;
  readonly conflicts: readonly Conflict[];
  readonly blocked: readonly Blocked[];
}

type Decision =
  | { readonly kind: 'none' }
  | { readonly kind: 'base'; readonly entry: BaseEntry | undefined }
  | { readonly kind: 'etcd'; readonly write: EtcdWrite; readonly conflict?: Conflict }
  | { readonly kind: 'file'; readonly write: FileWrite; readonly conflict?: Conflict };

/** One key, three values: what to do. The whole merge logic is here. */
export function decide(
  key: string,
  b: BaseEntry | undefined,
  f: string | undefined,
  e: EtcdEntry | undefined,
  policy: ConflictPolicy,
  changedAt?: PlanInput['changedAt'],
): Decision {
  const toFile = (reason: string, conflict?: Conflict): Decision => ({
    kind: 'file',
    write: { key, value: e?.value, revision: e?.modRevision ?? 0, reason },
    ...(conflict ? { conflict } : {}),
  });
  const toEtcd = (reason: string, conflict?: Conflict): Decision => ({
    kind: 'etcd',
    write: { key, value: f, expectRevision: e?.modRevision ?? 0, reason },
    ...(conflict ? { conflict } : {}),
  });

  if (f === e?.value) {
    if (e === undefined) return b === undefined ? { kind: 'none' } : { kind: 'base', entry: undefined };
    return b?.value === e.value && b.modRevision === e.modRevision
      ? { kind: 'none' }
      : { kind: 'base', entry: e };
  }
  if (f === b?.value)
    return toFile(e === undefined ? 'deleted in etcd' : b === undefined ? 'new in etcd' : 'changed in etcd');
  if (e?.value === b?.value) {
    return toEtcd(
      f === undefined ? 'deleted in the file' : b === undefined ? 'new in the file' : 'changed in the file',
    );
  }
  // Both changed since the base, differently. A change beats a deletion: nothing is lost that way.
  if (f === undefined) return toFile('changed in etcd, deleted in the file: the change wins');
  if (e === undefined) return toEtcd('changed in the file, deleted in etcd: the change wins');
  const winner = pickWinner(key, policy, changedAt);
  return winner === 'etcd'
    ? toFile(`conflict: etcd wins (${policy})`, {
        key,
        winner: 'etcd',
        loser: 'file',
        winnerValue: e.value,
        loserValue: f,
      })
    : toEtcd(`conflict: the file wins (${policy})`, {
        key,
        winner: 'file',
        loser: 'etcd',
        winnerValue: f,
        loserValue: e.value,
      });
}

function pickWinner(key: string, policy: ConflictPolicy, changedAt?: PlanInput['changedAt']): Side {
  if (policy !== 'newest') return policy === 'file-wins' ? 'file' : 'etcd';
  const file = changedAt?.('file', key) ?? Number.NEGATIVE_INFINITY;
  const etcd = changedAt?.('etcd', key) ?? Number.NEGATIVE_INFINITY;
  // A tie goes to etcd: the shared side, what the rest of the fleet already sees.
  return file > etcd ? 'file' : 'etcd';
}

/** Base keys a side has lost, and across how many files: the input of the mass-deletion guard. */
export function losses(
  input: Pick<PlanInput, 'base' | 'files' | 'etcd' | 'fileOf' | 'unreadableFiles'>,
  side: Side,
): Loss {
  const files = new Set<string>();
  let keys = 0;
  for (const key of input.base.keys()) {
    const file = input.fileOf(key);
    if (input.unreadableFiles.has(file)) continue;
    const present = side === 'file' ? input.files.has(key) : input.etcd.has(key);
    if (!present) {
      keys++;
      files.add(file);
    }
  }
  return { keys, files: files.size };
}

/**
 * The writes that bring both sides to agreement, each with its reason; the
 * conflicts decided on the way; deletions held back by the mass-deletion guard.
 */
export function plan(input: PlanInput): Plan {
  const toEtcd: EtcdWrite[] = [];
  const toFile: FileWrite[] = [];
  const base: Array<readonly [string, BaseEntry | undefined]> = [];
  const conflicts: Conflict[] = [];
  const blocked: Blocked[] = [];

  const total = input.guard.overall?.total ?? input.base.size;
  const guardSide = (side: Side): Blocked | undefined => {
    if (input.guard.allowMassDelete) return undefined;
    const lost = input.guard.overall?.[side] ?? losses(input, side);
    if (side === 'file' && input.guard.confDirEmpty && total > 0) {
      return { side: 'conf-dir', deletions: lost.keys, of: total, files: 0 };
    }
    // Several files losing most keys at once, or a side losing every key it had (an emptied etcd).
    const most = lost.files > 1 && lost.keys > total * input.guard.maxDeleteShare;
    const all = total >= MASS_DELETE_MIN_KEYS && lost.keys >= total;
    if (most || all || input.guard.holding?.has(side)) {
      return { side, deletions: lost.keys, of: total, files: lost.files };
    }
    return undefined;
  };
  const fileGuard = guardSide('file');
  const etcdGuard = guardSide('etcd');
  const holdFileDeletions = fileGuard !== undefined;
  const holdEtcdDeletions = etcdGuard !== undefined;
  let heldFile = 0;
  let heldEtcd = 0;

  // Each key once, without building a union of all three (100,000 keys: three arrays and a set saved).
  for (const key of input.base.keys()) visit(key);
  for (const key of input.files.keys()) if (!input.base.has(key)) visit(key);
  for (const key of input.etcd.keys()) if (!input.base.has(key) && !input.files.has(key)) visit(key);
  // A guard that held nothing back has nothing to report: the lost keys came back, or were never planned away.
  if (fileGuard && (heldFile > 0 || fileGuard.side === 'conf-dir'))
    blocked.push({ ...fileGuard, deletions: heldFile });
  if (etcdGuard && heldEtcd > 0) blocked.push({ ...etcdGuard, deletions: heldEtcd });
  return { toEtcd, toFile, base, conflicts, blocked };

  function visit(key: string): void {
    if (input.unreadableFiles.has(input.fileOf(key))) return;
    const d = decide(
      key,
      input.base.get(key),
      input.files.get(key),
      input.etcd.get(key),
      input.policy,
      input.changedAt,
    );
    switch (d.kind) {
      case 'none':
        break;
      case 'base':
        base.push([key, d.entry]);
        break;
      case 'etcd':
        if (d.write.value === undefined && holdFileDeletions) {
          heldFile++;
          break;
        }
        toEtcd.push(d.write);
        if (d.conflict) conflicts.push(d.conflict);
        break;
      case 'file':
        if (d.write.value === undefined && holdEtcdDeletions) {
          heldEtcd++;
          break;
        }
        toFile.push(d.write);
        if (d.conflict) conflicts.push(d.conflict);
        break;
    }
  }
}
