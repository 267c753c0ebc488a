import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { type HttpLimits, serveHttp } from '../../src/cli/http.js';
import { type EtcdServer, runEtcdctl } from '../harness/etcd.js';
import { waitFor } from '../harness/wait.js';
import { useEtcd } from '../support/lifecycle.js';

const run = promisify(execFile);
const main = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
let etcd: EtcdServer;
let counter = 0;
const { defer } = useEtcd((started) => {
  etcd = started;
});

async function dirs() {
  const confDir = await mkdtemp(join(tmpdir(), 'link-etcd-serving-conf-'));
  const stateDir = await mkdtemp(join(tmpdir(), 'link-etcd-serving-state-'));
  defer(() => rm(confDir, { recursive: true, force: true }));
  defer(() => rm(stateDir, { recursive: true, force: true }));
  return { confDir, stateDir, prefix: `/serving${counter++}/` };
}

describe('the --http endpoint under idle connections', () => {
  async function serve(limits: Partial<HttpLimits>) {
    const server = await serveHttp(
      { host: '127.0.0.1', port: 0 },
      { registry: new Registry(), ready: async () => ({ ok: true, reasons: [] }) },
      limits,
    );
    defer(() => new Promise((r) => server.close(r)));
    defer(() => server.closeAllConnections());
    return { server, port: (server.address() as AddressInfo).port };
  }

  const connections = (server: Server) =>
    new Promise<number>((resolve, reject) => server.getConnections((e, n) => (e ? reject(e) : resolve(n))));

  /** `count` sockets that connect and then send nothing; `closed` counts those the server ended. */
  async function idleSockets(port: number, count: number) {
    const sockets: Socket[] = [];
    const state = { closed: 0 };
    await Promise.all(
      Array.from(
        { length: count },
        () =>
          new Promise<void>((resolve) => {
            const socket = connect(port, '127.0.0.1', () => resolve());
            socket.on('error', () => resolve());
            // Flowing, so that the server's FIN is seen at once.
            socket.resume();
            socket.on('close', () => {
              state.closed++;
              resolve();
            });
            sockets.push(socket);
          }),
      ),
    );
    defer(() => {
      for (const s of sockets) s.destroy();
    });
    return { sockets, state };
  }

  /** A raw `GET path`: the server's whole answer, '' when it closes the connection without one. */
  const rawGet = (port: number, path: string, keepAlive = false) =>
    new Promise<string>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n${keepAlive ? '' : 'Connection: close\r\n'}\r\n`);
      });
      let answer = '';
      socket.on('data', (d) => {
        answer += String(d);
      });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(answer));
      defer(() => socket.destroy());
    });

  const healthz = async (port: number) => {
    const res = await fetch(`http://127.0.0.1:${port}/healthz`);
    return { status: res.status, body: await res.text() };
  };

  it('holds at most maxConnections of 200 idle sockets, and answers again once they go', async () => {
    const cap = 16;
    const { server, port } = await serve({ maxConnections: cap });
    let peak = 0;
    const sampler = setInterval(() => {
      void connections(server).then((n) => {
        peak = Math.max(peak, n);
      });
    }, 5);
    defer(() => clearInterval(sampler));

    const { sockets, state } = await idleSockets(port, 200);
    // The server closes every socket past the cap as it accepts it.
    await waitFor(() => state.closed === 200 - cap, { message: `${state.closed} closed` });
    expect(await connections(server)).toBe(cap);
    // Full: a new client is turned away, not queued on a file descriptor.
    expect(await rawGet(port, '/healthz')).toBe('');

    for (const s of sockets) s.destroy();
    await waitFor(async () => (await connections(server)) === 0);
    expect(await healthz(port)).toEqual({ status: 200, body: 'ok\n' });
    clearInterval(sampler);
    expect(peak).toBeLessThanOrEqual(cap);
  });

  it('closes idle, half-sent and kept-alive connections after its timeouts, then answers', async () => {
    const { server, port } = await serve({
      maxConnections: 16,
      headersTimeoutMs: 300,
      requestTimeoutMs: 300,
      keepAliveTimeoutMs: 200,
      checkIntervalMs: 50,
    });
    const { sockets, state } = await idleSockets(port, 200);
    // A slowloris: a request line, and headers that never end.
    for (const s of sockets.slice(0, 8)) if (!s.destroyed) s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
    // Nobody closes them here: the server does, the first 16 after headersTimeout, the rest at once.
    await waitFor(() => state.closed === 200, { message: `${state.closed} of 200 closed` });
    expect(await connections(server)).toBe(0);
    expect(await healthz(port)).toEqual({ status: 200, body: 'ok\n' });

    // A kept-alive connection is closed after keepAliveTimeout, not held.
    expect(await rawGet(port, '/healthz', true)).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\nok\n\r\n/);
    await waitFor(async () => (await connections(server)) === 0);
  });
});

