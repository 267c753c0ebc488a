import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import type { EtcdServer } from '../harness/etcd.js';
import { freePort } from '../harness/ports.js';
import { waitFor } from '../harness/wait.js';
import { useCliProcess } from '../support/cli-process.js';
import { etcdValue } from '../support/lifecycle.js';

const cliProcess = useCliProcess('conflicts');
const { dirs, cli, daemon } = cliProcess;
let etcd: EtcdServer;
beforeEach(() => {
  etcd = cliProcess.etcd();
});

describe('link-etcd conflicts', () => {
  it('lists a conflict made on purpose (secrets masked), resolves it keeping the loser on both sides, archives the record', async () => {
    const d = await dirs();
    const file = join(d.confDir, 'app.conf');
    await writeFile(file, '[S]\nk = 1\ndb_password = p1\nother = x\n');
    expect((await cli(d, 'sync', `--state-dir=${d.stateDir}`, `--prefix=${d.prefix}`, '--once')).code).toBe(
      0,
    );
    // Both sides change the same keys while no daemon runs.
    await writeFile(file, '[S]\nk = from-file\ndb_password = file-secret\nother = x\n');
    await etcd.etcdctl('put', `${d.prefix}app.conf/S/k`, 'from-etcd');
    await etcd.etcdctl('put', `${d.prefix}app.conf/S/db_password`, 'etcd-secret');

    const port = await freePort();
    const p = daemon(d, '--conflict=etcd-wins', `--http=127.0.0.1:${port}`);
    await waitFor(() => p.lines.some((l) => l.msg === 'in sync; following both sides'), { timeout: 20_000 });
    await waitFor(async () => (await readFile(file, 'utf8')).includes('k = from-etcd'));

    const listed = await cli(d, 'conflicts', '--json', `--prefix=${d.prefix}`);
    expect(listed.code).toBe(0);
    const entries = JSON.parse(listed.stdout) as Array<Record<string, unknown>>;
    expect(entries.map((e) => [e.file, e.section, e.key, e.winner, e.loser, e.state]).sort()).toEqual([
      ['app.conf', 'S', 'db_password', 'etcd', 'file', 'open'],
      ['app.conf', 'S', 'k', 'etcd', 'file', 'open'],
    ]);
    const k = entries.find((e) => e.key === 'k');
    expect(k).toMatchObject({ winnerValue: 'from-etcd', loserValue: 'from-file', policy: 'etcd-wins' });
    const secret = entries.find((e) => e.key === 'db_password');
    expect(secret).toMatchObject({ winnerValue: '***', loserValue: '***' });
    const text = await cli(d, 'conflicts', `--prefix=${d.prefix}`);
    expect(text.stdout).toContain('app.conf [S] k: etcd won with from-etcd (etcd-wins), file lost from-file');
    expect(text.stdout + listed.stdout).not.toContain('secret');

    // The daemon's status names the conflict and exits 1.
    const before = await cli(d, 'status', '--json', `--http=127.0.0.1:${port}`, `--prefix=${d.prefix}`);
    expect(before.code).toBe(1);
    const report = JSON.parse(before.stdout);
    expect(report.source).toBe('daemon');
    expect(report.files).toEqual([
      expect.objectContaining({ file: 'app.conf', state: 'conflict', conflicts: 2 }),
    ]);
    expect(before.stdout).not.toContain('secret');

    // One key keeps the winner (the record stays open for the other), then the rest keeps the loser.
    const winner = await cli(d, 'conflicts', 'resolve', 'app.conf', 'S/db_password', '--keep', 'winner');
    expect(winner.code).toBe(0);
    expect(JSON.parse((await cli(d, 'conflicts', '--json')).stdout)).toHaveLength(1);
    const loser = await cli(d, 'conflicts', 'resolve', 'app.conf', '--keep', 'loser', `--prefix=${d.prefix}`);
    expect(loser.stderr).toBe('');
    expect(loser.code).toBe(0);
    expect(loser.stdout).toContain('kept the loser');

    await waitFor(async () => (await readFile(file, 'utf8')).includes('k = from-file'));
    expect(await etcdValue(etcd, `${d.prefix}app.conf/S/k`)).toBe('from-file');
    expect(await etcdValue(etcd, `${d.prefix}app.conf/S/db_password`)).toBe('etcd-secret');
    expect(await readFile(file, 'utf8')).toContain('db_password = etcd-secret');
    const names = await readdir(d.confDir);
    expect(names.filter((n) => n.includes('.conflict-'))).toEqual([]);
    const archived = names.filter((n) => n.startsWith('app.conf.resolved-'));
    expect(archived).toHaveLength(1);
    const archive = await readFile(join(d.confDir, archived[0] as string), 'utf8');
    expect(archive).toContain("kept the winner's value");
    expect(archive).toContain("kept the loser's value");
    // The archive is never mirrored: nothing of it reaches etcd.
    const keys = await etcd.etcdctl('get', '--prefix', '--keys-only', d.prefix);
    expect(keys).not.toContain('resolved');

    expect(JSON.parse((await cli(d, 'conflicts', '--json')).stdout)).toEqual([]);
    let last = '';
    await waitFor(async () => {
      const after = await cli(d, 'status', `--http=127.0.0.1:${port}`, `--prefix=${d.prefix}`);
      last = after.stdout;
      return after.code === 0;
    }).catch((error: unknown) => {
      throw new Error(`${String(error)}\n${last}`);
    });
    expect(last).toContain('everything is in sync');
    p.child.kill('SIGTERM');
  });

  it('recognises a record resolved by hand (the file edited since), and says when nothing matches', async () => {
    const d = await dirs();
    await writeFile(join(d.confDir, 'a.conf'), '[S]\nk = mine\n');
    await writeFile(
      join(d.confDir, 'a.conf.conflict-2026-01-02T03-04-05-678Z'),
      '; link-etcd conflict record, 2026-01-02T03:04:05.678Z\n; Both ...\n; The values below LOST\n\n[S]\n; file lost to etcd (theirs)\nk = old\n',
    );
    const listed = JSON.parse((await cli(d, 'conflicts', '--json', `--prefix=${d.prefix}`)).stdout);
    expect(listed).toEqual([
      expect.objectContaining({
        file: 'a.conf',
        key: 'k',
        at: '2026-01-02T03:04:05.678Z',
        winnerValue: 'theirs',
        loserValue: 'old',
        fileValue: 'mine',
        state: 'edited',
      }),
    ]);
    // Values the record had to quote are read back as the engine reads them.
    await writeFile(join(d.confDir, 'q.conf'), '[T]\nv = " padded "\n');
    await writeFile(
      join(d.confDir, 'q.conf.conflict-2026-01-02T03-04-05-678Z'),
      '; link-etcd conflict record, 2026-01-02T03:04:05.678Z\n\n[T]\n; etcd lost to file (" padded ")\nv = "a\\nb"\n',
    );
    const quoted = JSON.parse((await cli(d, 'conflicts', '--json', `--prefix=${d.prefix}`)).stdout);
    expect(quoted.find((c: { file: string }) => c.file === 'q.conf')).toMatchObject({
      winner: 'file',
      loser: 'etcd',
      winnerValue: ' padded ',
      loserValue: 'a\nb',
      fileValue: ' padded ',
      state: 'edited', // etcd holds nothing under this prefix: not the winner's value
    });
    const none = await cli(d, 'conflicts', 'resolve', 'b.conf', '--keep', 'winner');
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no open conflict for b.conf');
  });
});
