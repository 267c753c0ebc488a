import { describe, expect, it } from 'vitest';
import type { FileSnapshot } from '../../src/sync/conf-files.js';
import type { BaseEntry, EtcdEntry } from '../../src/sync/merge.js';
import { gatherInput, type PassSources, readVerdict } from '../../src/sync/pass-input.js';
import { merge, type PlanInput } from '../../src/sync/plan.js';
import { type ReadVerdict, Scheduler, SETTLE_MS } from '../../src/sync/scheduler.js';
import { ManualClock } from '../support/manual-clock.js';

const e = (value: string, modRevision: number): EtcdEntry => ({ value, modRevision });

const ok = (confPath: string, entries: Record<string, string>): FileSnapshot => ({
  kind: 'ok',
  confPath,
  text: Object.entries(entries)
    .map(([k, v]) => `${k} = ${v}\n`)
    .join(''),
  entries: new Map(Object.entries(entries)),
});
const missing = (confPath: string): FileSnapshot => ({ kind: 'missing', confPath, entries: new Map() });
const unreadable = (confPath: string, reason: string): FileSnapshot => ({
  kind: 'unreadable',
  confPath,
  reason,
  entries: new Map(),
});

/** A real scheduler (quiet window 20 ms) whose passes do nothing: for its holding rules. */
const realScheduler = (clock: ManualClock) =>
  new Scheduler(
    {
      pass: async () => {},
      full: async () => {},
      drainStarted() {},
      drained() {},
      passFailed() {},
      fullFailed() {},
    },
    20,
    clock,
  );

/** Plain-object sources: what each part holds, and a log of every call that changes something. */
class Sources implements PassSources {
  full = false;
  settled = false;
  readonly policy = 'etcd-wins' as const;
  readonly calls: string[] = [];
  readonly remembered = new Map<string, FileSnapshot>();
  readonly etcdOf = new Map<string, ReadonlyArray<readonly [string, EtcdEntry]>>();
  readonly baseOf = new Map<string, ReadonlyMap<string, BaseEntry>>();
  readonly mustPlan = new Set<string>();
  readonly settlingFiles = new Set<string>();
  readonly changes = new Map<string, number>();
  /** The scheduler's answer to holdEmptied; default: a newly emptied file is held. */
  hold = (_path: string, emptied: boolean) => emptied;
  /** The scheduler's answer to holdPartial; default: never held (the file quiet long enough). */
  holdCut = (_path: string, _verdict: ReadVerdict) => false;

  readonly files = {
    confDir: '/etc/app',
    last: (path: string) => this.remembered.get(path),
    remember: (path: string, snapshot: FileSnapshot) => {
      this.calls.push(`remember ${path}`);
      this.remembered.set(path, snapshot);
    },
  };
  readonly etcd = { entriesOf: (file: string) => this.etcdOf.get(file) ?? [] };
  readonly base = {
    keysOf: (file: string): ReadonlySet<string> => new Set(this.baseOf.get(file)?.keys() ?? []),
    get: (key: string) => {
      for (const entries of this.baseOf.values()) if (entries.has(key)) return entries.get(key);
      return undefined;
    },
  };
  readonly scheduler = {
    takeMustPlan: (path: string) => this.mustPlan.delete(path),
    settling: (path: string) => this.settlingFiles.has(path),
    holdEmptied: (path: string, emptied: boolean) => {
      this.calls.push(`holdEmptied ${path} ${emptied}`);
      return this.hold(path, emptied);
    },
    holdPartial: (path: string, verdict: ReadVerdict) => this.holdCut(path, verdict),
    lastChange: (side: 'file' | 'etcd', id: string) => this.changes.get(`${side}:${id}`),
  };
  readonly report = {
    unreadableFile: (confPath: string, file: string, reason: string) => {
      this.calls.push(`unreadable ${confPath} ${file} ${reason}`);
    },
    readableFile: (confPath: string) => {
      this.calls.push(`readable ${confPath}`);
    },
  };
}

/** The plain contents of an input, to compare whole. */
function contents(input: PlanInput) {
  return {
    base: Object.fromEntries(input.base),
    files: Object.fromEntries(input.files),
    etcd: Object.fromEntries(input.etcd),
    unreadable: [...input.unreadableFiles],
  };
}
const EMPTY = { base: {}, files: {}, etcd: {}, unreadable: [] };

