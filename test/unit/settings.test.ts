import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SettingsError } from '../../src/errors.js';
import { loadSettings } from '../../src/middleware/settings.js';

let dir: string;
let file: string;

async function writeConf(body: string): Promise<void> {
  await mkdir(join(dir, 'link', 'etcd'), { recursive: true });
  await writeFile(file, `[ETCD]\n${body}\n`);
}

async function failure(promise: Promise<unknown>): Promise<SettingsError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(SettingsError);
  return error as SettingsError;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'link-etcd-settings-'));
  file = join(dir, 'link', 'etcd', 'middleware.conf');
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('middleware.conf settings', () => {
  it('has link.etcd defaults when the file is missing', async () => {
    const s = await loadSettings({ confDir: dir });
    expect(s).toMatchObject({
      hosts: ['localhost:4001'],
      versionPrefix: '/v2',
      readTimeoutMs: 60_000,
      allowRedirect: true,
      protocol: 'http',
      allowReconnect: false,
      useProxies: false,
      perHostPoolSize: 10,
      srvDomain: undefined,
      expectedClusterId: undefined,
    });
    expect(s.source).toContain('defaults');
  });

  it('reads [ETCD] from $B3J0F_CONF_DIR/link/etcd/middleware.conf', async () => {
    await writeConf(
      'HOST = a, b:2380, https://c:1, ::1\nport = 2379\nread_timeout = 1.5\nallow_reconnect = Yes\nexpected_cluster_id = 0xCDF818194E3A8C32',
    );
    const previous = process.env.B3J0F_CONF_DIR;
    process.env.B3J0F_CONF_DIR = dir;
    try {
      const s = await loadSettings();
      expect(s.hosts).toEqual(['a:2379', 'b:2380', 'c:1', '[::1]:2379']);
      expect(s.readTimeoutMs).toBe(1500);
      expect(s.allowReconnect).toBe(true);
      expect(s.expectedClusterId).toBe('cdf818194e3a8c32');
      expect(s.source).toBe(file);
    } finally {
      if (previous === undefined) delete process.env.B3J0F_CONF_DIR;
      else process.env.B3J0F_CONF_DIR = previous;
    }
  });

  it('takes an https:// host as protocol = https unless protocol says otherwise', async () => {
    await writeConf('host = https://etcd.example:2379');
    expect((await loadSettings({ confDir: dir })).protocol).toBe('https');
    await writeConf('host = https://etcd.example:2379\nprotocol = http');
    expect((await loadSettings({ confDir: dir })).protocol).toBe('http');
  });

  it('lets constructor options, camelCase or file spelling, override the file', async () => {
    await writeConf('port = 2379\nread_timeout = 5');
    const s = await loadSettings({ confDir: dir, options: { port: 1234, read_timeout: 2 } });
    expect(s.hosts).toEqual(['localhost:1234']);
    expect(s.readTimeoutMs).toBe(2000);
  });

  it.each([
    ['port = abc', 'port', /Expected `port` to be an integer from 1 to 65535, got `abc` \(string\)/],
    ['port = 70000', 'port', /got `70000`/],
    ['protocol = ftp', 'protocol', /Expected `protocol` to be `http` or `https`, got `ftp`/],
    ['read_timeout = -1', 'read_timeout', /positive number of seconds, got `-1`/],
    ['allow_reconnect = maybe', 'allow_reconnect', /boolean.*got `maybe`/],
    ['per_host_pool_size = 0', 'per_host_pool_size', /got `0`/],
    ['expected_cluster_id = xyz', 'expected_cluster_id', /hex.*got `xyz`/],
  ])('refuses %s naming the file, the key and the value', async (line, key, message) => {
    await writeConf(line);
    const error = await failure(loadSettings({ confDir: dir }));
    expect(error.key).toBe(key);
    expect(error.message).toMatch(message);
    expect(error.message).toContain(file);
  });

  it('names the options, not the file, when an option is wrong', async () => {
    const error = await failure(loadSettings({ confDir: dir, options: { port: 'x' } }));
    expect(error.message).toMatch(/got `x` \(string\) in the EtcdMiddleware options/);
  });

  it('never prints the password, in errors or when the settings are logged', async () => {
    await writeConf('username = root\npassword = s3cret-pw');
    const s = await loadSettings({ confDir: dir });
    expect(s.password).toBe('s3cret-pw');
    expect(inspect(s)).not.toContain('s3cret-pw');
    expect(JSON.stringify(s)).not.toContain('s3cret-pw');
    await writeConf('password = s3cret-pw');
    const error = await failure(loadSettings({ confDir: dir }));
    expect(error.message).toMatch(/`username` and `password` go together/);
    expect(error.message).not.toContain('s3cret-pw');
  });

  it('reports a malformed middleware.conf with its line', async () => {
    await writeConf('port 2379');
    await expect(loadSettings({ confDir: dir })).rejects.toThrow(
      /middleware\.conf:2: expected `key = value`/,
    );
  });
});

describe('middleware.conf: inline comments and unknown keys', () => {
  it('takes a value without its inline comment, but a password as written', async () => {
    await writeConf(
      "port = 2379   ; etcd's own default\nread_timeout = 5 # seconds\nusername = me ; the app user\npassword = p ;w#d",
    );
    const s = await loadSettings({ confDir: dir });
    expect(s.hosts).toEqual(['localhost:2379']);
    expect(s.readTimeoutMs).toBe(5000);
    expect(s.username).toBe('me');
    expect(s.password).toBe('p ;w#d');
    expect(s.warnings ?? []).toEqual([]);
  });

  it('warns about an unknown key in [ETCD], naming it and the nearest known key, and keeps the defaults', async () => {
    await writeConf('porrt = 2379\nfoo_bar_baz = 1');
    const s = await loadSettings({ confDir: dir });
    expect(s.hosts).toEqual(['localhost:4001']);
    expect(s.warnings?.[0]).toBe(
      `\`porrt\` in [ETCD] of ${file} is not a setting and is ignored: did you mean \`port\`?`,
    );
    expect(s.warnings?.[1]).toMatch(/`foo_bar_baz` in \[ETCD\] .* \(known: host, port, /);
  });
});
