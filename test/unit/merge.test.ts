import { describe, expect, it } from 'vitest';
import {
  type BaseEntry,
  type Cell,
  type ChangedAt,
  CONFLICT_POLICIES,
  CONFLICT_POLICY_NAMES,
  type ConflictPolicy,
  cellOf,
  type Decision,
  decide,
  type EtcdEntry,
  MERGE_TABLE,
  type Move,
  moveOf,
} from '../../src/sync/merge.js';

const e = (value: string, modRevision: number): EtcdEntry => ({ value, modRevision });
const KEY = '/a.conf/S/k';

describe('moveOf: what one side did since the base', () => {
  const base = e('v', 5);
  it.each([
    ['kept the value', base, 'v', 'same'],
    ['changed the value', base, 'w', 'changed'],
    ['deleted the key', base, undefined, 'deleted'],
    ['rewrote the same value (a new revision is no change)', e('v', 9), 'v', 'same'],
    ['changed to the empty string', base, '', 'changed'],
    ['no base, a value: new', undefined, 'v', 'new'],
    ['no base, the empty string: new', undefined, '', 'new'],
    ['no base, no value: absent', undefined, undefined, 'absent'],
  ] as const)('%s', (_name, b, value, move) => {
    expect(moveOf(b, value)).toBe(move);
  });
});

type Expected =
  | { kind: 'none' }
  | { kind: 'base'; entry: BaseEntry | undefined }
  | { kind: 'to-file'; value: string | undefined; revision: number; reason: string }
  | { kind: 'to-etcd'; value: string | undefined; expectRevision: number; reason: string };

/** The decision spelled out in full: a row checks every field, not only the kind. */
function expected(x: Expected, key = KEY): Decision {
  switch (x.kind) {
    case 'none':
      return { kind: 'none' };
    case 'base':
      return { kind: 'base', entry: x.entry };
    case 'to-file':
      return { kind: 'to-file', write: { key, value: x.value, revision: x.revision, reason: x.reason } };
    case 'to-etcd':
      return {
        kind: 'to-etcd',
        write: { key, value: x.value, expectRevision: x.expectRevision, reason: x.reason },
      };
  }
}

