import { describe, expect, it } from 'vitest';
import {
  type Blocked,
  deletes,
  type FileView,
  type GuardInput,
  guard,
  holdingOf,
  judge,
  lossesAcross,
  MASS_DELETE_MIN_KEYS,
  nextBlocked,
} from '../../src/sync/guard.js';
import type { EtcdWrite, FileWrite, Side } from '../../src/sync/merge.js';

const NONE = { keys: 0, files: 0 };

/** "Nothing lost": the row every other row changes one thing of. */
const calm: GuardInput = {
  allowMassDelete: false,
  maxDeleteShare: 0.5,
  total: 8,
  lost: { file: NONE, etcd: NONE },
  confDirEmpty: false,
  holding: new Set(),
};

const putToEtcd: EtcdWrite = {
  key: '/a.conf/S/put',
  value: 'v',
  expectRevision: 3,
  reason: 'changed in the file',
};
const delToEtcd: EtcdWrite = {
  key: '/b.conf/S/del',
  value: undefined,
  expectRevision: 4,
  reason: 'deleted in the file',
};
const putToFile: FileWrite = { key: '/c.conf/S/put', value: 'w', revision: 7, reason: 'changed in etcd' };
const delToFile: FileWrite = {
  key: '/d.conf/S/del',
  value: undefined,
  revision: 0,
  reason: 'deleted in etcd',
};
const writes = { toEtcd: [putToEtcd, delToEtcd], toFile: [putToFile, delToFile] };

