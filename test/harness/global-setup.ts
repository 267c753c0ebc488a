import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { assertEtcdInstalled } from './bin.js';

/**
 * Workers register every etcd they spawn in LINK_ETCD_TEST_PIDDIR and kill them on exit; this teardown
 * catches what a hard-killed worker left behind. Vitest 4 builds the fork env from process.env after
 * global setup has run, so setting it here reaches every worker (test/harness.test.ts checks that).
 */
export default async function setup(): Promise<() => Promise<void>> {
  await assertEtcdInstalled();
  const pidDir = await mkdtemp(join(tmpdir(), 'link-etcd-pids-'));
  process.env.LINK_ETCD_TEST_PIDDIR = pidDir;

  return async () => {
    let killed = 0;
    for (const entry of await readdir(pidDir).catch(() => [])) {
      const pid = Number(entry);
      const dataDir = await readFile(join(pidDir, entry), 'utf8').catch(() => '');
      // Only kill a pid whose command line still names our data dir: pids get reused.
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (!Number.isInteger(pid) || !dataDir || !cmdline.includes(dataDir)) continue;
      try {
        process.kill(pid, 'SIGKILL');
        killed++;
      } catch {}
      if (basename(dataDir).startsWith('link-etcd-')) await rm(dataDir, { recursive: true, force: true });
    }
    if (killed)
      console.warn(`link-etcd harness: killed ${killed} leftover etcd process(es); a test skipped cleanup()`);
    await rm(pidDir, { recursive: true, force: true });
    delete process.env.LINK_ETCD_TEST_PIDDIR;
  };
}
