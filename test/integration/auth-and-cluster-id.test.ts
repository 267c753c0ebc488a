import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { EtcdServer } from '../harness/etcd.js';
import { clientFor } from '../support/client.js';
import { useEtcd } from '../support/lifecycle.js';

let etcd: EtcdServer;
const { defer } = useEtcd((started) => {
  etcd = started;
});

const README = resolve(import.meta.dirname, '..', '..', 'README.md');

describe('the cluster id instruction and auth without credentials (real etcd)', () => {
  it("README's expected_cluster_id instruction shows commands that print the cluster id, not the member id", async () => {
    const client = clientFor(etcd);
    defer(() => client.close());
    const clusterId = await client.clusterId();
    const row = (await readFile(README, 'utf8'))
      .split('\n')
      .find((l) => l.startsWith('| `expected_cluster_id`'));
    expect(row).toBeDefined();
    expect(row).toContain('`link-etcd doctor`');
    expect(row).not.toMatch(/as `etcdctl endpoint status` prints it/);
    // etcdctl's table prints the member id; `-w fields` prints the cluster id, in decimal.
    const table = await etcd.etcdctl('endpoint', 'status');
    const fields = await etcd.etcdctl('endpoint', 'status', '-w', 'fields');
    const decimal = /"ClusterID" : (\d+)/.exec(fields)?.[1];
    expect(decimal).toBeDefined();
    expect(BigInt(decimal as string).toString(16)).toBe(clusterId);
    expect(table).not.toContain(clusterId);
    // And the hex form is accepted by the setting.
    const pinned = clientFor(etcd, { expectedClusterId: clusterId });
    defer(() => pinned.close());
    await pinned.set('/pinned', 'ok');
  });

  it('an etcd with auth on, asked without credentials, is ETCD_AUTH saying to set username and password', async () => {
    await etcd.etcdctl('user', 'add', 'root:pw-13');
    await etcd.etcdctl('user', 'grant-role', 'root', 'root').catch(() => undefined);
    await etcd.etcdctl('auth', 'enable');
    const client = clientFor(etcd);
    defer(() => client.close());
    const error = (await client.get('/x').catch((e: unknown) => e)) as Error & { code: string };
    expect(error.code).toBe('ETCD_AUTH');
    expect(error.message).toMatch(/user name is empty.*set username and password in middleware\.conf/);
  });
});
