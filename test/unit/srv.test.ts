import { describe, expect, it } from 'vitest';
import { SettingsError } from '../../src/errors.js';
import { discoverBySrv, type SrvRecord } from '../../src/middleware/srv.js';

const rec = (name: string, port: number, priority = 0, weight = 0): SrvRecord => ({
  name,
  port,
  priority,
  weight,
});

describe('DNS SRV discovery', () => {
  it('prefers _etcd-client-ssl (TLS) and orders by priority then weight', async () => {
    const asked: string[] = [];
    const found = await discoverBySrv('example.test', 'f', async (name) => {
      asked.push(name);
      return name.startsWith('_etcd-client-ssl')
        ? [
            rec('b.example.test.', 2379, 10, 1),
            rec('a.example.test.', 2379, 0, 5),
            rec('c.example.test.', 2380, 10, 9),
          ]
        : [];
    });
    expect(asked).toEqual(['_etcd-client-ssl._tcp.example.test']);
    expect(found).toEqual({
      secure: true,
      hosts: ['a.example.test:2379', 'c.example.test:2380', 'b.example.test:2379'],
    });
  });

  it('falls back to _etcd-client (plain) when there is no TLS record', async () => {
    const found = await discoverBySrv('example.test', 'f', async (name) => {
      if (name.startsWith('_etcd-client-ssl')) throw Object.assign(new Error('no'), { code: 'ENOTFOUND' });
      return [rec('m1', 2379)];
    });
    expect(found).toEqual({ secure: false, hosts: ['m1:2379'] });
  });

  it('fails naming srv_domain and both lookups when nothing is found', async () => {
    const error = await discoverBySrv('nowhere.test', '/etc/m.conf', async () => {
      throw Object.assign(new Error('no'), { code: 'ENOTFOUND' });
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SettingsError);
    expect((error as Error).message).toMatch(/srv_domain|nowhere\.test/);
    expect((error as Error).message).toContain('_etcd-client._tcp.nowhere.test: ENOTFOUND');
    expect((error as Error).message).toContain('/etc/m.conf');
  });
});
