import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, open, readdir, readFile, rename, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Observable } from 'rxjs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type ConfValueError,
  category,
  configurable,
  configuration,
  EtcdConfDriver,
  IniConfDriver,
  type LinkEtcdError,
  Parameter,
} from '../../src/index.js';
import { type EtcdServer, startEtcd } from '../harness/etcd.js';
import { waitFor } from '../harness/wait.js';
import { captureLogger } from '../support/client.js';

const run = promisify(execFile);
let dir: string;
const cleanups: Array<() => unknown> = [];

const conf = configuration(
  category('MYCONF', Parameter({ name: 'myparam', type: 'int', default: 3 }), Parameter({ name: 'name' })),
);
const FILE = '; comment kept\n[MYCONF]\nmyparam = 1\n\n# another\nname = first\n';

function driver(): IniConfDriver {
  const d = new IniConfDriver({ confDir: dir, logger: captureLogger().logger });
  cleanups.push(() => d.close());
  return d;
}

function record<T>(stream: Observable<T>): T[] {
  const values: T[] = [];
  const sub = stream.subscribe({ next: (v) => values.push(v) });
  cleanups.push(() => sub.unsubscribe());
  return values;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'link-etcd-ini-'));
  await mkdir(join(dir, 'myproject'));
  await writeFile(join(dir, 'myproject', 'app.conf'), FILE);
});
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
  await rm(dir, { recursive: true, force: true });
});

/** Waits for the stream to settle on `expected`, then proves nothing else came by pushing one more edit through. */
async function expectExactly<T>(
  values: T[],
  expected: T[],
  sentinel: () => Promise<unknown>,
  last: T,
): Promise<void> {
  await waitFor(() => values.length >= expected.length);
  await sentinel();
  await waitFor(() => values.length >= expected.length + 1);
  expect(values).toEqual([...expected, last]);
}

