import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rename, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeEach, describe, expect, it } from 'vitest';
import type { EtcdServer } from '../harness/etcd.js';
import { waitFor } from '../harness/wait.js';
import { etcdValue as valueAt } from '../support/lifecycle.js';
import { useSyncFixtures } from '../support/sync.js';

const sh = promisify(execFile);
const sync = useSyncFixtures();
const { fixture } = sync;
let etcd: EtcdServer;
beforeEach(() => {
  etcd = sync.etcd();
});
const etcdValue = (key: string) => valueAt(etcd, key);

async function etcdKeys(prefix: string): Promise<string[]> {
  return (await etcd.etcdctl('get', '--prefix', '--keys-only', prefix)).split('\n').filter((l) => l !== '');
}

const APP = '; the app\n[MYCONF]\nmyparam = 3\n\n# the name\nname = x\n';

describe('link-etcd sync (real etcd, real files)', () => {
  it('pushes files at start, then mirrors both ways live, changing only the edited lines', async () => {
    const f = await fixture();
    await mkdir(join(f.confDir, 'myproject'));
    const file = join(f.confDir, 'myproject', 'app.conf');
    await writeFile(file, APP);
    await f.start();
    expect(f.engine.status().ready).toBe(true);
    expect(await etcdValue(`${f.prefix}myproject/app.conf/MYCONF/myparam`)).toBe('3');

    await etcd.etcdctl('put', `${f.prefix}myproject/app.conf/MYCONF/myparam`, '7');
    await waitFor(async () => (await readFile(file, 'utf8')).includes('myparam = 7'));
    expect(await readFile(file, 'utf8')).toBe(APP.replace('myparam = 3', 'myparam = 7'));
    await waitFor(() =>
      f.lines.some(
        (l) => l.msg === 'written to the file' && JSON.stringify(l.changes).includes('MYCONF/myparam'),
      ),
    );

    await etcd.etcdctl('put', `${f.prefix}myproject/app.conf/NEW/key`, ' spaced; #value ');
    await waitFor(async () => (await readFile(file, 'utf8')).includes('[NEW]'));
    expect(await readFile(file, 'utf8')).toBe(
      `${APP.replace('myparam = 3', 'myparam = 7')}\n[NEW]\nkey = " spaced; #value "\n`,
    );

    await writeFile(file, (await readFile(file, 'utf8')).replace('name = x', 'name = from-file'));
    await waitFor(async () => (await etcdValue(`${f.prefix}myproject/app.conf/MYCONF/name`)) === 'from-file');
    expect(await etcdValue(`${f.prefix}myproject/app.conf/NEW/key`)).toBe(' spaced; #value ');
  });

  it('starts quietly the first time (etcd empty), but warns when a missing base meets keys on both sides', async () => {
    const f = await fixture();
    await writeFile(join(f.confDir, 'app.conf'), APP);
    await f.start();
    const unionLine = () => f.lines.find((l) => String(l.msg).endsWith('merging both sides as a union'));
    expect(unionLine()).toMatchObject({
      level: 30,
      msg: 'no base journal yet: merging both sides as a union',
    });
    expect(f.lines.filter((l) => Number(l.level) >= 40)).toEqual([]);
    await f.stop();

    // The state dir lost while etcd holds the keys: a union may bring deleted keys back, so say so.
    await rm(f.stateDir, { recursive: true, force: true });
    f.lines.length = 0;
    await f.start();
    expect(unionLine()).toMatchObject({ level: 40 });
  });

  it('follows editor save patterns: sed -i, rename-save, truncate-then-write, two writes 10 ms apart', async () => {
    const f = await fixture();
    const file = join(f.confDir, 'app.conf');
    await writeFile(file, APP);
    await f.start();
    const key = `${f.prefix}app.conf/MYCONF/myparam`;

    await sh('sed', ['-i', 's/myparam = 3/myparam = 4/', file]);
    await waitFor(async () => (await etcdValue(key)) === '4');

    await writeFile(join(f.confDir, '.app.conf.swp'), APP.replace('myparam = 3', 'myparam = 5'));
    await rename(join(f.confDir, '.app.conf.swp'), file);
    await waitFor(async () => (await etcdValue(key)) === '5');

    await truncate(file, 0);
    await new Promise((r) => setTimeout(r, 10)); // the gap between an editor's two syscalls
    await writeFile(file, APP.replace('myparam = 3', 'myparam = 6'));
    await waitFor(async () => (await etcdValue(key)) === '6');

    await writeFile(file, APP.replace('myparam = 3', 'myparam = 7'));
    await new Promise((r) => setTimeout(r, 10)); // a second save 10 ms after the first: file watchers are known to drop those
    await writeFile(file, APP.replace('myparam = 3', 'myparam = 8'));
    await waitFor(async () => (await etcdValue(key)) === '8');
    expect(await etcdValue(`${f.prefix}app.conf/MYCONF/name`)).toBe('x');
    // The truncation never reached etcd as a deletion.
    expect(f.lines.filter((l) => JSON.stringify(l.changes ?? []).includes('"delete"'))).toEqual([]);
  });

  it('does not echo its own writes back', async () => {
    const f = await fixture();
    const file = join(f.confDir, 'echo.conf');
    await writeFile(file, '[S]\nk = 1\n');
    await f.start();
    const key = `${f.prefix}echo.conf/S/k`;
    await etcd.etcdctl('put', key, '2');
    await waitFor(async () => (await readFile(file, 'utf8')) === '[S]\nk = 2\n');
    // A sentinel round trip: once it is through, anything our write set off has been through as well.
    await etcd.etcdctl('put', `${f.prefix}echo.conf/S/sentinel`, 's');
    await waitFor(async () => (await readFile(file, 'utf8')).includes('sentinel = s'));
    const revisions = JSON.parse(await etcd.etcdctl('get', key, '-w', 'json')) as {
      kvs: Array<{ version: number }>;
    };
    expect(revisions.kvs[0]?.version).toBe(2);
    const pushes = f.lines.filter(
      (l) => l.msg === 'written to etcd' && JSON.stringify(l.changes).includes(key),
    );
    expect(pushes.map((l) => l.changes)).toEqual([[['put', key, 'new in the file', null, '1']]]);
  });

  it('merges edits made on both sides while it was stopped; a conflict keeps the winner on both sides and records the loser', async () => {
    const f = await fixture();
    const file = join(f.confDir, 'off.conf');
    await writeFile(file, '[S]\nfileside = 1\netcdside = 1\nboth = 1\n');
    await f.start();
    await f.stop();

    await writeFile(file, '[S]\nfileside = 2\netcdside = 1\nboth = file-value\n');
    await etcd.etcdctl('put', `${f.prefix}off.conf/S/etcdside`, '2');
    await etcd.etcdctl('put', `${f.prefix}off.conf/S/both`, 'etcd-value');

    await f.start();
    expect(await etcdValue(`${f.prefix}off.conf/S/fileside`)).toBe('2');
    expect(await etcdValue(`${f.prefix}off.conf/S/both`)).toBe('etcd-value');
    expect(await readFile(file, 'utf8')).toBe('[S]\nfileside = 2\netcdside = 2\nboth = etcd-value\n');
    const records = (await readdir(f.confDir)).filter((n) => n.startsWith('off.conf.conflict-'));
    expect(records).toHaveLength(1);
    expect(await readFile(join(f.confDir, records[0] as string), 'utf8')).toMatch(
      /\[S\]\n.*\nboth = file-value\n/,
    );
    expect(
      f.lines.some((l) => l.level === 50 && l.key === `${f.prefix}off.conf/S/both` && l.winner === 'etcd'),
    ).toBe(true);
    // The record is not mirrored.
    expect((await etcdKeys(f.prefix)).some((k) => k.includes('conflict'))).toBe(false);
  });

  it('keeps the losing value of a secret-looking key out of the log, but in the conflict record', async () => {
    const f = await fixture();
    const file = join(f.confDir, 'secret.conf');
    await writeFile(file, '[DB]\napi_token = old\n');
    await f.start();
    await f.stop();
    await writeFile(file, '[DB]\napi_token = file-secret-123\n');
    await etcd.etcdctl('put', `${f.prefix}secret.conf/DB/api_token`, 'etcd-secret-456');
    await f.start();
    const conflict = f.lines.find((l) => l.winner !== undefined && l.loser !== undefined);
    expect(conflict?.lostValue).toBe('***');
    expect(JSON.stringify(f.lines)).not.toContain('file-secret-123');
    const record = (await readdir(f.confDir)).find((n) => n.startsWith('secret.conf.conflict-')) as string;
    expect(await readFile(join(f.confDir, record), 'utf8')).toContain('api_token = file-secret-123');
  });

  it('lets the file win a conflict with --conflict file-wins', async () => {
    const f = await fixture();
    const file = join(f.confDir, 'fw.conf');
    await writeFile(file, '[S]\nk = 1\n');
    await f.start();
    await f.stop();
    await writeFile(file, '[S]\nk = file\n');
    await etcd.etcdctl('put', `${f.prefix}fw.conf/S/k`, 'etcd');
    await f.start({ policy: 'file-wins' });
    expect(await etcdValue(`${f.prefix}fw.conf/S/k`)).toBe('file');
    expect(await readFile(file, 'utf8')).toBe('[S]\nk = file\n');
  });

  it('pushes nothing from a file that does not parse, names file and line, and goes on with the others', async () => {
    const f = await fixture();
    await writeFile(join(f.confDir, 'good.conf'), '[S]\nk = 1\n');
    await writeFile(join(f.confDir, 'bad.conf'), '[S]\nk = 1\n');
    await f.start();
    await writeFile(join(f.confDir, 'bad.conf'), '[S]\nk = 2\nthis is not ini\n');
    await writeFile(join(f.confDir, 'good.conf'), '[S]\nk = 2\n');
    await waitFor(async () => (await etcdValue(`${f.prefix}good.conf/S/k`)) === '2');
    await waitFor(() => f.lines.some((l) => String(l.msg).includes('bad.conf:3: expected `key = value`')));
    expect(await etcdValue(`${f.prefix}bad.conf/S/k`)).toBe('1');
    // etcd changes to the broken file wait too: its author's text is not overwritten.
    await etcd.etcdctl('put', `${f.prefix}bad.conf/S/k`, '9');
    await writeFile(join(f.confDir, 'bad.conf'), '[S]\nk = 1\n');
    await waitFor(async () => (await readFile(join(f.confDir, 'bad.conf'), 'utf8')) === '[S]\nk = 9\n');
  });

  it('refuses hostile keys: nothing is written outside the conf dir, into dot-files or link/etcd', async () => {
    const f = await fixture();
    await f.start();
    const hostile = [
      '../escape.conf/S/k',
      'a/../../escape2.conf/S/k',
      '.hidden.conf/S/k',
      'dir/.git/x.conf/S/k',
      'link/etcd/middleware.conf/ETCD/host',
      'ctrl\u0001.conf/S/k',
    ];
    for (const k of hostile) await etcd.etcdctl('put', `${f.prefix}${k}`, 'evil');
    await etcd.etcdctl('put', `${f.prefix}fine.conf/S/k`, 'ok');
    await waitFor(async () =>
      (await readFile(join(f.confDir, 'fine.conf'), 'utf8').catch(() => '')).includes('k = ok'),
    );
    expect((await readdir(f.confDir)).sort()).toEqual(['fine.conf']);
    expect(await readdir(join(f.confDir, '..')).then((names) => names.includes('escape.conf'))).toBe(false);
    expect(f.lines.filter((l) => l.from === 'etcd' && l.reason !== undefined).length).toBe(hostile.length);
  });

  it('holds back a mass deletion until confirmed, but carries a single removed file over', async () => {
    const f = await fixture();
    for (const n of ['a', 'b', 'c', 'd']) await writeFile(join(f.confDir, `${n}.conf`), `[S]\nk = ${n}\n`);
    await f.start();
    await rm(join(f.confDir, 'a.conf'));
    await waitFor(async () => (await etcdValue(`${f.prefix}a.conf/S/k`)) === undefined);

    for (const n of ['b', 'c', 'd']) await rm(join(f.confDir, `${n}.conf`));
    await waitFor(() => f.engine.status().blocked.length > 0);
    expect(f.engine.status().ready).toBe(false);
    expect(await etcdKeys(f.prefix)).toHaveLength(3);
    // Emptied: the conf-dir case of the guard, reported with what it holds.
    expect(f.lines).toContainEqual(expect.objectContaining({ level: 50, side: 'conf-dir', of: 3 }));
    expect(f.lines.some((l) => l.level === 50 && String(l.msg).includes('--allow-mass-delete'))).toBe(true);
    await f.stop();

    await f.start({ allowMassDelete: true });
    expect(await etcdKeys(f.prefix)).toEqual([]);
  });

  it('never deletes in etcd because the conf dir vanished, and never empties files because etcd lost keys', async () => {
    const f = await fixture();
    for (const n of ['a', 'b', 'c']) await writeFile(join(f.confDir, `${n}.conf`), `[S]\nk = ${n}\n`);
    await f.start();
    await f.stop();
    await etcd.etcdctl('del', '--prefix', f.prefix);
    await f.start();
    expect(f.engine.status().ready).toBe(false);
    expect(await readFile(join(f.confDir, 'a.conf'), 'utf8')).toBe('[S]\nk = a\n');
    await f.stop();

    for (const n of ['a', 'b', 'c']) await rm(join(f.confDir, `${n}.conf`));
    await etcd.etcdctl('put', `${f.prefix}a.conf/S/k`, 'a');
    await etcd.etcdctl('put', `${f.prefix}b.conf/S/k`, 'b');
    await f.start();
    expect(await etcdKeys(f.prefix)).toHaveLength(2);
    expect(f.engine.status().blocked[0]?.side).toBe('conf-dir');
  });

  it('keeps a file edit made while etcd is down, and pushes it once etcd is back', async () => {
    const f = await fixture();
    const file = join(f.confDir, 'down.conf');
    await writeFile(file, '[S]\nk = 1\n');
    await f.start();
    await etcd.stop();
    await writeFile(file, '[S]\nk = while-down\n');
    // The pass fails against the stopped etcd and is retried; nothing is lost meanwhile.
    await waitFor(() => f.lines.some((l) => String(l.msg).startsWith('sync pass failed')), {
      timeout: 15_000,
    });
    await etcd.start();
    await waitFor(async () => (await etcdValue(`${f.prefix}down.conf/S/k`)) === 'while-down', {
      timeout: 20_000,
    });
    await etcd.etcdctl('put', `${f.prefix}down.conf/S/k`, 'after');
    await waitFor(async () => (await readFile(file, 'utf8')) === '[S]\nk = after\n', { timeout: 15_000 });
  });

  it('never mirrors link/etcd/ in any letter case, from either side, at start, live or in a full reconcile', async () => {
    const f = await fixture();
    const settings = join(f.confDir, 'Link', 'Etcd');
    await mkdir(settings, { recursive: true });
    await writeFile(join(settings, 'sync.conf'), '[SYNC]\nconflict = file-wins\n');
    await f.start();
    await writeFile(join(settings, 'sync.conf'), '[SYNC]\nconflict = newest\n');
    await writeFile(join(settings, 'new.conf'), '[S]\nk = 1\n');
    await etcd.etcdctl('put', `${f.prefix}LINK/etcd/pushed.conf/S/k`, 'x');
    // A file and a key that are mirrored, after the ones that are not: once these are through, so were those.
    await writeFile(join(f.confDir, 'control.conf'), '[S]\nk = 1\n');
    await etcd.etcdctl('put', `${f.prefix}control2.conf/S/k`, '2');
    await waitFor(async () => (await etcdValue(`${f.prefix}control.conf/S/k`)) === '1');
    await waitFor(async () => (await readdir(f.confDir)).includes('control2.conf'));
    await f.engine.reconcileAll();
    expect((await etcdKeys(f.prefix)).filter((k) => !k.includes('control'))).toEqual([
      `${f.prefix}LINK/etcd/pushed.conf/S/k`,
    ]);
    expect(await readdir(f.confDir)).not.toContain('LINK');
    expect(f.lines).toContainEqual(
      expect.objectContaining({
        key: `${f.prefix}LINK/etcd/pushed.conf/S/k`,
        reason: expect.stringMatching(/never mirrored/),
      }),
    );
  });

  it('catches, by its periodic full reconcile, a file change no event reported', async () => {
    const f = await fixture();
    const file = join(f.confDir, 'missed.conf');
    await writeFile(file, '[S]\nk = 1\n');
    // No file watcher: as if it missed every event from now on.
    await f.start({ fullReconcileMs: 300, watchFiles: false });
    await writeFile(file, '[S]\nk = unseen\n');
    await waitFor(async () => (await etcdValue(`${f.prefix}missed.conf/S/k`)) === 'unseen');
  });
});

