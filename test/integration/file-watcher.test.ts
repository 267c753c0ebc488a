import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT_CHECK_MS, watchConfDir } from '../../src/sync/file-watcher.js';
import { waitFor } from '../harness/wait.js';
import { attacker } from '../support/attacker.js';

/**
 * The conf dir's watcher on real folders (no etcd): which hints it gives.
 * Hints are all the engine needs (it reads and compares), but a missing
 * hint is a change that waits for the full reconcile.
 */
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Keeps this process's event loop busy, as a long synchronous task would. */
function busyFor(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

async function watched(tuning: { stormEvents?: number; queuedEvents?: number } = {}) {
  const confDir = await mkdtemp(join(tmpdir(), 'link-etcd-watch-'));
  const files: string[] = [];
  const folders: string[] = [];
  const errors: unknown[] = [];
  const watcher = await watchConfDir(
    confDir,
    {
      file: (path) => files.push(path),
      folder: (dir) => folders.push(dir),
      error: (error) => errors.push(error),
    },
    tuning,
  );
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

  it('sheds a folder whose watch floods it, looks at that folder again and watches it afresh', async () => {
    const w = await watched({ stormEvents: 100 });
    await mkdir(join(w.confDir, 'calm'));
    // Written without letting the loop turn: every event is queued by the time the watch reads them.
    for (let i = 0; i < 200; i++) writeFileSync(join(w.confDir, `f${i}.conf`), '[S]\nk = 1\n');
    // A file's events are no folder move: only a shed folder is looked at whole.
    await waitFor(() => w.folders.includes(''), { message: 'the flooded folder was not looked at again' });
    w.files.length = 0;
    await writeFile(join(w.confDir, 'after.conf'), '[S]\nk = 1\n');
    await writeFile(join(w.confDir, 'calm', 'after.conf'), '[S]\nk = 1\n');
    await waitFor(() => w.files.includes('after.conf') && w.files.includes('calm/after.conf'));
    expect(w.errors).toEqual([]);
  });

  it('keeps naming edits while another process renames a folder in a loop', async () => {
    // Once, a syscall per event kept the daemon in libuv's inotify read loop for minutes (issue 12).
    const w = await watched();
    await mkdir(join(w.confDir, 'w'));
    await mkdir(join(w.confDir, 'calm'));
    // Three of them on two cores: the watcher must outpace them all.
    const storm = [0, 1, 2].map(() =>
      attacker(
        w.confDir,
        `tryIt(() => fs.renameSync('w', 'w.real'));
        tryIt(() => fs.symlinkSync('calm', 'w'));
        tryIt(() => fs.unlinkSync('w'));
        tryIt(() => fs.renameSync('w.real', 'w'));`,
        (cleanup) => cleanups.push(cleanup),
        20_000,
      ),
    );
    await waitFor(() => w.folders.includes('w'), { message: 'the storm has not started' });
    const until = Date.now() + 5_000;
    for (let round = 0; Date.now() < until; round++) {
      // Now and then this process is busy elsewhere (a GC, a big pass) and the kernel's queue fills
      // up: the watcher must catch up with a full queue while the storm goes on.
      // When events were lost (the kernel's queue is full), a hint for a folder holding the file
      // (given after the write) will do: the engine looks at every file in it.
      if (round % 10 === 0) busyFor(300);
      const edits = [`top${round}.conf`, `calm/c${round}.conf`];
      for (const edit of edits) await writeFile(join(w.confDir, edit), '[S]\nk = 1\n');
      const since = w.folders.length;
      const seen = (path: string) =>
        w.files.includes(path) || w.folders.slice(since).some((d) => d === '' || path.startsWith(`${d}/`));
      await waitFor(() => edits.every(seen), { message: `round ${round}: no hint during the storm` });
    }
    for (const writer of storm) writer.kill('SIGKILL');
    expect(w.errors).toEqual([]);
  });

  it('hands a storm of events on one file over once per turn of the loop, so a slow consumer keeps up', async () => {
    // The engine's work per hint is not free. Were it called for each raw event, a process saving
    // a file in a loop would keep the daemon inside libuv's inotify read loop for good.
    const confDir = await mkdtemp(join(tmpdir(), 'link-etcd-watch-'));
    cleanups.push(() => rm(confDir, { recursive: true, force: true }));
    await mkdir(join(confDir, 'calm'));
    const files: string[] = [];
    const watcher = await watchConfDir(confDir, {
      file: (path) => {
        busyFor(0.2);
        files.push(path);
      },
      folder: () => {},
      error: () => {},
    });
    cleanups.push(() => watcher.close());
    const storm = attacker(
      confDir,
      `tryIt(() => fs.writeFileSync('hot.tmp', 'x'));
      tryIt(() => fs.renameSync('hot.tmp', 'hot.conf'));`,
      (cleanup) => cleanups.push(cleanup),
      20_000,
    );
    await waitFor(() => files.includes('hot.conf'), { message: 'the storm has not started' });
    for (let round = 0; round < 20; round++) {
      await writeFile(join(confDir, 'calm', `c${round}.conf`), '[S]\nk = 1\n');
      await waitFor(() => files.includes(`calm/c${round}.conf`), { message: `round ${round}: no hint` });
    }
    storm.kill('SIGKILL');
    // Far fewer hints than events: they were merged.
    expect(files.filter((f) => f === 'hot.conf').length).toBeLessThan(20_000);
  });

  it('looks at everything again after a burst as long as the kernel queue (its overflow event is lost)', async () => {
    const w = await watched({ queuedEvents: 100 });
    await mkdir(join(w.confDir, 'a'));
    await mkdir(join(w.confDir, 'b'));
    await waitFor(() => w.folders.includes('a') && w.folders.includes('b'));
    w.folders.length = 0;
    for (let i = 0; i < 60; i++) {
      writeFileSync(join(w.confDir, 'a', `f${i}.conf`), '[S]\nk = 1\n');
      writeFileSync(join(w.confDir, 'b', `f${i}.conf`), '[S]\nk = 1\n');
    }
    await waitFor(() => w.folders.includes(''), {
      message: 'the long burst was not followed by a look at everything',
    });
  });

  it('hints an edit made while the loop was stalled and another folder stormed (the queue overflowed)', async () => {
    const w = await watched();
    await mkdir(join(w.confDir, 'w'));
    await mkdir(join(w.confDir, 'calm'));
    writeFileSync(join(w.confDir, 'w', 'a'), 'x');
    const storm = attacker(
      w.confDir,
      `tryIt(() => fs.renameSync('w/a', 'w/b')); tryIt(() => fs.renameSync('w/b', 'w/a'));`,
      (cleanup) => cleanups.push(cleanup),
      20_000,
    );
    await waitFor(() => w.folders.includes('w'), { message: 'the storm was never shed' });
    for (let round = 0; round < 3; round++) {
      const edit = `calm/x${round}.conf`;
      const since = w.folders.length;
      // An editor saves 200 ms into a 400 ms stall of this process (a GC, a big pass), while the
      // storm fills the kernel's queue: its event may be dropped, and must not be missed.
      const editor = spawn('sh', ['-c', `sleep 0.2; echo '[S]' > '${join(w.confDir, edit)}'`], {
        stdio: 'ignore',
      });
      busyFor(400);
      await new Promise((resolve) => editor.once('exit', resolve));
      await waitFor(
        () => w.files.includes(edit) || w.folders.slice(since).some((d) => d === '' || d === 'calm'),
        { message: `round ${round}: the edit was never hinted` },
      );
    }
    storm.kill('SIGKILL');
  });
});