describe('gatherInput: which files are planned', () => {
  const A = 'a.conf';
  const snap = ok(A, { '/a.conf/S/k': 'v' });
  const planned = {
    base: { '/a.conf/S/k': e('v', 5) },
    files: { '/a.conf/S/k': 'v' },
    etcd: { '/a.conf/S/k': e('v', 5) },
    unreadable: [],
  };
  /** "In sync, nothing to do": the snapshot is the one remembered, nothing asks for a plan. */
  function inSync(): Sources {
    const src = new Sources();
    src.remembered.set(A, snap);
    src.etcdOf.set(A, [['/a.conf/S/k', e('v', 5)]]);
    src.baseOf.set(A, new Map([['/a.conf/S/k', e('v', 5)]]));
    return src;
  }

  it('in sync, nothing to do: an unchanged snapshot is skipped, nothing remembered or reported', () => {
    const src = inSync();
    expect(contents(gatherInput([A], [snap], src))).toEqual(EMPTY);
    expect(src.calls).toEqual([]);
  });

  it.each([
    ['a new snapshot', (_src: Sources) => {}, () => ok(A, { '/a.conf/S/k': 'v' })],
    [
      'a file never read before',
      (src: Sources) => {
        src.remembered.clear();
      },
      () => snap,
    ],
    [
      'a full pass',
      (src: Sources) => {
        src.full = true;
      },
      () => snap,
    ],
    [
      'must-plan (etcd changed, or the last pass failed)',
      (src: Sources) => {
        src.mustPlan.add(A);
      },
      () => snap,
    ],
    [
      'an emptied file still settling',
      (src: Sources) => {
        src.settlingFiles.add(A);
      },
      () => snap,
    ],
  ] as const)('%s: planned', (_name, change, snapshot) => {
    const src = inSync();
    change(src);
    const s = snapshot();
    expect(contents(gatherInput([A], [s], src))).toEqual(planned);
    expect(src.calls).toEqual([`remember ${A}`, `holdEmptied ${A} false`, `readable ${A}`]);
    expect(src.remembered.get(A)).toBe(s);
  });

  it('asking consumes the must-plan mark', () => {
    const src = inSync();
    src.mustPlan.add(A);
    gatherInput([A], [snap], src);
    expect(src.mustPlan.has(A)).toBe(false);
    expect(contents(gatherInput([A], [snap], src))).toEqual(EMPTY);
  });

  it('each path goes with the snapshot at its index', () => {
    const src = inSync();
    const b = ok('b.conf', { '/b.conf/S/k': 'w' });
    const input = gatherInput([A, 'b.conf'], [snap, b], src);
    // a.conf unchanged and skipped; b.conf new.
    expect(contents(input)).toEqual({ ...EMPTY, files: { '/b.conf/S/k': 'w' } });
    expect(input.fileOf('/b.conf/S/k')).toBe('b.conf');
  });
});

describe('gatherInput: emptied files', () => {
  const A = 'a.conf';
  function withBase(): Sources {
    const src = new Sources();
    src.remembered.set(A, ok(A, { '/a.conf/S/k': 'v' }));
    src.etcdOf.set(A, [['/a.conf/S/k', e('v', 5)]]);
    src.baseOf.set(A, new Map([['/a.conf/S/k', e('v', 5)]]));
    return src;
  }

  it.each([
    ['emptied', ok(A, {})],
    ['removed', missing(A)],
  ])('%s while settling: held as unreadable, none of its keys planned, nothing reported', (_n, snapshot) => {
    const src = withBase();
    const input = gatherInput([A], [snapshot], src);
    expect(contents(input)).toEqual({ ...EMPTY, unreadable: [A] });
    expect(src.calls).toEqual([`remember ${A}`, `holdEmptied ${A} true`]);
    expect(merge(input)).toEqual({ toEtcd: [], toFile: [], base: [], conflicts: [] });
  });

  it('emptied and settled (start, --once): taken at its word, the deletion planned', () => {
    const src = withBase();
    src.settled = true;
    const input = gatherInput([A], [ok(A, {})], src);
    expect(contents(input)).toEqual({
      base: { '/a.conf/S/k': e('v', 5) },
      files: {},
      etcd: { '/a.conf/S/k': e('v', 5) },
      unreadable: [],
    });
    // The scheduler is not asked.
    expect(src.calls).toEqual([`remember ${A}`, `readable ${A}`]);
    expect(merge(input).toEtcd).toEqual([
      { key: '/a.conf/S/k', value: undefined, expectRevision: 5, reason: 'deleted in the file' },
    ]);
  });

  it('emptied for SETTLE_MS (the scheduler lets go): the deletion planned', () => {
    const src = withBase();
    src.hold = () => false;
    const input = gatherInput([A], [missing(A)], src);
    expect(src.calls).toEqual([`remember ${A}`, `holdEmptied ${A} true`, `readable ${A}`]);
    expect(merge(input).toEtcd.map((w) => [w.key, w.value])).toEqual([['/a.conf/S/k', undefined]]);
  });

  it('an empty file the base knows no key of is not emptied', () => {
    const src = new Sources();
    const input = gatherInput(['new.conf'], [ok('new.conf', {})], src);
    expect(contents(input)).toEqual(EMPTY);
    expect(src.calls).toEqual(['remember new.conf', 'holdEmptied new.conf false', 'readable new.conf']);
  });

  it('with the real scheduler: held until it stayed empty SETTLE_MS, then planned', async () => {
    const clock = new ManualClock();
    const scheduler = realScheduler(clock);
    const src = withBase();
    const from = Object.assign(src, { scheduler });
    const empty = ok(A, {});
    expect(gatherInput([A], [empty], from).unreadableFiles).toEqual(new Set([A]));
    await clock.advance(SETTLE_MS - 1);
    // The same snapshot again: not skipped, since the file is settling.
    expect(gatherInput([A], [empty], from).unreadableFiles).toEqual(new Set([A]));
    await clock.advance(1);
    const input = gatherInput([A], [empty], from);
    expect(contents(input).unreadable).toEqual([]);
    expect(merge(input).toEtcd.map((w) => w.key)).toEqual(['/a.conf/S/k']);
    // Settled: the same snapshot is skipped from now on.
    expect(contents(gatherInput([A], [empty], from))).toEqual(EMPTY);
  });
});

