import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { constants, rmSync } from 'node:fs';
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertEtcdInstalled } from './bin.js';
import { freePort } from './ports.js';

export interface TlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
  clientCertAuth?: boolean;
  /**
   * Identity presented by etcdctl() and the health probe. Without it, certFile/keyFile are presented when
   * clientCertAuth is on (that certificate then needs the clientAuth extended key usage), none otherwise.
   */
  clientCertFile?: string;
  clientKeyFile?: string;
}

export interface StartEtcdOptions {
  tls?: TlsFiles;
  maxTxnOps?: number;
  extraArgs?: string[];
  name?: string;
}

export interface EtcdServer {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly endpoint: string;
  readonly clientUrl: string;
  readonly dataDir: string;
  readonly running: boolean;
  /** Resolves once the process has exited; SIGTERM escalates to SIGKILL after 10 s. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /**
   * Starts again on the same data dir and ports and resolves when healthy. A cluster member is only
   * healthy once its cluster has quorum: restart a stopped majority concurrently, not one by one.
   */
  start(): Promise<void>;
  restart(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /**
   * Stops, empties the data dir and starts again at the same address: an etcd wiped under its clients.
   * `newCluster`: with another cluster token, so the new etcd is another cluster (another cluster id).
   */
  wipe(options?: { newCluster?: boolean }): Promise<void>;
  /** Stops, replaces the data dir with `etcdctl snapshot restore` of `snapshot`, and starts again at the same address. */
  restore(snapshot: string): Promise<void>;
  etcdctl(...args: string[]): Promise<string>;
  cleanup(): Promise<void>;
}

export interface EtcdCluster {
  readonly members: EtcdServer[];
  readonly endpoints: string[];
  /** Throws while no running member claims leadership; wrap in waitFor() around elections. */
  leader(): Promise<EtcdServer>;
  cleanup(): Promise<void>;
}

const HOST = '127.0.0.1';
const HEALTH_TIMEOUT_MS = 15_000;
const LOG_LINES = 50;
const FRESH_PORT_ATTEMPTS = 3;
const SAME_PORT_ATTEMPTS = 5;

// Shared through globalThis so a module re-evaluated in the same worker still has one set of hooks.
interface Leftovers {
  children: Map<ChildProcess, string | undefined>; // -> pid file
  dataDirs: Set<string>; // not yet removed by cleanup(); etcd preallocates 64 MB of WAL in each
}
const LEFTOVERS = Symbol.for('link-etcd.harness.leftovers');
const globals = globalThis as { [LEFTOVERS]?: Leftovers };
const leftovers = globals[LEFTOVERS] ?? registerExitHooks({ children: new Map(), dataDirs: new Set() });
globals[LEFTOVERS] = leftovers;

function registerExitHooks(state: Leftovers): Leftovers {
  // Last line of defence when a test forgets cleanup(): only synchronous work is possible here.
  const removeAll = () => {
    for (const [child, pidFile] of state.children) {
      child.kill('SIGKILL');
      if (pidFile) rmSync(pidFile, { force: true });
    }
    // Retries cover files the dying etcd is still creating.
    for (const dir of state.dataDirs) rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
  };
  process.on('exit', removeAll);
  // Vitest ends fork workers with SIGTERM, which skips 'exit' handlers; re-raise it afterwards so the
  // worker still dies of the signal unless someone else has taken it over.
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.once(signal, () => {
      removeAll();
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
  return state;
}

class StartError extends Error {
  constructor(
    message: string,
    readonly addressInUse: boolean,
  ) {
    super(message);
  }
}

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// etcd and etcdctl read ETCD_*/ETCDCTL_* for every flag and refuse to start when a variable and a flag
// both set the same option, so an ambient ETCDCTL_ENDPOINTS or ETCD_NAME would break every test.
function childEnv(prefix: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith(prefix) || key === 'ETCD_UNSUPPORTED_ARCH') env[key] = value;
  }
  return { ...env, ...extra };
}

function clientIdentity(tls: TlsFiles): { cert: string; key: string } | undefined {
  if (tls.clientCertFile && tls.clientKeyFile) return { cert: tls.clientCertFile, key: tls.clientKeyFile };
  return tls.clientCertAuth ? { cert: tls.certFile, key: tls.keyFile } : undefined;
}

export function runEtcdctl(
  endpoints: readonly string[],
  args: readonly string[],
  tls?: TlsFiles,
): Promise<string> {
  const identity = tls && clientIdentity(tls);
  const tlsArgs = tls ? [`--cacert=${tls.caFile}`] : [];
  if (identity) tlsArgs.push(`--cert=${identity.cert}`, `--key=${identity.key}`);
  const argv = [...(endpoints.length > 0 ? [`--endpoints=${endpoints.join(',')}`] : []), ...tlsArgs, ...args];
  return new Promise((resolve, reject) => {
    const child = execFile(
      'etcdctl',
      argv,
      {
        env: childEnv('ETCDCTL_', { ETCDCTL_API: '3' }),
        maxBuffer: 64 * 1024 * 1024,
        timeout: 60_000,
        killSignal: 'SIGKILL',
      },
      (err, stdout, stderr) => {
        if (err)
          reject(new Error(`etcdctl ${argv.join(' ')} failed (${err.code ?? err.signal}): ${stderr.trim()}`));
        else resolve(stdout);
      },
    );
    // EOF at once: commands that fall back to stdin (put without a value, txn) must not hang.
    child.stdin?.end();
  });
}

let dataRoot: Promise<string> | undefined;
function dataRootDir(): Promise<string> {
  // tmpfs makes etcd's fsyncs nearly free, which is most of its latency on a busy CI disk.
  dataRoot ??= access('/dev/shm', constants.W_OK).then(
    () => '/dev/shm',
    () => tmpdir(),
  );
  return dataRoot;
}

interface TlsMaterial {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

function healthy(url: string, tls: TlsMaterial | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const onResponse = (res: http.IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('error', () => resolve(false));
      res.on('end', () => {
        try {
          resolve((JSON.parse(body) as { health?: unknown }).health === 'true');
        } catch {
          resolve(false);
        }
      });
    };
    const options = { agent: false, timeout: 1_000 };
    const req = tls
      ? https.get(`${url}/health`, { ...options, ...tls }, onResponse)
      : http.get(`${url}/health`, options, onResponse);
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

interface MemberConfig {
  name: string;
  dataDir: string;
  port: number;
  peerPort: number;
  initialCluster: string;
  token: string;
  opts: StartEtcdOptions;
}

class Member implements EtcdServer {
  readonly host = HOST;
  readonly name: string;
  readonly dataDir: string;
  readonly port: number;
  readonly peerPort: number;
  #config: MemberConfig;
  #child: ChildProcess | undefined;
  #closed: Promise<void> = Promise.resolve();
  #log: string[] = [];
  #cleaned = false;
  #tls: Promise<TlsMaterial> | undefined;

  constructor(config: MemberConfig) {
    this.#config = config;
    this.name = config.name;
    this.dataDir = config.dataDir;
    this.port = config.port;
    this.peerPort = config.peerPort;
    leftovers.dataDirs.add(config.dataDir);
  }

  get endpoint(): string {
    return `${HOST}:${this.port}`;
  }
  get clientUrl(): string {
    return `${this.#config.opts.tls ? 'https' : 'http'}://${this.endpoint}`;
  }
  get peerUrl(): string {
    return `http://${HOST}:${this.peerPort}`;
  }
  get running(): boolean {
    return this.#child !== undefined;
  }

  #args(): string[] {
    const { opts, initialCluster, token } = this.#config;
    const args = [
      `--name=${this.name}`,
      `--data-dir=${this.dataDir}`,
      `--listen-client-urls=${this.clientUrl}`,
      `--advertise-client-urls=${this.clientUrl}`,
      `--listen-peer-urls=${this.peerUrl}`,
      `--initial-advertise-peer-urls=${this.peerUrl}`,
      `--initial-cluster=${initialCluster}`,
      '--initial-cluster-state=new',
      `--initial-cluster-token=${token}`,
      '--logger=zap',
      '--log-outputs=stderr',
      '--log-level=error',
    ];
    if (opts.maxTxnOps !== undefined) args.push(`--max-txn-ops=${opts.maxTxnOps}`);
    if (opts.tls) {
      args.push(`--cert-file=${opts.tls.certFile}`, `--key-file=${opts.tls.keyFile}`);
      // etcd 3.4 demands a client certificate whenever --trusted-ca-file is set, even without
      // --client-cert-auth, so the CA is only handed to etcd when client certificates are wanted.
      if (opts.tls.clientCertAuth) args.push(`--trusted-ca-file=${opts.tls.caFile}`, '--client-cert-auth');
    }
    return [...args, ...(opts.extraArgs ?? [])];
  }

  async #spawn(): Promise<void> {
    this.#log = [];
    let partial = '';
    const child = spawn('etcd', this.#args(), {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: childEnv('ETCD_'),
    });
    const pidDir = process.env.LINK_ETCD_TEST_PIDDIR;
    const pidFile = pidDir && child.pid !== undefined ? join(pidDir, String(child.pid)) : undefined;
    this.#child = child;
    leftovers.children.set(child, pidFile);
    // The data dir in the pid file lets teardown tell our etcd from an unrelated process that reused the pid.
    const registered = pidFile ? writeFile(pidFile, this.dataDir).catch(() => {}) : Promise.resolve();
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      this.#log.push(...lines);
      if (this.#log.length > LOG_LINES) this.#log.splice(0, this.#log.length - LOG_LINES);
    });
    this.#closed = new Promise<void>((resolve) => {
      let done = false;
      const finish = (why: string) => {
        if (done) return;
        done = true;
        if (partial) this.#log.push(partial);
        this.#log.push(`[harness] ${why}`);
        leftovers.children.delete(child);
        if (this.#child === child) this.#child = undefined;
        resolve(registered.then(() => (pidFile ? rm(pidFile, { force: true }) : undefined)));
      };
      // 'close' rather than 'exit': it waits for stderr to drain, which the address-in-use check reads.
      child.on('close', (code, signal) => finish(`exited (${signal ?? `code ${code}`})`));
      child.on('error', (err) => finish(`spawn failed: ${err.message}`));
    });
    await registered;
  }

  #failure(reason: string): StartError {
    const tail = this.#log.join('\n');
    return new StartError(
      `etcd ${this.name} (${this.clientUrl}, data ${this.dataDir}) ${reason}\n--- last etcd stderr ---\n${tail}`,
      tail.includes('address already in use'),
    );
  }

  async #tlsMaterial(): Promise<TlsMaterial | undefined> {
    const tls = this.#config.opts.tls;
    if (!tls) return undefined;
    const identity = clientIdentity(tls);
    this.#tls ??= Promise.all([
      readFile(tls.caFile),
      identity && readFile(identity.cert),
      identity && readFile(identity.key),
    ]).then(([ca, cert, key]) => ({ ca, cert, key }));
    return this.#tls;
  }

  /** One attempt: spawn and wait for /health; never leaves a process behind when it rejects. */
  async launch(): Promise<void> {
    if (this.#cleaned) throw new Error(`etcd ${this.name}: start() after cleanup()`);
    const tls = await this.#tlsMaterial();
    await this.#spawn();
    const child = this.#child;
    const deadline = Date.now() + HEALTH_TIMEOUT_MS;
    for (;;) {
      if (this.#child !== child || !child) {
        await this.#closed;
        throw this.#failure('exited during start');
      }
      if (await healthy(this.clientUrl, tls)) return;
      if (Date.now() > deadline) {
        await this.stop('SIGKILL');
        throw this.#failure(`not healthy within ${HEALTH_TIMEOUT_MS} ms`);
      }
      await delay(50);
    }
  }

  async start(): Promise<void> {
    if (this.running) return;
    // Go listeners set SO_REUSEADDR, but another process may hold the port briefly (e.g. a freePort() probe).
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.launch();
      } catch (err) {
        if (!(err instanceof StartError && err.addressInUse) || attempt >= SAME_PORT_ATTEMPTS) throw err;
        await delay(200 * attempt);
      }
    }
  }

  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const child = this.#child;
    if (!child) return this.#closed;
    child.kill(signal);
    // A member that is still trying to reach its peers can ignore SIGTERM for a long time.
    const escalate = signal === 'SIGTERM' ? setTimeout(() => child.kill('SIGKILL'), 10_000) : undefined;
    await this.#closed;
    clearTimeout(escalate);
  }

  async restart(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    await this.stop(signal);
    await this.start();
  }

  async wipe(options: { newCluster?: boolean } = {}): Promise<void> {
    await this.stop();
    await rm(this.dataDir, { recursive: true, force: true });
    if (options.newCluster) this.#config = { ...this.#config, token: `${this.#config.token}-new` };
    await this.start();
  }

  async restore(snapshot: string): Promise<void> {
    await this.stop();
    await rm(this.dataDir, { recursive: true, force: true });
    const { initialCluster, token } = this.#config;
    await runEtcdctl(
      [],
      [
        'snapshot',
        'restore',
        snapshot,
        `--data-dir=${this.dataDir}`,
        `--name=${this.name}`,
        `--initial-cluster=${initialCluster}`,
        `--initial-cluster-token=${token}`,
        `--initial-advertise-peer-urls=${this.peerUrl}`,
      ],
    );
    await this.start();
  }

  etcdctl(...args: string[]): Promise<string> {
    return runEtcdctl([this.clientUrl], args, this.#config.opts.tls);
  }

  async cleanup(): Promise<void> {
    this.#cleaned = true;
    await this.stop('SIGKILL');
    await rm(this.dataDir, { recursive: true, force: true });
    leftovers.dataDirs.delete(this.dataDir);
  }
}

