import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Blocked, holdingOf, MASS_DELETE_MIN_KEYS, nextBlocked } from '../../src/sync/guard.js';
import type { BaseEntry, Conflict, ConflictPolicy, EtcdEntry, Side } from '../../src/sync/merge.js';
import { type Plan, type PlanGuard, type PlanInput, plan as planWith } from '../../src/sync/plan.js';

const e = (value: string, modRevision: number): EtcdEntry => ({ value, modRevision });
const open = { confDirEmpty: false, allowMassDelete: false, maxDeleteShare: 0.5 };

type TestInput = PlanInput & { readonly guard: PlanGuard };

function plan(i: TestInput): Plan {
  return planWith(i, i.guard);
}

function input(over: Partial<TestInput>): TestInput {
  return {
    base: new Map(),
    files: new Map(),
    etcd: new Map(),
    fileOf: (key) => key.split('/').slice(0, -2).join('/'),
    unreadableFiles: new Set(),
    policy: 'etcd-wins',
    guard: open,
    ...over,
  };
}

describe('plan: the mass-deletion guard', () => {
  const keys = ['/a.conf/S/k', '/b.conf/S/k', '/c.conf/S/k', '/d.conf/S/k'];
  const base = new Map(keys.map((k, i) => [k, e('v', i + 1)] as const));
  const etcd = new Map(base);

  it('carries a single removed file over', () => {
    const files = new Map(keys.slice(1).map((k) => [k, 'v'] as const));
    expect(plan(input({ base, files, etcd })).toEtcd).toEqual([
      { key: '/a.conf/S/k', value: undefined, expectRevision: 1, reason: 'deleted in the file' },
    ]);
  });

  it('holds back deletions when most keys vanish from several files at once, until allowed', () => {
    const files = new Map([[keys[0] as string, 'v']]);
    const held = plan(input({ base, files, etcd }));
    expect(held.toEtcd).toEqual([]);
    expect(held.blocked).toEqual([{ side: 'file', deletions: 3, of: 4, files: 3 }]);
    const allowed = plan(input({ base, files, etcd, guard: { ...open, allowMassDelete: true } }));
    expect(allowed.toEtcd.map((w) => w.key)).toEqual(keys.slice(1));
  });

  it('never deletes from etcd because the conf dir is missing or empty, but still writes etcd changes to files', () => {
    const changed = new Map(etcd).set('/new.conf/S/k', e('n', 9));
    const held = plan(
      input({ base, files: new Map(), etcd: changed, guard: { ...open, confDirEmpty: true } }),
    );
    expect(held.toEtcd).toEqual([]);
    expect(held.blocked[0]?.side).toBe('conf-dir');
    expect(held.toFile.map((w) => w.key)).toEqual(['/new.conf/S/k']);
  });

  it('holds back deletions to files when etcd loses most keys across files', () => {
    const files = new Map(keys.map((k) => [k, 'v'] as const));
    const held = plan(input({ base, files, etcd: new Map([[keys[0] as string, e('v', 1)]]) }));
    expect(held.toFile).toEqual([]);
    expect(held.blocked).toEqual([{ side: 'etcd', deletions: 3, of: 4, files: 3 }]);
  });

  it('leaves the keys of an unreadable file alone on both sides', () => {
    const files = new Map(keys.slice(1).map((k) => [k, 'v'] as const));
    const p = plan(input({ base, files, etcd, unreadableFiles: new Set(['/a.conf']) }));
    expect(p.toEtcd).toEqual([]);
    expect(p.toFile).toEqual([]);
  });

  it('holds deletions by the losses of the whole base when the input covers a few files (overall)', () => {
    const files = new Map(keys.slice(1).map((k) => [k, 'v'] as const));
    // The input alone: one file lost, carried over.
    expect(plan(input({ base, files, etcd })).blocked).toEqual([]);
    // The whole base lost more across files: held.
    const overall = { total: 8, file: { keys: 5, files: 3 }, etcd: { keys: 0, files: 0 } };
    const held = plan(input({ base, files, etcd, guard: { ...open, overall } }));
    expect(held.toEtcd).toEqual([]);
    expect(held.blocked).toEqual([{ side: 'file', deletions: 1, of: 8, files: 3 }]);
  });

  it('keeps holding a side held before, though the input alone would carry its deletion', () => {
    const files = new Map(keys.slice(1).map((k) => [k, 'v'] as const));
    const held = plan(input({ base, files, etcd, guard: { ...open, holding: new Set<Side>(['file']) } }));
    expect(held.toEtcd).toEqual([]);
    expect(held.blocked).toEqual([{ side: 'file', deletions: 1, of: 4, files: 1 }]);
  });
});