describe('guard: which writes survive, and what is reported held', () => {
  const rows: ReadonlyArray<
    readonly [
      string,
      Partial<GuardInput>,
      { toEtcd: readonly EtcdWrite[]; toFile: readonly FileWrite[]; blocked: readonly Blocked[] },
      // The writes the merge decided; default: a put and a deletion each way.
      { toEtcd: readonly EtcdWrite[]; toFile: readonly FileWrite[] }?,
    ]
  > = [
    ['nothing lost: writes untouched', {}, { ...writes, blocked: [] }],
    [
      'the file side lost one file: carried over',
      { lost: { file: { keys: 2, files: 1 }, etcd: NONE } },
      { ...writes, blocked: [] },
    ],
    [
      'one file held most keys and lost them all: still one file, carried over',
      { lost: { file: { keys: 7, files: 1 }, etcd: NONE } },
      { ...writes, blocked: [] },
    ],
    [
      'the file side lost more than the share across files: its deletions are held',
      { lost: { file: { keys: 5, files: 2 }, etcd: NONE } },
      {
        toEtcd: [putToEtcd],
        toFile: [putToFile, delToFile],
        blocked: [{ side: 'file', deletions: 1, of: 8, files: 2 }],
      },
    ],
    [
      'the file side lost exactly the share: not held',
      { lost: { file: { keys: 4, files: 2 }, etcd: NONE } },
      { ...writes, blocked: [] },
    ],
    [
      'a lower share holds what the default lets through',
      { lost: { file: { keys: 4, files: 2 }, etcd: NONE }, maxDeleteShare: 0.25 },
      {
        toEtcd: [putToEtcd],
        toFile: [putToFile, delToFile],
        blocked: [{ side: 'file', deletions: 1, of: 8, files: 2 }],
      },
    ],
    [
      'etcd lost more than the share across files: deletions to the files are held',
      { lost: { file: NONE, etcd: { keys: 6, files: 3 } } },
      {
        toEtcd: [putToEtcd, delToEtcd],
        toFile: [putToFile],
        blocked: [{ side: 'etcd', deletions: 1, of: 8, files: 3 }],
      },
    ],
    [
      `etcd lost every key of one file, total = MASS_DELETE_MIN_KEYS (${MASS_DELETE_MIN_KEYS}): held`,
      { total: MASS_DELETE_MIN_KEYS, lost: { file: NONE, etcd: { keys: MASS_DELETE_MIN_KEYS, files: 1 } } },
      {
        toEtcd: [putToEtcd, delToEtcd],
        toFile: [putToFile],
        blocked: [{ side: 'etcd', deletions: 1, of: MASS_DELETE_MIN_KEYS, files: 1 }],
      },
    ],
    [
      'etcd lost every key of one file, total below MASS_DELETE_MIN_KEYS: a small edit, carried over',
      {
        total: MASS_DELETE_MIN_KEYS - 1,
        lost: { file: NONE, etcd: { keys: MASS_DELETE_MIN_KEYS - 1, files: 1 } },
      },
      { ...writes, blocked: [] },
    ],
    [
      'the conf dir is empty: deletions to etcd are held, puts pass',
      { confDirEmpty: true },
      {
        toEtcd: [putToEtcd],
        toFile: [putToFile, delToFile],
        blocked: [{ side: 'conf-dir', deletions: 1, of: 8, files: 0 }],
      },
    ],
    [
      'the conf dir is empty and nothing to delete: still reported',
      { confDirEmpty: true },
      {
        toEtcd: [putToEtcd],
        toFile: [putToFile],
        blocked: [{ side: 'conf-dir', deletions: 0, of: 8, files: 0 }],
      },
      { toEtcd: [putToEtcd], toFile: [putToFile] },
    ],
    [
      'the conf dir is empty but the base is too: nothing to protect',
      { confDirEmpty: true, total: 0 },
      { ...writes, blocked: [] },
    ],
    [
      'allowMassDelete: nothing held, whatever was lost',
      {
        allowMassDelete: true,
        confDirEmpty: true,
        lost: { file: { keys: 8, files: 4 }, etcd: { keys: 8, files: 4 } },
        holding: new Set<Side>(['file', 'etcd']),
      },
      { ...writes, blocked: [] },
    ],
    [
      'the file side is held from before: its deletions stay held though little is lost now',
      { holding: new Set<Side>(['file']) },
      {
        toEtcd: [putToEtcd],
        toFile: [putToFile, delToFile],
        blocked: [{ side: 'file', deletions: 1, of: 8, files: 0 }],
      },
    ],
    [
      'etcd is held from before',
      { holding: new Set<Side>(['etcd']), lost: { file: NONE, etcd: { keys: 1, files: 1 } } },
      {
        toEtcd: [putToEtcd, delToEtcd],
        toFile: [putToFile],
        blocked: [{ side: 'etcd', deletions: 1, of: 8, files: 1 }],
      },
    ],
    [
      'etcd is held from before, but nothing deletes in the files: nothing to report',
      { holding: new Set<Side>(['etcd']) },
      { toEtcd: [putToEtcd, delToEtcd], toFile: [putToFile], blocked: [] },
      { toEtcd: [putToEtcd, delToEtcd], toFile: [putToFile] },
    ],
    [
      'both sides lost most keys: both held',
      { lost: { file: { keys: 5, files: 2 }, etcd: { keys: 5, files: 2 } } },
      {
        toEtcd: [putToEtcd],
        toFile: [putToFile],
        blocked: [
          { side: 'file', deletions: 1, of: 8, files: 2 },
          { side: 'etcd', deletions: 1, of: 8, files: 2 },
        ],
      },
    ],
  ];

  it.each(rows.map(([name, over, want, given]) => ({ name, over, want, given })))(
    '$name',
    ({ over, want, given }) => {
      const input = given ?? writes;
      const out = guard(input, { ...calm, ...over });
      expect(out).toEqual(want);
      // Survivors are the very writes handed in, in order.
      for (const w of out.toEtcd) expect(input.toEtcd).toContain(w);
      for (const w of out.toFile) expect(input.toFile).toContain(w);
    },
  );

  it('holds every deletion of a blocked side, and counts them', () => {
    const many = Array.from({ length: 3 }, (_, i): EtcdWrite => ({ ...delToEtcd, key: `/f${i}.conf/S/k` }));
    const out = guard({ toEtcd: [...many, putToEtcd], toFile: [] }, { ...calm, confDirEmpty: true });
    expect(out.toEtcd).toEqual([putToEtcd]);
    expect(out.blocked).toEqual([{ side: 'conf-dir', deletions: 3, of: 8, files: 0 }]);
  });
});

