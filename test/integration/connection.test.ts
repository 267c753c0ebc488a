import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ClusterMismatchError,
  EtcdAuthError,
  type EtcdChange,
  EtcdUnavailableError,
  SettingsError,
} from '../../src/index.js';
import { type EtcdServer, startEtcd, startEtcdCluster } from '../harness/etcd.js';
import { freePort } from '../harness/ports.js';
import { makeCertificates } from '../harness/tls.js';
import { waitFor } from '../harness/wait.js';
import { clientFor } from '../support/client.js';

let etcd: EtcdServer;

beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.cleanup();
});

async function clusterIdHex(server: EtcdServer): Promise<string> {
  // JSON output would round this uint64 through a double; the fields output keeps every digit.
  const fields = await server.etcdctl('endpoint', 'status', '-w', 'fields');
  const id = /"ClusterID" : (\d+)/.exec(fields)?.[1];
  if (id === undefined) throw new Error(`no ClusterID in ${fields}`);
  return BigInt(id).toString(16);
}

describe('connection settings against real etcd', () => {
  it('refuses a cluster whose id is not expected_cluster_id, naming both ids', async () => {
    const actual = await clusterIdHex(etcd);
    const wrong = clientFor(etcd, { expectedClusterId: 'deadbeef' });
    try {
      const error = await wrong.get('/x').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ClusterMismatchError);
      expect((error as Error).message).toContain('deadbeef');
      expect((error as Error).message).toContain(actual);
      await expect(wrong.connect()).rejects.toBeInstanceOf(ClusterMismatchError);
    } finally {
      await wrong.close();
    }
    const watcher = clientFor(etcd, { expectedClusterId: 'deadbeef' });
    try {
      const refused = await new Promise<unknown>((resolve) => {
        watcher.watch('/x/').subscribe({ error: resolve, complete: () => resolve('completed') });
      });
      expect(refused).toBeInstanceOf(ClusterMismatchError);
    } finally {
      await watcher.close();
    }
    const right = clientFor(etcd, { expected_cluster_id: actual.toUpperCase() });
    try {
      await right.connect();
      await right.set('/cluster-ok', 'yes');
      expect(await right.get('/cluster-ok')).toBe('yes');
    } finally {
      await right.close();
    }
  });

  it('fails within read_timeout, naming the endpoint, when nothing listens there', async () => {
    const port = await freePort();
    const client = clientFor({ host: '127.0.0.1', port }, { readTimeout: 1 });
    try {
      const started = Date.now();
      const error = await client.get('/x').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(EtcdUnavailableError);
      expect((error as Error).message).toContain(`127.0.0.1:${port}`);
      expect(Date.now() - started).toBeLessThan(1000 + 1500);
    } finally {
      await client.close();
    }
  });

  it('fails within read_timeout when the endpoint accepts but never answers', async () => {
    const sockets: Socket[] = [];
    const blackhole: Server = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => blackhole.listen(0, '127.0.0.1', r));
    const port = (blackhole.address() as { port: number }).port;
    const client = clientFor({ host: '127.0.0.1', port }, { readTimeout: 1, allowReconnect: true });
    try {
      const started = Date.now();
      const error = await client.set('/x', 'v').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(EtcdUnavailableError);
      expect((error as Error).message).toContain(`127.0.0.1:${port}`);
      expect(Date.now() - started).toBeLessThan(1000 + 1500);
    } finally {
      await client.close();
      for (const s of sockets) s.destroy();
      await new Promise((r) => blackhole.close(r));
    }
  });

  it('names the file key and value when a certificate file is missing', async () => {
    const client = clientFor(etcd, { protocol: 'https', caCert: '/nonexistent/ca.pem' });
    const error = await client.get('/x').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SettingsError);
    expect((error as Error).message).toMatch(/`ca_cert`.*`\/nonexistent\/ca\.pem` \(ENOENT\)/);
    await client.close();
  });
});

