import { execFile } from 'node:child_process';
import { link, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import { beforeEach, describe, expect, it } from 'vitest';
import type { EtcdServer } from '../harness/etcd.js';
import { waitFor } from '../harness/wait.js';
import { clientFor } from '../support/client.js';
import { etcdValue as valueAt } from '../support/lifecycle.js';
import { useSyncFixtures } from '../support/sync.js';

/** What a writer of the conf dir can put there: none of it may stall, leak, or be rewritten lossily. */

const sh = promisify(execFile);
const sync = useSyncFixtures();
const { fixture } = sync;
let etcd: EtcdServer;
beforeEach(() => {
  etcd = sync.etcd();
});
const etcdValue = (key: string) => valueAt(etcd, key);
const failing = (f: { engine: { status(): { failing: ReadonlyArray<{ file: string; reason: string }> } } }) =>
  f.engine.status().failing;

describe('hostile files in the conf dir', () => {
  it('refuses a FIFO named *.conf without blocking: both directions go on, and stop() returns', async () => {
    const f = await fixture();
    await writeFile(join(f.confDir, 'ok.conf'), '[S]\nk = 1\n');
    await f.start();
    await sh('mkfifo', [join(f.confDir, 'pipe.conf')]);
    await waitFor(() => failing(f).some((x) => x.file === 'pipe.conf' && /FIFO/.test(x.reason)));
    await writeFile(join(f.confDir, 'ok.conf'), '[S]\nk = 2\n');
    await waitFor(async () => (await etcdValue(`${f.prefix}ok.conf/S/k`)) === '2');
    await etcd.etcdctl('put', `${f.prefix}ok.conf/S/k`, '3');
    await waitFor(async () => (await readFile(join(f.confDir, 'ok.conf'), 'utf8')) === '[S]\nk = 3\n');
    // A key for the FIFO's path writes nothing into it and stalls nothing.
    await etcd.etcdctl('put', `${f.prefix}pipe.conf/S/k`, 'x');
    await f.engine.reconcileAll();
    await rm(join(f.confDir, 'pipe.conf'));
    await waitFor(
      async () => (await readFile(join(f.confDir, 'pipe.conf'), 'utf8').catch(() => '')) === '[S]\nk = x\n',
    );
    await f.stop();
  });

  it('refuses a file over max_file_size with a reason, and mirrors the others', async () => {
    const f = await fixture();
    const body = Array.from({ length: 2000 }, (_, i) => `k${i} = v\n`).join('');
    await writeFile(join(f.confDir, 'big.conf'), `[S]\n${body}`);
    await writeFile(join(f.confDir, 'small.conf'), '[S]\nk = 1\n');
    await f.start({ maxFileBytes: 10_000 });
    expect(failing(f)).toContainEqual({
      file: 'big.conf',
      reason: expect.stringMatching(/over max_file_size/),
    });
    expect(await etcdValue(`${f.prefix}small.conf/S/k`)).toBe('1');
    expect(await etcd.etcdctl('get', '--prefix', '--keys-only', `${f.prefix}big.conf`)).toBe('');
  });

  it('refuses a file that is not UTF-8, naming the byte offset, and never rewrites it', async () => {
    const f = await fixture();
    const bytes = Buffer.concat([
      Buffer.from('[S]\nk = 1\nbin = '),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('\n'),
    ]);
    await writeFile(join(f.confDir, 'latin.conf'), bytes);
    await f.start();
    expect(failing(f)).toContainEqual({
      file: 'latin.conf',
      reason: expect.stringMatching(/not valid UTF-8 \(byte offset 16\)/),
    });
    await etcd.etcdctl('put', `${f.prefix}latin.conf/S/k`, '2');
    await f.engine.reconcileAll();
    expect(await readFile(join(f.confDir, 'latin.conf'))).toEqual(bytes);
  });

  it('refuses a hard link (it could be link/etcd/middleware.conf under another name)', async () => {
    const f = await fixture();
    await mkdir(join(f.confDir, 'link', 'etcd'), { recursive: true });
    await writeFile(join(f.confDir, 'link', 'etcd', 'middleware.conf'), '[ETCD]\npassword = hunter2\n');
    await link(join(f.confDir, 'link', 'etcd', 'middleware.conf'), join(f.confDir, 'innocent.conf'));
    await f.start();
    expect(failing(f)).toContainEqual({
      file: 'innocent.conf',
      reason: expect.stringMatching(/2 hard links/),
    });
    expect(await etcd.etcdctl('get', '--prefix', f.prefix)).not.toContain('hunter2');
    expect(JSON.stringify(f.lines)).not.toContain('hunter2');
  });

  it('refuses a key that is not valid UTF-8: no two keys collapse into one lossy name', async () => {
    const f = await fixture();
    await f.start();
    const raw = new Etcd3({ hosts: etcd.endpoint });
    try {
      const key = (byte: number) =>
        Buffer.concat([Buffer.from(`${f.prefix}bad`), Buffer.from([byte]), Buffer.from('.conf/S/k')]);
      await raw.put(key(0xff)).value('one');
      await raw.put(key(0xfe)).value('two');
    } finally {
      raw.close();
    }
    await etcd.etcdctl('put', `${f.prefix}fine.conf/S/k`, 'ok');
    await waitFor(async () => (await readdir(f.confDir)).includes('fine.conf'));
    expect(await readdir(f.confDir)).toEqual(['fine.conf']);
    expect(f.lines.filter((l) => l.from === 'etcd' && /not valid UTF-8/.test(String(l.reason)))).toHaveLength(
      1,
    );
  });

  it('leaves nothing behind after 1,000 put-and-delete cycles of new names, refused ones included', async () => {
    const f = await fixture();
    await f.start();
    const writer = clientFor(etcd);
    try {
      for (let i = 0; i < 1000; i++) {
        const name = i % 2 === 0 ? `cycle${i}.conf` : `bad;${i}.conf`;
        await writer.set(`${f.prefix}${name}/S/k`, 'v');
        await writer.delete(`${f.prefix}${name}/S/k`);
      }
    } finally {
      await writer.close();
    }
    await etcd.etcdctl('put', `${f.prefix}last.conf/S/k`, 'ok');
    await waitFor(async () => (await readdir(f.confDir)).includes('last.conf'));
    await f.engine.reconcileAll();
    expect(await readdir(f.confDir)).toEqual(['last.conf']);
    expect(f.engine.status().failing).toEqual([]);
  });

  it('drops the reason of a bad file once its folder is renamed away, and names it at its new path', async () => {
    // Found by an attack on a running daemon: /readyz stayed 503 for a path gone 11 minutes before.
    const f = await fixture();
    await mkdir(join(f.confDir, 'z2'));
    await writeFile(join(f.confDir, 'z2', 'bad.conf'), 'no section header\n');
    await f.start();
    await waitFor(() => failing(f).some((x) => x.file === 'z2/bad.conf'));
    await rename(join(f.confDir, 'z2'), join(f.confDir, 'z3'));
    await waitFor(() => {
      const files = failing(f).map((x) => x.file);
      return !files.includes('z2/bad.conf') && files.includes('z3/bad.conf');
    });
    await rm(join(f.confDir, 'z3'), { recursive: true });
    await waitFor(() => failing(f).length === 0);
  });

  it('writes a file whose name is 250 bytes long (its temp file name is short)', async () => {
    const f = await fixture();
    const name = `${'n'.repeat(245)}.conf`;
    await f.start();
    await etcd.etcdctl('put', `${f.prefix}${name}/S/k`, 'long');
    await waitFor(
      async () => (await readFile(join(f.confDir, name), 'utf8').catch(() => '')) === '[S]\nk = long\n',
    );
  });

  it('removes a file it created once etcd deleted all its keys, but never a file a person made', async () => {
    const f = await fixture();
    await writeFile(join(f.confDir, 'mine.conf'), '[S]\nk = 1\n');
    await f.start();
    await etcd.etcdctl('put', `${f.prefix}made/by-etcd.conf/S/k`, 'v');
    await waitFor(async () =>
      (await readdir(join(f.confDir, 'made')).catch(() => [] as string[])).includes('by-etcd.conf'),
    );
    await etcd.etcdctl('del', `${f.prefix}made/by-etcd.conf/S/k`);
    await etcd.etcdctl('del', `${f.prefix}mine.conf/S/k`);
    await waitFor(async () => (await readFile(join(f.confDir, 'mine.conf'), 'utf8')) === '[S]\n');
    await waitFor(async () => !(await readdir(join(f.confDir, 'made'))).includes('by-etcd.conf'));
  });
});

describe('temp files a crash leaves behind', () => {
  it('are removed at start whatever their age when their writer is gone, and by the full reconcile of a running daemon', async () => {
    const f = await fixture();
    await mkdir(join(f.confDir, 'sub'));
    // A writer that is gone (pid 2^22 - 1 is above Linux's default pid_max), one of this very process
    // (a daemon that is pid 1 in every container start is its own predecessor), and a live one.
    const dead = `.link-etcd-4194303-${'a'.repeat(16)}.tmp`;
    const mine = `.link-etcd-${process.pid}-${'b'.repeat(16)}.tmp`;
    const live = `.link-etcd-1-${'c'.repeat(16)}.tmp`;
    for (const name of [dead, mine, live]) await writeFile(join(f.confDir, 'sub', name), 'partial');
    await f.start({ fullReconcileMs: 200 });
    expect((await readdir(join(f.confDir, 'sub'))).sort()).toEqual([live]);
    await writeFile(join(f.confDir, dead), 'left by a crash while running');
    await waitFor(async () => !(await readdir(f.confDir)).includes(dead));
  });
});