// ---- Property tests: random histories on both sides, with syncs and restarts.

type Op =
  | { kind: 'file'; key: string; value: string | undefined }
  | { kind: 'etcd'; key: string; value: string | undefined }
  | { kind: 'sync' }
  | { kind: 'lose-base' }
  /** Time moves on: edits until the next tick happen at the same time (ties for `newest`). */
  | { kind: 'tick' };

const KEYS = ['/a.conf/S/x', '/a.conf/S/y', '/b.conf/T/x', '/c/d.conf/S/z'];
const keyArb = fc.constantFrom(...KEYS);
const valueArb = fc.option(fc.constantFrom('1', '2', '3'), { nil: undefined });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('file' as const), key: keyArb, value: valueArb }),
  fc.record({ kind: fc.constant('etcd' as const), key: keyArb, value: valueArb }),
  fc.constant({ kind: 'sync' as const }),
  fc.constant({ kind: 'lose-base' as const }),
  fc.constant({ kind: 'tick' as const }),
);

const fileOfKey = (key: string) => key.split('/').slice(0, -2).join('/');

/** Both sides and the daemon's base, applied exactly as the engine applies a plan. */
class World {
  files = new Map<string, string>();
  etcd = new Map<string, EtcdEntry>();
  base = new Map<string, BaseEntry>();
  revision = 0;
  conflicts: Conflict[] = [];
  /** The last write on each side since the last sync, per key ('gone' for a deletion). */
  pending = { file: new Map<string, string | undefined>(), etcd: new Map<string, string | undefined>() };
  /** A logical clock of edits, and when each side last changed: etcd per key, the files per file (as the scheduler times them). */
  now = 0;
  fileAt = new Map<string, number>();
  etcdAt = new Map<string, number>();
  /** What the guard held at the last sync (each sync is a full pass). */
  blocked: readonly Blocked[] = [];

  constructor(readonly policy: ConflictPolicy) {}

  edit(side: Side, key: string, value: string | undefined): void {
    if (side === 'file') {
      if (value === undefined) this.files.delete(key);
      else this.files.set(key, value);
      this.fileAt.set(fileOfKey(key), this.now);
    } else {
      this.revision++;
      if (value === undefined) this.etcd.delete(key);
      else this.etcd.set(key, e(value, this.revision));
      this.etcdAt.set(key, this.now);
    }
    this.pending[side].set(key, value);
  }

  tick(): void {
    this.now++;
  }

  /** When a side last changed a key, as the engine's scheduler reports it. */
  changedAt = (side: Side, key: string): number | undefined =>
    side === 'file' ? this.fileAt.get(fileOfKey(key)) : this.etcdAt.get(key);

  /** The side the `newest` policy must pick for a key both sides changed: the one edited last, etcd on a tie. */
  newestSide(key: string): Side {
    const f = this.changedAt('file', key) ?? Number.NEGATIVE_INFINITY;
    const ev = this.changedAt('etcd', key) ?? Number.NEGATIVE_INFINITY;
    return f > ev ? 'file' : 'etcd';
  }

  /** The plan a sync would carry out now. */
  plan(guard: Partial<PlanGuard> = { allowMassDelete: true }): Plan {
    return plan(
      input({
        base: this.base,
        files: this.files,
        etcd: this.etcd,
        policy: this.policy,
        changedAt: this.changedAt,
        guard: { ...open, holding: holdingOf(this.blocked), ...guard },
      }),
    );
  }

  sync(guard?: Partial<PlanGuard>): Plan {
    const p = this.plan(guard);
    this.apply(p);
    return p;
  }

