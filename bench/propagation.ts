import { type ChildProcess, spawn } from 'node:child_process';
import { watch } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { now, type Summary, sleep, summarize } from './stats.js';

export interface DaemonHandle {
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

/** Starts `link-etcd sync` as its own process, as users run it, and waits until it is in sync. */
export async function startDaemon(args: {
  main: string;
  endpoint: string;
  confDir: string;
  stateDir: string;
  prefix: string;
  /** Serve /metrics there (host:port). */
  http?: string;
}): Promise<DaemonHandle> {
  const child = spawn(
    process.execPath,
    [
      args.main,
      `--endpoints=http://${args.endpoint}`,
      `--conf-dir=${args.confDir}`,
      'sync',
      `--state-dir=${args.stateDir}`,
      `--prefix=${args.prefix}`,
      '--log-level=info',
      ...(args.http === undefined ? [] : [`--http=${args.http}`]),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d) => {
      out += String(d);
      if (out.includes('in sync; following both sides')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`daemon exited with ${code} before it was in sync`)));
  });
  child.stdout?.resume();
  return {
    child,
    stop: async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * Sends `samples` updates at a steady rate and returns when each was meant
 * to go: latency is timed from there, so a slow update that delays the next
 * ones shows in their figures too, as users would see it.
 */
async function paced(samples: number, intervalMs: number, send: (i: number) => unknown): Promise<number[]> {
  const start = now() + 50;
  const intended: number[] = [];
  for (let i = 0; i < samples; i++) {
    intended.push(start + i * intervalMs);
    const wait = (intended[i] as number) - now();
    if (wait > 0) await sleep(wait);
    await send(i);
  }
  return intended;
}

/** Waits (5 s at most) for the last updates to arrive. */
async function settle(done: () => boolean): Promise<void> {
  const deadline = now() + 5000;
  while (!done() && now() < deadline) await sleep(20);
}

/**
 * etcd -> file: a put every `intervalMs`, timed from its intended send time
 * (so a slow update delays the next ones' figures too, as users would see)
 * until the file shows the value.
 */
export async function etcdToFile(
  endpoint: string,
  confDir: string,
  prefix: string,
  samples: number,
  intervalMs: number,
): Promise<Summary> {
  const client = new Etcd3({ hosts: endpoint });
  const file = join(confDir, 'e2f.conf');
  const seen = new Map<number, number>();
  const watcher = watch(confDir, async (_e, name) => {
    if (name !== 'e2f.conf') return;
    const t = now();
    const text = await readFile(file, 'utf8').catch(() => '');
    const m = /^k = (\d+)$/m.exec(text);
    if (m) {
      const i = Number(m[1]);
      if (!seen.has(i)) seen.set(i, t);
    }
  });
  await client.put(`${prefix}e2f.conf/S/k`).value('-1');
  await sleep(200);
  const intended = await paced(samples, intervalMs, (i) => {
    void client.put(`${prefix}e2f.conf/S/k`).value(String(i)).exec();
  });
  await settle(() => seen.size >= samples);
  watcher.close();
  client.close();
  // A value overwritten before the daemon wrote it never shows: it is not counted as a sample.
  return summarize([...seen].filter(([i]) => i >= 0).map(([i, t]) => t - (intended[i] as number)));
}

/** file -> etcd: the file rewritten every `intervalMs` as an editor would, timed until etcd's watchers see it. */
export async function fileToEtcd(
  endpoint: string,
  confDir: string,
  prefix: string,
  samples: number,
  intervalMs: number,
): Promise<Summary> {
  const client = new Etcd3({ hosts: endpoint });
  const file = join(confDir, 'f2e.conf');
  const seen = new Map<number, number>();
  await writeFile(file, '[S]\nk = -1\n');
  const watcher = await client.watch().key(`${prefix}f2e.conf/S/k`).create();
  watcher.on('put', (kv) => {
    const i = Number(kv.value.toString());
    if (!seen.has(i)) seen.set(i, now());
  });
  await sleep(500);
  const intended = await paced(samples, intervalMs, (i) => writeFile(file, `[S]\nk = ${i}\n`));
  await settle(() => seen.size >= samples + 1);
  await watcher.cancel();
  client.close();
  return summarize([...seen].filter(([i]) => i >= 0).map(([i, t]) => t - (intended[i] as number)));
}

/** Mean ms per pass step from a daemon's /metrics (link_etcd_pass_stage_seconds). */
export async function stageMeans(http: string): Promise<Record<string, { ms: number; n: number }>> {
  const text = await (await fetch(`http://${http}/metrics`)).text();
  const out: Record<string, { ms: number; n: number }> = {};
  for (const m of text.matchAll(
    /^link_etcd_pass_stage_seconds_(sum|count)\{stage="([a-z_]+)"\} ([0-9.e+-]+)$/gm,
  )) {
    const stage = m[2] as string;
    const entry = out[stage] ?? { ms: 0, n: 0 };
    out[stage] = entry;
    if (m[1] === 'sum') entry.ms = Number(m[3]) * 1000;
    else entry.n = Number(m[3]);
  }
  for (const entry of Object.values(out))
    entry.ms = entry.n === 0 ? 0 : Number((entry.ms / entry.n).toFixed(3));
  return out;
}
