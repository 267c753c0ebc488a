import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EtcdServer, startEtcd } from '../harness/etcd.js';
import { waitFor } from '../harness/wait.js';

const run = promisify(execFile);
const main = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
let etcd: EtcdServer;

/** Runs the built CLI as a user would; resolves with its exit code and output, never rejects. */
async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [main, ...args], {
      env: { ...process.env, B3J0F_CONF_DIR: '/nonexistent/link-etcd-cli' },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

beforeAll(async () => {
  if (!existsSync(main)) throw new Error(`${main} is missing: run \`npm run build\` before the CLI tests`);
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.cleanup();
});

describe('link-etcd CLI (spawned, real etcd)', () => {
  it('sets a JSON tree, gets it back as JSON and a leaf as text; etcdctl agrees', async () => {
    const endpoints = `--endpoints=${etcd.clientUrl}`;
    expect(await cli(endpoints, 'set', '/cli/app', '{"db":{"host":"h"},"hosts":["a","b"]}')).toMatchObject({
      code: 0,
    });
    const tree = await cli(endpoints, 'get', '/cli/app');
    expect(JSON.parse(tree.stdout)).toEqual({ db: { host: 'h' }, hosts: ['a', 'b'] });
    expect((await cli(endpoints, 'get', '/cli/app/hosts/2')).stdout).toBe('b\n');
    expect(await etcd.etcdctl('get', '--print-value-only', '/cli/app/db/host')).toBe('h\n');
    expect(await cli(endpoints, 'set', '/cli/text', '42')).toMatchObject({ code: 0 });
    expect(await etcd.etcdctl('get', '--print-value-only', '/cli/text')).toBe('42\n');
    expect(await cli(endpoints, 'del', '/cli/app')).toMatchObject({ code: 0 });
    expect(await etcd.etcdctl('get', '--prefix', '/cli/app')).toBe('');
  });

  it('exits 1 with one line on stderr naming the path when it is missing', async () => {
    const res = await cli(`--endpoints=${etcd.clientUrl}`, 'get', '/cli/missing');
    expect(res.code).toBe(1);
    expect(res.stdout).toBe('');
    expect(res.stderr.trim().split('\n')).toHaveLength(1);
    expect(res.stderr).toContain('/cli/missing');
  });

  it('exits 1 naming the endpoint when etcd is unreachable', async () => {
    const res = await cli('--endpoints=http://127.0.0.1:1', 'get', '/x');
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('127.0.0.1:1');
  });

  // Usage errors, --help and --version of every command run in process: test/unit/cli-usage.test.ts.
  it('the built binary runs: --help exits 0 with the usage on stdout', async () => {
    const help = await cli('--help');
    expect(help).toMatchObject({ code: 0, stderr: '' });
    expect(help.stdout).toMatch(/^Usage: link-etcd /);
  });

  it('watch prints one JSON object a line and exits 0 on SIGTERM', async () => {
    const child: ChildProcess = spawn(
      process.execPath,
      [main, `--endpoints=${etcd.clientUrl}`, 'watch', '/cli/w/'],
      {
        env: { ...process.env, B3J0F_CONF_DIR: '/nonexistent/link-etcd-cli' },
      },
    );
    let out = '';
    child.stdout?.on('data', (d) => {
      out += String(d);
    });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      // The watch starts asynchronously: keep writing until a line shows it is live.
      await waitFor(async () => {
        await etcd.etcdctl('put', '/cli/w/probe', 'p');
        return out.includes('/cli/w/probe');
      });
      await etcd.etcdctl('put', '/cli/w/k', 'v');
      await waitFor(() => out.includes('"/cli/w/k"'));
      const lines = out
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(lines.at(-1)).toMatchObject({ type: 'put', key: '/cli/w/k', value: 'v' });
      expect(typeof lines.at(-1).revision).toBe('number');
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('doctor reports cluster id, members, leader, version and latency; exits 1 when etcd is unreachable', async () => {
    const text = await cli(`--endpoints=${etcd.clientUrl}`, 'doctor');
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/cluster id: {2}[0-9a-f]+/);
    expect(text.stdout).toMatch(/version: {5}etcd 3\./);
    expect(text.stdout).toMatch(/^ {2}\* /m);
    expect(text.stdout).toMatch(/healthy\n$/);
    const json = JSON.parse((await cli(`--endpoints=${etcd.clientUrl}`, 'doctor', '--json')).stdout);
    expect(json).toMatchObject({ healthy: true, auth: 'none', tls: false, endpoints: [etcd.endpoint] });
    expect(json.members).toHaveLength(1);
    expect(json.leader).toBe(json.members[0].id);
    const down = await cli('--endpoints=http://127.0.0.1:1', 'doctor');
    expect(down.code).toBe(1);
    expect(down.stderr).toContain('127.0.0.1:1');
  });

  it('doctor names the middleware.conf it read and warns about a key [ETCD] does not know', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'link-etcd-doctor-'));
    try {
      await mkdir(join(dir, 'link', 'etcd'), { recursive: true });
      const file = join(dir, 'link', 'etcd', 'middleware.conf');
      await writeFile(
        file,
        `[ETCD]\nhost = ${etcd.host}\nport = ${etcd.port}   ; the test etcd\nporrt = 2379\n`,
      );
      const { stdout } = await run(process.execPath, [main, 'doctor'], {
        env: { ...process.env, B3J0F_CONF_DIR: dir, LINK_ETCD_LOG_LEVEL: 'silent' },
      });
      expect(stdout).toContain(`settings:    ${file}`);
      expect(stdout).toMatch(/warning: `porrt` in \[ETCD\] .* did you mean `port`\?/);
      expect(stdout).toMatch(/cluster id: {2}[0-9a-f]+ \(the value expected_cluster_id takes\)/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