describe('sync --dry-run', () => {
  it('prints values through maskValue: no password, in a secret-named key or inside a DSN', async () => {
    const d = await dirs();
    await writeFile(
      join(d.confDir, 'db.conf'),
      '[DB]\nhost = db.example.com\ndb_password = hunter2\ndsn = postgres://u:hunter2@h/db\n',
    );
    await etcd.etcdctl('put', `${d.prefix}app.conf/API/token`, 'hunter2');
    await etcd.etcdctl('put', `${d.prefix}app.conf/API/url`, 'https://h/cb?access_token=hunter2&x=1');
    const args = [
      main,
      `--endpoints=${etcd.clientUrl}`,
      `--conf-dir=${d.confDir}`,
      'sync',
      `--state-dir=${d.stateDir}`,
      `--prefix=${d.prefix}`,
      '--dry-run',
    ];
    const dry = await run(process.execPath, [...args, '--log-level=silent']);
    expect(dry.stdout.split('\n').filter((l) => l !== '')).toEqual([
      `to etcd: put ${d.prefix}db.conf/DB/host = db.example.com (new in the file)`,
      `to etcd: put ${d.prefix}db.conf/DB/db_password = *** (new in the file)`,
      `to etcd: put ${d.prefix}db.conf/DB/dsn = postgres://u:***@h/db (new in the file)`,
      `to file: put ${d.prefix}app.conf/API/token = *** (new in etcd)`,
      `to file: put ${d.prefix}app.conf/API/url = https://h/cb?access_token=***&x=1 (new in etcd)`,
    ]);
    // The logs at info say nothing of the values either.
    const verbose = await run(process.execPath, [...args, '--log-level=info']);
    expect(verbose.stdout + verbose.stderr).not.toContain('hunter2');
    expect(verbose.stdout).toContain('db_password = ***');
  });
});

describe('sync --local-etcd', () => {
  function daemon(args: string[]) {
    const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: Array<Record<string, unknown>> = [];
    let buffer = '';
    child.stdout?.on('data', (chunk) => {
      buffer += String(chunk);
      const parts = buffer.split('\n');
      buffer = parts.pop() ?? '';
      for (const line of parts) lines.push(JSON.parse(line));
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    defer(() => child.kill('SIGKILL'));
    return { child, lines, exited };
  }

  it('turns etcd auth on: a local user without the password cannot write a key', async () => {
    const d = await dirs();
    await writeFile(join(d.confDir, 'demo.conf'), '[S]\nk = 1\n');
    const args = [main, `--conf-dir=${d.confDir}`, 'sync', `--state-dir=${d.stateDir}`, '--local-etcd'];
    const p = daemon([...args, `--prefix=${d.prefix}`, '--log-format=json']);
    await waitFor(() => p.lines.some((l) => l.msg === 'in sync; following both sides'), { timeout: 30_000 });
    const url = String(p.lines.find((l) => typeof l.url === 'string')?.url);
    const passwordFile = String(p.lines.find((l) => typeof l.passwordFile === 'string')?.passwordFile);
    const endpoint = [url.replace('http://', '')];

    const folder = await stat(join(d.stateDir, 'local-etcd'));
    expect(folder.mode & 0o777).toBe(0o700);
    expect((await stat(passwordFile)).mode & 0o777).toBe(0o600);
    const password = (await readFile(passwordFile, 'utf8')).trim();
    expect(password.length).toBeGreaterThanOrEqual(32);
    // Neither the log nor etcd's own key space holds it.
    expect(JSON.stringify(p.lines)).not.toContain(password);

    await expect(runEtcdctl(endpoint, ['put', `${d.prefix}demo.conf/S/k`, 'intruder'])).rejects.toThrow(
      /user name is empty|permission denied/,
    );
    await expect(
      runEtcdctl(endpoint, ['--user=root:wrong', 'put', `${d.prefix}demo.conf/S/k`, 'intruder']),
    ).rejects.toThrow(/authentication failed/);
    await expect(runEtcdctl(endpoint, ['get', '--prefix', '/'])).rejects.toThrow();
    // No peer port: the member's peer side is a unix socket in the private folder.
    const members = await runEtcdctl(endpoint, [`--user=root:${password}`, 'member', 'list']);
    expect(members.split(', ')[3]).toBe('unix://peer.sock:1');

    await runEtcdctl(endpoint, [`--user=root:${password}`, 'put', `${d.prefix}demo.conf/S/k`, 'owner']);
    await waitFor(async () => (await readFile(join(d.confDir, 'demo.conf'), 'utf8')) === '[S]\nk = owner\n');
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);

    // A restart keeps the password and the data: no second setup.
    const again = daemon([...args, `--prefix=${d.prefix}`, '--log-format=json']);
    await waitFor(() => again.lines.some((l) => l.msg === 'in sync; following both sides'), {
      timeout: 30_000,
    });
    expect((await readFile(passwordFile, 'utf8')).trim()).toBe(password);
    expect(again.lines.some((l) => String(l.msg).includes('auth is on, user root'))).toBe(false);
    again.child.kill('SIGTERM');
    expect(await again.exited).toBe(0);
  });
});