  apply(p: Plan): void {
    for (const w of p.toEtcd) {
      // The compare of the engine's transaction.
      if ((this.etcd.get(w.key)?.modRevision ?? 0) !== w.expectRevision) continue;
      this.revision++;
      if (w.value === undefined) {
        this.etcd.delete(w.key);
        this.base.delete(w.key);
      } else {
        this.etcd.set(w.key, e(w.value, this.revision));
        this.base.set(w.key, e(w.value, this.revision));
      }
    }
    for (const w of p.toFile) {
      if (w.value === undefined) {
        this.files.delete(w.key);
        this.base.delete(w.key);
      } else {
        this.files.set(w.key, w.value);
        this.base.set(w.key, e(w.value, w.revision));
      }
    }
    for (const [key, entry] of p.base) {
      if (entry === undefined) this.base.delete(key);
      else this.base.set(key, entry);
    }
    this.conflicts.push(...p.conflicts);
    this.blocked = nextBlocked(this.blocked, p.blocked, true).blocked;
  }

  values(side: Side): Map<string, string> {
    return side === 'file' ? new Map(this.files) : new Map([...this.etcd].map(([k, v]) => [k, v.value]));
  }
}

describe('plan: random histories (property)', () => {
  const policies = fc.constantFrom<ConflictPolicy>('etcd-wins', 'file-wins', 'newest');

  it('always converges, and a converged state plans nothing', () => {
    fc.assert(
      fc.property(policies, fc.array(opArb, { maxLength: 40 }), (policy, ops) => {
        const w = new World(policy);
        for (const op of ops) {
          if (op.kind === 'sync') w.sync();
          else if (op.kind === 'lose-base') w.base.clear();
          else if (op.kind === 'tick') w.tick();
          else w.edit(op.kind, op.key, op.value);
        }
        w.sync();
        expect(w.values('file')).toEqual(w.values('etcd'));
        const again = w.sync();
        expect(again.toEtcd.length + again.toFile.length + again.base.length).toBe(0);
      }),
      { numRuns: 3000 },
    );
  });

  it('never loses the last write of a side, except a conflict loser that is recorded', () => {
    const newestConflicts = { file: 0, etcd: 0, tie: 0 };
    fc.assert(
      fc.property(policies, fc.array(opArb, { maxLength: 40 }), (policy, ops) => {
        const w = new World(policy);
        // What both sides held after the last sync: a write of that same value changes nothing.
        let agreed = new Map<string, string>();
        const check = () => {
          const before = { file: new Map(w.pending.file), etcd: new Map(w.pending.etcd) };
          const conflictsBefore = w.conflicts.length;
          const winnerOf = (key: string): Side => {
            if (policy === 'file-wins') return 'file';
            if (policy === 'etcd-wins') return 'etcd';
            const side = w.newestSide(key);
            if (w.changedAt('file', key) === w.changedAt('etcd', key)) newestConflicts.tie++;
            else newestConflicts[side]++;
            return side;
          };
          w.sync();
          const final = w.values('file');
          for (const key of KEYS) {
            const f = before.file.get(key);
            const fTouched = before.file.has(key) && f !== agreed.get(key);
            const eTouched = before.etcd.has(key) && before.etcd.get(key) !== agreed.get(key);
            const ev = before.etcd.get(key);
            const now = final.get(key);
            if (fTouched && !eTouched) expect(now).toBe(f);
            else if (eTouched && !fTouched) expect(now).toBe(ev);
            else if (fTouched && eTouched && f !== ev) {
              if (f === undefined) expect(now).toBe(ev);
              else if (ev === undefined) expect(now).toBe(f);
              else {
                const fileWon = winnerOf(key) === 'file';
                const winner = fileWon ? f : ev;
                const loser = fileWon ? ev : f;
                expect(now).toBe(winner);
                expect(w.conflicts.slice(conflictsBefore)).toContainEqual(
                  expect.objectContaining({ key, loserValue: loser }),
                );
              }
            }
          }
          w.pending = { file: new Map(), etcd: new Map() };
          agreed = final;
        };
        for (const op of ops) {
          if (op.kind === 'sync') check();
          else if (op.kind === 'lose-base') continue;
          else if (op.kind === 'tick') w.tick();
          else w.edit(op.kind, op.key, op.value);
        }
        check();
      }),
      { numRuns: 3000 },
    );
    // The newest rule was exercised every way: the file later, etcd later, and a tie.
    expect(newestConflicts.file).toBeGreaterThan(0);
    expect(newestConflicts.etcd).toBeGreaterThan(0);
    expect(newestConflicts.tie).toBeGreaterThan(0);
  });
});

