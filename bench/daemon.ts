import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { now } from './stats.js';

export interface DaemonHandle {
  readonly child: ChildProcess;
  readonly pid: number;
  /** now() just before the spawn call: process start, for the cold catch-up figure. */
  readonly spawnedAt: number;
  /** now() when the daemon logged 'in sync; following both sides'. */
  readonly inSyncAt: number;
  /** Bytes the daemon has logged so far (its log volume is part of what a catch-up costs). */
  logBytes(): number;
  stop(): Promise<void>;
}

const IN_SYNC = 'in sync; following both sides';

/** The node flags of the bin's `#!/usr/bin/env -S node ...` line: what `link-etcd` runs with. */
export function binFlags(main: string): string[] {
  const first = readFileSync(main, 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!\S*env -S node(.*)$/.exec(first);
  return m === null
    ? []
    : (m[1] ?? '')
        .trim()
        .split(/\s+/)
        .filter((f) => f !== '');
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
  const spawnedAt = now();
  const child = spawn(
    process.execPath,
    [
      ...binFlags(args.main),
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
  let logBytes = 0;
  const inSyncAt = await new Promise<number>((resolve, reject) => {
    // Only the tail is kept for the search: a catch-up may log a line per key.
    let tail = '';
    let found = false;
    child.stdout?.on('data', (d: Buffer) => {
      logBytes += d.length;
      if (found) return;
      tail += String(d);
      if (tail.includes(IN_SYNC)) {
        found = true;
        resolve(now());
      }
      tail = tail.slice(-IN_SYNC.length);
    });
    child.once('exit', (code) => reject(new Error(`daemon exited with ${code} before it was in sync`)));
  });
  return {
    child,
    pid: child.pid as number,
    spawnedAt,
    inSyncAt,
    logBytes: () => logBytes,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
