import { describe, expect, it } from 'vitest';
import type { EtcdServer } from '../harness/etcd.js';
import { waitFor } from '../harness/wait.js';
import { etcdPid, FaultWorld, FILES, KEYS, type Probe, pause } from '../support/fault-world.js';
import { useEtcd } from '../support/lifecycle.js';

/**
 * Issue 10, point 8 (process faults): a real `link-etcd sync` process with
 * --http on 20 files x 5 keys and a real etcd, faults injected with signals,
 * edits on both sides during and after each fault. Each scenario checks that
 * every edit reached the other side or is a recorded conflict loser, that no
 * key nobody edited changed or went, what /readyz said, and prints its
 * recovery time. Needs `npm run build` (the CLI runs from dist/).
 */

let etcd: EtcdServer;
// Scenario 5 changes 2,000 keys in one transaction.
const { defer } = useEtcd(
  (started) => {
    etcd = started;
  },
  { maxTxnOps: 4096 },
);

const FAULT_SECONDS = Number(process.env.LINK_ETCD_FAULT_SECONDS ?? 30);
/** Values of ~2 KB: 200 of them do not fit the paused daemon's gRPC window, so etcd must hold the rest back. */
const PAD = 'x'.repeat(2_000);

const recovery = (scenario: string, seconds: number) =>
  console.log(`recovery: ${scenario} ${seconds.toFixed(2)} s`);

async function world(name: string): Promise<FaultWorld> {
  const w = await FaultWorld.create(etcd, name, defer);
  await w.seed();
  await w.startSynced();
  await w.settle(Date.now(), 30_000, 'the first sync never converged');
  await ready(w);
  return w;
}

async function ready(w: FaultWorld, timeout = 20_000): Promise<Probe> {
  return waitFor(
    async () => {
      const p = await w.get('/readyz');
      return p.status === 200 ? p : undefined;
    },
    { timeout, interval: 100, message: '/readyz never said 200' },
  );
}

/** Live edits on both sides once the fault is over (disjoint keys): each must reach the other side. */
async function editsAfter(w: FaultWorld, tag: string): Promise<void> {
  const since = Date.now();
  for (let i = 0; i < 5; i++) await w.editFile(i, [['AFTER', 'file', `${tag}-after-file-${i}`]]);
  for (let i = 10; i < 15; i++) await w.putEtcd(w.key(i, 'S', 'k1'), `${tag}-after-etcd-${i}`);
  await w.editFile(15, [['S', 'k1', undefined]]);
  await w.deleteEtcd(w.key(16, 'S', 'k1'));
  const seconds = await w.settle(since, 20_000, 'edits made after the fault never converged');
  console.log(`after ${tag}: live edits converged in ${seconds.toFixed(2)} s`);
  await ready(w);
  // In sync again: the lag metric says so too (0, not the revisions of the fault or of our own writes).
  let lag: number | undefined;
  await waitFor(
    async () => {
      lag = await w.metric('link_etcd_watch_lag_revisions');
      return lag === 0;
    },
    { timeout: 10_000 },
  ).catch(() => expect(lag, `link_etcd_watch_lag_revisions after ${tag}`).toBe(0));
}

/**
 * Edits of the same shape for the paused and stopped daemon: 200 etcd puts
 * cycling over k0..k2 of every file, file edits of k3 in ten files, three
 * keys (k0 of files 0..2) changed on both sides (etcd wins, the file value
 * must be recorded), and deletions on either side.
 */
async function offlineEdits(w: FaultWorld, tag: string): Promise<void> {
  for (let i = 0; i < 10; i++) await w.editFile(i, [['S', 'k3', `${tag}-file-${i}`]]);
  for (let i = 0; i < 3; i++) await w.editFile(i, [['S', 'k0', `${tag}-file-conflict-${i}`]]);
  await w.editFile(5, [['NEW', 'made', `${tag}-file-new`]]);
  await w.editFile(18, [['S', 'k4', undefined]]);
  await w.editFile(19, [['S', 'k4', undefined]]);
  for (let c = 0; c < 200; c++)
    await w.putEtcd(w.key(c % FILES, 'S', `k${Math.floor(c / FILES) % 3}`), `${tag}-etcd-${c}-${PAD}`);
  await w.putEtcd(w.key(7, 'NEW', 'made'), `${tag}-etcd-new`);
  await w.deleteEtcd(w.key(17, 'S', 'k4'));
}

function conflictsResolved(w: FaultWorld, tag: string) {
  return w.state().then((s) => {
    for (let i = 0; i < 3; i++) {
      const key = w.key(i, 'S', 'k0');
      // etcd-wins: etcd's last put to k0 of file i, the file's value kept in a record.
      expect(s.files.get(key)).toMatch(new RegExp(`^${tag}-etcd-`));
      expect([...(s.losers.get(key) ?? [])]).toContain(`${tag}-file-conflict-${i}`);
    }
    return s;
  });
}

