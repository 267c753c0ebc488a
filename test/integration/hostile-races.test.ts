import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import type { EtcdServer } from '../harness/etcd.js';
import { waitFor } from '../harness/wait.js';
import { attacker as attackerIn } from '../support/attacker.js';
import { clientFor } from '../support/client.js';
import { etcdValue as valueAt } from '../support/lifecycle.js';
import { useSyncFixtures } from '../support/sync.js';

/**
 * Path races against a running engine, from a second process that can only
 * write in the conf dir: for LINK_ETCD_RACE_SECONDS (default 20) it swaps
 * symlinks in for files and folders as fast as it can. Not one swap may
 * make the engine read link/etcd/middleware.conf or write outside the conf dir.
 */

const SECONDS = Number(process.env.LINK_ETCD_RACE_SECONDS ?? 20);
const sync = useSyncFixtures();
const { fixture, defer } = sync;
let etcd: EtcdServer;
beforeEach(() => {
  etcd = sync.etcd();
});
const etcdValue = (key: string) => valueAt(etcd, key);

const attacker = (cwd: string, body: string) => attackerIn(cwd, body, defer);

const runFor = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe(`path races (${SECONDS} s each)`, () => {
  it('never reads link/etcd/middleware.conf through a symlink swapped in for a file or a folder', async () => {
    const f = await fixture();
    const secret = `pw-${process.pid}-${Date.now()}`;
    await mkdir(join(f.confDir, 'link', 'etcd'), { recursive: true });
    await writeFile(join(f.confDir, 'link', 'etcd', 'middleware.conf'), `[ETCD]\npassword = ${secret}\n`);
    await mkdir(join(f.confDir, 'd'));
    await writeFile(join(f.confDir, 'd', 'middleware.conf'), '[ETCD]\npassword = decoy\n');
    await writeFile(join(f.confDir, 'control.conf'), '[S]\nk = 0\n');
    // A full pass every 50 ms reads every file again: many reads, many chances for a swap to land between steps.
    await f.start({ fullReconcileMs: 50 });
    attacker(
      f.confDir,
      `for (let i = 0; i < 16; i++) {
        tryIt(() => fs.symlinkSync('link/etcd/middleware.conf', 'l' + i));
        tryIt(() => fs.renameSync('l' + i, 'r' + i + '.conf'));
        tryIt(() => fs.writeFileSync('t' + i, '[ETCD]\\npassword = decoy\\n'));
        tryIt(() => fs.renameSync('t' + i, 'r' + i + '.conf'));
      }
      tryIt(() => fs.renameSync('d', 'd.real'));
      tryIt(() => fs.symlinkSync('link/etcd', 'd'));
      tryIt(() => fs.unlinkSync('d'));
      tryIt(() => fs.renameSync('d.real', 'd'));`,
    );
    await runFor(SECONDS * 1000);
    // Still alive and mirroring after the storm.
    await writeFile(join(f.confDir, 'control.conf'), '[S]\nk = after\n');
    await waitFor(async () => (await etcdValue(`${f.prefix}control.conf/S/k`)) === 'after', {
      timeout: 15_000,
    });
    expect(await etcd.etcdctl('get', '--prefix', f.prefix)).not.toContain(secret);
    expect(JSON.stringify(f.lines)).not.toContain(secret);
    // The decoys did get through now and then: the attack ran against a live engine.
    expect(await etcd.etcdctl('get', '--prefix', f.prefix)).toContain('decoy');
  });

  it('never writes outside the conf dir through a folder swapped for a symlink while keys arrive', async () => {
    const f = await fixture();
    const outside = await mkdtemp(join(tmpdir(), 'link-etcd-outside-'));
    defer(() => rm(outside, { recursive: true, force: true }));
    await mkdir(join(f.confDir, 'w'));
    await f.start();
    const swapper = attacker(
      f.confDir,
      `tryIt(() => fs.renameSync('w', 'w.real'));
      tryIt(() => fs.symlinkSync(${JSON.stringify(outside)}, 'w'));
      tryIt(() => fs.unlinkSync('w'));
      tryIt(() => fs.renameSync('w.real', 'w'));`,
    );
    const writer = clientFor(etcd);
    defer(() => writer.close());
    const until = Date.now() + SECONDS * 1000;
    let n = 0;
    // The daemon runs in this process: every put of this client (5 s timeout) also proves the storm
    // does not stall its event loop (it once did, for minutes: issue 12).
    while (Date.now() < until) await writer.set(`${f.prefix}w/k${n++ % 500}.conf/S/k`, `v${n}`);
    swapper.kill('SIGKILL');
    await new Promise((resolve) => swapper.once('exit', resolve));
    expect(await readdir(outside)).toEqual([]);
    // Put back the folder: the writes held back during the storm land there, and only there.
    await rm(join(f.confDir, 'w'), { force: true }).catch(() => undefined);
    await rename(join(f.confDir, 'w.real'), join(f.confDir, 'w')).catch(() => undefined);
    await f.engine.reconcileAll();
    await waitFor(
      async () => (await readdir(join(f.confDir, 'w'))).filter((x) => x.endsWith('.conf')).length === 500,
      {
        timeout: 20_000,
      },
    );
    expect(await readdir(outside)).toEqual([]);
  });
});