let tokenCounter = 0;

async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

async function startMembers(names: string[], opts: StartEtcdOptions): Promise<Member[]> {
  await assertEtcdInstalled();
  const root = await dataRootDir();
  for (let attempt = 1; ; attempt++) {
    const ports = await distinctFreePorts(names.length * 2);
    const token = `link-etcd-${process.pid}-${++tokenCounter}-${Date.now().toString(36)}`;
    const dirs = await Promise.all(names.map((name) => mkdtemp(join(root, `link-etcd-${name}-`))));
    const peers = names.map((name, i) => `${name}=http://${HOST}:${ports[2 * i + 1]}`).join(',');
    const members = names.map(
      (name, i) =>
        new Member({
          name,
          dataDir: dirs[i] as string,
          port: ports[2 * i] as number,
          peerPort: ports[2 * i + 1] as number,
          initialCluster: peers,
          token,
          opts,
        }),
    );
    const launches = members.map((m) => m.launch());
    try {
      await Promise.all(launches);
      return members;
    } catch (err) {
      // Members only become healthy together, so one failure dooms the attempt: stop the rest now
      // instead of letting them wait out the health timeout.
      await Promise.all(members.map((m) => m.cleanup()));
      await Promise.allSettled(launches);
      if (!(err instanceof StartError && err.addressInUse) || attempt >= FRESH_PORT_ATTEMPTS) throw err;
    }
  }
}