describe('decide: one key, three states', () => {
  const b = e('v', 5);
  // Row 1 is "in sync, nothing to do"; every other row changes one thing of it (two for "both ..." rows).
  const rows: ReadonlyArray<
    readonly [string, BaseEntry | undefined, string | undefined, EtcdEntry | undefined, Expected]
  > = [
    ['in sync, nothing to do', b, 'v', e('v', 5), { kind: 'none' }],
    // etcd revision
    ['base stale: etcd rewrote the same value', b, 'v', e('v', 9), { kind: 'base', entry: e('v', 9) }],
    // etcd value
    [
      'changed in etcd',
      b,
      'v',
      e('w', 9),
      { kind: 'to-file', value: 'w', revision: 9, reason: 'changed in etcd' },
    ],
    [
      'deleted in etcd',
      b,
      'v',
      undefined,
      { kind: 'to-file', value: undefined, revision: 0, reason: 'deleted in etcd' },
    ],
    // file value
    [
      'changed in the file',
      b,
      'w',
      e('v', 5),
      { kind: 'to-etcd', value: 'w', expectRevision: 5, reason: 'changed in the file' },
    ],
    [
      'changed in the file to the empty string',
      b,
      '',
      e('v', 5),
      { kind: 'to-etcd', value: '', expectRevision: 5, reason: 'changed in the file' },
    ],
    [
      'deleted in the file',
      b,
      undefined,
      e('v', 5),
      { kind: 'to-etcd', value: undefined, expectRevision: 5, reason: 'deleted in the file' },
    ],
    // base missing
    ['base missing, both hold the same value', undefined, 'v', e('v', 5), { kind: 'base', entry: e('v', 5) }],
    [
      'base missing, new in the file',
      undefined,
      'w',
      undefined,
      { kind: 'to-etcd', value: 'w', expectRevision: 0, reason: 'new in the file' },
    ],
    [
      'base missing, new in etcd',
      undefined,
      undefined,
      e('w', 9),
      { kind: 'to-file', value: 'w', revision: 9, reason: 'new in etcd' },
    ],
    ['base missing, absent on both sides', undefined, undefined, undefined, { kind: 'none' }],
    // both sides
    ['both changed alike', b, 'w', e('w', 9), { kind: 'base', entry: e('w', 9) }],
    ['both deleted', b, undefined, undefined, { kind: 'base', entry: undefined }],
    [
      'file deleted, etcd changed: the change wins',
      b,
      undefined,
      e('w', 9),
      {
        kind: 'to-file',
        value: 'w',
        revision: 9,
        reason: 'changed in etcd, deleted in the file: the change wins',
      },
    ],
    [
      'etcd deleted, file changed: the change wins',
      b,
      'w',
      undefined,
      {
        kind: 'to-etcd',
        value: 'w',
        expectRevision: 0,
        reason: 'changed in the file, deleted in etcd: the change wins',
      },
    ],
  ];

  it.each(rows)('%s', (_name, base, file, etcd, want) => {
    for (const policy of CONFLICT_POLICY_NAMES) {
      // Without a conflict the policy plays no part.
      expect(decide(KEY, base, file, etcd, policy)).toEqual(expected(want));
    }
  });

  it.each([
    ['both changed differently', e('v', 5), 'x', e('y', 9)],
    ['both new, different', undefined, 'x', e('y', 9)],
  ] as const)('%s: etcd wins by default, the file value is recorded as the loser', (_n, base, file, etcd) => {
    expect(decide(KEY, base, file, etcd, 'etcd-wins')).toEqual({
      kind: 'to-file',
      write: { key: KEY, value: 'y', revision: 9, reason: 'conflict: etcd wins (etcd-wins)' },
      conflict: { key: KEY, winner: 'etcd', loser: 'file', winnerValue: 'y', loserValue: 'x' },
    });
  });

  // Moved from plan.test.ts: every assertion it had.
  it('records the loser of a conflict, and follows the policy', () => {
    const etcdWins = decide('/k', e('v', 1), 'file-value', e('etcd-value', 2), 'etcd-wins');
    expect(etcdWins).toMatchObject({
      kind: 'to-file',
      write: { value: 'etcd-value' },
      conflict: { winner: 'etcd', loser: 'file', loserValue: 'file-value' },
    });
    const fileWins = decide('/k', e('v', 1), 'file-value', e('etcd-value', 2), 'file-wins');
    expect(fileWins).toMatchObject({
      kind: 'to-etcd',
      write: { value: 'file-value', expectRevision: 2 },
      conflict: { winner: 'file', loser: 'etcd', loserValue: 'etcd-value' },
    });
    const newest = (fileAt: number, etcdAt: number) =>
      decide('/k', e('v', 1), 'f', e('x', 2), 'newest', (side) => (side === 'file' ? fileAt : etcdAt)).kind;
    expect(newest(10, 5)).toBe('to-etcd');
    expect(newest(5, 10)).toBe('to-file');
    expect(newest(5, 5)).toBe('to-file');
  });
});

describe('MERGE_TABLE: every cell is reachable, and its reason is what the decision says', () => {
  const base = e('v', 5);
  /** Values that make one side do `move` against `base` (or against no base). */
  const sideValue: Record<Move, { b: BaseEntry | undefined; value: string | undefined }> = {
    same: { b: base, value: 'v' },
    changed: { b: base, value: 'changed' },
    deleted: { b: base, value: undefined },
    new: { b: undefined, value: 'new' },
    absent: { b: undefined, value: undefined },
  };
  // 'changed'/'changed' and 'new'/'new' need two different values to be a conflict.
  const etcdValue = (move: Move) =>
    move === 'changed' ? 'changed-in-etcd' : move === 'new' ? 'new-in-etcd' : sideValue[move].value;

  const cells = Object.entries(MERGE_TABLE).flatMap(([fileMove, row]) =>
    Object.entries(row).map(
      ([etcdMove, cell]) => [fileMove as Move, etcdMove as Move, cell as Cell] as const,
    ),
  );

  it('has the 13 cells: 3x3 with a base, 2x2 without', () => {
    expect(cells).toHaveLength(13);
  });

  it.each(cells)('file %s, etcd %s', (fileMove, etcdMove, cell) => {
    const b = sideValue[fileMove].b;
    const file = sideValue[fileMove].value;
    const ev = etcdValue(etcdMove);
    const etcd = ev === undefined ? undefined : e(ev, 9);
    expect(moveOf(b, file)).toBe(fileMove);
    expect(moveOf(b, ev)).toBe(etcdMove);
    expect(cellOf(b, file, etcd)).toBe(cell);
    const d = decide(KEY, b, file, etcd, 'etcd-wins');
    switch (cell.outcome) {
      case 'agree':
        expect(['none', 'base']).toContain(d.kind);
        break;
      case 'to-file':
      case 'to-etcd':
        expect(d.kind).toBe(cell.outcome);
        expect(d.kind !== 'none' && d.kind !== 'base' && d.write.reason).toBe(cell.reason);
        expect(d).not.toHaveProperty('conflict');
        break;
      case 'conflict':
        expect(cell.reason).toBe('both sides changed differently');
        expect(d).toMatchObject({
          kind: 'to-file',
          write: { reason: 'conflict: etcd wins (etcd-wins)' },
          conflict: { key: KEY, winner: 'etcd', loser: 'file', loserValue: file },
        });
        break;
    }
  });

  it('values that already agree agree, whatever the moves say', () => {
    // 'changed'/'changed' with the same value is not a conflict.
    expect(cellOf(base, 'w', e('w', 9))).toEqual({ outcome: 'agree', reason: 'both sides agree' });
    expect(cellOf(undefined, 'w', e('w', 9))).toEqual({ outcome: 'agree', reason: 'both sides agree' });
  });
});

