import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, open, rename, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3, EtcdUserExistsError } from 'etcd3';
import { LinkEtcdError } from '../errors.js';
import type { Logger } from '../log.js';

export interface LocalEtcd {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  /** etcd auth is on: the daemon, and anyone else, signs in as `root` with this password. */
  readonly username: string;
  readonly password: string;
  /** Where the password is kept (mode 0600, in a 0700 folder of the state dir). */
  readonly passwordFile: string;
  stop(): Promise<void>;
}

const USER = 'root';
const PASSWORD_FILE = 'root-password';
/** etcd takes `unix://NAME:PORT` only, relative to its working directory. */
const PEER_SOCKET = 'peer.sock:1';
const SETUP_SOCKET = 'setup.sock:1';
/** The room a unix socket path has (sun_path is 108 bytes on Linux, 104 on macOS). */
const SOCKET_PATH_MAX = 100;

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

/** etcd's `/health` over a unix socket. */
function healthOverSocket(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/health', timeout: 2_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve(body.includes('"health":"true"')));
      res.on('error', () => resolve(false));
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

async function healthy(what: string, probe: () => Promise<boolean>, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new LinkEtcdError(
    'ETCD_UNAVAILABLE',
    `the local etcd at ${what} did not become healthy: see its log lines above`,
  );
}

/** `dir` made (or kept) a folder only its owner can enter: the password and the sockets live there. */
async function privateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await lstat(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) {
    throw new LinkEtcdError(
      'UNSAFE_PATH',
      `--local-etcd keeps its data and password in ${dir}, which is not a folder of yours: move it away`,
    );
  }
  if ((st.mode & 0o077) !== 0) await chmod(dir, 0o700);
}

/** The file's text, or undefined when there is none; a symlink is refused, not followed. */
async function readSecret(path: string): Promise<string | undefined> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  });
  if (handle === undefined) return undefined;
  try {
    const text = (await handle.readFile('utf8')).trim();
    return text === '' ? undefined : text;
  } finally {
    await handle.close();
  }
}

async function writeSecret(path: string, secret: string): Promise<void> {
  await rm(path, { force: true });
  await writeFile(path, `${secret}\n`, { mode: 0o600, flag: 'wx' });
}

