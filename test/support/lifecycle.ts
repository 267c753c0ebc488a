import { afterAll, afterEach, beforeAll } from 'vitest';
import { type EtcdServer, type StartEtcdOptions, startEtcd } from '../harness/etcd.js';

/**
 * One real etcd for a test file (started before its first test, stopped
 * after its last, also when one fails) and cleanups that run after each
 * test, last registered first.
 */
export function useEtcd(
  started: (etcd: EtcdServer) => void,
  options?: StartEtcdOptions,
): {
  defer: (cleanup: () => unknown) => void;
  /** The test file's etcd (started in beforeAll: use it inside a test). */
  current: () => EtcdServer;
} {
  let etcd: EtcdServer | undefined;
  const cleanups: Array<() => unknown> = [];
  beforeAll(async () => {
    etcd = await startEtcd(options);
    started(etcd);
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(async () => {
    await etcd?.cleanup();
  });
  return {
    defer: (cleanup) => cleanups.push(cleanup),
    current: () => {
      if (etcd === undefined) throw new Error('etcd starts in beforeAll: use it inside a test');
      return etcd;
    },
  };
}

/** etcd's value at `key` as etcdctl reads it, or undefined when there is none. */
export async function etcdValue(etcd: EtcdServer, key: string): Promise<string | undefined> {
  const out = await etcd.etcdctl('get', '--print-value-only', key);
  return out === '' ? undefined : out.replace(/\n$/, '');
}
