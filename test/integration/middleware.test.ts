import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdKeyError, EtcdMiddleware } from '../../src/index.js';
import { type EtcdServer, startEtcd } from '../harness/etcd.js';
import { captureLogger, clientFor } from '../support/client.js';
import { treeArb } from '../support/trees.js';

let etcd: EtcdServer;
let client: EtcdMiddleware;

beforeAll(async () => {
  etcd = await startEtcd();
  client = clientFor(etcd);
});
afterAll(async () => {
  await client?.close();
  await etcd?.cleanup();
});

/** etcdctl's `get --prefix` output as [key, value] pairs. */
async function etcdctlPairs(prefix: string): Promise<string[][]> {
  const lines = (await etcd.etcdctl('get', '--prefix', prefix)).split('\n').filter((l) => l !== '');
  const pairs: string[][] = [];
  for (let i = 0; i + 1 < lines.length; i += 2) pairs.push([lines[i] as string, lines[i + 1] as string]);
  return pairs;
}

describe('EtcdMiddleware dict protocol (real etcd)', () => {
  it('runs the seed example, and etcdctl reads what it wrote', async () => {
    await client.set('/collection', { subcollection: ['item1', 'item2'] });
    expect(await client.get('/collection')).toEqual({ subcollection: ['item1', 'item2'] });
    expect(await client.get('/collection/subcollection/2')).toBe('item2');
    expect(await client.has('/collection')).toBe(true);
    expect(await etcdctlPairs('/collection')).toEqual([
      ['/collection/subcollection/1', 'item1'],
      ['/collection/subcollection/2', 'item2'],
    ]);
    await client.delete('/collection');
    expect(await client.has('/collection')).toBe(false);
    expect(await etcd.etcdctl('get', '--prefix', '/collection')).toBe('');
  });

  it('rejects get and delete of a missing path with an error naming it', async () => {
    const error = await client.get('/missing/path').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EtcdKeyError);
    expect((error as EtcdKeyError).code).toBe('KEY_NOT_FOUND');
    expect((error as Error).message).toContain('/missing/path');
    await expect(client.delete('/missing/path')).rejects.toBeInstanceOf(EtcdKeyError);
  });

  it('replaces a subtree: keys the new value lacks are gone, siblings untouched', async () => {
    await etcd.etcdctl('put', '/rep-sibling', 'stays');
    await etcd.etcdctl('put', '/rep/old/deep', 'x');
    await client.set('/rep', { a: '1', list: ['x', 'y', 'z'] });
    await client.set('/rep', { a: '2', list: ['x'] });
    expect(await client.get('/rep')).toEqual({ a: '2', list: ['x'] });
    expect(await etcdctlPairs('/rep')).toEqual([
      ['/rep-sibling', 'stays'],
      ['/rep/a', '2'],
      ['/rep/list/1', 'x'],
    ]);
    await client.set('/rep', 'scalar now');
    expect(await client.get('/rep')).toBe('scalar now');
    expect(await etcd.etcdctl('get', '--prefix', '/rep/')).toBe('');
  });

  it('writes a whole tree in one revision, so no reader sees half of it', async () => {
    await client.set('/atomic', { a: { b: '1', c: '2' }, d: ['3', '4'] });
    const json = JSON.parse(await etcd.etcdctl('get', '--prefix', '/atomic/', '-w', 'json')) as {
      kvs: Array<{ mod_revision: number }>;
    };
    expect(json.kvs).toHaveLength(4);
    expect(new Set(json.kvs.map((kv) => kv.mod_revision)).size).toBe(1);
  });

  it('reads foreign writes made with etcdctl back as a tree', async () => {
    await etcd.etcdctl('put', '/foreign/db/host', 'db.local');
    await etcd.etcdctl('put', '/foreign/db/port', '5432');
    await etcd.etcdctl('put', '/foreign/hosts/1', 'a');
    await etcd.etcdctl('put', '/foreign/hosts/2', 'b');
    await etcd.etcdctl('put', '/foreign/value with spaces', ' x = y ; # z ');
    expect(await client.get('foreign')).toEqual({
      db: { host: 'db.local', port: '5432' },
      hosts: ['a', 'b'],
      'value with spaces': ' x = y ; # z ',
    });
  });

  it('deletes a subtree atomically without touching siblings that share its prefix', async () => {
    await client.set('/del', { a: '1', b: { c: '2' } });
    await etcd.etcdctl('put', '/del-x', 'sibling');
    await etcd.etcdctl('put', '/del', 'own value');
    await client.delete('/del');
    expect(await etcdctlPairs('/del')).toEqual([['/del-x', 'sibling']]);
  });

  it('pages large prefixes: a tree bigger than one page reads back whole', async () => {
    const paged = clientFor(etcd, { pageSize: 7 });
    try {
      const tree = Object.fromEntries(
        Array.from({ length: 50 }, (_, i) => [`k${String(i).padStart(2, '0')}`, `v${i}`]),
      );
      await paged.set('/paged', tree);
      expect(await paged.get('/paged')).toEqual(tree);
    } finally {
      await paged.close();
    }
  });

  it('splits a tree past max_txn_ops into several transactions and still writes all of it', async () => {
    const { logger, lines } = captureLogger();
    const big = clientFor(etcd, { logger });
    try {
      const list = Array.from({ length: 300 }, (_, i) => `item${i}`);
      await big.set('/big', { list });
      expect(await big.get('/big')).toEqual({ list });
      expect(lines.some((l) => String(l.msg).includes('not atomic'))).toBe(true);
      await big.set('/big', { list: list.slice(0, 10) });
      expect(await big.get('/big')).toEqual({ list: list.slice(0, 10) });
      const keys = (await etcd.etcdctl('get', '--prefix', '--keys-only', '/big/list/'))
        .split('\n')
        .filter((l) => l);
      expect(keys).toHaveLength(10);
    } finally {
      await big.close();
    }
  });

  it('round-trips any tree of dicts, lists and strings through etcd (property)', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(treeArb, async (tree) => {
        const path = `/prop/${run++}`;
        await client.set(path, tree);
        expect(await client.get(path)).toEqual(tree);
      }),
      { numRuns: 60 },
    );
  });

  it('reads its settings from $B3J0F_CONF_DIR/link/etcd/middleware.conf when given no options', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'link-etcd-conf-'));
    const previous = process.env.B3J0F_CONF_DIR;
    try {
      await mkdir(join(dir, 'link', 'etcd'), { recursive: true });
      await writeFile(
        join(dir, 'link', 'etcd', 'middleware.conf'),
        `[ETCD]\nhost = ${etcd.host}\nport = ${etcd.port}\nread_timeout = 5\n`,
      );
      process.env.B3J0F_CONF_DIR = dir;
      const fromFile = new EtcdMiddleware();
      try {
        await fromFile.set('/from-conf', 'yes');
        expect(await etcd.etcdctl('get', '--print-value-only', '/from-conf')).toBe('yes\n');
        expect(fromFile.isconnected()).toBe(true);
      } finally {
        await fromFile.close();
      }
      expect(fromFile.isconnected()).toBe(false);
    } finally {
      if (previous === undefined) delete process.env.B3J0F_CONF_DIR;
      else process.env.B3J0F_CONF_DIR = previous;
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('connects, disconnects and reconnects as link.etcd did', async () => {
    const c = clientFor(etcd);
    expect(c.isconnected()).toBe(false);
    await c.connect();
    expect(c.isconnected()).toBe(true);
    await c.disconnect();
    expect(c.isconnected()).toBe(false);
    await c.set('/again', 'v');
    expect(c.isconnected()).toBe(true);
    await c.close();
    await expect(c.get('/again')).rejects.toMatchObject({ code: 'CLOSED' });
  });
});