describe('gatherInput: a save caught halfway', () => {
  const A = 'a.conf';

  it('readVerdict: keys of the base gone, a parse error, no final newline; a whole save is whole', () => {
    const base = new Set(['/a.conf/S/k', '/a.conf/S/j']);
    const whole = ok(A, { '/a.conf/S/k': '1', '/a.conf/S/j': '2', '/a.conf/S/new': '3' });
    expect(readVerdict(whole, base)).toBe('whole');
    expect(readVerdict(ok(A, { '/a.conf/S/k': '1' }), base)).toBe('keys-gone');
    const cutMidLine: FileSnapshot = {
      kind: 'ok',
      confPath: A,
      text: 'k = 1\nj = 2\nnew = 3',
      entries: whole.entries,
    };
    expect(readVerdict(cutMidLine, base)).toBe('cut');
    expect(readVerdict(unreadable(A, 'a.conf:3: expected `key = value`'), base)).toBe('cut');
    // Emptied and missing files are the settle rule's (holdEmptied), not this one's.
    expect(readVerdict(missing(A), base)).toBe('whole');
  });

  it('with the real scheduler: a fresh read that lost a key is held SETTLE_MS (nothing pushed, nothing reported), then counts', async () => {
    const clock = new ManualClock();
    const scheduler = realScheduler(clock);
    const src = new Sources();
    src.baseOf.set(
      A,
      new Map([
        ['/a.conf/S/k', e('v', 5)],
        ['/a.conf/S/j', e('w', 6)],
      ]),
    );
    src.etcdOf.set(A, [
      ['/a.conf/S/k', e('v', 5)],
      ['/a.conf/S/j', e('w', 6)],
    ]);
    const from = Object.assign(src, { scheduler });
    scheduler.fileChanged(A);
    const cut = ok(A, { '/a.conf/S/k': 'v' });
    expect(gatherInput([A], [cut], from).unreadableFiles).toEqual(new Set([A]));
    expect(src.calls.filter((c) => c.startsWith('unreadable') || c.startsWith('readable'))).toEqual([]);
    // A writer may pause between lines: the quiet window (20 ms here) is not enough for deletions.
    await clock.advance(20);
    expect(merge(gatherInput([A], [cut], from)).toEtcd).toEqual([]);
    await clock.advance(SETTLE_MS - 20);
    const input = gatherInput([A], [cut], from);
    expect(contents(input).unreadable).toEqual([]);
    expect(merge(input).toEtcd.map((w) => [w.key, w.value])).toEqual([['/a.conf/S/j', undefined]]);
  });

  it('with the real scheduler: a fresh whole save is planned from the first read', () => {
    const clock = new ManualClock();
    const scheduler = realScheduler(clock);
    const src = new Sources();
    src.baseOf.set(A, new Map([['/a.conf/S/k', e('v', 5)]]));
    src.etcdOf.set(A, [['/a.conf/S/k', e('v', 5)]]);
    const from = Object.assign(src, { scheduler });
    scheduler.fileChanged(A);
    const input = gatherInput([A], [ok(A, { '/a.conf/S/k': 'edited' })], from);
    expect(merge(input).toEtcd.map((w) => [w.key, w.value])).toEqual([['/a.conf/S/k', 'edited']]);
  });
});