describe('judge: the side held back, before counting what the plan deletes', () => {
  it.each([
    ['nothing lost', {}, 'file', undefined],
    ['nothing lost (etcd)', {}, 'etcd', undefined],
    [
      'file side: more than the share across files',
      { lost: { file: { keys: 5, files: 2 }, etcd: NONE } },
      'file',
      { side: 'file', deletions: 5, of: 8, files: 2 },
    ],
    [
      'the other side is not judged by it',
      { lost: { file: { keys: 5, files: 2 }, etcd: NONE } },
      'etcd',
      undefined,
    ],
    [
      'an empty conf dir blocks the file side as conf-dir',
      { confDirEmpty: true, lost: { file: { keys: 8, files: 4 }, etcd: NONE } },
      'file',
      { side: 'conf-dir', deletions: 8, of: 8, files: 0 },
    ],
    ['an empty conf dir says nothing of etcd', { confDirEmpty: true }, 'etcd', undefined],
    [
      'every key lost, total >= MASS_DELETE_MIN_KEYS',
      { total: 10, lost: { file: NONE, etcd: { keys: 10, files: 1 } } },
      'etcd',
      { side: 'etcd', deletions: 10, of: 10, files: 1 },
    ],
    [
      'every key lost, total below',
      { total: 9, lost: { file: NONE, etcd: { keys: 9, files: 1 } } },
      'etcd',
      undefined,
    ],
    [
      'holding',
      { holding: new Set<Side>(['etcd']) },
      'etcd',
      { side: 'etcd', deletions: 0, of: 8, files: 0 },
    ],
    [
      'allowMassDelete',
      {
        allowMassDelete: true,
        holding: new Set<Side>(['etcd']),
        lost: { file: NONE, etcd: { keys: 8, files: 4 } },
      },
      'etcd',
      undefined,
    ],
  ] as const)('%s', (_name, over, side, want) => {
    expect(judge({ ...calm, ...over }, side)).toEqual(want);
  });
});

describe('deletes and holdingOf', () => {
  it('deletes: only a write without a value deletes', () => {
    expect(deletes({ toEtcd: [], toFile: [] })).toBe(false);
    expect(deletes({ toEtcd: [putToEtcd], toFile: [putToFile] })).toBe(false);
    expect(deletes({ toEtcd: [putToEtcd, delToEtcd], toFile: [putToFile] })).toBe(true);
    expect(deletes({ toEtcd: [putToEtcd], toFile: [delToFile] })).toBe(true);
    // The empty string is a value.
    expect(deletes({ toEtcd: [{ ...putToEtcd, value: '' }], toFile: [{ ...putToFile, value: '' }] })).toBe(
      false,
    );
  });

  it('holdingOf: a conf-dir block holds the file side', () => {
    const b = (side: Blocked['side']): Blocked => ({ side, deletions: 1, of: 2, files: 1 });
    expect([...holdingOf([])]).toEqual([]);
    expect([...holdingOf([b('conf-dir')])]).toEqual(['file']);
    expect([...holdingOf([b('file')])]).toEqual(['file']);
    expect([...holdingOf([b('etcd')])]).toEqual(['etcd']);
    expect([...holdingOf([b('file'), b('etcd')])].sort()).toEqual(['etcd', 'file']);
  });
});

