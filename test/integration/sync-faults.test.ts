import { mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import type { EtcdServer } from '../harness/etcd.js';
import { waitFor } from '../harness/wait.js';
import { clientFor } from '../support/client.js';
import { etcdValue as valueAt } from '../support/lifecycle.js';
import { useSyncFixtures } from '../support/sync.js';

/** Regression tests for faults found in review: each first reproduced, then fixed. */

const sync = useSyncFixtures();
const { fixture, defer } = sync;
let etcd: EtcdServer;
beforeEach(() => {
  etcd = sync.etcd();
});
const etcdValue = (key: string) => valueAt(etcd, key);

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('sync under hostile or unlucky conditions', () => {
  it('a key whose parent path is a file refuses that one file; the daemon starts and records a conflict elsewhere', async () => {
    const f = await fixture();
    await writeFile(join(f.confDir, 'a.conf'), '[S]\nk = base\n');
    await f.start();
    await f.stop();
    await writeFile(join(f.confDir, 'a.conf'), '[S]\nk = fileEdit\n');
    await writeFile(join(f.confDir, 'b'), 'not a folder\n');
    await etcd.etcdctl('put', `${f.prefix}a.conf/S/k`, 'etcdEdit');
    await etcd.etcdctl('put', `${f.prefix}b/c.conf/S/k`, 'poison');
    await f.start();
    expect(await readFile(join(f.confDir, 'a.conf'), 'utf8')).toBe('[S]\nk = etcdEdit\n');
    const records = (await readdir(f.confDir)).filter((n) => n.startsWith('a.conf.conflict-'));
    expect(records).toHaveLength(1);
    expect(f.lines.some((l) => l.code === 'FILE_WRITE' && l.file === 'b/c.conf')).toBe(true);
  });

  it('keeps a save made while check_cmd runs on the staged file, and merges it', async () => {
    const f = await fixture();
    const file = join(f.confDir, 'a.conf');
    await writeFile(file, '[S]\nk = 1\nj = 1\n');
    let saved = false;
    await f.start({
      checkFile: async () => {
        if (saved) return;
        saved = true;
        // The user saves while the hook (nginx -t, say) runs.
        await writeFile(file, '[S]\nk = 1\nj = USER\n');
      },
    });
    await etcd.etcdctl('put', `${f.prefix}a.conf/S/k`, '2');
    await waitFor(async () => (await readFile(file, 'utf8')) === '[S]\nk = 2\nj = USER\n');
    await waitFor(async () => (await etcdValue(`${f.prefix}a.conf/S/j`)) === 'USER');
  });

  it('does not call one key deleted in a file a mass deletion because another file does not parse', async () => {
    const f = await fixture();
    await writeFile(join(f.confDir, 'a.conf'), '[S]\nk1 = 1\nk2 = 2\n');
    await writeFile(join(f.confDir, 'b.conf'), '[S]\nk1 = 1\nk2 = 2\n');
    await f.start();
    await writeFile(join(f.confDir, 'b.conf'), '[S\nk1 = 1\nk2 = 2\n');
    await waitFor(() => f.lines.some((l) => String(l.msg).includes('b.conf:1')));
    await writeFile(join(f.confDir, 'a.conf'), '[S]\nk1 = 1\n');
    await waitFor(async () => (await etcdValue(`${f.prefix}a.conf/S/k2`)) === undefined);
    expect(f.lines.some((l) => l.deletions !== undefined)).toBe(false);
    expect(f.engine.status().blocked).toEqual([]);
  });

  it('never mirrors link/etcd/ through a symlink, either way', async () => {
    const f = await fixture();
    await mkdir(join(f.confDir, 'link', 'etcd'), { recursive: true });
    await writeFile(join(f.confDir, 'link', 'etcd', 'sync.conf'), '[SYNC]\nprefix = /\n');
    await symlink('link/etcd', join(f.confDir, 'settings'));
    await writeFile(join(f.confDir, 'ok.conf'), '[S]\nk = 1\n');
    await f.start();
    await etcd.etcdctl('put', `${f.prefix}settings/sync.conf/SYNC/exec`, 'touch /tmp/owned');
    await etcd.etcdctl('put', `${f.prefix}ok.conf/S/k`, '2');
    await waitFor(async () => (await readFile(join(f.confDir, 'ok.conf'), 'utf8')) === '[S]\nk = 2\n');
    expect(await readFile(join(f.confDir, 'link', 'etcd', 'sync.conf'), 'utf8')).toBe('[SYNC]\nprefix = /\n');
    expect(await etcdValue(`${f.prefix}settings/sync.conf/SYNC/prefix`)).toBeUndefined();
  });

  it('holds back deletions when the conf dir empties while it runs, even with one file', async () => {
    const f = await fixture();
    await mkdir(join(f.confDir, 'app'));
    const body = Array.from({ length: 20 }, (_, i) => `k${i} = ${i}\n`).join('');
    await writeFile(join(f.confDir, 'app', 'app.conf'), `[S]\n${body}`);
    await f.start();
    await rm(join(f.confDir, 'app'), { recursive: true });
    await waitFor(() => f.engine.status().blocked.length > 0);
    const keys = (await etcd.etcdctl('get', '--prefix', '--keys-only', f.prefix)).split('\n').filter(Boolean);
    expect(keys).toHaveLength(20);
    expect(f.engine.status().ready).toBe(false);
  });

  it('takes a foreign delete that lands while its own write of another file is in flight', async () => {
    const f = await fixture();
    const other = clientFor(etcd);
    defer(() => other.close());
    const a = join(f.confDir, 'a.conf');
    const b = join(f.confDir, 'b.conf');
    await writeFile(a, '[S]\nk = 1\n');
    await writeFile(b, '[S]\nk = 1\n');
    await f.start();
    // Slow etcd answers, so b's transaction is in flight when the foreign delete of a's key lands.
    const mw = f.middleware;
    const write = mw.writeIfUnchanged.bind(mw);
    mw.writeIfUnchanged = async (w) => {
      const revision = await write(w);
      await pause(300);
      return revision;
    };
    await writeFile(a, '[S]\nk = 2\n');
    await writeFile(b, '[S]\nk = 2\n');
    await waitFor(
      async () =>
        (await other.has(`${f.prefix}a.conf/S/k`)) && (await other.get(`${f.prefix}a.conf/S/k`)) === '2',
    );
    await other.delete(`${f.prefix}a.conf/S/k`);
    mw.writeIfUnchanged = write;
    await waitFor(async () => (await readFile(a, 'utf8')) === '[S]\n', { timeout: 15_000 });
    expect(f.engine.status().counters.retries).toBeLessThan(10);
  });

  it('keeps holding deletions once held, even when a new key dilutes the share', async () => {
    const f = await fixture();
    const body = Array.from({ length: 20 }, (_, i) => `k${i} = ${i}\n`).join('');
    await writeFile(join(f.confDir, 'app.conf'), `[S]\n${body}`);
    await f.start();
    // The only file replaced by an unrelated one (an image default, a template reset).
    await writeFile(join(f.confDir, 'app.conf'), '[S]\nplaceholder = 1\n');
    await waitFor(async () => (await etcdValue(`${f.prefix}app.conf/S/placeholder`)) === '1');
    await waitFor(() => f.engine.status().blocked.length > 0);
    // A full reconcile (the base now has 21 keys) must not let the 20 deletions through.
    await f.engine.reconcileAll();
    expect(await etcdValue(`${f.prefix}app.conf/S/k0`)).toBe('0');
    expect(f.engine.status().blocked.length).toBeGreaterThan(0);
    // The keys come back: nothing left to hold, the daemon is ready again.
    await writeFile(join(f.confDir, 'app.conf'), `[S]\n${body}placeholder = 1\n`);
    await waitFor(async () => {
      await f.engine.reconcileAll();
      return f.engine.status().blocked.length === 0 && f.engine.status().ready;
    });
  });

  it('carries the deletion of the only key of a small setup over', async () => {
    const f = await fixture();
    await writeFile(join(f.confDir, 'tiny.conf'), '[S]\nk = 1\n');
    await f.start();
    await etcd.etcdctl('del', `${f.prefix}tiny.conf/S/k`);
    await waitFor(async () => (await readFile(join(f.confDir, 'tiny.conf'), 'utf8')) === '[S]\n');
    expect(f.engine.status().blocked).toEqual([]);
  });

  it('retries a file it could not write once the obstacle is gone, without waiting for the full reconcile', async () => {
    const f = await fixture();
    await writeFile(join(f.confDir, 'sub'), 'a file where a folder should be\n');
    await f.start();
    await etcd.etcdctl('put', `${f.prefix}sub/x.conf/S/k`, 'v');
    await waitFor(() => f.lines.some((l) => l.code === 'FILE_WRITE' && l.file === 'sub/x.conf'));
    await rm(join(f.confDir, 'sub'));
    await waitFor(
      async () =>
        (await readFile(join(f.confDir, 'sub', 'x.conf'), 'utf8').catch(() => '')) === '[S]\nk = v\n',
    ).catch((error: Error) => {
      // Seen once under full-suite load, not reproduced since: what the daemon said helps the next one.
      const said = f.lines.filter((l) => l.file === 'sub/x.conf' || (l.level as number) >= 40);
      throw new Error(`${error.message}; the daemon said: ${JSON.stringify(said)}`);
    });
  });
});
