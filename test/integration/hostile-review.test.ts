import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import { beforeEach, describe, expect, it } from 'vitest';
import { runCommand } from '../../src/cli/hooks.js';
import type { EtcdServer } from '../harness/etcd.js';
import { waitFor } from '../harness/wait.js';
import { etcdValue as valueAt } from '../support/lifecycle.js';
import { useSyncFixtures } from '../support/sync.js';

/**
 * Holes found by a hostile review of issue 9 (a writer of keys under the
 * prefix, or of files in the conf dir): each test failed when it was written.
 */

const sh = promisify(execFile);
const sync = useSyncFixtures();
const { fixture, defer } = sync;
let etcd: EtcdServer;
beforeEach(() => {
  etcd = sync.etcd();
});
const etcdValue = (key: string) => valueAt(etcd, key);

describe('hostile review', () => {
  it('never mirrors link/etcd/middleware.conf after a writer of the conf dir renames `link`', async () => {
    const f = await fixture();
    const secret = `pw-${process.pid}-${Date.now()}`;
    await mkdir(join(f.confDir, 'link', 'etcd'), { recursive: true });
    await writeFile(join(f.confDir, 'link', 'etcd', 'middleware.conf'), `[ETCD]\npassword = ${secret}\n`);
    await f.start();
    // Needs the right to write the conf dir only, not link/ or link/etcd/.
    await rename(join(f.confDir, 'link'), join(f.confDir, 'moved'));
    await f.engine.reconcileAll();
    expect(await etcd.etcdctl('get', '--prefix', f.prefix)).not.toContain(secret);
    expect(JSON.stringify(f.lines)).not.toContain(secret);
  });

  it('never writes a value that is not UTF-8 into a file as U+FFFD', async () => {
    const f = await fixture();
    await f.start();
    const raw = new Etcd3({ hosts: etcd.endpoint });
    try {
      await raw.put(`${f.prefix}bin.conf/S/k`).value(Buffer.from([0x61, 0xff, 0x62]));
      await raw.put(`${f.prefix}bin.conf/S/plain`).value('x');
      await raw.put(`${f.prefix}control.conf/S/k`).value('1');
    } finally {
      raw.close();
    }
    await waitFor(async () => (await readdir(f.confDir)).includes('control.conf'));
    await f.engine.reconcileAll();
    // Refusing the key is fine; writing `a\uFFFDb` (which etcd never held) is not.
    const text = await readFile(join(f.confDir, 'bin.conf'), 'utf8').catch(() => '');
    expect(text).not.toContain('\uFFFD');
  });

  it('refuses a key whose conf path is longer than PATH_MAX up front: no folders, no stall', async () => {
    const f = await fixture();
    defer(() => sh('rm', ['-rf', join(f.confDir, 'a')]));
    await f.start();
    // 4,400 bytes of `a/`: one put, over 2,000 nested folders created through /proc/self/fd.
    await etcd.etcdctl('put', `${f.prefix}${'a/'.repeat(2200)}x.conf/S/k`, 'v');
    const t0 = Date.now();
    await etcd.etcdctl('put', `${f.prefix}ok.conf/S/k`, 'v');
    await waitFor(async () => (await readdir(f.confDir)).includes('ok.conf'), { timeout: 15_000 });
    const waited = Date.now() - t0;
    expect(await readdir(f.confDir)).toEqual(['ok.conf']);
    expect(waited).toBeLessThan(2_000);
  }, 25_000);

  it('forgets a file that failed to be written once etcd deleted its keys', async () => {
    const f = await fixture();
    // `x` is a file: no x/*.conf can be written.
    await writeFile(join(f.confDir, 'x'), 'not a folder\n');
    await f.start();
    const raw = new Etcd3({ hosts: etcd.endpoint });
    try {
      for (let i = 0; i < 100; i++) await raw.put(`${f.prefix}x/n${i}.conf/S/k`).value('v');
      await waitFor(() => f.engine.status().failing.length >= 100, { timeout: 15_000 });
      await raw.delete().prefix(`${f.prefix}x/`);
    } finally {
      raw.close();
    }
    await etcd.etcdctl('put', `${f.prefix}ok.conf/S/k`, 'v');
    await waitFor(async () => (await etcdValue(`${f.prefix}ok.conf/S/k`)) === 'v');
    await f.engine.reconcileAll();
    // Put-and-delete cycles of new names must not grow this (nor keep the daemon failing forever).
    expect(f.engine.status().failing).toEqual([]);
  }, 25_000);

  it('masks a conflict loser under common secret names (SECRET_KEY, aws_secret_access_key, credentials)', async () => {
    const f = await fixture();
    const names = ['SECRET_KEY', 'aws_secret_access_key', 'credentials', 'db_pwd'];
    await writeFile(join(f.confDir, 'app.conf'), `[S]\n${names.map((n) => `${n} = base`).join('\n')}\n`);
    await f.start();
    await waitFor(async () => (await etcdValue(`${f.prefix}app.conf/S/db_pwd`)) === 'base');
    await f.stop();
    const lost = `lost-${process.pid}-${Date.now()}`;
    await writeFile(join(f.confDir, 'app.conf'), `[S]\n${names.map((n) => `${n} = ${lost}`).join('\n')}\n`);
    for (const n of names) await etcd.etcdctl('put', `${f.prefix}app.conf/S/${n}`, 'etcd-won');
    await f.start();
    await waitFor(() => f.lines.some((l) => /conflict on/.test(String(l.msg))));
    expect(JSON.stringify(f.lines)).not.toContain(lost);
  });

  it('keeps {file} one word inside "$(...)": the tracked quote does not carry into a command substitution', async () => {
    // A conf path with a space (allow_any_names) must reach the program as one argument.
    const { output } = await runCommand('printf "%s" "$(printf "[%s]" {file})"', { file: '/c/a b.conf' }, 5);
    expect(output).toBe('[/c/a b.conf]');
  });
});
