import { Etcd3 } from 'etcd3';
import type { Subscription } from 'rxjs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { EtcdChange, EtcdMiddleware } from '../../src/index.js';
import { type EtcdServer, startEtcd } from '../harness/etcd.js';
import { startProxy, type TcpProxy } from '../harness/proxy.js';
import { waitFor } from '../harness/wait.js';
import { captureLogger, clientFor } from '../support/client.js';
import { serverWatchers } from '../support/etcd-metrics.js';

let etcd: EtcdServer;
const cleanups: Array<() => unknown> = [];

beforeAll(async () => {
  etcd = await startEtcd();
});
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
  // The server drops closed watches asynchronously; the next test counts watchers from zero.
  await waitFor(async () => (await serverWatchers(etcd.clientUrl)) === 0, { timeout: 15_000 });
});
afterAll(async () => {
  await etcd?.cleanup();
});

function track(client: EtcdMiddleware): EtcdMiddleware {
  cleanups.push(() => client.close());
  return client;
}

function collect(client: EtcdMiddleware, prefix: string, options?: { startRevision?: number }) {
  const events: EtcdChange[] = [];
  let completed = false;
  const subscription: Subscription = client.watch(prefix, options).subscribe({
    next: (e) => events.push(e),
    complete: () => {
      completed = true;
    },
  });
  cleanups.push(() => subscription.unsubscribe());
  return { events, subscription, completed: () => completed };
}

/** A writer that cannot double-apply a put when it retries across a crash: create-if-absent. */
async function putOnce(writer: Etcd3, key: string, value: string): Promise<void> {
  await waitFor(
    async () => {
      await writer.if(key, 'Create', '==', 0).then(writer.put(key).value(value)).commit();
      return true;
    },
    { timeout: 20_000, message: `could not write ${key}` },
  );
}

async function revisionOf(server: EtcdServer): Promise<number> {
  const status = JSON.parse(await server.etcdctl('endpoint', 'status', '-w', 'json')) as Array<{
    Status: { header: { revision: number } };
  }>;
  return status[0]?.Status.header.revision ?? 0;
}