// ---- The guard over random histories: 16 keys in 4 files, one file big enough to hold MASS_DELETE_MIN_KEYS.

const GUARD_FILES: Record<string, readonly string[]> = {
  'a.conf': Array.from({ length: MASS_DELETE_MIN_KEYS }, (_, i) => `/a.conf/S/k${i}`),
  'b.conf': ['/b.conf/S/x', '/b.conf/S/y'],
  'c.conf': ['/c.conf/T/x', '/c.conf/T/y'],
  'd/e.conf': ['/d/e.conf/S/x', '/d/e.conf/S/y'],
};
const GUARD_KEYS = Object.values(GUARD_FILES).flat();

type GuardOp =
  | { kind: 'edit'; side: Side; key: string; value: string | undefined }
  /** A file removed (or a side's keys of one file deleted at once). */
  | { kind: 'wipe-file'; side: Side; file: string }
  | { kind: 'fill-file'; side: Side; file: string; value: string }
  /** A side wiped: an unmounted conf dir, an emptied etcd. */
  | { kind: 'wipe'; side: Side }
  /** Every other key of each file deleted on a side: exactly half of a base of whole files. */
  | { kind: 'halve'; side: Side }
  | { kind: 'sync' };

const sideArb = fc.constantFrom<Side>('file', 'etcd');
const guardFileArb = fc.constantFrom(...Object.keys(GUARD_FILES));
const guardOpArb: fc.Arbitrary<GuardOp> = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant('edit' as const),
      side: sideArb,
      key: fc.constantFrom(...GUARD_KEYS),
      value: fc.option(fc.constantFrom('1', '2'), { nil: undefined }),
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({ kind: fc.constant('wipe-file' as const), side: sideArb, file: guardFileArb }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant('fill-file' as const),
      side: sideArb,
      file: guardFileArb,
      value: fc.constantFrom('1', '2'),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ kind: fc.constant('wipe' as const), side: sideArb }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('halve' as const), side: sideArb }), weight: 1 },
  { arbitrary: fc.constant({ kind: 'sync' as const }), weight: 3 },
);

