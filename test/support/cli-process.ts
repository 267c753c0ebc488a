import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EtcdServer } from '../harness/etcd.js';
import { followOutput } from './daemon-output.js';
import { useEtcd } from './lifecycle.js';

/** The built CLI, as `npm test` builds it before the tests. */
export const CLI_MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

export interface CliDirs {
  readonly confDir: string;
  readonly stateDir: string;
  readonly prefix: string;
}

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * A test file's etcd, fresh conf and state dirs with a key prefix of their
 * own (removed after each test), and the real CLI run against them.
 */
export function useCliProcess(name: string): {
  etcd: () => EtcdServer;
  defer: (cleanup: () => unknown) => void;
  dirs: () => Promise<CliDirs>;
  cli: (d: CliDirs, ...args: string[]) => Promise<CliResult>;
  /** `link-etcd sync` running on the dirs (JSON logs), killed after the test. */
  daemon: (d: CliDirs, ...extra: string[]) => { child: ChildProcess; lines: Array<Record<string, unknown>> };
} {
  let counter = 0;
  const { defer, current } = useEtcd(() => {});
  return {
    etcd: current,
    defer,
    async dirs() {
      const confDir = await mkdtemp(join(tmpdir(), `link-etcd-${name}-conf-`));
      const stateDir = await mkdtemp(join(tmpdir(), `link-etcd-${name}-state-`));
      defer(() => rm(confDir, { recursive: true, force: true }));
      defer(() => rm(stateDir, { recursive: true, force: true }));
      return { confDir, stateDir, prefix: `/${name}${counter++}/` };
    },
    daemon(d, ...extra) {
      const child = spawn(
        process.execPath,
        [
          CLI_MAIN,
          `--endpoints=${current().clientUrl}`,
          `--conf-dir=${d.confDir}`,
          'sync',
          `--state-dir=${d.stateDir}`,
          `--prefix=${d.prefix}`,
          '--log-format=json',
          ...extra,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const { lines } = followOutput(child);
      defer(() => child.kill('SIGKILL'));
      return { child, lines };
    },
    cli: (d, ...args) =>
      new Promise((resolve) => {
        execFile(
          process.execPath,
          [CLI_MAIN, `--endpoints=${current().clientUrl}`, `--conf-dir=${d.confDir}`, ...args],
          (error, stdout, stderr) => {
            const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
            resolve({ code, stdout, stderr });
          },
        );
      }),
  };
}