function spawnEtcd(cwd: string, dataDir: string, clientUrl: string, logger: Logger): ChildProcess {
  // etcd refuses to start when an ETCD_* variable duplicates a flag.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCD_')));
  // The peer side listens on a unix socket in the private folder: a single member needs no peer,
  // and a loopback peer port would take raft messages from any local user.
  const peer = `unix://${PEER_SOCKET}`;
  const child = spawn(
    'etcd',
    [
      '--name=link-etcd-local',
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${clientUrl}`,
      `--advertise-client-urls=${clientUrl}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=link-etcd-local=${peer}`,
      '--logger=zap',
      '--log-level=error',
    ],
    // Its own process group: a terminal's Ctrl-C (SIGINT to the foreground group) reaches the
    // daemon only; the daemon finishes its writes, lets go of etcd, then stops it (stopChild).
    { cwd, stdio: ['ignore', 'ignore', 'pipe'], env, detached: true },
  );
  child.stderr?.on('data', (d) => logger.warn({ etcd: String(d).trim() }, 'local etcd says'));
  return child;
}

async function spawned(child: ChildProcess): Promise<void> {
  const ok = await new Promise<boolean>((resolve) => {
    child.once('spawn', () => resolve(true));
    child.once('error', () => resolve(false));
  });
  if (!ok) {
    throw new LinkEtcdError(
      'ETCD_UNAVAILABLE',
      '--local-etcd needs the `etcd` binary on PATH: install it with `apt-get install etcd-server` (Debian/Ubuntu)',
    );
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  // No pid: it never started, and will not emit `exit`.
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  // What etcd says while it shuts down (its gRPC gateway losing its socket) is noise: drained, not logged.
  child.stderr?.removeAllListeners('data').resume();
  child.kill('SIGTERM');
  await exited;
}

/**
 * Turns etcd auth on in the data dir, once: a `root` user with a random
 * password, kept in `passwordFile` (0600). Meanwhile etcd listens on a unix
 * socket in a 0700 folder only, so no one else can slip in before auth is
 * on. A run cut short is taken up again (the password waits in
 * `passwordFile.new` until auth is on).
 */
async function enableAuth(dir: string, passwordFile: string, logger: Logger): Promise<string> {
  const pending = `${passwordFile}.new`;
  let password = await readSecret(pending);
  if (password === undefined) {
    password = randomBytes(24).toString('base64url');
    await writeSecret(pending, password);
  }
  const short = join(dir, SETUP_SOCKET).length <= SOCKET_PATH_MAX;
  const socketDir = short ? dir : await mkdtemp(join(tmpdir(), 'link-etcd-'));
  const socketPath = join(socketDir, SETUP_SOCKET);
  const host = `unix://${socketPath}`;
  const child = spawnEtcd(socketDir, dir, `unix://${SETUP_SOCKET}`, logger);
  const anonymous = new Etcd3({ hosts: host });
  let signedIn: Etcd3 | undefined;
  try {
    await spawned(child);
    await healthy(host, () => healthOverSocket(socketPath), child);
    const unauthenticated = await anonymous
      .user(USER)
      .create(password)
      .then(
        () => true,
        async (error: unknown) => {
          if (!(error instanceof EtcdUserExistsError)) return false;
          // Left by a run cut short before auth was on: this run's password replaces it.
          await anonymous.user(USER).setPassword(password);
          return true;
        },
      );
    if (unauthenticated) {
      await anonymous.user(USER).addRole('root');
      await anonymous.auth.authEnable({});
    } else {
      // Auth is on already: the pending password must be the one, or the data dir is someone else's.
      signedIn = new Etcd3({ hosts: host, auth: { username: USER, password } });
      await signedIn.maintenance.status().catch((error: unknown) => {
        throw new LinkEtcdError(
          'ETCD_AUTH',
          `the local etcd in ${dir} has auth on, but its password is not in ${passwordFile}: ` +
            `remove ${dir} to start afresh (its keys go with it)`,
          { cause: error },
        );
      });
    }
  } finally {
    anonymous.close();
    signedIn?.close();
    await stopChild(child);
    if (!short) await rm(socketDir, { recursive: true, force: true });
  }
  await rename(pending, passwordFile);
  logger.info({ passwordFile }, 'local etcd: auth is on, user root, password in the file');
  return password;
}

/**
 * A single-member etcd for laptops and demos (`sync --local-etcd`): data
 * under the state dir so it survives restarts, a loopback client port with
 * auth on (user `root`, a random password in the state dir, mode 0600),
 * no peer port, in its own process group (a Ctrl-C reaches the daemon
 * only), stopped by the daemon once it has finished.
 */
export async function startLocalEtcd(stateDir: string, logger: Logger): Promise<LocalEtcd> {
  const dataDir = join(stateDir, 'local-etcd');
  await privateDir(dataDir);
  const passwordFile = join(dataDir, PASSWORD_FILE);
  const password = (await readSecret(passwordFile)) ?? (await enableAuth(dataDir, passwordFile, logger));
  // Another program may take the port between the probe and etcd's bind: then another port.
  let started: { url: string; child: ChildProcess } | undefined;
  for (let attempt = 0; started === undefined; attempt++) {
    const url = `http://127.0.0.1:${await port(attempt === 0 ? 2379 : 0)}`;
    const child = spawnEtcd(dataDir, dataDir, url, logger);
    await spawned(child);
    try {
      await healthy(
        url,
        async () => (await (await fetch(`${url}/health`)).text()).includes('"health":"true"'),
        child,
      );
      started = { url, child };
    } catch (error) {
      const exited = child.exitCode !== null || child.signalCode !== null;
      child.kill('SIGKILL');
      if (!exited || attempt >= 2) throw error;
    }
  }
  const { url, child } = started;
  const quoted = `'${passwordFile.replaceAll("'", `'\\''`)}'`;
  logger.info(
    { url, dataDir, passwordFile },
    `local etcd running, auth on: try \`ETCDCTL_API=3 ETCDCTL_USER="root:$(cat ${quoted})" etcdctl --endpoints=${url} get --prefix /\``,
  );
  return { url, username: USER, password, passwordFile, stop: () => stopChild(child) };
}
