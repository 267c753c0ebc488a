import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import type { StatusReport } from '../../src/cli/status.js';
import { Scheduler } from '../../src/sync/scheduler.js';
import type { EtcdServer } from '../harness/etcd.js';
import { freePort } from '../harness/ports.js';
import { waitFor } from '../harness/wait.js';
import { type CliDirs, useCliProcess } from '../support/cli-process.js';
import { ManualClock } from '../support/manual-clock.js';

const cliProcess = useCliProcess('status');
const { dirs, cli, daemon } = cliProcess;
let etcd: EtcdServer;
beforeEach(() => {
  etcd = cliProcess.etcd();
});

const status = (d: CliDirs, ...extra: string[]) =>
  cli(d, 'status', `--prefix=${d.prefix}`, `--state-dir=${d.stateDir}`, ...extra);

describe('link-etcd status', () => {
  it("the daemon's pending files are the scheduler's dirty ones, as a copy, until their pass ran", async () => {
    const clock = new ManualClock(1_000);
    const passes: string[][] = [];
    const scheduler = new Scheduler(
      {
        pass: async (paths) => {
          passes.push([...paths]);
        },
        full: async () => undefined,
        drainStarted: () => undefined,
        drained: () => undefined,
        passFailed: () => undefined,
        fullFailed: () => undefined,
      },
      20,
      clock,
    );
    scheduler.open();
    scheduler.fileChanged('b.conf');
    scheduler.etcdChanged([['a.conf', '/a.conf/S/k']]);
    const pending = scheduler.pending();
    expect(pending).toEqual(['a.conf', 'b.conf']);
    pending.length = 0;
    expect(scheduler.pending()).toEqual(['a.conf', 'b.conf']);
    await clock.advance(50);
    expect(passes.flat().sort()).toEqual(['a.conf', 'b.conf']);
    expect(scheduler.pending()).toEqual([]);
    await scheduler.stop();
  });

  it('asks the daemon over /status: 0 when in sync, 1 with the reason when a file fails', async () => {
    const d = await dirs();
    await writeFile(join(d.confDir, 'app.conf'), '[S]\nk = 1\n');
    const port = await freePort();
    const http = `--http=127.0.0.1:${port}`;
    const p = daemon(d, http);
    await waitFor(() => p.lines.some((l) => l.msg === 'in sync; following both sides'), { timeout: 20_000 });

    const served = (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as StatusReport;
    expect(served).toMatchObject({ source: 'daemon', inSync: true, needsAttention: [], conflicts: [] });
    expect(served.files).toEqual([
      { file: 'app.conf', state: 'in-sync', toEtcd: 0, toFile: 0, reasons: [], conflicts: 0, refused: 0 },
    ]);
    expect(served.watch?.lag).toBe(0);
    expect(served.lastFullReconcile).not.toBeNull();

    const ok = await status(d, http);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain(`from the daemon at 127.0.0.1:${port}`);
    expect(ok.stdout).toMatch(/in sync\s+app\.conf/);
    expect(ok.stdout).toContain('everything is in sync');

    // A refused etcd name is listed with its file, for information: it does not make status fail.
    await etcd.etcdctl('put', `${d.prefix}app.conf/S/a=b`, 'x');
    const refused = await waitFor(async () => {
      const r = JSON.parse((await status(d, http, '--json')).stdout) as StatusReport;
      return r.refused.length > 0 ? r : undefined;
    });
    expect(refused.refused).toEqual([{ what: `${d.prefix}app.conf/S/a=b`, reason: expect.any(String) }]);
    expect(refused.files[0]?.refused).toBe(1);
    const text = await status(d, http);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('1 key(s) refused');

    await writeFile(join(d.confDir, 'bad.conf'), 'no section here\n');
    const bad = await waitFor(async () => {
      const r = await status(d, http, '--json');
      return r.code === 1 ? r : undefined;
    });
    const report = JSON.parse(bad.stdout) as StatusReport;
    expect(report.inSync).toBe(false);
    expect(report.files.find((f) => f.file === 'bad.conf')?.state).toBe('failing');
    expect(report.needsAttention.some((n) => n.startsWith('bad.conf'))).toBe(true);
    p.child.kill('SIGTERM');
  });

  it('computes the same offline, writing nothing: pending each way, then in sync', async () => {
    const d = await dirs();
    await writeFile(join(d.confDir, 'app.conf'), '[S]\nk = 1\n');
    // No daemon at this address: status falls back to the offline computation.
    const http = `--http=127.0.0.1:${await freePort()}`;
    const first = await status(d, http, '--json');
    expect(first.code).toBe(1);
    const before = JSON.parse(first.stdout) as StatusReport;
    expect(before.source).toBe('offline');
    expect(before.files).toEqual([
      expect.objectContaining({ file: 'app.conf', state: 'pending-to-etcd', toEtcd: 1 }),
    ]);
    expect(await etcd.etcdctl('get', '--prefix', '--keys-only', d.prefix)).toBe('');
    expect(await readdir(d.stateDir)).toEqual([]);
    expect(await readdir(d.confDir)).toEqual(['app.conf']);

    expect((await cli(d, 'sync', `--state-dir=${d.stateDir}`, `--prefix=${d.prefix}`, '--once')).code).toBe(
      0,
    );
    const synced = await status(d, '--offline');
    expect(synced.stdout).toContain('computed offline');
    expect(synced.code).toBe(0);

    const journal = async () =>
      Promise.all(
        (await readdir(d.stateDir)).sort().map(async (n) => [n, await readFile(join(d.stateDir, n), 'utf8')]),
      );
    const saved = await journal();
    await etcd.etcdctl('put', `${d.prefix}app.conf/S/k`, '2');
    const behind = await status(d, '--offline', '--json');
    expect(behind.code).toBe(1);
    expect(await journal()).toEqual(saved);
    expect(await readFile(join(d.confDir, 'app.conf'), 'utf8')).toBe('[S]\nk = 1\n');
    expect((JSON.parse(behind.stdout) as StatusReport).files).toEqual([
      expect.objectContaining({ file: 'app.conf', state: 'pending-to-file', toFile: 1 }),
    ]);
  });
});