describe('conflict policies: the winner is written, the loser recorded', () => {
  const base = e('v', 5);
  const at =
    (file: number | undefined, etcd: number | undefined): ChangedAt =>
    (side, key) => {
      expect(key).toBe(KEY);
      return side === 'file' ? file : etcd;
    };
  const etcdWon = (policy: ConflictPolicy) => ({
    kind: 'to-file',
    write: { key: KEY, value: 'E', revision: 9, reason: `conflict: etcd wins (${policy})` },
    conflict: { key: KEY, winner: 'etcd', loser: 'file', winnerValue: 'E', loserValue: 'F' },
  });
  const fileWon = (policy: ConflictPolicy) => ({
    kind: 'to-etcd',
    write: { key: KEY, value: 'F', expectRevision: 9, reason: `conflict: the file wins (${policy})` },
    conflict: { key: KEY, winner: 'file', loser: 'etcd', winnerValue: 'F', loserValue: 'E' },
  });

  it.each([
    ['etcd-wins, whatever the times', 'etcd-wins', at(20, 10), etcdWon],
    ['file-wins, whatever the times', 'file-wins', at(10, 20), fileWon],
    ['newest: the file changed last', 'newest', at(20, 10), fileWon],
    ['newest: etcd changed last', 'newest', at(10, 20), etcdWon],
    ['newest: a tie goes to etcd', 'newest', at(10, 10), etcdWon],
    ['newest: no time for either side goes to etcd', 'newest', at(undefined, undefined), etcdWon],
    ['newest: no time for etcd, the file has one', 'newest', at(0, undefined), fileWon],
    ['newest: no time for the file, etcd has one', 'newest', at(undefined, 0), etcdWon],
    ['newest: without changedAt at all', 'newest', undefined, etcdWon],
  ] as const)('%s', (_name, policy, changedAt, want) => {
    expect(decide(KEY, base, 'F', e('E', 9), policy, changedAt)).toEqual(want(policy));
  });

  it('the policy only decides conflicts: a one-sided change under newest ignores the times', () => {
    expect(decide(KEY, base, 'v', e('E', 9), 'newest', at(99, 1))).toMatchObject({
      kind: 'to-file',
      write: { value: 'E', reason: 'changed in etcd' },
    });
    expect(decide(KEY, base, 'F', e('v', 5), 'newest', at(1, 99))).toMatchObject({
      kind: 'to-etcd',
      write: { value: 'F', reason: 'changed in the file' },
    });
  });

  it('CONFLICT_POLICIES names the three policies, newest breaking a tie for etcd', () => {
    expect(CONFLICT_POLICY_NAMES).toEqual(['etcd-wins', 'file-wins', 'newest']);
    expect(CONFLICT_POLICIES.newest({ file: 1, etcd: 1 })).toBe('etcd');
    expect(CONFLICT_POLICIES.newest({ file: 2, etcd: 1 })).toBe('file');
    expect(CONFLICT_POLICIES['etcd-wins']()).toBe('etcd');
    expect(CONFLICT_POLICIES['file-wins']()).toBe('file');
  });
});
