import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import https from 'node:https';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ETCD_MISSING } from './harness/bin.js';
import {
  type EtcdCluster,
  type EtcdServer,
  runEtcdctl,
  startEtcd,
  startEtcdCluster,
} from './harness/etcd.js';
import { startProxy, type TcpProxy } from './harness/proxy.js';
import { type Certificates, makeCertificates } from './harness/tls.js';
import { waitFor } from './harness/wait.js';

// Short etcdctl timeouts so that expected failures fail fast instead of after etcdctl's 5 s default.
const FAST = ['--dial-timeout=500ms', '--command-timeout=1s'];

describe('waitFor', () => {
  it('returns the first truthy value', async () => {
    let n = 0;
    await expect(waitFor(() => (++n >= 3 ? n : 0), { interval: 1 })).resolves.toBe(3);
  });

  it('times out with the message and the last probe error', async () => {
    const failing = waitFor(
      () => {
        throw new Error('boom');
      },
      { timeout: 50, message: 'never' },
    );
    await expect(failing).rejects.toThrow(/never.*boom/);
  });
});

describe('single etcd', () => {
  let server: EtcdServer | undefined;
  let proxy: TcpProxy | undefined;

  beforeAll(async () => {
    server = await startEtcd();
  });
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
  });
  afterAll(async () => {
    await server?.cleanup();
  });

  const etcd = () => server as EtcdServer;

  it('reports its addresses and registers its pid for global teardown', async () => {
    const s = etcd();
    expect(s.running).toBe(true);
    expect(s.endpoint).toBe(`127.0.0.1:${s.port}`);
    expect(s.clientUrl).toBe(`http://127.0.0.1:${s.port}`);
    const pidDir = process.env.LINK_ETCD_TEST_PIDDIR;
    expect(pidDir, 'global setup env must reach forked workers').toBeTruthy();
    const files = await readdir(pidDir as string);
    const owners = await Promise.all(files.map((f) => readFile(join(pidDir as string, f), 'utf8')));
    expect(owners).toContain(s.dataDir);
  });

  it('serves put and get', async () => {
    await etcd().etcdctl('put', 'greeting', 'hello');
    expect(await etcd().etcdctl('get', 'greeting', '--print-value-only')).toBe('hello\n');
  });

  it('rejects with etcdctl stderr on failure', async () => {
    await expect(etcd().etcdctl('no-such-command')).rejects.toThrow(/unknown command/);
  });

  it('keeps data and ports across SIGKILL and start()', async () => {
    const s = etcd();
    const { port, clientUrl, dataDir } = s;
    await s.etcdctl('put', 'durable', 'yes');
    await s.stop('SIGKILL');
    expect(s.running).toBe(false);
    await expect(s.etcdctl(...FAST, 'get', 'durable')).rejects.toThrow();
    await s.start();
    expect([s.port, s.clientUrl, s.dataDir]).toEqual([port, clientUrl, dataDir]);
    expect(await s.etcdctl('get', 'durable', '--print-value-only')).toBe('yes\n');
    await s.restart();
    expect(await s.etcdctl('get', 'durable', '--print-value-only')).toBe('yes\n');
  });

  it('proxy block() cuts traffic and unblock() restores it', async () => {
    const s = etcd();
    const p = await startProxy({ host: s.host, port: s.port });
    proxy = p;
    await runEtcdctl([p.endpoint], ['put', 'via-proxy', '1']);

    const socket = connect(p.port, p.host);
    socket.on('error', () => {});
    await waitFor(() => p.connections === 1, { message: 'proxy never counted the connection' });
    const closed = new Promise((resolve) => socket.once('close', resolve));
    p.block();
    await closed;
    expect(p.connections).toBe(0);

    await expect(runEtcdctl([p.endpoint], [...FAST, 'get', 'via-proxy'])).rejects.toThrow();
    p.unblock();
    expect(await runEtcdctl([p.endpoint], ['get', 'via-proxy', '--print-value-only'])).toBe('1\n');
  });
});

describe('startEtcd options', () => {
  const servers: EtcdServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.cleanup()));
    vi.unstubAllEnvs();
  });

  it('passes --max-txn-ops and --name', async () => {
    const s = await startEtcd({ maxTxnOps: 2, name: 'tiny-txn' });
    servers.push(s);
    expect(s.name).toBe('tiny-txn');
    expect(await s.etcdctl('member', 'list')).toContain('tiny-txn');
    await expect(putInOneTxn(s, ['a', 'b'])).resolves.toBeDefined();
    await expect(putInOneTxn(s, ['a', 'b', 'c'])).rejects.toThrow(/too many operations/);
  });

  it('fails with one actionable line when etcd is not on PATH', async () => {
    vi.stubEnv('PATH', '/nonexistent');
    await expect(startEtcd()).rejects.toThrow(ETCD_MISSING);
  });
});