export async function startEtcd(opts: StartEtcdOptions = {}): Promise<EtcdServer> {
  const [member] = await startMembers([opts.name ?? 'etcd'], opts);
  return member as Member;
}

function statusField(json: string, field: string): string | undefined {
  // IDs are uint64 and would lose precision through JSON.parse.
  return new RegExp(`"${field}":(\\d+)`).exec(json)?.[1];
}

export async function startEtcdCluster(size = 3): Promise<EtcdCluster> {
  const members = await startMembers(
    Array.from({ length: size }, (_, i) => `etcd${i + 1}`),
    {},
  );
  return {
    members,
    endpoints: members.map((m) => m.endpoint),
    async leader() {
      const claims = await Promise.all(
        members
          .filter((m) => m.running)
          .map(async (m) => {
            try {
              const json = await m.etcdctl('--command-timeout=2s', 'endpoint', 'status', '-w', 'json');
              const id = statusField(json, 'member_id');
              const term = Number(statusField(json, 'raft_term') ?? 0);
              return id !== undefined && id === statusField(json, 'leader') ? { m, term } : undefined;
            } catch {
              return undefined;
            }
          }),
      );
      // A deposed leader cut off from its peers still claims leadership of an older term.
      let best: { m: Member; term: number } | undefined;
      for (const claim of claims) if (claim && (!best || claim.term > best.term)) best = claim;
      if (!best) throw new Error(`no running member of ${members.map((m) => m.name).join(',')} is leader`);
      return best.m;
    },
    async cleanup() {
      await Promise.all(members.map((m) => m.cleanup()));
    },
  };
}
