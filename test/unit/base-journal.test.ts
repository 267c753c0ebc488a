import { appendFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadBase, logPathOf } from '../../src/sync/base-journal.js';
import { BaseStore, COMPACT_MIN_ENTRIES } from '../../src/sync/base-store.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function store(): Promise<{ base: BaseStore; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'link-etcd-journal-'));
  dirs.push(dir);
  const base = new BaseStore({ stateDir: dir, confDir: '/conf', prefix: '/' });
  await base.load('c1', (key) => key.split('/')[1]);
  return { base, dir };
}

const e = (value: string, modRevision: number) => ({ value, modRevision });

describe('the base journal: a snapshot and an append-only log', () => {
  it('a pass costs what it changed: one line each, the snapshot untouched', async () => {
    const { base } = await store();
    for (let i = 0; i < 100; i++) base.set(`/f${i}.conf/S/k`, e(`v${i}`, i + 1), `f${i}.conf`);
    await base.save();
    const snapshot = await stat(base.journalFile);
    for (let pass = 0; pass < 5; pass++) {
      base.set(`/f${pass}.conf/S/k`, e(`changed${pass}`, 200 + pass), `f${pass}.conf`);
      await base.save();
    }
    base.set('/f9.conf/S/k', undefined, 'f9.conf');
    await base.save();
    expect((await stat(base.journalFile)).mtimeMs).toBe(snapshot.mtimeMs);
    expect((await readFile(logPathOf(base.journalFile), 'utf8')).trim().split('\n')).toHaveLength(6);
    const loaded = await loadBase(base.journalFile);
    expect(loaded.ok).toBe(true);
    expect(loaded.base.size).toBe(99);
    expect(loaded.base.get('/f3.conf/S/k')).toEqual(e('changed3', 203));
    expect(loaded.base.has('/f9.conf/S/k')).toBe(false);
  });

  it('a line torn by a crash mid-append is dropped; a bad line before the last is corruption', async () => {
    const { base } = await store();
    base.set('/a.conf/S/k', e('1', 1), 'a.conf');
    await base.save();
    base.set('/a.conf/S/k', e('2', 2), 'a.conf');
    await base.save();
    await appendFile(logPathOf(base.journalFile), '["/a.conf/S/k","3",');
    const torn = await loadBase(base.journalFile);
    expect(torn.ok).toBe(true);
    expect(torn.base.get('/a.conf/S/k')).toEqual(e('2', 2));
    await appendFile(logPathOf(base.journalFile), '\n["/b.conf/S/k","x",9]\n');
    const corrupt = await loadBase(base.journalFile);
    expect(corrupt).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/corrupt base journal .*\.log:\d+/),
    });
  });

  it('folds the log into a new snapshot once it outgrows the base, and empties the log', async () => {
    const { base } = await store();
    base.set('/a.conf/S/k', e('0', 1), 'a.conf');
    await base.save();
    for (let i = 1; i <= COMPACT_MIN_ENTRIES + 1; i++) {
      base.set('/a.conf/S/k', e(String(i), i + 1), 'a.conf');
      await base.save();
    }
    expect((await readFile(logPathOf(base.journalFile), 'utf8')).length).toBeLessThan(100);
    expect((await loadBase(base.journalFile)).base.get('/a.conf/S/k')).toEqual(
      e(String(COMPACT_MIN_ENTRIES + 1), COMPACT_MIN_ENTRIES + 2),
    );
  });

  it('a crash between the new snapshot and emptying the log changes nothing: the old lines replay to the same base', async () => {
    const { base } = await store();
    base.set('/a.conf/S/k', e('1', 1), 'a.conf');
    base.set('/b.conf/S/k', e('1', 2), 'b.conf');
    await base.save();
    base.set('/a.conf/S/k', e('2', 3), 'a.conf');
    base.set('/b.conf/S/k', undefined, 'b.conf');
    await base.save();
    const log = await readFile(logPathOf(base.journalFile), 'utf8');
    // The snapshot that compaction writes, with the log it did not get to empty.
    base.forget('c1');
    base.set('/a.conf/S/k', e('2', 3), 'a.conf');
    await base.save();
    await writeFile(logPathOf(base.journalFile), log);
    const loaded = await loadBase(base.journalFile);
    expect([...loaded.base]).toEqual([['/a.conf/S/k', e('2', 3)]]);
  });
});