describe('gatherInput: unreadable files', () => {
  const A = 'a.conf';
  it('reported once, and its keys are in no write', () => {
    const src = new Sources();
    src.etcdOf.set(A, [
      ['/a.conf/S/k', e('changed in etcd', 9)],
      ['/a.conf/S/new', e('n', 10)],
    ]);
    src.baseOf.set(A, new Map([['/a.conf/S/k', e('v', 5)]]));
    const bad = unreadable(A, 'line 3: no section');
    const input = gatherInput([A], [bad], src);
    expect(src.calls).toEqual([
      `remember ${A}`,
      `holdEmptied ${A} false`,
      `unreadable ${A} /etc/app/${A} line 3: no section`,
    ]);
    expect([...input.unreadableFiles]).toEqual([A]);
    expect(input.fileOf('/a.conf/S/k')).toBe(A);
    expect(input.fileOf('/a.conf/S/new')).toBe(A);
    expect(merge(input)).toEqual({ toEtcd: [], toFile: [], base: [], conflicts: [] });
    // The same unreadable snapshot again: skipped, not reported again.
    gatherInput([A], [bad], src);
    expect(src.calls.filter((c) => c.startsWith('unreadable'))).toHaveLength(1);
  });

  it('keys of the readable files next to it are planned', () => {
    const src = new Sources();
    const input = gatherInput(
      [A, 'b.conf'],
      [unreadable(A, 'bad'), ok('b.conf', { '/b.conf/S/k': 'w' })],
      src,
    );
    expect(merge(input).toEtcd.map((w) => w.key)).toEqual(['/b.conf/S/k']);
  });
});

describe('gatherInput: the three states of each file', () => {
  it('keys of each state land in base, files and etcd, and fileOf names their file', () => {
    const src = new Sources();
    src.etcdOf.set('a.conf', [
      ['/a.conf/S/both', e('1', 3)],
      ['/a.conf/S/etcd-only', e('2', 4)],
    ]);
    src.etcdOf.set('d/b.conf', [['/d/b.conf/S/x', e('3', 6)]]);
    src.baseOf.set('a.conf', new Map([['/a.conf/S/base-only', e('4', 2)]]));
    const input = gatherInput(
      ['a.conf', 'd/b.conf'],
      [ok('a.conf', { '/a.conf/S/both': '1', '/a.conf/S/file-only': '5' }), ok('d/b.conf', {})],
      src,
    );
    expect(contents(input)).toEqual({
      base: { '/a.conf/S/base-only': e('4', 2) },
      files: { '/a.conf/S/both': '1', '/a.conf/S/file-only': '5' },
      etcd: { '/a.conf/S/both': e('1', 3), '/a.conf/S/etcd-only': e('2', 4), '/d/b.conf/S/x': e('3', 6) },
      unreadable: [],
    });
    for (const key of ['/a.conf/S/both', '/a.conf/S/etcd-only', '/a.conf/S/base-only', '/a.conf/S/file-only'])
      expect(input.fileOf(key)).toBe('a.conf');
    expect(input.fileOf('/d/b.conf/S/x')).toBe('d/b.conf');
    expect(input.fileOf('/unknown.conf/S/k')).toBe('');
    expect(input.policy).toBe('etcd-wins');
  });

  it('changedAt reads the scheduler: etcd per key, the files per file', () => {
    const src = new Sources();
    src.changes.set('etcd:/a.conf/S/k', 7);
    src.changes.set('file:a.conf', 11);
    src.changes.set('file:/a.conf/S/k', 99); // Not how the file side is timed.
    const input = gatherInput(['a.conf'], [ok('a.conf', { '/a.conf/S/k': 'v' })], src);
    expect(input.changedAt?.('etcd', '/a.conf/S/k')).toBe(7);
    expect(input.changedAt?.('file', '/a.conf/S/k')).toBe(11);
    expect(input.changedAt?.('etcd', '/a.conf/S/other')).toBeUndefined();
    expect(input.changedAt?.('file', '/unknown.conf/S/k')).toBeUndefined();
  });
});