describe('nextBlocked: the guard state after a pass', () => {
  const fileBlock: Blocked = { side: 'file', deletions: 3, of: 8, files: 3 };
  const etcdBlock: Blocked = { side: 'etcd', deletions: 2, of: 8, files: 2 };
  const confDir: Blocked = { side: 'conf-dir', deletions: 0, of: 8, files: 0 };

  it.each([
    ['full pass, nothing held before or now', [], [], true, { blocked: [], changed: false, askFull: false }],
    [
      'full pass sets what it found',
      [],
      [fileBlock],
      true,
      { blocked: [fileBlock], changed: true, askFull: false },
    ],
    ['full pass clears', [fileBlock], [], true, { blocked: [], changed: true, askFull: false }],
    [
      'full pass replaces',
      [fileBlock],
      [etcdBlock],
      true,
      { blocked: [etcdBlock], changed: true, askFull: false },
    ],
    [
      'full pass, the same again: unchanged',
      [fileBlock],
      [{ ...fileBlock }],
      true,
      { blocked: [fileBlock], changed: false, askFull: false },
    ],
    [
      'full pass, the same side with another count: changed',
      [fileBlock],
      [{ ...fileBlock, deletions: 4 }],
      true,
      { blocked: [{ ...fileBlock, deletions: 4 }], changed: true, askFull: false },
    ],
    [
      'partial pass, nothing held before or now',
      [],
      [],
      false,
      { blocked: [], changed: false, askFull: false },
    ],
    ['partial pass raises', [], [confDir], false, { blocked: [confDir], changed: true, askFull: false }],
    [
      'partial pass cannot clear: it keeps the block and asks for a full pass',
      [fileBlock],
      [],
      false,
      { blocked: [fileBlock], changed: false, askFull: true },
    ],
  ] as const)('%s', (_name, current, pass, full, want) => {
    expect(nextBlocked(current, pass, full)).toEqual(want);
  });

  // Suspected bug (see the report): a partial pass that holds one side's deletions replaces the whole
  // state, so a block of the other side vanishes without a full pass and stops `holding` that side.
  it('a partial pass holding one side keeps the block of the other side', () => {
    const next = nextBlocked([fileBlock, etcdBlock], [{ ...fileBlock, deletions: 1 }], false);
    expect(next.blocked.map((b) => b.side)).toContain('etcd');
  });
});

describe('lossesAcross: what each side lost against the whole base', () => {
  const base = new Map<string, ReadonlySet<string>>([
    ['a.conf', new Set(['a1', 'a2'])],
    ['b.conf', new Set(['b1'])],
    ['c.conf', new Set(['c1', 'c2', 'c3'])],
  ]);
  const all = new Set([...base.values()].flatMap((s) => [...s]));
  const has = (keys: Iterable<string>): FileView => {
    const set = new Set(keys);
    return { has: (k) => set.has(k) };
  };
  const everyFile: FileView = has(all);

  it.each([
    ['nothing lost', {}, [], { file: NONE, etcd: NONE }],
    ['a file gone: all its keys', { 'a.conf': 'gone' }, [], { file: { keys: 2, files: 1 }, etcd: NONE }],
    ['a file not read yet: nothing known lost', { 'a.conf': 'unread' }, [], { file: NONE, etcd: NONE }],
    [
      'a file missing one key',
      { 'c.conf': has(['c1', 'c3']) },
      [],
      { file: { keys: 1, files: 1 }, etcd: NONE },
    ],
    [
      'two files missing keys',
      { 'a.conf': 'gone', 'c.conf': has(['c2']) },
      [],
      { file: { keys: 4, files: 2 }, etcd: NONE },
    ],
    ['a file unreadable: loses nothing', { 'a.conf': 'unreadable' }, [], { file: NONE, etcd: NONE }],
    ['etcd lost keys of one file', {}, ['c1', 'c2'], { file: NONE, etcd: { keys: 2, files: 1 } }],
    ['etcd lost keys across files', {}, ['a1', 'b1', 'c3'], { file: NONE, etcd: { keys: 3, files: 3 } }],
    [
      'an unreadable file skips both sides: its keys gone from etcd are not counted',
      { 'a.conf': 'unreadable' },
      ['a1', 'b1'],
      { file: NONE, etcd: { keys: 1, files: 1 } },
    ],
    [
      'an unread file still counts etcd losses',
      { 'a.conf': 'unread' },
      ['a1', 'a2'],
      { file: NONE, etcd: { keys: 2, files: 1 } },
    ],
    [
      'both sides at once',
      { 'b.conf': 'gone' },
      ['a2'],
      { file: { keys: 1, files: 1 }, etcd: { keys: 1, files: 1 } },
    ],
  ] as const)('%s', (_name, views, goneFromEtcd, want) => {
    const gone = new Set<string>(goneFromEtcd);
    const seen: string[] = [];
    const lost = lossesAcross(
      base,
      (file) => {
        seen.push(file);
        return (views as Record<string, FileView>)[file] ?? everyFile;
      },
      (key) => all.has(key) && !gone.has(key),
    );
    expect(lost).toEqual(want);
    expect(seen).toEqual(['a.conf', 'b.conf', 'c.conf']);
  });
});
