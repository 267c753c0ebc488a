import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type BaseEntry,
  type Conflict,
  type ConflictPolicy,
  decide,
  type EtcdEntry,
} from '../../src/sync/merge.js';
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

describe('decide: one key, three states', () => {
  const b = e('v', 5);
  // Row 1 is "in sync"; every other row is a small mutation of it (the kubelet planner's table style).
  it.each([
    ['in sync', b, 'v', e('v', 5), 'none'],
    ['base stale (etcd rewrote the same value)', b, 'v', e('v', 9), 'base'],
    ['changed in etcd', b, 'v', e('w', 9), 'to-file'],
    ['deleted in etcd', b, 'v', undefined, 'to-file'],
    ['changed in the file', b, 'w', e('v', 5), 'to-etcd'],
    ['deleted in the file', b, undefined, e('v', 5), 'to-etcd'],
    ['new in the file', undefined, 'w', undefined, 'to-etcd'],
    ['new in etcd', undefined, undefined, e('w', 9), 'to-file'],
    ['both changed alike', b, 'w', e('w', 9), 'base'],
    ['both deleted', b, undefined, undefined, 'base'],
    ['file deleted, etcd changed: the change wins', b, undefined, e('w', 9), 'to-file'],
    ['etcd deleted, file changed: the change wins', b, 'w', undefined, 'to-etcd'],
    ['both changed differently: etcd wins by default', b, 'x', e('y', 9), 'to-file'],
    ['both new, different: etcd wins by default', undefined, 'x', e('y', 9), 'to-file'],
  ] as const)('%s', (_name, base, file, etcd, kind) => {
    expect(decide('/a.conf/S/k', base, file, etcd, 'etcd-wins').kind).toBe(kind);
  });

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
});

// ---- Property tests: random histories on both sides, with syncs and restarts.

type Op =
  | { kind: 'file'; key: string; value: string | undefined }
  | { kind: 'etcd'; key: string; value: string | undefined }
  | { kind: 'sync' }
  | { kind: 'lose-base' };

const KEYS = ['/a.conf/S/x', '/a.conf/S/y', '/b.conf/T/x', '/c/d.conf/S/z'];
const keyArb = fc.constantFrom(...KEYS);
const valueArb = fc.option(fc.constantFrom('1', '2', '3'), { nil: undefined });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('file' as const), key: keyArb, value: valueArb }),
  fc.record({ kind: fc.constant('etcd' as const), key: keyArb, value: valueArb }),
  fc.constant({ kind: 'sync' as const }),
  fc.constant({ kind: 'lose-base' as const }),
);

/** Both sides and the daemon's base, applied exactly as the engine applies a plan. */
class World {
  files = new Map<string, string>();
  etcd = new Map<string, EtcdEntry>();
  base = new Map<string, BaseEntry>();
  revision = 0;
  conflicts: Conflict[] = [];
  /** The last write on each side since the last sync, per key ('gone' for a deletion). */
  pending = { file: new Map<string, string | undefined>(), etcd: new Map<string, string | undefined>() };

  constructor(readonly policy: ConflictPolicy) {}

  edit(side: 'file' | 'etcd', key: string, value: string | undefined): void {
    if (side === 'file') {
      if (value === undefined) this.files.delete(key);
      else this.files.set(key, value);
    } else {
      this.revision++;
      if (value === undefined) this.etcd.delete(key);
      else this.etcd.set(key, e(value, this.revision));
    }
    this.pending[side].set(key, value);
  }

  sync(): Plan {
    const p = plan(
      input({
        base: this.base,
        files: this.files,
        etcd: this.etcd,
        policy: this.policy,
        guard: { ...open, allowMassDelete: true },
      }),
    );
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
    return p;
  }

  values(side: 'file' | 'etcd'): Map<string, string> {
    return side === 'file' ? new Map(this.files) : new Map([...this.etcd].map(([k, v]) => [k, v.value]));
  }
}

describe('plan: random histories (property)', () => {
  const policies = fc.constantFrom<ConflictPolicy>('etcd-wins', 'file-wins');

  it('always converges, and a converged state plans nothing', () => {
    fc.assert(
      fc.property(policies, fc.array(opArb, { maxLength: 40 }), (policy, ops) => {
        const w = new World(policy);
        for (const op of ops) {
          if (op.kind === 'sync') w.sync();
          else if (op.kind === 'lose-base') w.base.clear();
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
    fc.assert(
      fc.property(policies, fc.array(opArb, { maxLength: 40 }), (policy, ops) => {
        const w = new World(policy);
        // What both sides held after the last sync: a write of that same value changes nothing.
        let agreed = new Map<string, string>();
        const check = () => {
          const before = { file: new Map(w.pending.file), etcd: new Map(w.pending.etcd) };
          const conflictsBefore = w.conflicts.length;
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
                const winner = policy === 'file-wins' ? f : ev;
                const loser = policy === 'file-wins' ? ev : f;
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
          else w.edit(op.kind, op.key, op.value);
        }
        check();
      }),
      { numRuns: 3000 },
    );
  });
});
