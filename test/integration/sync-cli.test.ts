import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseIni } from '../../src/ini/parse.js';
import { type EtcdServer, runEtcdctl, startEtcd } from '../harness/etcd.js';
import { freePort } from '../harness/ports.js';
import { waitFor } from '../harness/wait.js';
import { followOutput } from '../support/daemon-output.js';
import { useEtcd } from '../support/lifecycle.js';

const run = promisify(execFile);
const main = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
let etcd: EtcdServer;
let counter = 0;
const { defer } = useEtcd((started) => {
  etcd = started;
});

interface Daemon {
  readonly child: ChildProcess;
  readonly lines: Array<Record<string, unknown>>;
  readonly raw: string[];
  readonly exited: Promise<number | null>;
}

async function dirs() {
  const confDir = await mkdtemp(join(tmpdir(), 'link-etcd-cli-conf-'));
  const stateDir = await mkdtemp(join(tmpdir(), 'link-etcd-cli-state-'));
  const prefix = `/cli${counter++}/`;
  defer(() => rm(confDir, { recursive: true, force: true }));
  defer(() => rm(stateDir, { recursive: true, force: true }));
  return { confDir, stateDir, prefix };
}

function syncArgs(d: { confDir: string; stateDir: string; prefix: string }, ...extra: string[]): string[] {
  return [
    main,
    `--endpoints=${etcd.clientUrl}`,
    `--conf-dir=${d.confDir}`,
    'sync',
    `--state-dir=${d.stateDir}`,
    `--prefix=${d.prefix}`,
    ...extra,
  ];
}

function daemon(args: string[]): Daemon {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const { lines, raw, code: exited } = followOutput(child);
  defer(() => child.kill('SIGKILL'));
  return { child, lines, raw, exited };
}

async function etcdValue(key: string): Promise<string | undefined> {
  const out = await etcd.etcdctl('get', '--print-value-only', key);
  return out === '' ? undefined : out.replace(/\n$/, '');
}

/**
 * A daemon that is SIGKILLed at the 31st of 60 changes made by `change(i)`
 * (the rest land while it is dead), then a second one on the same dirs,
 * returned once it says it is in sync.
 */
async function killedMidBurst(
  d: { confDir: string; stateDir: string; prefix: string },
  change: (i: number) => Promise<unknown>,
): Promise<Daemon> {
  const first = daemon(syncArgs(d));
  await waitFor(() => first.lines.some((l) => l.msg === 'in sync; following both sides'));
  for (let i = 0; i < 60; i++) {
    await change(i);
    if (i === 30) first.child.kill('SIGKILL');
  }
  await first.exited;
  const second = daemon(syncArgs(d));
  await waitFor(() => second.lines.some((l) => l.msg === 'in sync; following both sides'), {
    timeout: 20_000,
  });
  return second;
}