describe('pushes announced before they are sent', () => {
  it('a push etcd holds but the base never recorded (killed in between) is taken as agreed at restart', async () => {
    const { base, dir } = await store();
    base.set('/a.conf/S/k', e('old', 5), 'a.conf');
    base.set('/a.conf/S/gone', e('x', 6), 'a.conf');
    base.set('/a.conf/S/raced', e('old', 7), 'a.conf');
    await base.save();
    // The pass announces its pushes; etcd answers; the process dies before base.save().
    base.announce([
      { key: '/a.conf/S/k', value: 'pushed' },
      { key: '/a.conf/S/gone', value: undefined },
      { key: '/a.conf/S/raced', value: 'ours' },
    ]);

    const restarted = new BaseStore({ stateDir: dir, confDir: '/conf', prefix: '/' });
    expect(await restarted.load('c1', (key) => key.split('/')[1])).toBeUndefined();
    const etcd = new Map([
      ['/a.conf/S/k', e('pushed', 9)],
      // Someone else's value landed instead of ours: not agreed, the merge decides.
      ['/a.conf/S/raced', e('theirs', 10)],
    ]);
    expect(
      restarted.settleAnnounced(
        (key) => etcd.get(key),
        (key) => key.split('/')[1],
      ),
    ).toBe(2);
    expect(restarted.get('/a.conf/S/k')).toEqual(e('pushed', 9));
    expect(restarted.get('/a.conf/S/gone')).toBeUndefined();
    expect(restarted.get('/a.conf/S/raced')).toEqual(e('old', 7));
    // Settled once: the announcements do not outlive the restart that used them.
    await restarted.save();
    const again = new BaseStore({ stateDir: dir, confDir: '/conf', prefix: '/' });
    await again.load('c1', (key) => key.split('/')[1]);
    expect(again.get('/a.conf/S/k')).toEqual(e('pushed', 9));
    expect(
      again.settleAnnounced(
        (key) => etcd.get(key),
        (key) => key.split('/')[1],
      ),
    ).toBe(0);
  });

  it('a push recorded as landed leaves nothing to settle', async () => {
    const { base, dir } = await store();
    base.announce([{ key: '/a.conf/S/k', value: 'v' }]);
    base.set('/a.conf/S/k', e('v', 3), 'a.conf');
    await base.save();
    const restarted = new BaseStore({ stateDir: dir, confDir: '/conf', prefix: '/' });
    await restarted.load('c1', (key) => key.split('/')[1]);
    expect(
      restarted.settleAnnounced(
        () => e('v', 3),
        (key) => key.split('/')[1],
      ),
    ).toBe(0);
  });
});

describe('file writes announced before they are made', () => {
  it('a value the file holds but the base never recorded (killed after the rename) is taken as agreed', async () => {
    const { base, dir } = await store();
    base.set('/a.conf/S/k', e('old', 5), 'a.conf');
    base.set('/a.conf/S/gone', e('x', 6), 'a.conf');
    base.set('/a.conf/S/edited', e('old', 7), 'a.conf');
    base.set('/b.conf/S/k', e('old', 8), 'b.conf');
    await base.save();
    base.announceFileWrites([
      { key: '/a.conf/S/k', value: 'from-etcd', revision: 9 },
      { key: '/a.conf/S/gone', value: undefined, revision: 0 },
      { key: '/a.conf/S/edited', value: 'from-etcd', revision: 10 },
      { key: '/b.conf/S/k', value: 'from-etcd', revision: 11 },
    ]);

    const restarted = new BaseStore({ stateDir: dir, confDir: '/conf', prefix: '/' });
    await restarted.load('c1', (key) => key.split('/')[1]);
    expect(restarted.hasAnnouncedWrites).toBe(true);
    const files = new Map<string, string>([
      ['/a.conf/S/k', 'from-etcd'],
      // Edited by a person since: their edit is not etcd's value, the merge decides.
      ['/a.conf/S/edited', 'by hand'],
    ]);
    // b.conf could not be read: nothing is known of it, nothing settled.
    const inFile = (key: string) => (key.startsWith('/b.conf/') ? null : files.get(key));
    expect(restarted.settleWritten(inFile, (key) => key.split('/')[1])).toBe(2);
    expect(restarted.get('/a.conf/S/k')).toEqual(e('from-etcd', 9));
    expect(restarted.get('/a.conf/S/gone')).toBeUndefined();
    expect(restarted.get('/a.conf/S/edited')).toEqual(e('old', 7));
    expect(restarted.get('/b.conf/S/k')).toEqual(e('old', 8));
    expect(restarted.hasAnnouncedWrites).toBe(false);
  });
});