describe('plan: the guard over random histories (property)', () => {
  it('never carries a mass deletion across, and holds nothing else', () => {
    const seen = { share: 0, all: 0, belowMin: 0, atShare: 0, confDir: 0, holding: 0, calm: 0 };
    const check = (w: World) => {
      const total = w.base.size;
      const lostOn = (side: Side) => {
        const keys = [...w.base.keys()].filter((k) => !(side === 'file' ? w.files.has(k) : w.etcd.has(k)));
        return { keys: new Set(keys), files: new Set(keys.map(fileOfKey)).size };
      };
      const lost = { file: lostOn('file'), etcd: lostOn('etcd') };
      // The conf dir holds no mirrored file.
      const confDirEmpty = w.files.size === 0;
      const confDir = confDirEmpty && total > 0;
      const holding = holdingOf(w.blocked);
      // The spec: more than the share of the base's keys lost across more than one file, or every key
      // of a base of at least MASS_DELETE_MIN_KEYS; a side held before stays held.
      const share = (side: Side) => lost[side].files > 1 && lost[side].keys.size > total * 0.5;
      const all = (side: Side) => total >= MASS_DELETE_MIN_KEYS && lost[side].keys.size >= total;
      const mass = {
        file: confDir || share('file') || all('file') || holding.has('file'),
        etcd: share('etcd') || all('etcd') || holding.has('etcd'),
      };
      const allowed = w.plan({ allowMassDelete: true, confDirEmpty });
      const guarded = w.plan({ allowMassDelete: false, maxDeleteShare: 0.5, confDirEmpty });
      const isDelete = (x: { value: string | undefined }) => x.value === undefined;

      // (b) Nothing but a mass side's deletions is held: every other write lands as planned without the guard.
      expect(guarded.toEtcd).toEqual(allowed.toEtcd.filter((x) => !isDelete(x) || !mass.file));
      expect(guarded.toFile).toEqual(allowed.toFile.filter((x) => !isDelete(x) || !mass.etcd));
      expect(guarded.base).toEqual(allowed.base);
      expect(guarded.conflicts).toEqual(allowed.conflicts);
      if (!mass.file && !mass.etcd) expect(guarded).toEqual(allowed);

      // What is reported held.
      const heldFile = mass.file ? allowed.toEtcd.filter(isDelete).length : 0;
      const heldEtcd = mass.etcd ? allowed.toFile.filter(isDelete).length : 0;
      // Coverage: count the cases that decided something (a deletion held, or one carried at the edge).
      const deletions = {
        file: allowed.toEtcd.filter(isDelete).length,
        etcd: allowed.toFile.filter(isDelete).length,
      };
      for (const side of ['file', 'etcd'] as const) {
        if (deletions[side] === 0) continue;
        if (share(side)) seen.share++;
        if (all(side) && lost[side].files === 1) seen.all++;
        if (holding.has(side) && !share(side) && !all(side) && !(side === 'file' && confDir)) seen.holding++;
        if (mass[side]) continue;
        if (total < MASS_DELETE_MIN_KEYS && lost[side].keys.size === total && lost[side].files === 1)
          seen.belowMin++;
        if (lost[side].files > 1 && lost[side].keys.size === total * 0.5) seen.atShare++;
      }
      if (confDir) seen.confDir++;
      if (!mass.file && !mass.etcd && deletions.file + deletions.etcd > 0) seen.calm++;
      const blocked: Blocked[] = [];
      if (mass.file && (heldFile > 0 || confDir))
        blocked.push({
          side: confDir ? 'conf-dir' : 'file',
          deletions: heldFile,
          of: total,
          files: confDir ? 0 : lost.file.files,
        });
      if (mass.etcd && heldEtcd > 0)
        blocked.push({ side: 'etcd', deletions: heldEtcd, of: total, files: lost.etcd.files });
      expect(guarded.blocked).toEqual(blocked);

      // (a) Carried out: no key a mass side lost is deleted on the other side.
      const before = { file: w.values('file'), etcd: w.values('etcd') };
      w.apply(guarded);
      if (mass.file) for (const k of lost.file.keys) expect(w.etcd.get(k)?.value).toBe(before.etcd.get(k));
      if (mass.etcd) for (const k of lost.etcd.keys) expect(w.files.get(k)).toBe(before.file.get(k));
    };

    fc.assert(
      fc.property(
        fc.constantFrom<ConflictPolicy>('etcd-wins', 'file-wins', 'newest'),
        fc.array(guardOpArb, { maxLength: 30 }),
        (policy, ops) => {
          const w = new World(policy);
          for (const op of ops) {
            if (op.kind === 'sync') check(w);
            else if (op.kind === 'edit') w.edit(op.side, op.key, op.value);
            else if (op.kind === 'wipe') {
              const keys = op.side === 'file' ? [...w.files.keys()] : [...w.etcd.keys()];
              for (const k of keys) w.edit(op.side, k, undefined);
            } else if (op.kind === 'halve') {
              for (const keys of Object.values(GUARD_FILES))
                for (const [i, k] of keys.entries()) if (i % 2 === 0) w.edit(op.side, k, undefined);
            } else
              for (const k of GUARD_FILES[op.file] ?? [])
                w.edit(op.side, k, op.kind === 'fill-file' ? op.value : undefined);
            w.tick();
          }
          check(w);
        },
      ),
      { numRuns: 3000 },
    );
    // Every case the guard tells apart came up.
    expect(Object.keys(seen).filter((name) => seen[name as keyof typeof seen] === 0)).toEqual([]);
  });
});
