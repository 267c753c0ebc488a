import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { LinkEtcdError } from '../errors.js';
import type { Logger } from '../log.js';

export interface LocalEtcd {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  stop(): Promise<void>;
}

/** Tries `preferred` first (etcd's usual port, nicer to type in a demo), else any free loopback port. */
async function port(preferred: number): Promise<number> {
  const tryListen = (p: number) =>
    new Promise<number | undefined>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(undefined));
      server.listen(p, '127.0.0.1', () => {
        const got = (server.address() as { port: number }).port;
        server.close(() => resolve(got));
      });
    });
  return (await tryListen(preferred)) ?? (await tryListen(0)) ?? 0;
}

async function healthy(url: string, child: ChildProcess, deadline: number): Promise<void> {
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    const ok = await fetch(`${url}/health`)
      .then(async (r) => (await r.text()).includes('"health":"true"'))
      .catch(() => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new LinkEtcdError(
    'ETCD_UNAVAILABLE',
    `the local etcd at ${url} did not become healthy: see its log lines above`,
  );
}

/**
 * A single-member etcd for laptops and demos (`sync --local-etcd`): data
 * under the state dir so it survives restarts, loopback ports only, stopped
 * with the daemon.
 */
export async function startLocalEtcd(stateDir: string, logger: Logger): Promise<LocalEtcd> {
  const dataDir = join(stateDir, 'local-etcd');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const clientPort = await port(2379);
  const peerPort = await port(clientPort === 2379 ? 2380 : 0);
  const url = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  // etcd refuses to start when an ETCD_* variable duplicates a flag.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCD_')));
  const child = spawn(
    'etcd',
    [
      '--name=link-etcd-local',
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${url}`,
      `--advertise-client-urls=${url}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=link-etcd-local=${peer}`,
      '--logger=zap',
      '--log-level=error',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], env },
  );
  const spawned = await new Promise<boolean>((resolve) => {
    child.once('spawn', () => resolve(true));
    child.once('error', () => resolve(false));
  });
  if (!spawned) {
    throw new LinkEtcdError(
      'ETCD_UNAVAILABLE',
      '--local-etcd needs the `etcd` binary on PATH: install it with `apt-get install etcd-server` (Debian/Ubuntu)',
    );
  }
  child.stderr?.on('data', (d) => logger.warn({ etcd: String(d).trim() }, 'local etcd says'));
  try {
    await healthy(url, child, Date.now() + 15_000);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  logger.info(
    { url, dataDir },
    `local etcd running: try \`ETCDCTL_API=3 etcdctl --endpoints=${url} get --prefix /\``,
  );
  return {
    url,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
