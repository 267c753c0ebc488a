import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT_CHECK_MS, watchConfDir } from '../../src/sync/file-watcher.js';
import { waitFor } from '../harness/wait.js';

/**
 * The conf dir's watcher on real folders (no etcd): which hints it gives.
 * Hints are all the engine needs (it reads and compares), but a missing
 * hint is a change that waits for the full reconcile.
 */
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function watched() {
  const confDir = await mkdtemp(join(tmpdir(), 'link-etcd-watch-'));
  const files: string[] = [];
  const folders: string[] = [];
  const errors: unknown[] = [];
  const watcher = await watchConfDir(confDir, {
    file: (path) => files.push(path),
    folder: (dir) => folders.push(dir),
    error: (error) => errors.push(error),
  });
  cleanups.push(() => rm(confDir, { recursive: true, force: true }));
  cleanups.push(() => watcher.close());
  return { confDir, files, folders, errors };
}

describe('the conf dir watcher', () => {
  it('names each mirrored file written, in the conf dir and in folders that existed at start', async () => {
    const confDir = await mkdtemp(join(tmpdir(), 'link-etcd-watch-'));
    await mkdir(join(confDir, 'shop', 'db'), { recursive: true });
    cleanups.push(() => rm(confDir, { recursive: true, force: true }));
    const files: string[] = [];
    const watcher = await watchConfDir(confDir, {
      file: (path) => files.push(path),
      folder: () => {},
      error: () => {},
    });
    cleanups.push(() => watcher.close());
    await writeFile(join(confDir, 'top.conf'), '[S]\nk = 1\n');
    await writeFile(join(confDir, 'shop', 'db', 'pg.conf'), '[S]\nk = 1\n');
    await waitFor(() => files.includes('top.conf') && files.includes('shop/db/pg.conf'));
  });

  it('gives a hint for every write, even 5 ms apart (no throttle drops the second)', async () => {
    const w = await watched();
    const file = join(w.confDir, 'app.conf');
    for (let i = 0; i < 10; i++) {
      const before = w.files.length;
      await writeFile(file, `[S]\nk = ${i}\n`);
      await waitFor(() => w.files.length > before, { interval: 1, message: `no hint for write ${i}` });
      await new Promise((r) => setTimeout(r, 5));
    }
  });

  it('follows a folder made after start, and one moved: the new paths are named, the old folder too', async () => {
    const w = await watched();
    await mkdir(join(w.confDir, 'new'));
    await waitFor(() => w.folders.includes('new'));
    await writeFile(join(w.confDir, 'new', 'a.conf'), '[S]\nk = 1\n');
    await waitFor(() => w.files.includes('new/a.conf'));

    await rename(join(w.confDir, 'new'), join(w.confDir, 'moved'));
    await waitFor(() => w.folders.includes('moved'));
    expect(w.folders).toContain('new');
    w.files.length = 0;
    await writeFile(join(w.confDir, 'moved', 'a.conf'), '[S]\nk = 2\n');
    await waitFor(() => w.files.includes('moved/a.conf'));
    // The moved folder's old watch is gone: nothing is reported under the old name.
    expect(w.files.filter((f) => f.startsWith('new/'))).toEqual([]);
  });

  it('names nothing for what is never mirrored: temp files, dot-folders, other suffixes, link/etcd', async () => {
    const w = await watched();
    await mkdir(join(w.confDir, '.git'));
    await mkdir(join(w.confDir, 'link', 'etcd'), { recursive: true });
    await writeFile(join(w.confDir, '.link-etcd-1-0123456789abcdef.tmp'), 'x');
    await writeFile(join(w.confDir, 'notes.txt'), 'x');
    await writeFile(join(w.confDir, '.git', 'x.conf'), 'x');
    await writeFile(join(w.confDir, 'link', 'etcd', 'sync.conf'), 'x');
    // A mirrored write last: once it is named, the others had their chance.
    await writeFile(join(w.confDir, 'last.conf'), '[S]\nk = 1\n');
    await waitFor(() => w.files.includes('last.conf'));
    expect(w.files.filter((f) => f !== 'last.conf')).toEqual([]);
    expect(w.errors).toEqual([]);
  });

  it('watches the conf dir afresh when it is replaced (moved away, made again), within ROOT_CHECK_MS', async () => {
    const w = await watched();
    const away = `${w.confDir}.old`;
    cleanups.push(() => rm(away, { recursive: true, force: true }));
    await rename(w.confDir, away);
    await mkdir(w.confDir);
    await waitFor(() => w.folders.includes(''), { timeout: ROOT_CHECK_MS * 3 });
    w.files.length = 0;
    await writeFile(join(w.confDir, 'fresh.conf'), '[S]\nk = 1\n');
    await waitFor(() => w.files.includes('fresh.conf'));
    // The old folder's watch is gone: an edit there is not reported as one in the conf dir.
    await writeFile(join(away, 'stale.conf'), '[S]\nk = 1\n');
    await writeFile(join(w.confDir, 'last.conf'), '[S]\nk = 1\n');
    await waitFor(() => w.files.includes('last.conf'));
    expect(w.files).not.toContain('stale.conf');
  });

  it('follows a conf dir that is itself a symlink (a deploy re-pointing it)', async () => {
    const real = await mkdtemp(join(tmpdir(), 'link-etcd-watch-real-'));
    const link = `${real}-link`;
    cleanups.push(() => rm(real, { recursive: true, force: true }));
    cleanups.push(() => rm(link, { force: true }));
    await symlink(real, link);
    const files: string[] = [];
    const watcher = await watchConfDir(link, {
      file: (p) => files.push(p),
      folder: () => {},
      error: () => {},
    });
    cleanups.push(() => watcher.close());
    await writeFile(join(real, 'app.conf'), '[S]\nk = 1\n');
    await waitFor(() => files.includes('app.conf'));
  });

  it('does not watch through a symlinked folder', async () => {
    const w = await watched();
    const outside = await mkdtemp(join(tmpdir(), 'link-etcd-watch-outside-'));
    cleanups.push(() => rm(outside, { recursive: true, force: true }));
    await symlink(outside, join(w.confDir, 'linked'));
    await writeFile(join(outside, 'secret.conf'), '[S]\nk = 1\n');
    await writeFile(join(w.confDir, 'last.conf'), '[S]\nk = 1\n');
    await waitFor(() => w.files.includes('last.conf'));
    expect(w.files.filter((f) => f.startsWith('linked'))).toEqual([]);
  });
});
