/**
 * The three-way merge of one key: what each side did since the base (the
 * last value both agreed on) picks a cell of one table, and the cell says
 * what to write and why. Changing how link-etcd merges means editing the
 * table; nothing else decides.
 */

export type Side = 'file' | 'etcd';

export interface EtcdEntry {
  readonly value: string;
  readonly modRevision: number;
}

/** The last value both sides agreed on, and the etcd mod revision it had. */
export type BaseEntry = EtcdEntry;

/** When each side last changed a key (ms; larger is newer), for the `newest` policy. */
export type ChangedAt = (side: Side, key: string) => number | undefined;

/** Who wins a key both sides changed differently since the base. A tie of `newest` goes to etcd: the shared side, what the fleet already sees. */
export const CONFLICT_POLICIES = {
  'etcd-wins': () => 'etcd',
  'file-wins': () => 'file',
  newest: (at: { readonly file: number; readonly etcd: number }) => (at.file > at.etcd ? 'file' : 'etcd'),
} as const satisfies Record<string, (at: { readonly file: number; readonly etcd: number }) => Side>;

export type ConflictPolicy = keyof typeof CONFLICT_POLICIES;
export const CONFLICT_POLICY_NAMES = Object.keys(CONFLICT_POLICIES) as readonly ConflictPolicy[];

/** What one side did to a key since the base. Without a base a key is either `new` or `absent`. */
type WithBase = 'same' | 'changed' | 'deleted';
type WithoutBase = 'new' | 'absent';
export type Move = WithBase | WithoutBase;

/**
 * - `agree`: both sides hold the same value; only the base may need to follow.
 * - `to-file` / `to-etcd`: carry one side's value (or deletion) to the other.
 * - `conflict`: both changed, differently; the policy picks the direction.
 */
export type Outcome = 'agree' | 'to-file' | 'to-etcd' | 'conflict';

export interface Cell {
  readonly outcome: Outcome;
  readonly reason: string;
}

const cell = (outcome: Outcome, reason: string): Cell => ({ outcome, reason });
const AGREE = cell('agree', 'both sides agree');
const CONFLICT = cell('conflict', 'both sides changed differently');

/**
 * Row: what the file did; column: what etcd did. A change beats a deletion:
 * nothing is lost that way. Cells where both sides must hold the same value
 * (`same`/`same`, `deleted`/`deleted`) only reach the base.
 */
export const MERGE_TABLE = {
  same: {
    same: AGREE,
    changed: cell('to-file', 'changed in etcd'),
    deleted: cell('to-file', 'deleted in etcd'),
  },
  changed: {
    same: cell('to-etcd', 'changed in the file'),
    changed: CONFLICT,
    deleted: cell('to-etcd', 'changed in the file, deleted in etcd: the change wins'),
  },
  deleted: {
    same: cell('to-etcd', 'deleted in the file'),
    changed: cell('to-file', 'changed in etcd, deleted in the file: the change wins'),
    deleted: AGREE,
  },
  absent: {
    absent: AGREE,
    new: cell('to-file', 'new in etcd'),
  },
  new: {
    absent: cell('to-etcd', 'new in the file'),
    new: CONFLICT,
  },
} as const satisfies { readonly [F in WithBase]: Record<WithBase, Cell> } & {
  readonly [F in WithoutBase]: Record<WithoutBase, Cell>;
};

/** What a side did since the base, judged on values: a rewrite of the same value is no change. */
export function moveOf(base: BaseEntry | undefined, value: string | undefined): Move {
  if (base === undefined) return value === undefined ? 'absent' : 'new';
  if (value === undefined) return 'deleted';
  return value === base.value ? 'same' : 'changed';
}

/** The table's cell for one key; values that already agree always `agree`, whatever the moves. */
export function cellOf(
  base: BaseEntry | undefined,
  file: string | undefined,
  etcd: EtcdEntry | undefined,
): Cell {
  if (file === etcd?.value) return AGREE;
  const f = moveOf(base, file);
  const e = moveOf(base, etcd?.value);
  const row = MERGE_TABLE[f] as Readonly<Record<Move, Cell | undefined>>;
  // Rows and columns come from the same base, so they are always of the same kind.
  return row[e] ?? AGREE;
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

export type Decision =
  | { readonly kind: 'none' }
  | { readonly kind: 'base'; readonly entry: BaseEntry | undefined }
  | { readonly kind: 'to-etcd'; readonly write: EtcdWrite; readonly conflict?: Conflict }
  | { readonly kind: 'to-file'; readonly write: FileWrite; readonly conflict?: Conflict };

/** One key, three values: what to do. */
export function decide(
  key: string,
  b: BaseEntry | undefined,
  f: string | undefined,
  e: EtcdEntry | undefined,
  policy: ConflictPolicy,
  changedAt?: ChangedAt,
): Decision {
  const { outcome, reason } = cellOf(b, f, e);
  switch (outcome) {
    case 'agree':
      // The base follows etcd (a rewrite of the same value moves its revision); nothing to do if it already does.
      if (e === undefined) return b === undefined ? { kind: 'none' } : { kind: 'base', entry: undefined };
      return b?.value === e.value && b.modRevision === e.modRevision
        ? { kind: 'none' }
        : { kind: 'base', entry: e };
    case 'to-file':
      return { kind: 'to-file', write: { key, value: e?.value, revision: e?.modRevision ?? 0, reason } };
    case 'to-etcd':
      return { kind: 'to-etcd', write: { key, value: f, expectRevision: e?.modRevision ?? 0, reason } };
    case 'conflict': {
      // Only reached with a value on each side: a deletion against a change is not a conflict.
      const fileValue = f as string;
      const etcdEntry = e as EtcdEntry;
      const winner = pickWinner(key, policy, changedAt);
      const conflict: Conflict =
        winner === 'etcd'
          ? { key, winner, loser: 'file', winnerValue: etcdEntry.value, loserValue: fileValue }
          : { key, winner, loser: 'etcd', winnerValue: fileValue, loserValue: etcdEntry.value };
      return winner === 'etcd'
        ? {
            kind: 'to-file',
            write: {
              key,
              value: etcdEntry.value,
              revision: etcdEntry.modRevision,
              reason: `conflict: etcd wins (${policy})`,
            },
            conflict,
          }
        : {
            kind: 'to-etcd',
            write: {
              key,
              value: fileValue,
              expectRevision: etcdEntry.modRevision,
              reason: `conflict: the file wins (${policy})`,
            },
            conflict,
          };
    }
  }
}

function pickWinner(key: string, policy: ConflictPolicy, changedAt?: ChangedAt): Side {
  const at = {
    file: changedAt?.('file', key) ?? Number.NEGATIVE_INFINITY,
    etcd: changedAt?.('etcd', key) ?? Number.NEGATIVE_INFINITY,
  };
  return CONFLICT_POLICIES[policy](at);
}
