import { createServer } from 'node:net';
import type { Observable } from 'rxjs';
import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  Configurable,
  type ConfValueError,
  category,
  configurable,
  configurationOf,
  EtcdConfDriver,
  type LinkEtcdError,
  Parameter,
} from '../../src/index.js';
import type { EtcdServer } from '../harness/etcd.js';
import { startProxy } from '../harness/proxy.js';
import { waitFor } from '../harness/wait.js';
import { captureLogger } from '../support/client.js';
import { useEtcd } from '../support/lifecycle.js';

let etcd: EtcdServer;
const { defer } = useEtcd((started) => {
  etcd = started;
});

function driverFor(target: { host: string; port: number }): EtcdConfDriver {
  const driver = new EtcdConfDriver({
    host: target.host,
    port: target.port,
    confDir: '/nonexistent/link-etcd-test',
    readTimeout: 5,
    logger: captureLogger().logger,
  });
  defer(() => driver.close());
  return driver;
}

function record<T>(stream: Observable<T>): T[] {
  const values: T[] = [];
  const sub = stream.subscribe({ next: (v) => values.push(v) });
  defer(() => sub.unsubscribe());
  return values;
}

const conf = category('MYCONF', Parameter({ name: 'myparam', type: 'int', default: 3 }));

describe('EtcdConfDriver (real etcd)', () => {
  it('runs the seed example: the decorator keeps instances current, and the value lives at the seed key', async () => {
    const driver = driverFor(etcd);

    @Configurable({ paths: 'myproject/myconfigurable.conf', conf, drivers: [driver] })
    class MyConfigurable {
      myparam!: number;
    }

    const a = new MyConfigurable();
    expect(a.myparam).toBe(3);
    await configurationOf(MyConfigurable).ready();
    defer(() => configurationOf(MyConfigurable).close());
    await driver.setconf('myproject/myconfigurable.conf', { MYCONF: { myparam: 4 } });
    expect(await etcd.etcdctl('get', '/myproject/myconfigurable.conf/MYCONF/myparam')).toBe(
      '/myproject/myconfigurable.conf/MYCONF/myparam\n4\n',
    );
    await waitFor(() => a.myparam === 4);
    const b = new MyConfigurable();
    expect(b.myparam).toBe(4);
    await etcd.etcdctl('put', '/myproject/myconfigurable.conf/MYCONF/myparam', '5');
    await waitFor(() => a.myparam === 5 && b.myparam === 5);
    expect(a).toBeInstanceOf(MyConfigurable);
  });

  it('watch emits the current typed value first, then each valid change; never an unparsable one', async () => {
    const driver = driverFor(etcd);
    const errors = record<LinkEtcdError>(driver.errors$);
    await etcd.etcdctl('put', '/typed.conf/MYCONF/myparam', '10');
    const values = record(driver.watch('typed.conf', conf));
    await waitFor(() => values.length === 1);
    expect(values[0]).toEqual({ MYCONF: { myparam: 10 } });

    await etcd.etcdctl('put', '/typed.conf/MYCONF/myparam', '11');
    await waitFor(() => values.length === 2);
    await etcd.etcdctl('put', '/typed.conf/MYCONF/myparam', 'eleven');
    await waitFor(() => errors.length === 1);
    await etcd.etcdctl('put', '/typed.conf/MYCONF/myparam', '12');
    await waitFor(() => values.length === 3);
    expect(values.map((v) => v.MYCONF.myparam)).toEqual([10, 11, 12]);
    const issue = (errors[0] as ConfValueError).issues[0];
    expect(issue).toMatchObject({
      path: 'typed.conf',
      category: 'MYCONF',
      parameter: 'myparam',
      raw: 'eleven',
    });
    expect(issue?.reason).toMatch(/integer/);
  });

  it('emits one configuration for the keys of one transaction, and none for an equal one', async () => {
    const driver = driverFor(etcd);
    const two = category('C', Parameter({ name: 'a' }), Parameter({ name: 'b' }));
    const values = record(driver.watch('txn.conf', two));
    await waitFor(() => values.length === 1);
    await driver.setconf('txn.conf', { C: { a: '1', b: '2' } });
    await waitFor(() => values.length === 2);
    await driver.setconf('txn.conf', { C: { a: '1', b: '2' } }); // same values: etcd events, no new configuration
    await driver.setconf('txn.conf', { C: { a: 'x' } });
    await waitFor(() => values.length === 3);
    expect(values).toEqual([
      { C: { a: undefined, b: undefined } },
      { C: { a: '1', b: '2' } },
      { C: { a: 'x', b: '2' } },
    ]);
  });

  it('getconf fills defaults, and rejects naming a missing required parameter; watch waits for it', async () => {
    const driver = driverFor(etcd);
    const strict = category(
      'S',
      Parameter({ name: 'token', required: true }),
      Parameter({ name: 'n', type: 'int', default: 1 }),
    );
    await expect(driver.getconf('req.conf', strict)).rejects.toMatchObject({
      code: 'MISSING_PARAMETER',
      message: expect.stringContaining('token'),
    });
    const errors = record<LinkEtcdError>(driver.errors$);
    const values = record(driver.watch('req.conf', strict));
    await waitFor(() => errors.length === 1);
    expect(values).toEqual([]);
    await etcd.etcdctl('put', '/req.conf/S/token', 't');
    await waitFor(() => values.length === 1);
    expect(values[0]).toEqual({ S: { token: 't', n: 1 } });
    expect(await driver.getconf('req.conf', strict)).toEqual({ S: { token: 't', n: 1 } });
    expect(await driver.getconf('req.conf')).toEqual({ S: { token: 't' } });
    expect(await driver.rscpaths('req.conf')).toEqual(['/req.conf']);
  });

  it('keeps streaming across an etcd restart, and delivers a change made while it was cut off', async () => {
    const proxy = await startProxy(etcd);
    defer(() => proxy.close());
    const driver = driverFor(proxy);
    const values = record(driver.watch('ha.conf', conf));
    await waitFor(() => values.length === 1);

    await etcd.restart('SIGKILL');
    await etcd.etcdctl('put', '/ha.conf/MYCONF/myparam', '20');
    await waitFor(() => values.length === 2, { timeout: 15_000 });

    proxy.block();
    await etcd.etcdctl('put', '/ha.conf/MYCONF/myparam', '21');
    proxy.unblock();
    await waitFor(() => values.length === 3, { timeout: 15_000 });
    expect(values.map((v) => v.MYCONF.myparam)).toEqual([3, 20, 21]);
  });

  it('puts every key under a root prefix when given one', async () => {
    const driver = new EtcdConfDriver({
      host: etcd.host,
      port: etcd.port,
      prefix: '/apps',
      confDir: '/nonexistent/x',
    });
    defer(() => driver.close());
    await driver.setconf('svc.conf', { MYCONF: { myparam: 7 } });
    expect(await etcd.etcdctl('get', '--print-value-only', '/apps/svc.conf/MYCONF/myparam')).toBe('7\n');
    expect(await driver.getconf('svc.conf', conf)).toEqual({ MYCONF: { myparam: 7 } });
  });

  it('changes$ gives the current configuration to every subscriber, before and after ready(), and with the decorator', async () => {
    const driver = driverFor(etcd);
    await driver.setconf('replay/a.conf', { MYCONF: { myparam: 11 } });
    const handle = configurable({ paths: 'replay/a.conf', conf, drivers: [driver] });
    defer(() => handle.close());
    const early = record(handle.changes$);
    await handle.ready();
    const late = record(handle.changes$);
    expect(early).toEqual([{ MYCONF: { myparam: 11 } }]);
    expect(late).toEqual([{ MYCONF: { myparam: 11 } }]);
    await driver.setconf('replay/a.conf', { MYCONF: { myparam: 12 } });
    await waitFor(() => late.length === 2 && early.length === 2);
    expect(late[1]).toEqual({ MYCONF: { myparam: 12 } });

    const decl = category('MYCONF', Parameter({ name: 'myparam', type: 'int', default: 3 }));
    @Configurable({ paths: 'replay/a.conf', conf: decl, drivers: [driver] })
    class Decorated {
      myparam!: number;
    }
    new Decorated();
    const h = configurationOf(Decorated, decl);
    defer(() => h.close());
    await h.ready();
    // The decorator subscribed first; a user's subscription after ready() still gets the current value.
    const mine = record(h.changes$);
    expect(mine).toEqual([{ MYCONF: { myparam: 12 } }]);
    expectTypeOf(h.current).toEqualTypeOf<{ MYCONF: { myparam: number } } | undefined>();
    expect(h.current?.MYCONF.myparam).toBe(12);
    expect(() => configurationOf(Decorated, category('OTHER'))).toThrow(/not the declaration/);
  });

  it('ready() rejects with NOT_READY naming the endpoints within the timeout, and with CLOSED after close()', async () => {
    const port = await freePort();
    const driver = new EtcdConfDriver({
      host: '127.0.0.1',
      port,
      confDir: '/nonexistent/link-etcd-test',
      readTimeout: 1,
      logger: captureLogger().logger,
    });
    defer(() => driver.close());
    const handle = configurable({
      paths: 'down/app.conf',
      conf,
      drivers: [driver],
      logger: captureLogger().logger,
    });
    defer(() => handle.close());
    const started = Date.now();
    const error = (await handle.ready().catch((e: unknown) => e)) as LinkEtcdError;
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(error.code).toBe('NOT_READY');
    expect(error.message).toContain('down/app.conf from EtcdConfDriver');
    expect(error.message).toContain(`etcd at 127.0.0.1:${port}`);
    expect(error.message).toContain(
      'no middleware.conf at /nonexistent/link-etcd-test/link/etcd/middleware.conf',
    );

    const quick = configurable({ paths: 'down/app.conf', conf, drivers: [driver], readyTimeout: 0.2 });
    const t0 = Date.now();
    await expect(quick.ready()).rejects.toMatchObject({ code: 'NOT_READY' });
    expect(Date.now() - t0).toBeLessThan(1_000);
    const pending = quick.ready();
    quick.close();
    await expect(pending).rejects.toMatchObject({ code: 'CLOSED' });
    await expect(quick.ready()).rejects.toMatchObject({
      code: 'CLOSED',
      message: /handle of down\/app.conf is closed/,
    });
  });

  it('ready() after close() of a handle that had a configuration rejects with CLOSED', async () => {
    const driver = driverFor(etcd);
    const handle = configurable({ paths: 'closed/app.conf', conf, drivers: [driver] });
    await handle.ready();
    handle.close();
    await expect(handle.ready()).rejects.toMatchObject({ code: 'CLOSED' });
  });

  it("a shared driver: a bad value reaches the handle's errors$ once", async () => {
    const driver = driverFor(etcd);
    await driver.setconf('shared/app.conf', { MYCONF: { myparam: 1 } });
    const direct = record(driver.watch('shared/app.conf', conf));
    const handle = configurable({
      paths: 'shared/app.conf',
      conf,
      drivers: [driver],
      logger: captureLogger().logger,
    });
    defer(() => handle.close());
    const errors = record(handle.errors$);
    await handle.ready();
    await waitFor(() => direct.length === 1);
    await etcd.etcdctl('put', '/shared/app.conf/MYCONF/myparam', 'abc');
    await waitFor(() => errors.length >= 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(errors.map((e) => e.code)).toEqual(['BAD_VALUE']);
    expect(handle.current).toEqual({ MYCONF: { myparam: 1 } });
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}