describe('TLS with client certificates (openssl-made CA)', () => {
  let dir: string;
  let secure: EtcdServer;
  let certs: Awaited<ReturnType<typeof makeCertificates>>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'link-etcd-tls-'));
    certs = await makeCertificates(dir);
    secure = await startEtcd({
      tls: {
        caFile: certs.caFile,
        certFile: certs.serverCertFile,
        keyFile: certs.serverKeyFile,
        clientCertAuth: true,
      },
    });
  });
  afterAll(async () => {
    await secure?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('talks https with ca_cert and a cert file that holds the key too; etcdctl reads it back', async () => {
    const client = clientFor(secure, {
      protocol: 'https',
      caCert: certs.caFile,
      cert: certs.clientBundleFile,
    });
    try {
      await client.set('/tls', { ok: 'yes' });
      expect(await client.get('/tls')).toEqual({ ok: 'yes' });
      expect(await secure.etcdctl('get', '--print-value-only', '/tls/ok')).toBe('yes\n');
    } finally {
      await client.close();
    }
  });

  it('accepts the key in its own file through cert_key', async () => {
    const client = clientFor(secure, {
      protocol: 'https',
      ca_cert: certs.caFile,
      cert: certs.clientCertFile,
      cert_key: certs.clientKeyFile,
    });
    try {
      expect(await client.has('/tls')).toBe(true);
    } finally {
      await client.close();
    }
  });

  it('fails, naming the endpoint, without a client certificate', async () => {
    const client = clientFor(secure, { protocol: 'https', caCert: certs.caFile, readTimeout: 2 });
    try {
      await expect(client.get('/tls')).rejects.toThrow(secure.endpoint);
    } finally {
      await client.close();
    }
  });
});

describe('username and password authentication', () => {
  let authed: EtcdServer;
  const password = 'pw-Secret-42';

  beforeAll(async () => {
    authed = await startEtcd();
    await authed.etcdctl('user', 'add', `root:${password}`);
    await authed.etcdctl('user', 'grant-role', 'root', 'root').catch(() => undefined);
    await authed.etcdctl('auth', 'enable');
  });
  afterAll(async () => {
    await authed?.cleanup();
  });

  it('writes with the right password, and etcdctl with the same user reads it', async () => {
    const client = clientFor(authed, { username: 'root', password });
    try {
      await client.set('/auth/k', 'v');
      expect(await client.get('/auth')).toEqual({ k: 'v' });
      expect(await authed.etcdctl('--user', `root:${password}`, 'get', '--print-value-only', '/auth/k')).toBe(
        'v\n',
      );
    } finally {
      await client.close();
    }
  });

  it('keeps a watch alive across an etcd restart, which expires its auth token', async () => {
    const client = clientFor(authed, { username: 'root', password });
    const events: EtcdChange[] = [];
    let failure: unknown;
    const sub = client.watch('/authw/').subscribe({
      next: (e) => events.push(e),
      error: (e: unknown) => {
        failure = e;
      },
    });
    try {
      await waitFor(async () => {
        await authed.etcdctl('--user', `root:${password}`, 'put', '/authw/probe', 'p');
        return events.length > 0;
      });
      await authed.restart('SIGTERM');
      await authed.etcdctl('--user', `root:${password}`, 'put', '/authw/after', 'restart');
      await waitFor(() => events.some((e) => e.key === '/authw/after') || failure !== undefined, {
        timeout: 20_000,
      });
      expect(failure).toBeUndefined();
    } finally {
      sub.unsubscribe();
      await client.close();
    }
  });

  it('is refused with an auth error that does not print the password', async () => {
    const client = clientFor(authed, { username: 'root', password: 'wrong-pw-XYZ' });
    try {
      const error = await client.get('/auth').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(EtcdAuthError);
      expect((error as Error).message).not.toContain('wrong-pw-XYZ');
      expect(String((error as Error).stack)).not.toContain('wrong-pw-XYZ');
    } finally {
      await client.close();
    }
  });
});

describe('a 3-member cluster losing its leader', () => {
  it('keeps writing and watching through the other members, losing no event', async () => {
    const cluster = await startEtcdCluster(3);
    const endpoints = cluster.endpoints.join(',');
    const client = clientFor(cluster.members[0] as EtcdServer, { host: endpoints, allowReconnect: true });
    const events: EtcdChange[] = [];
    const subscription = client.watch('/ha/').subscribe((e) => events.push(e));
    try {
      const key = (i: number) => `/ha/k${String(i).padStart(2, '0')}`;
      await client.set(key(0), 'v0');
      await waitFor(() => events.length === 1);
      for (let i = 1; i < 25; i++) await client.set(key(i), `v${i}`);
      const leader = await cluster.leader();
      await leader.stop('SIGKILL');
      for (let i = 25; i < 50; i++) {
        await waitFor(() => client.set(key(i), `v${i}`).then(() => true), { timeout: 20_000 });
      }
      await waitFor(() => events.length >= 50, { timeout: 20_000 });
      expect(events.map((e) => e.key)).toEqual(Array.from({ length: 50 }, (_, i) => key(i)));
      expect(new Set(events.map((e) => e.revision)).size).toBe(50);
    } finally {
      subscription.unsubscribe();
      await client.close();
      await cluster.cleanup();
    }
  });
});