describe('tree codec and messages (real etcd)', () => {
  it('writes a subtree larger than one etcd request (1.5 MiB) in chunks, and reads it back', async () => {
    const big = 'v'.repeat(50 * 1024);
    const tree = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, big]));
    await client.set('/big', tree);
    expect(await client.get('/big')).toEqual(tree);
    await client.set('/big', { only: '1' });
    expect(await client.get('/big')).toEqual({ only: '1' });
    await client.update('/big', tree);
    expect(Object.keys((await client.get('/big')) as object)).toHaveLength(41);
    await client.delete('/big');
  });

  it('refuses an empty dict or list and null instead of deleting or throwing a TypeError', async () => {
    await client.set('/keep', { a: '1', b: ['x'] });
    await expect(client.set('/keep', {})).rejects.toMatchObject({
      code: 'BAD_VALUE',
      message: /empty dict at `\/keep`/,
    });
    await expect(client.set('/keep', { a: '1', b: [] })).rejects.toMatchObject({ code: 'BAD_VALUE' });
    await expect(client.set('/keep', null as never)).rejects.toMatchObject({
      code: 'BAD_VALUE',
      message: /null/,
    });
    await expect(client.update('/keep', { c: undefined } as never)).rejects.toMatchObject({
      code: 'BAD_VALUE',
    });
    expect(await client.get('/keep')).toEqual({ a: '1', b: ['x'] });
  });

  it('an unreachable etcd names the middleware.conf (or its absence), the endpoints and port 2379, without gRPC noise', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'link-etcd-unreachable-'));
    try {
      const c = new EtcdMiddleware({
        confDir: dir,
        host: '127.0.0.1',
        port: 1,
        readTimeout: 2,
        logger: captureLogger().logger,
      });
      const error = (await c.get('/x').catch((e: unknown) => e)) as Error & { code: string };
      await c.close();
      expect(error.code).toBe('ETCD_UNAVAILABLE');
      expect(error.message).toContain('etcd at 127.0.0.1:1 is unreachable');
      expect(error.message).toContain(
        `no middleware.conf at ${join(dir, 'link', 'etcd', 'middleware.conf')}: using the defaults, port 4001`,
      );
      expect(error.message).toContain('2379');
      expect(error.message).not.toMatch(/Resolution note|UNAVAILABLE:/);

      await mkdir(join(dir, 'link', 'etcd'), { recursive: true });
      await writeFile(
        join(dir, 'link', 'etcd', 'middleware.conf'),
        '[ETCD]\nhost = 127.0.0.1\nporrt = 2379\nport = 1\n',
      );
      const log = captureLogger();
      const d = new EtcdMiddleware({ confDir: dir, readTimeout: 2, logger: log.logger });
      const again = (await d.get('/x').catch((e: unknown) => e)) as Error;
      await d.close();
      expect(again.message).toContain(`settings from ${join(dir, 'link', 'etcd', 'middleware.conf')}`);
      expect(log.lines.map((l) => l.msg)).toContainEqual(
        expect.stringMatching(/`porrt` in \[ETCD\].*did you mean `port`\?/),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