describe('IniConfDriver (real files)', () => {
  it('reads $B3J0F_CONF_DIR/<path> typed, and writes it back keeping comments and order', async () => {
    const d = driver();
    expect(await d.getconf('myproject/app.conf', conf)).toEqual({ MYCONF: { myparam: 1, name: 'first' } });
    await d.setconf('myproject/app.conf', { MYCONF: { myparam: 2 }, NEW: { k: 'v' } });
    expect(await readFile(join(dir, 'myproject', 'app.conf'), 'utf8')).toBe(
      '; comment kept\n[MYCONF]\nmyparam = 2\n\n# another\nname = first\n\n[NEW]\nk = v\n',
    );
    expect(await readdir(join(dir, 'myproject'))).toEqual(['app.conf']);
    expect(await d.rscpaths('myproject/app.conf')).toEqual([join(dir, 'myproject', 'app.conf')]);
    expect(await d.rscpaths('myproject/none.conf')).toEqual([]);
  });

  it('refuses a value INI cannot hold, naming it, and a path outside the conf dir', async () => {
    const d = driver();
    const error = (await d
      .setconf('myproject/app.conf', { MYCONF: { name: 'two\nlines' } })
      .catch((e) => e)) as ConfValueError;
    expect(error.code).toBe('BAD_VALUE');
    expect(error.issues[0]).toMatchObject({
      category: 'MYCONF',
      parameter: 'name',
      reason: expect.stringMatching(/line break/),
    });
    await expect(d.getconf('../outside.conf')).rejects.toThrow(/not a file inside the conf dir/);
    expect(await readFile(join(dir, 'myproject', 'app.conf'), 'utf8')).toBe(FILE);
  });

  it('serializes concurrent writes to one file, and refuses names INI cannot hold', async () => {
    const d = driver();
    await Promise.all([
      d.setconf('myproject/app.conf', { MYCONF: { a: '1' } }),
      d.setconf('myproject/app.conf', { MYCONF: { b: '2' } }),
    ]);
    expect(await d.getconf('myproject/app.conf')).toEqual({
      MYCONF: { myparam: '1', name: 'first', a: '1', b: '2' },
    });
    for (const [section, key] of [
      ['T]x', 'k'],
      ['S', '#k'],
      ['S', 'a=b'],
    ] as const) {
      await expect(d.setconf('myproject/app.conf', { [section]: { [key]: 'v' } })).rejects.toMatchObject({
        code: 'BAD_VALUE',
      });
    }
    expect(await d.getconf('myproject/app.conf')).toEqual({
      MYCONF: { myparam: '1', name: 'first', a: '1', b: '2' },
    });
  });

  it('emits exactly the final configuration after an editor rename-save', async () => {
    const file = join(dir, 'myproject', 'app.conf');
    const values = record(driver().watch('myproject/app.conf', conf));
    await waitFor(() => values.length === 1);
    // vim/VS Code style: write a sibling temp file, then rename it over the original.
    const temp = join(dir, 'myproject', '.app.conf.swp');
    await writeFile(temp, FILE.replace('myparam = 1', 'myparam = 2'));
    await rename(temp, file);
    await expectExactly(
      values,
      [{ MYCONF: { myparam: 1, name: 'first' } }, { MYCONF: { myparam: 2, name: 'first' } }],
      () => writeFile(file, FILE.replace('myparam = 1', 'myparam = 9')),
      { MYCONF: { myparam: 9, name: 'first' } },
    );
  });

  it('never emits the empty half of a truncate-then-write save', async () => {
    const file = join(dir, 'myproject', 'app.conf');
    const values = record(driver().watch('myproject/app.conf', conf));
    await waitFor(() => values.length === 1);
    await truncate(file, 0);
    // Longer than the 50 ms quiet window: only the settle re-read keeps the empty file out.
    await new Promise((r) => setTimeout(r, 150));
    await writeFile(file, FILE.replace('name = first', 'name = second'));
    await expectExactly(
      values,
      [{ MYCONF: { myparam: 1, name: 'first' } }, { MYCONF: { myparam: 1, name: 'second' } }],
      () => run('sed', ['-i', 's/myparam = 1/myparam = 5/', file]),
      { MYCONF: { myparam: 5, name: 'second' } },
    );
  });

  it('treats a half-written line as "not yet", and reports a file that stays broken with file and line', async () => {
    const file = join(dir, 'myproject', 'app.conf');
    await writeFile(file, FILE.replace('name = first\n', ''));
    const d = driver();
    const errors = record<LinkEtcdError>(d.errors$);
    const values = record(d.watch('myproject/app.conf', conf));
    await waitFor(() => values.length === 1);

    // A writer that appends in two steps, 20 ms apart: the first read may see half a line.
    const handle = await open(file, 'a');
    await handle.write('name');
    await new Promise((r) => setTimeout(r, 20));
    await handle.write(' = second\n');
    await handle.close();
    await waitFor(() => values.length === 2);
    expect(values[1]).toEqual({ MYCONF: { myparam: 1, name: 'second' } });
    expect(errors).toEqual([]);

    await writeFile(file, `${FILE}broken line without equals\n`);
    await waitFor(() => errors.length === 1);
    expect(errors[0]?.message).toBe(
      `${file}:7: expected \`key = value\`, a [section] or a comment (the line is not shown: it may hold a secret)`,
    );
    await writeFile(file, FILE.replace('myparam = 1', 'myparam = 8'));
    await waitFor(() => values.length === 3);
    expect(values[2]).toEqual({ MYCONF: { myparam: 8, name: 'first' } });
    expect(errors).toHaveLength(1);
  });
});

describe('layering an INI file under etcd', () => {
  let etcd: EtcdServer;
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await etcd?.cleanup();
  });

  it('lets etcd override the file per parameter, and keeps the handle current', async () => {
    const ini = driver();
    const remote = new EtcdConfDriver({
      host: etcd.host,
      port: etcd.port,
      confDir: '/nonexistent/x',
      logger: captureLogger().logger,
    });
    cleanups.push(() => remote.close());
    const handle = configurable({ paths: 'myproject/app.conf', conf, drivers: [ini, remote] });
    cleanups.push(() => handle.close());
    expect(await handle.ready()).toEqual({ MYCONF: { myparam: 1, name: 'first' } });
    await etcd.etcdctl('put', '/myproject/app.conf/MYCONF/myparam', '40');
    await waitFor(() => handle.current?.MYCONF.myparam === 40);
    expect(handle.current).toEqual({ MYCONF: { myparam: 40, name: 'first' } });
    await writeFile(join(dir, 'myproject', 'app.conf'), FILE.replace('name = first', 'name = from-file'));
    await waitFor(() => handle.current?.MYCONF.name === 'from-file');
    expect(handle.current?.MYCONF.myparam).toBe(40);
    await etcd.etcdctl('del', '/myproject/app.conf/MYCONF/myparam');
    await waitFor(() => handle.current?.MYCONF.myparam === 1);
  });
});