describe('link-etcd sync process under faults (issue 10, point 8)', () => {
  it('compaction while the daemon is paused (SIGSTOP): everything converges after SIGCONT', async () => {
    const w = await world('paused');
    const d = w.daemon;
    if (d === undefined) throw new Error('no daemon');
    process.kill(d.pid, 'SIGSTOP');
    defer(() => {
      if (d.child.exitCode === null && d.child.signalCode === null) process.kill(d.pid, 'SIGCONT');
    });
    await offlineEdits(w, 'paused');
    const revision = await w.revision();
    await etcd.etcdctl('compact', String(revision));
    const resumed = Date.now();
    process.kill(d.pid, 'SIGCONT');
    const seconds = await w.settle(resumed, 30_000, 'the resumed daemon never converged');
    recovery('compaction-while-paused', seconds);
    await conflictsResolved(w, 'paused');
    await ready(w);
    // The compaction path was taken: the watch found its revision compacted and read the prefix again.
    const resyncs = await w.metric('link_etcd_watch_resyncs_total');
    console.log(`compaction-while-paused: watch resyncs ${resyncs}`);
    expect(resyncs).toBeGreaterThan(0);
    await editsAfter(w, 'paused');
  }, 90_000);

  it('compaction while the daemon is stopped: a restart on the same state merges the offline edits', async () => {
    const w = await world('stopped');
    const first = w.daemon;
    if (first === undefined) throw new Error('no daemon');
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
    await offlineEdits(w, 'stopped');
    await etcd.etcdctl('compact', String(await w.revision()));
    const started = Date.now();
    w.start();
    // Readiness tells the truth: the first 200 comes once the offline edits are merged, not before.
    await ready(w, 30_000);
    expect(await w.problemsNow()).toEqual([]);
    const seconds = await w.settle(started, 30_000, 'the restarted daemon never converged');
    recovery('compaction-while-stopped', seconds);
    await conflictsResolved(w, 'stopped');
    await editsAfter(w, 'stopped');
  }, 90_000);

  it('catches up with 5,000 etcd changes made while it was stopped', async () => {
    const w = await world('catchup');
    const first = w.daemon;
    if (first === undefined) throw new Error('no daemon');
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
    // Offline file edits on keys etcd does not touch (k4, a new section).
    for (let i = 0; i < 10; i++) await w.editFile(i, [['S', 'k4', `catchup-file-${i}`]]);
    for (let i = 10; i < 15; i++) await w.editFile(i, [['F', 'offline', `catchup-file-${i}`]]);
    // 4,000 puts: 50 rounds over k0..k3 of every file; then 1,000 new keys. Each put its own revision.
    let changes = 0;
    const before = await w.revision();
    for (let round = 0; round < 50; round++) {
      const puts: Array<Promise<number>> = [];
      for (let i = 0; i < FILES; i++)
        for (let k = 0; k < KEYS - 1; k++) puts.push(w.putEtcd(w.key(i, 'S', `k${k}`), `catchup-r${round}`));
      await Promise.all(puts);
      changes += puts.length;
    }
    for (let batch = 0; batch < 10; batch++) {
      const puts: Array<Promise<number>> = [];
      for (let i = 0; i < FILES; i++)
        for (let n = batch * 5; n < batch * 5 + 5; n++)
          puts.push(w.putEtcd(w.key(i, 'N', `n${n}`), `catchup-new-${i}-${n}`));
      await Promise.all(puts);
      changes += puts.length;
    }
    expect(changes).toBe(5_000);
    expect((await w.revision()) - before).toBe(5_000);
    const started = Date.now();
    w.start();
    await ready(w, 60_000);
    expect(await w.problemsNow()).toEqual([]);
    const seconds = await w.settle(started, 60_000, 'the catch-up never converged');
    recovery('catch-up-5000', seconds);
    await editsAfter(w, 'catchup');
  }, 120_000);

  it(
    `etcd SIGSTOPped for ${FAULT_SECONDS} s with file edits meanwhile: /readyz 503, then the edits reach etcd`,
    async () => {
      const w = await world('etcdstop');
      const pid = await etcdPid(etcd);
      const poll = w.pollReadiness(250);
      defer(() => poll.stop());
      const faultMs = FAULT_SECONDS * 1000;
      const stoppedAt = Date.now();
      process.kill(pid, 'SIGSTOP');
      let resumed = false;
      defer(() => {
        if (!resumed) process.kill(pid, 'SIGCONT');
      });
      // Four rounds of file edits spread over the stop: changes, a new key, a deletion.
      const rounds = 4;
      for (let r = 0; r < rounds; r++) {
        await pause(Math.max(0, stoppedAt + (faultMs * (r + 0.5)) / rounds - Date.now()));
        for (let i = r * 5; i < r * 5 + 5; i++)
          await w.editFile(i, [['S', 'k2', `etcdstop-file-r${r}-${i}`]]);
        await w.editFile(r, [['STOP', 'added', `etcdstop-new-${r}`]]);
        await w.editFile(10 + r, [['S', 'k3', undefined]]);
      }
      await pause(Math.max(0, stoppedAt + faultMs - Date.now()));
      const resumedAt = Date.now();
      process.kill(pid, 'SIGCONT');
      resumed = true;
      const seconds = await w.settle(
        resumedAt,
        60_000,
        'the edits made while etcd was stopped never reached it',
      );
      await ready(w, 30_000);
      recovery('etcd-sigstop', (Date.now() - resumedAt) / 1000);
      console.log(`etcd-sigstop: edits in etcd after ${seconds.toFixed(2)} s`);
      const probes = await poll.stop();
      const during = probes.filter((p) => p.sent >= stoppedAt && p.done <= resumedAt);
      const first503 = during.find((p) => p.status === 503);
      expect(first503, 'no /readyz 503 while etcd was stopped').toBeDefined();
      console.log(
        `etcd-sigstop: /readyz 503 after ${(((first503?.done ?? 0) - stoppedAt) / 1000).toFixed(2)} s: ${first503?.body.trim()}`,
      );
      // Truthful: once it had time to notice (a 2 s ping), never 200 again until etcd is back.
      const lies = during.filter((p) => p.sent >= stoppedAt + 5_000 && p.status === 200);
      expect(lies).toEqual([]);
      await editsAfter(w, 'etcdstop');
    },
    60_000 + FAULT_SECONDS * 1000,
  );

  it('SIGKILLed at 3 random moments during a 2,000-key change: both sides converge, no edit lost', async () => {
    const w = await world('sigkill');
    const started = Date.now();
    // File side: 5 rounds of rewrites of every file, each changing one key and adding ten.
    let rewritesDone = 0;
    const rewrites = (async () => {
      for (let r = 0; r < KEYS; r++)
        for (let i = 0; i < FILES; i++) {
          const added = Array.from(
            { length: 10 },
            (_, j) => ['W', `r${r}x${j}`, `sigkill-file-${i}-${r}-${j}`] as [string, string, string],
          );
          await w.editFile(i, [['S', `k${r}`, `sigkill-file-${i}-${r}`], ...added]);
          await pause(15);
        }
      rewritesDone = Date.now();
    })();
    // etcd side: 2,000 new keys in one transaction, all of them changed again while the daemon is down after each kill.
    const bulk = (round: string) => {
      const entries: Array<[string, string]> = [];
      for (let i = 0; i < FILES; i++)
        for (let j = 0; j < 100; j++) entries.push([w.key(i, 'BULK', `b${j}`), `sigkill-${round}-${i}-${j}`]);
      return w.putEtcdTxn(entries);
    };
    await bulk('a');
    const moments: string[] = [];
    let lastStart = Date.now();
    for (let kill = 0; kill < 3; kill++) {
      const d = w.daemon;
      if (d === undefined) throw new Error('no daemon');
      const after = 100 + Math.floor(Math.random() * 1_100);
      await pause(after);
      const phase = d.lines.some((l) => l.msg === 'in sync; following both sides') ? 'following' : 'starting';
      d.child.kill('SIGKILL');
      w.note(`SIGKILL daemon pid ${d.pid}`);
      moments.push(`${after} ms (${phase})`);
      expect((await d.exited).signal).toBe('SIGKILL');
      await bulk(`k${kill}`);
      w.note(`bulk k${kill} written to etcd`);
      await pause(Math.floor(Math.random() * 300));
      lastStart = Date.now();
      w.start();
    }
    console.log(`sigkill: killed ${moments.join(', ')} after each (re)start`);
    await rewrites;
    // Recovery: from the last restart, or the last file edit if that came later.
    const since = Math.max(lastStart, rewritesDone);
    const seconds = await w.settle(since, 60_000, 'both sides never converged after the kills');
    recovery('sigkill-during-2000', seconds);
    console.log(
      `sigkill: everything converged ${((Date.now() - started) / 1000).toFixed(2)} s after the change began`,
    );
    await ready(w, 20_000);
    const s = await w.state();
    console.log(`sigkill: ${s.records} conflict records`);
    // Temp files of the killed writers are gone (a start removes those whose writer is gone).
    expect(s.temps).toEqual([]);
    await editsAfter(w, 'sigkill');
  }, 120_000);
});