describe('link-etcd sync as a process', () => {
  it('logs JSON lines, mirrors an etcdctl put into the file, and exits 0 on SIGTERM', async () => {
    const d = await dirs();
    await writeFile(join(d.confDir, 'app.conf'), '[S]\nk = 1\n');
    const p = daemon(syncArgs(d));
    await waitFor(() => p.lines.some((l) => l.msg === 'in sync; following both sides'));
    await etcd.etcdctl('put', `${d.prefix}app.conf/S/k`, '2');
    await waitFor(async () => (await readFile(join(d.confDir, 'app.conf'), 'utf8')) === '[S]\nk = 2\n');
    await waitFor(() => p.lines.some((l) => l.msg === 'written to the file'));
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    expect(p.raw.every((line) => typeof JSON.parse(line) === 'object')).toBe(true);
  });

  it('converges after a SIGKILL in the middle of a burst of 60 file writes', async () => {
    const d = await dirs();
    const second = await killedMidBurst(d, (i) =>
      writeFile(join(d.confDir, `f${i % 12}.conf`), `[S]\nk = ${i}\nfile = f${i % 12}\n`),
    );
    for (let f = 0; f < 12; f++) {
      const text = await readFile(join(d.confDir, `f${f}.conf`), 'utf8');
      const expected = parseIni(text, `f${f}.conf`).sections.get('S');
      expect(await etcdValue(`${d.prefix}f${f}.conf/S/k`)).toBe(expected?.get('k'));
      expect(await etcdValue(`${d.prefix}f${f}.conf/S/file`)).toBe(`f${f}`);
    }
    expect((await readdir(d.confDir)).filter((n) => !n.endsWith('.conf'))).toEqual([]);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  });

  it('converges after a SIGKILL in the middle of a burst of 60 etcd puts, with no conflict record', async () => {
    const d = await dirs();
    // Puts go on while the daemon is dead: the restart finds files it wrote and etcd moved on since.
    const second = await killedMidBurst(d, (i) =>
      etcd.etcdctl('put', `${d.prefix}e${i % 12}.conf/S/k`, String(i)),
    );
    for (let f = 0; f < 12; f++) {
      const last = 48 + f;
      expect(await readFile(join(d.confDir, `e${f}.conf`), 'utf8')).toBe(`[S]\nk = ${last}\n`);
    }
    // A value the daemon itself wrote into a file before the kill is not an edit in conflict with etcd.
    expect((await readdir(d.confDir)).filter((n) => !n.endsWith('.conf'))).toEqual([]);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  });

  it('--once reconciles and exits 0; --dry-run prints both ways and changes nothing', async () => {
    const d = await dirs();
    await writeFile(join(d.confDir, 'a.conf'), '[S]\nk = file\n');
    await etcd.etcdctl('put', `${d.prefix}b.conf/T/x`, 'etcd');
    const dry = await run(process.execPath, syncArgs(d, '--dry-run', '--log-level=silent'));
    expect(dry.stdout.split('\n').filter((l) => l !== '')).toEqual([
      `to etcd: put ${d.prefix}a.conf/S/k = file (new in the file)`,
      `to file: put ${d.prefix}b.conf/T/x = etcd (new in etcd)`,
    ]);
    expect(await etcdValue(`${d.prefix}a.conf/S/k`)).toBeUndefined();
    expect((await readdir(d.confDir)).sort()).toEqual(['a.conf']);

    await run(process.execPath, syncArgs(d, '--once', '--log-level=silent'));
    expect(await etcdValue(`${d.prefix}a.conf/S/k`)).toBe('file');
    expect(await readFile(join(d.confDir, 'b.conf'), 'utf8')).toBe('[T]\nx = etcd\n');
  });

  // A bad flag's exit 2 is checked in-process (test/unit/cli-usage.test.ts): no process needed for it.
  it('exits 1 with one line when etcd is unreachable in --once', async () => {
    const d = await dirs();
    const args = syncArgs(d, '--once', '--log-level=silent').map((a) =>
      a.startsWith('--endpoints=') ? '--endpoints=http://127.0.0.1:1' : a,
    );
    const down = await run(process.execPath, args).catch((e) => e);
    expect(down.code).toBe(1);
    expect(down.stderr.trim().split('\n')).toHaveLength(1);
    expect(down.stderr).toContain('127.0.0.1:1');
  });

  it('serves /healthz, /readyz and Prometheus /metrics with --http', async () => {
    const d = await dirs();
    await writeFile(join(d.confDir, 'app.conf'), '[S]\nk = 1\n');
    const port = await freePort();
    const p = daemon(syncArgs(d, `--http=127.0.0.1:${port}`));
    const get = async (path: string) => {
      const res = await fetch(`http://127.0.0.1:${port}${path}`);
      return { status: res.status, body: await res.text() };
    };
    await waitFor(() => p.lines.some((l) => l.msg === 'in sync; following both sides'));
    expect(await get('/healthz')).toEqual({ status: 200, body: 'ok\n' });
    await waitFor(async () => (await get('/readyz')).status === 200);

    await etcd.etcdctl('put', `${d.prefix}app.conf/S/k`, '2');
    await waitFor(async () => (await readFile(join(d.confDir, 'app.conf'), 'utf8')) === '[S]\nk = 2\n');
    const metrics = await waitFor(async () => {
      const { body } = await get('/metrics');
      // The lag reaches 0 when the pass that wrote the file has finished (its base saved too).
      const settled = /link_etcd_changes_applied_total\{direction="to_file"\} 1\b/.test(body);
      return settled && /link_etcd_watch_lag_revisions 0\b/.test(body) ? body : undefined;
    });
    expect(metrics).toMatch(/link_etcd_changes_applied_total\{direction="to_etcd"\} 1\b/);
    expect(metrics).toMatch(/link_etcd_propagation_seconds_count\{direction="to_file"\} 1\b/);
    expect(metrics).toMatch(/link_etcd_watch_lag_revisions 0\b/);
    expect(metrics).toMatch(/link_etcd_last_full_reconcile_timestamp_seconds [1-9]/);
    expect(metrics).toMatch(/link_etcd_process_resident_memory_bytes/);
    // Where the etcd -> file change spent its time: each step of its pass and of its file write.
    const stages = [
      'wait',
      'wait_file',
      'read',
      'plan',
      'to_file',
      'staged',
      'visible',
      'folder_synced',
      'record',
    ];
    for (const stage of stages)
      expect(metrics).toMatch(
        new RegExp(`^link_etcd_pass_stage_seconds_count\\{stage="${stage}"\\} [1-9]`, 'm'),
      );
    for (const name of ['conflicts', 'refused_keys', 'parse_errors', 'watch_reconnects', 'watch_resyncs']) {
      expect(metrics).toMatch(new RegExp(`^link_etcd_${name}_total \\d+$`, 'm'));
    }

    await etcd.stop();
    try {
      const notReady = await waitFor(async () => {
        const r = await get('/readyz');
        return r.status === 503 ? r : undefined;
      });
      expect(notReady.body).toContain('etcd does not answer');
      expect((await get('/healthz')).status).toBe(200);
    } finally {
      await etcd.start();
    }
    await waitFor(async () => (await get('/readyz')).status === 200, { timeout: 20_000 });
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  });

  it('--local-etcd starts its own etcd, mirrors through it, and stops it on SIGTERM', async () => {
    const d = await dirs();
    await writeFile(join(d.confDir, 'demo.conf'), '[S]\nk = 1\n');
    const args = syncArgs(d, '--local-etcd', '--log-format=json').filter(
      (a) => !a.startsWith('--endpoints='),
    );
    const p = daemon(args);
    const started = await waitFor(() => p.lines.find((l) => l.msg === 'in sync; following both sides'), {
      timeout: 30_000,
    });
    expect(started).toBeDefined();
    const url = String(p.lines.find((l) => typeof l.url === 'string')?.url);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    // Auth is on: the password is in the file the log names (test/integration/serving.test.ts checks the rest).
    const passwordFile = String(p.lines.find((l) => typeof l.passwordFile === 'string')?.passwordFile);
    const user = `--user=root:${(await readFile(passwordFile, 'utf8')).trim()}`;
    const local = (...args: string[]) => runEtcdctl([url.replace('http://', '')], [user, ...args]);
    expect(await local('get', '--print-value-only', `${d.prefix}demo.conf/S/k`)).toBe('1\n');
    await local('put', `${d.prefix}demo.conf/S/k`, 'from-local');
    await waitFor(
      async () => (await readFile(join(d.confDir, 'demo.conf'), 'utf8')) === '[S]\nk = from-local\n',
    );
    // What `npm start` shows a newcomer: the change, in the log.
    await waitFor(() =>
      p.lines.some(
        (l) => l.msg === 'written to the file' && JSON.stringify(l.changes).includes('demo.conf/S/k'),
      ),
    );
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    await expect(fetch(`${url}/health`)).rejects.toThrow();
  });

  it('--local-etcd starts and stops quietly on a (doubled) Ctrl-C to its process group: exit 0, no warning, no stack trace', async () => {
    const d = await dirs();
    await writeFile(join(d.confDir, 'demo.conf'), '[S]\nk = 1\n');
    const args = syncArgs(d, '--local-etcd', '--log-format=json').filter(
      (a) => !a.startsWith('--endpoints='),
    );
    // Its own process group, as a shell gives a foreground job: the group's SIGINT is a terminal's Ctrl-C.
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const out = followOutput(child);
    defer(() => child.kill('SIGKILL'));
    await waitFor(() => out.lines.some((l) => l.msg === 'in sync; following both sides'), {
      timeout: 30_000,
    });
    const url = String(out.lines.find((l) => typeof l.url === 'string')?.url);
    // The child etcd is in a process group of its own (Linux /proc): the group's Ctrl-C does not reach it.
    const groups = new Map<number, { ppid: number; pgrp: number }>();
    for (const pid of (await readdir('/proc')).filter((n) => /^\d+$/.test(n))) {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
      const fields = stat?.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields) groups.set(Number(pid), { ppid: Number(fields[1]), pgrp: Number(fields[2]) });
    }
    const etcdChild = [...groups].find(([, g]) => g.ppid === child.pid);
    expect(etcdChild).toBeDefined();
    expect(etcdChild?.[1].pgrp).not.toBe(child.pid);
    const before = out.lines.length;
    // Under `npm start` the Ctrl-C comes twice: from the terminal, and forwarded by npm.
    process.kill(-(child.pid as number), 'SIGINT');
    process.kill(-(child.pid as number), 'SIGINT');
    expect(await out.code).toBe(0);
    // A first start (etcd empty) included: nothing from start to stop is a warning.
    const loud = out.lines.filter((l) => typeof l.level !== 'number' || l.level >= 40);
    expect(loud).toEqual([]);
    expect(out.stderr.join('')).toBe('');
    expect(out.raw.slice(before).join('\n')).not.toMatch(/stack|retrying/i);
    expect(out.lines.slice(before).map((l) => l.msg)).toContain('stopping: finishing writes in flight');
    await expect(fetch(`${url}/health`)).rejects.toThrow();
  });

  it('runs check_cmd on the staged file (a refusal keeps the old file) and a debounced reload_cmd', async () => {
    const d = await dirs();
    const reloads = join(d.stateDir, 'reloads.log');
    await mkdir(join(d.confDir, 'link', 'etcd'), { recursive: true });
    await writeFile(
      join(d.confDir, 'link', 'etcd', 'sync.conf'),
      `[HOOK app]\nglob = app.conf\ncheck_cmd = ! grep -q 'k = bad' {file}\nreload_cmd = echo reloaded >> ${reloads}\nwait_min = 0.3\nwait_max = 2\n`,
    );
    await writeFile(join(d.confDir, 'app.conf'), '[S]\nk = 1\n');
    const p = daemon(syncArgs(d));
    await waitFor(() => p.lines.some((l) => l.msg === 'in sync; following both sides'));

    await etcd.etcdctl('put', `${d.prefix}app.conf/S/k`, 'bad');
    await waitFor(() => p.lines.some((l) => String(l.msg).includes('check_cmd refused the new app.conf')));
    expect(await readFile(join(d.confDir, 'app.conf'), 'utf8')).toBe('[S]\nk = 1\n');

    // A burst of three accepted changes: one reload.
    for (const v of ['2', '3', '4']) await etcd.etcdctl('put', `${d.prefix}app.conf/S/k`, v);
    await waitFor(async () => (await readFile(join(d.confDir, 'app.conf'), 'utf8')) === '[S]\nk = 4\n');
    await waitFor(async () => (await readFile(reloads, 'utf8').catch(() => '')) === 'reloaded\n');
    await etcd.etcdctl('put', `${d.prefix}app.conf/S/k`, '5');
    await waitFor(async () => (await readFile(reloads, 'utf8')) === 'reloaded\nreloaded\n');
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  });

  it('--exec starts the app after the first sync, signals it on changes, and exits with its status', async () => {
    const d = await dirs();
    const app = join(d.stateDir, 'app.mjs');
    const seen = join(d.stateDir, 'seen.log');
    await writeFile(
      app,
      `import { appendFileSync, readFileSync } from 'node:fs';
const read = () => readFileSync(${JSON.stringify(join(d.confDir, 'app.conf'))}, 'utf8').trim().split('\\n').pop();
appendFileSync(${JSON.stringify(seen)}, 'start ' + read() + '\\n');
process.on('SIGHUP', () => appendFileSync(${JSON.stringify(seen)}, 'hup ' + read() + '\\n'));
process.on('SIGTERM', () => process.exit(3));
setInterval(() => {}, 1000);
`,
    );
    await etcd.etcdctl('put', `${d.prefix}app.conf/S/k`, 'from-etcd');
    const p = daemon(syncArgs(d, `--exec=${process.execPath} ${app}`));
    await waitFor(async () => (await readFile(seen, 'utf8').catch(() => '')) === 'start k = from-etcd\n');
    await etcd.etcdctl('put', `${d.prefix}app.conf/S/k`, 'changed');
    await waitFor(async () => (await readFile(seen, 'utf8')).endsWith('hup k = changed\n'), {
      timeout: 15_000,
    });
    p.child.kill('SIGTERM');
    // The app exits 3 on SIGTERM: the daemon forwards the signal and exits with the app's status.
    expect(await p.exited).toBe(3);
  });

  it('re-reads sync.conf on SIGHUP without dropping its state', async () => {
    const d = await dirs();
    const reloads = join(d.stateDir, 'reloads.log');
    await writeFile(join(d.confDir, 'app.conf'), '[S]\nk = 1\n');
    const p = daemon(syncArgs(d));
    await waitFor(() => p.lines.some((l) => l.msg === 'in sync; following both sides'));
    await mkdir(join(d.confDir, 'link', 'etcd'), { recursive: true });
    await writeFile(
      join(d.confDir, 'link', 'etcd', 'sync.conf'),
      `[HOOK app]\nglob = *.conf\nreload_cmd = echo reloaded >> ${reloads}\nwait_min = 0.1\n`,
    );
    p.child.kill('SIGHUP');
    await waitFor(() => p.lines.some((l) => l.msg === 'reloaded middleware.conf and sync.conf'));
    await etcd.etcdctl('put', `${d.prefix}app.conf/S/k`, '2');
    await waitFor(async () => (await readFile(reloads, 'utf8').catch(() => '')) === 'reloaded\n');
    // Same base: nothing was pushed again at reload.
    expect(p.lines.filter((l) => l.msg === 'written to etcd')).toHaveLength(1);
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  });

  it('--log-format pretty prints readable lines, not JSON', async () => {
    const d = await dirs();
    await writeFile(join(d.confDir, 'app.conf'), '[S]\nk = 1\n');
    const { stdout } = await run(process.execPath, syncArgs(d, '--once', '--log-format=pretty'));
    const lines = stdout.split('\n').filter((l) => l !== '');
    // One line a change, as a person reads it (issue 14): file, section, key, before -> after, direction.
    expect(lines).toContainEqual(
      expect.stringMatching(
        /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: app\.conf \[S\] k: \(none\) -> 1 \(file -> etcd\)$/,
      ),
    );
    expect(lines.every((l) => !l.startsWith('{'))).toBe(true);
  });

  it.each([
    ['the daemon', []],
    ['exec mode, stopping its app', ['--exec=sleep 600']],
  ])('%s exits 1 with one line when etcd refuses it for good (its user deleted)', async (_mode, extra) => {
    const authed = await startEtcd();
    defer(() => authed.cleanup());
    await authed.etcdctl('user', 'add', 'root:rootpw');
    await authed.etcdctl('user', 'grant-role', 'root', 'root').catch(() => undefined);
    await authed.etcdctl('user', 'add', 'app:apppw');
    await authed.etcdctl('role', 'add', 'app');
    await authed.etcdctl('role', 'grant-permission', 'app', '--prefix=true', 'readwrite', '/');
    await authed.etcdctl('user', 'grant-role', 'app', 'app');
    await authed.etcdctl('auth', 'enable');
    const d = await dirs();
    await mkdir(join(d.confDir, 'link', 'etcd'), { recursive: true });
    await writeFile(
      join(d.confDir, 'link', 'etcd', 'middleware.conf'),
      `[ETCD]\nhost = ${authed.host}\nport = ${authed.port}\nusername = app\npassword = apppw\nread_timeout = 5\n`,
    );
    await writeFile(join(d.confDir, 'app.conf'), '[S]\nk = 1\n');
    const args = syncArgs(d, ...extra).filter((a) => !a.startsWith('--endpoints='));
    const p = daemon(args);
    let stderr = '';
    p.child.stderr?.on('data', (c) => {
      stderr += String(c);
    });
    await waitFor(() => p.lines.some((l) => l.msg === 'in sync; following both sides'));
    await authed.etcdctl('--user', 'root:rootpw', 'user', 'delete', 'app');
    // The running watch keeps its stream; a restart makes it reconnect and meet the refusal.
    await authed.restart('SIGTERM');
    expect(await p.exited).toBe(1);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(/^link-etcd: /);
    expect(stderr).not.toContain('apppw');
  });
});
