import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import type { EtcdServer } from '../harness/etcd.js';
import { waitFor } from '../harness/wait.js';
import { etcdValue as valueAt } from '../support/lifecycle.js';
import { useSyncFixtures } from '../support/sync.js';

/**
 * etcd's history rewritten under a running daemon, at the same address: a
 * wipe, a snapshot restore. etcd tells a watcher nothing (a watch resumed
 * at the old revision + 1 is accepted and stays silent); the daemon must
 * notice, merge both sides as a union, and revert no edit without a record.
 */

const sync = useSyncFixtures();
const { fixture, defer } = sync;
let etcd: EtcdServer;
beforeEach(() => {
  etcd = sync.etcd();
});
const etcdValue = (key: string) => valueAt(etcd, key);

const FILES = 20;
const KEYS = 5;
const body = (file: number, tag: string) =>
  `[S]\n${Array.from({ length: KEYS }, (_, k) => `k${k} = ${tag}-${file}-${k}`).join('\n')}\n`;

async function populated(f: { confDir: string }): Promise<void> {
  for (let i = 0; i < FILES; i++) await writeFile(join(f.confDir, `f${i}.conf`), body(i, 'v1'));
}

const countKeys = async (prefix: string) =>
  (await etcd.etcdctl('get', '--prefix', '--keys-only', prefix)).split('\n').filter((l) => l !== '').length;

describe('etcd rewritten under a running daemon', () => {
  it('after a wipe at the same address: etcd is filled again from the files, and both directions flow within 10 s', async () => {
    const f = await fixture();
    await populated(f);
    await f.start();
    expect(await countKeys(f.prefix)).toBe(FILES * KEYS);
    const wiped = Date.now();
    await etcd.wipe();
    await waitFor(async () => (await countKeys(f.prefix)) === FILES * KEYS && f.engine.status().ready, {
      timeout: 15_000,
    });
    const recovery = (Date.now() - wiped) / 1000;
    console.log(`recovery: etcd wiped at the same address ${recovery.toFixed(1)} s`);
    expect(f.engine.status().counters.regressions).toBe(1);
    expect(f.lines).toContainEqual(
      expect.objectContaining({ level: 50, regression: expect.stringMatching(/revision went back/) }),
    );
    // A put made afterwards reaches its file, and a file edit reaches etcd, within 10 s.
    const put = Date.now();
    await etcd.etcdctl('put', `${f.prefix}f3.conf/S/k1`, 'after-wipe');
    await waitFor(
      async () => (await readFile(join(f.confDir, 'f3.conf'), 'utf8')).includes('k1 = after-wipe'),
      {
        timeout: 10_000,
      },
    );
    await writeFile(join(f.confDir, 'f4.conf'), body(4, 'v1').replace('k2 = v1-4-2', 'k2 = edited'));
    await waitFor(async () => (await etcdValue(`${f.prefix}f4.conf/S/k2`)) === 'edited', { timeout: 10_000 });
    console.log(`recovery: both directions after the wipe ${((Date.now() - put) / 1000).toFixed(2)} s`);
    // Nothing deleted: every file still holds every key.
    for (let i = 0; i < FILES; i++)
      expect((await readFile(join(f.confDir, `f${i}.conf`), 'utf8')).split('\n')).toHaveLength(KEYS + 2);
  });

  it('when another cluster answers at the same address: the same union merge, with a journal of its own', async () => {
    const f = await fixture();
    await populated(f);
    await f.start();
    const before = await f.middleware.clusterId();
    const swapped = Date.now();
    await etcd.wipe({ newCluster: true });
    await waitFor(async () => (await countKeys(f.prefix)) === FILES * KEYS && f.engine.status().ready, {
      timeout: 15_000,
    });
    console.log(
      `recovery: another cluster at the same address ${((Date.now() - swapped) / 1000).toFixed(1)} s`,
    );
    expect(await f.middleware.clusterId()).not.toBe(before);
    expect(f.lines).toContainEqual(
      expect.objectContaining({ regression: expect.stringMatching(/cluster changed/) }),
    );
  });

  it('--rebuild-base refills an etcd wiped while the daemon was down, where the guard holds deletions', async () => {
    const f = await fixture();
    await populated(f);
    await f.start();
    await f.stop();
    await etcd.wipe();
    await f.start();
    // etcd lost every key: the guard holds the deletions back instead of emptying the files.
    expect(f.engine.status().blocked).toEqual([expect.objectContaining({ side: 'etcd' })]);
    expect(f.lines).toContainEqual(expect.objectContaining({ msg: expect.stringMatching(/--rebuild-base/) }));
    await f.stop();
    await f.start({ rebuildBase: true });
    expect(await countKeys(f.prefix)).toBe(FILES * KEYS);
    expect(f.engine.status().ready).toBe(true);
    for (let i = 0; i < FILES; i++)
      expect(await readFile(join(f.confDir, `f${i}.conf`), 'utf8')).toBe(body(i, 'v1'));
  });

  it('after a snapshot restore: edits made since the snapshot come back or are a recorded conflict loser', async () => {
    const f = await fixture();
    await populated(f);
    await f.start();
    const dir = await mkdtemp(join(tmpdir(), 'link-etcd-snap-'));
    defer(() => rm(dir, { recursive: true, force: true }));
    const snapshot = join(dir, 'snap.db');
    await etcd.etcdctl('snapshot', 'save', snapshot);
    // After the snapshot: a file edit pushed to etcd, and a new key mirrored into a file.
    await writeFile(join(f.confDir, 'f0.conf'), body(0, 'v1').replace('k0 = v1-0-0', 'k0 = file-edit'));
    await waitFor(async () => (await etcdValue(`${f.prefix}f0.conf/S/k0`)) === 'file-edit');
    await etcd.etcdctl('put', `${f.prefix}f1.conf/S/added`, 'etcd-add');
    await waitFor(async () =>
      (await readFile(join(f.confDir, 'f1.conf'), 'utf8')).includes('added = etcd-add'),
    );
    const restored = Date.now();
    await etcd.restore(snapshot);
    // The key etcd forgot comes back from the file (nothing is deleted because etcd forgot it) ...
    await waitFor(async () => (await etcdValue(`${f.prefix}f1.conf/S/added`)) === 'etcd-add', {
      timeout: 15_000,
    });
    // ... and the edit etcd forgot is either kept or the recorded loser of a conflict.
    await waitFor(() => f.engine.status().ready, { timeout: 15_000 });
    console.log(`recovery: etcd restored from a snapshot ${((Date.now() - restored) / 1000).toFixed(1)} s`);
    const now = await etcdValue(`${f.prefix}f0.conf/S/k0`);
    expect(await readFile(join(f.confDir, 'f0.conf'), 'utf8')).toContain(`k0 = ${now}`);
    if (now !== 'file-edit') {
      const records = (await readdir(f.confDir)).filter((n) => n.startsWith('f0.conf.conflict-'));
      expect(records).toHaveLength(1);
      expect(await readFile(join(f.confDir, records[0] as string), 'utf8')).toContain('k0 = file-edit');
    }
    // The files did not take the restored etcd's word for anything else: every key is still there.
    expect(await countKeys(f.prefix)).toBe(FILES * KEYS + 1);
    await etcd.etcdctl('put', `${f.prefix}f5.conf/S/k0`, 'after-restore');
    await waitFor(
      async () => (await readFile(join(f.confDir, 'f5.conf'), 'utf8')).includes('k0 = after-restore'),
      {
        timeout: 10_000,
      },
    );
  });
});