describe('gapless watch (real etcd)', () => {
  it('sees every one of 200 puts, in order and once, across an etcd SIGKILL and restart', async () => {
    const { logger, lines } = captureLogger();
    const client = track(clientFor(etcd, { logger }));
    const writer = new Etcd3({ hosts: etcd.endpoint });
    cleanups.push(() => writer.close());
    const { events } = collect(client, '/burst/');
    await waitFor(async () => (await serverWatchers(etcd.clientUrl)) === 1);

    const key = (i: number) => `/burst/k${String(i).padStart(3, '0')}`;
    for (let i = 0; i < 100; i++) await putOnce(writer, key(i), `v${i}`);
    // Killed while the watcher may still be catching up; writes resume as soon as etcd is back.
    await etcd.restart('SIGKILL');
    for (let i = 100; i < 200; i++) await putOnce(writer, key(i), `v${i}`);
    await putOnce(writer, '/burst/zz-sentinel', 'end');

    await waitFor(() => events.some((e) => e.key === '/burst/zz-sentinel'), { timeout: 20_000 });
    expect(events.map((e) => e.key)).toEqual([
      ...Array.from({ length: 200 }, (_, i) => key(i)),
      '/burst/zz-sentinel',
    ]);
    expect(events.every((e, i) => i === 0 || e.revision > (events[i - 1] as EtcdChange).revision)).toBe(true);
    expect(events.every((e) => e.type === 'put' && e.resync === undefined)).toBe(true);
    // The stream really was cut and resumed, not merely slow.
    expect(lines.some((l) => String(l.msg).includes('retrying'))).toBe(true);
  });

  it('recovers from compaction by re-reading the prefix and emitting the difference', async () => {
    const proxy: TcpProxy = await startProxy(etcd);
    cleanups.push(() => proxy.close());
    const client = track(clientFor(proxy));
    const { events } = collect(client, '/cmp/');
    await waitFor(async () => (await serverWatchers(etcd.clientUrl)) === 1);
    for (const k of ['a', 'b', 'x']) await etcd.etcdctl('put', `/cmp/${k}`, '1');
    await waitFor(() => events.length === 3);

    proxy.block();
    await etcd.etcdctl('put', '/cmp/a', '2');
    await etcd.etcdctl('del', '/cmp/b');
    await etcd.etcdctl('put', '/cmp/new', 'n');
    await etcd.etcdctl('put', '/cmp/x', 'tmp');
    await etcd.etcdctl('put', '/cmp/x', '1');
    await etcd.etcdctl('compact', String(await revisionOf(etcd)));
    proxy.unblock();

    await waitFor(() => events.some((e) => e.key === '/cmp/b' && e.type === 'delete'), { timeout: 15_000 });
    const resynced = events.slice(3);
    expect(resynced.every((e) => e.resync === true)).toBe(true);
    expect(resynced.map((e) => [e.type, e.key, e.value, e.prevValue])).toEqual([
      ['put', '/cmp/a', '2', '1'],
      ['put', '/cmp/new', 'n', undefined],
      ['delete', '/cmp/b', undefined, '1'],
    ]);

    // Replaying every event gives etcd's state, and the stream goes on live.
    await etcd.etcdctl('put', '/cmp/after', 'live');
    await waitFor(() => events.some((e) => e.key === '/cmp/after'));
    const state = new Map<string, string>();
    for (const e of events) e.type === 'put' ? state.set(e.key, e.value as string) : state.delete(e.key);
    const lines = (await etcd.etcdctl('get', '--prefix', '/cmp/')).split('\n').filter((l) => l !== '');
    const actual = new Map<string, string>();
    for (let i = 0; i + 1 < lines.length; i += 2) actual.set(lines[i] as string, lines[i + 1] as string);
    expect(state).toEqual(actual);
    expect(events.at(-1)?.resync).toBeUndefined();
  });

  it('replays history from startRevision', async () => {
    const client = track(clientFor(etcd));
    const before = await revisionOf(etcd);
    await etcd.etcdctl('put', '/hist/a', '1');
    await etcd.etcdctl('put', '/hist/a', '2');
    await etcd.etcdctl('del', '/hist/a');
    const { events } = collect(client, '/hist/', { startRevision: before + 1 });
    await waitFor(() => events.length === 3);
    expect(events.map((e) => [e.type, e.value, e.prevValue])).toEqual([
      ['put', '1', undefined],
      ['put', '2', '1'],
      ['delete', undefined, '2'],
    ]);
  });

  it('cancels the etcd watch on unsubscribe, and completes every stream on close()', async () => {
    const base = 0;
    const client = clientFor(etcd);
    const one = collect(client, '/cancel/');
    await waitFor(async () => (await serverWatchers(etcd.clientUrl)) === base + 1);
    one.subscription.unsubscribe();
    await waitFor(async () => (await serverWatchers(etcd.clientUrl)) === base);

    const a = collect(client, '/cancel/a');
    const b = collect(client, '/cancel/b');
    await waitFor(async () => (await serverWatchers(etcd.clientUrl)) === base + 2);
    await client.close();
    expect(a.completed() && b.completed()).toBe(true);
    await waitFor(async () => (await serverWatchers(etcd.clientUrl)) === base);
  });

  it('keeps other subscribers, and the process, alive when one subscriber throws', async () => {
    const { logger, lines } = captureLogger();
    const client = track(clientFor(etcd, { logger }));
    const stream = client.watch('/throw/');
    const thrower = stream.subscribe({
      next: () => {
        throw new Error('subscriber bug');
      },
    });
    cleanups.push(() => thrower.unsubscribe());
    const { events } = collect(client, '/throw/');
    await waitFor(async () => (await serverWatchers(etcd.clientUrl)) === 2);
    for (let i = 0; i < 5; i++) await etcd.etcdctl('put', `/throw/k${i}`, String(i));
    await waitFor(
      () => events.length === 5 && lines.filter((l) => String(l.msg).includes('threw')).length === 5,
    );
    expect(thrower.closed).toBe(false);
  });

  it('waits for an etcd that is down at subscription and delivers once it is up', async () => {
    const client = track(clientFor(etcd));
    await etcd.stop();
    const { events } = collect(client, '/late/');
    await etcd.start();
    await waitFor(async () => (await serverWatchers(etcd.clientUrl)) >= 1, { timeout: 15_000 });
    await etcd.etcdctl('put', '/late/k', 'v');
    await waitFor(() => events.length === 1);
    expect(events[0]).toMatchObject({ type: 'put', key: '/late/k', value: 'v' });
  });

  it('never crashes the process when unsubscribed while its etcd stream is being created', async () => {
    const client = track(clientFor(etcd));
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    process.on('uncaughtException', onUncaught);
    try {
      await client.connect();
      // Unsubscribe 0..29 microtasks after the first batch: some land inside stream creation.
      for (let delay = 0; delay < 30; delay++) {
        await new Promise<void>((resolve) => {
          const sub = client.batches('/race/').subscribe((b) => {
            if (!b.initial) return;
            let n = delay;
            const step = () => {
              if (n-- <= 0) {
                sub.unsubscribe();
                resolve();
              } else queueMicrotask(step);
            };
            queueMicrotask(step);
          });
        });
      }
      await waitFor(async () => (await serverWatchers(etcd.clientUrl)) === 0, { timeout: 15_000 });
      expect(uncaught).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });

  it('catches up on more than 4 MiB of history, and reads a subtree larger than 4 MiB', async () => {
    const client = track(clientFor(etcd));
    const before = await revisionOf(etcd);
    const big = 'v'.repeat(1_000_000);
    for (let i = 0; i < 6; i++) await client.set(`/big4/k${i}`, big);
    const { events } = collect(client, '/big4/', { startRevision: before + 1 });
    await waitFor(() => events.length === 6, { timeout: 15_000 });
    expect(events.every((e) => e.value === big)).toBe(true);
    const tree = (await client.get('/big4')) as Record<string, string>;
    expect(Object.keys(tree)).toHaveLength(6);
  });
});