describe('the lag the metrics report', () => {
  it('is 0 after start, after our own writes, and after a foreign change has landed', async () => {
    const f = await fixture();
    await writeFile(join(f.confDir, 'lag.conf'), '[S]\nk = 1\n');
    await etcd.etcdctl('put', `${f.prefix}other.conf/S/k`, 'x');
    await f.start();
    const lag = () => f.engine.status().seenRevision - f.engine.status().appliedRevision;
    expect(f.engine.status().seenRevision).toBeGreaterThan(0);
    expect(lag()).toBe(0);
    await writeFile(join(f.confDir, 'lag.conf'), '[S]\nk = 2\n');
    await waitFor(async () => (await etcdValue(`${f.prefix}lag.conf/S/k`)) === '2');
    // Our own write comes back through the watch: once it has, nothing is behind.
    await waitFor(() => f.engine.status().seenRevision > 0 && lag() === 0);
    await etcd.etcdctl('put', `${f.prefix}other.conf/S/k`, 'y');
    await waitFor(async () => (await readFile(join(f.confDir, 'other.conf'), 'utf8')).includes('k = y'));
    await waitFor(() => lag() === 0);
    expect(f.engine.status().appliedRevision).toBeGreaterThanOrEqual(
      Number(
        JSON.parse(await etcd.etcdctl('get', `${f.prefix}other.conf/S/k`, '-w', 'json')).kvs[0].mod_revision,
      ),
    );
  });
});