// etcdctl txn reads its operations from stdin, which runEtcdctl leaves alone; the JSON gateway is simpler.
async function putInOneTxn(s: EtcdServer, keys: string[]): Promise<string> {
  const b64 = (v: string) => Buffer.from(v).toString('base64');
  const success = keys.map((key) => ({ request_put: { key: b64(key), value: b64('v') } }));
  const res = await fetch(`${s.clientUrl}/v3/kv/txn`, { method: 'POST', body: JSON.stringify({ success }) });
  const body = await res.text();
  if (!res.ok) throw new Error(body);
  return body;
}

describe('3-member cluster', () => {
  let cluster: EtcdCluster | undefined;
  beforeAll(async () => {
    cluster = await startEtcdCluster();
  });
  afterAll(async () => {
    await cluster?.cleanup();
  });

  it('survives losing its leader and elects a new one', async () => {
    const c = cluster as EtcdCluster;
    expect(c.members).toHaveLength(3);
    expect(c.endpoints).toEqual(c.members.map((m) => m.endpoint));
    const memberList = (await c.members[0]?.etcdctl('member', 'list')) ?? '';
    expect(memberList.match(/, started, /g)).toHaveLength(3);

    const oldLeader = await c.leader();
    expect(c.members).toContain(oldLeader);
    await oldLeader.stop('SIGKILL');
    const survivors = c.members.filter((m) => m !== oldLeader);

    const newLeader = await waitFor(() => c.leader(), { message: 'no new leader' });
    expect(survivors).toContain(newLeader);
    // A put racing the election fails with "request timed out, possibly due to previous leader failure".
    await waitFor(() => survivors[0]?.etcdctl('put', 'after-failover', 'ok'), {
      message: 'put after failover',
    });
    expect(await survivors[1]?.etcdctl('get', 'after-failover', '--print-value-only')).toBe('ok\n');

    await oldLeader.start();
    expect(
      await waitFor(() =>
        oldLeader.etcdctl('get', 'after-failover', '--print-value-only', '--consistency=s'),
      ),
    ).toBe('ok\n');
  });
});

describe('TLS', () => {
  let dir: string | undefined;
  let certs: Certificates;
  const servers: EtcdServer[] = [];
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'link-etcd-certs-'));
    certs = await makeCertificates(dir);
  });
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.cleanup()));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  // Node's TLS stack is what grpc-js uses: it must accept the IP SAN and the one-file client bundle.
  async function nodeHttps(url: string, path: string, body?: string): Promise<string> {
    const [ca, bundle] = await Promise.all([readFile(certs.caFile), readFile(certs.clientBundleFile)]);
    return new Promise((resolve, reject) => {
      const options = { method: body ? 'POST' : 'GET', ca, cert: bundle, key: bundle, agent: false };
      const req = https.request(`${url}${path}`, options, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => (res.statusCode === 200 ? resolve(text) : reject(new Error(text))));
      });
      req.on('error', reject).end(body);
    });
  }

  it('with client-cert auth accepts the generated client cert and rejects clients without one', async () => {
    const server = await startEtcd({
      tls: {
        caFile: certs.caFile,
        certFile: certs.serverCertFile,
        keyFile: certs.serverKeyFile,
        clientCertAuth: true,
        clientCertFile: certs.clientCertFile,
        clientKeyFile: certs.clientKeyFile,
      },
    });
    servers.push(server);
    expect(server.clientUrl).toBe(`https://127.0.0.1:${server.port}`);
    await server.etcdctl('put', 'secure', 'yes');
    expect(await server.etcdctl('get', 'secure', '--print-value-only')).toBe('yes\n');
    await expect(
      runEtcdctl([server.clientUrl], [`--cacert=${certs.caFile}`, ...FAST, 'get', 'secure']),
    ).rejects.toThrow();

    expect(JSON.parse(await nodeHttps(server.clientUrl, '/health'))).toMatchObject({ health: 'true' });
    // The JSON gateway dials etcd's gRPC port with the server cert, so this needs its clientAuth usage.
    const range = await nodeHttps(server.clientUrl, '/v3/kv/range', JSON.stringify({ key: btoa('secure') }));
    expect(JSON.parse(range)).toMatchObject({ kvs: [{ value: btoa('yes') }] });
  });

  it('without client-cert auth serves clients that only trust the CA', async () => {
    const server = await startEtcd({
      tls: { caFile: certs.caFile, certFile: certs.serverCertFile, keyFile: certs.serverKeyFile },
    });
    servers.push(server);
    await runEtcdctl([server.clientUrl], [`--cacert=${certs.caFile}`, 'put', 'open', 'yes']);
    expect(await server.etcdctl('get', 'open', '--print-value-only')).toBe('yes\n');
  });
});
