/**
 * Real-world INI files mirrored faithfully (issue 11, point 4), with a real
 * etcd and a daemon in this process: every file's keys in etcd equal the
 * (section, key) -> value map Python's configparser reads from it
 * (`ConfigParser(interpolation=None, strict=True)`, `optionxform = str`,
 * `encoding='utf-8-sig'`; [DEFAULT] as `parser.defaults()`, other sections
 * their own keys), the first sync does not rewrite any file, and a one-key
 * change from etcd changes exactly that key's line(s).
 *
 * The files under test/fixtures/ini-corpus/ were written for this test in
 * the style of well-known software's configuration files (each file's
 * header says which, and what was left out because configparser refuses
 * it); none is a copy. Skipped without python3.
 */
import { spawnSync } from 'node:child_process';
import { copyFile, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeEach, describe, expect, it } from 'vitest';
import { parseIni } from '../../src/ini/parse.js';
import type { EtcdServer } from '../harness/etcd.js';
import { waitFor } from '../harness/wait.js';
import { useSyncFixtures } from '../support/sync.js';

const CORPUS = fileURLToPath(new URL('../fixtures/ini-corpus/', import.meta.url));

const READER = `
import configparser, json, sys
out = {}
for path in json.load(sys.stdin):
    cp = configparser.ConfigParser(interpolation=None, strict=True)
    cp.optionxform = str
    with open(path, encoding='utf-8-sig') as f:
        cp.read_file(f, source=path)
    entries = [[cp.default_section, k, v] for k, v in cp.defaults().items()]
    entries += [[s, k, v] for s, items in cp._sections.items() for k, v in items.items()]
    out[path] = entries
json.dump(out, sys.stdout)
`;

const hasPython = spawnSync('python3', ['-c', 'import configparser'], { stdio: 'ignore' }).status === 0;

/** file path -> `section/key` -> value, as configparser reads each file. */
function configparser(paths: readonly string[]): Map<string, Map<string, string>> {
  const run = spawnSync('python3', ['-c', READER], { input: JSON.stringify(paths), encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`python3 failed: ${run.stderr}`);
  const read = JSON.parse(run.stdout) as Record<string, [string, string, string][]>;
  return new Map(
    Object.entries(read).map(([path, entries]) => [
      path,
      new Map(entries.map(([s, k, v]) => [`${s}/${k}`, v])),
    ]),
  );
}

/** conf path -> `section/key` -> value, for every key under `prefix`. */
async function etcdMaps(etcd: EtcdServer, prefix: string): Promise<Map<string, Map<string, string>>> {
  const out = JSON.parse(await etcd.etcdctl('get', '--prefix', prefix, '-w', 'json')) as {
    kvs?: { key: string; value: string }[];
  };
  const maps = new Map<string, Map<string, string>>();
  for (const kv of out.kvs ?? []) {
    const key = Buffer.from(kv.key, 'base64').toString('utf8').slice(prefix.length);
    const cut = key.indexOf('/');
    const file = key.slice(0, cut);
    const map = maps.get(file) ?? new Map<string, string>();
    map.set(key.slice(cut + 1), Buffer.from(kv.value ?? '', 'base64').toString('utf8'));
    maps.set(file, map);
  }
  return maps;
}

/** The file's lines but those of `section`/`key`'s value (entry, continuation and blank lines between; comments stay). */
function linesBesides(text: string, section: string, key: string): string[] {
  const doc = parseIni(text, 'f');
  let inside = -1;
  return doc.lines
    .filter((l, i) => {
      if (l.kind === 'entry' && l.section === section && l.key === key) inside = l.end;
      return i > inside || l.kind === 'comment';
    })
    .map((l) => l.raw);
}

/** One change per file, from etcd: single-line and multi-line values, one way or the other. */
const CHANGES: ReadonlyArray<{ file: string; section: string; key: string; value: string; lines?: string }> =
  [
    { file: 'mysql-my.conf', section: 'mysqld', key: 'port', value: '3307', lines: 'port\t\t= 3307\n' },
    { file: 'php-ini.conf', section: 'Date', key: 'date.timezone', value: 'Europe/Paris' },
    {
      file: 'systemd-unit.conf',
      section: 'Service',
      key: 'RestartSec',
      value: '10s',
      lines: 'RestartSec=10s\n',
    },
    {
      file: 'setup-cfg.conf',
      section: 'options',
      key: 'install_requires',
      value: '\nrequests>=2.31\nclick>=8.1\nrich',
      lines: 'install_requires =\n    requests>=2.31\n    click>=8.1\n    rich\n',
    },
    {
      file: 'tox-ini.conf',
      section: 'testenv:lint',
      key: 'commands',
      value: 'ruff check src tests',
      lines: '\ncommands = ruff check src tests\n\n',
    },
    { file: 'hgrc.conf', section: 'ui', key: 'editor', value: 'nano' },
    {
      file: 'openstack-nova.conf',
      section: 'DEFAULT',
      key: 'debug',
      value: 'true',
      lines: '\ndebug = true\n',
    },
    {
      file: 'python-docs-example.conf',
      section: 'Sections Can Be Indented',
      key: 'multiline_values',
      value: 'are\nstill handled\n\nwith an empty line',
      lines:
        '        multiline_values = are\n            still handled\n\n            with an empty line\n        # Did I',
    },
    {
      file: 'logging-fileconfig.conf',
      section: 'formatter_simple',
      key: 'format',
      value: '%(levelname)s %(message)s',
    },
    {
      file: 'pip-windows.conf',
      section: 'install',
      key: 'find-links',
      value: '\nhttps://download.example.org/wheels',
      lines: 'find-links =\r\n    https://download.example.org/wheels\r\nno-compile',
    },
  ];

const sync = useSyncFixtures();
let etcd: EtcdServer;
beforeEach(() => {
  etcd = sync.etcd();
});

describe.skipIf(!hasPython)('a corpus of real-world INI files, mirrored as configparser reads them', () => {
  it('pushes configparser’s map, rewrites nothing at start, and a one-key change from etcd changes only that key’s lines', async () => {
    const names = (await readdir(CORPUS)).filter((n) => n.endsWith('.conf')).sort();
    expect(names.length).toBeGreaterThanOrEqual(8);
    expect(names).toEqual([...CHANGES.map((c) => c.file)].sort());
    const f = await sync.fixture();
    for (const name of names) await copyFile(join(CORPUS, name), join(f.confDir, name));
    const paths = names.map((n) => join(f.confDir, n));
    const before = new Map<string, { text: string; ino: number; mtimeMs: number }>();
    for (const [i, name] of names.entries()) {
      const info = await stat(paths[i] as string);
      before.set(name, {
        text: await readFile(paths[i] as string, 'utf8'),
        ino: info.ino,
        mtimeMs: info.mtimeMs,
      });
    }
    const theirs = configparser(paths);

    await f.start();
    // Every file's keys in etcd are configparser's map, nothing more, nothing less.
    const mine = await etcdMaps(etcd, f.prefix);
    for (const [i, name] of names.entries()) {
      expect({ name, keys: mine.get(name) }).toEqual({ name, keys: theirs.get(paths[i] as string) });
      expect(mine.get(name)?.size).toBeGreaterThanOrEqual(5);
    }
    expect([...mine.keys()].sort()).toEqual(names);
    // The multi-line values and [DEFAULT] really are in it.
    expect(mine.get('setup-cfg.conf')?.get('metadata/classifiers')).toBe(
      '\nProgramming Language :: Python :: 3\nLicense :: OSI Approved :: MIT License\nOperating System :: OS Independent',
    );
    expect(mine.get('openstack-nova.conf')?.get('DEFAULT/my_ip')).toBe('10.0.0.11');
    expect(mine.get('python-docs-example.conf')?.get('Simple Values/you can also use')).toBe(
      'to delimit keys from values',
    );

    // The first sync rewrote no file: same bytes, same inode, same mtime.
    for (const [i, name] of names.entries()) {
      const info = await stat(paths[i] as string);
      const was = before.get(name);
      expect({
        name,
        text: await readFile(paths[i] as string, 'utf8'),
        ino: info.ino,
        mtimeMs: info.mtimeMs,
      }).toEqual({ name, ...was });
    }

    // One key per file changes in etcd.
    for (const c of CHANGES) await etcd.etcdctl('put', `${f.prefix}${c.file}/${c.section}/${c.key}`, c.value);
    for (const c of CHANGES) {
      const path = join(f.confDir, c.file);
      const old = before.get(c.file)?.text as string;
      await waitFor(async () => (await readFile(path, 'utf8')) !== old, { message: `${c.file} changed` });
      const text = await readFile(path, 'utf8');
      // Exactly that key's lines changed: every other line is the same, in the same order.
      expect({ file: c.file, lines: linesBesides(text, c.section, c.key) }).toEqual({
        file: c.file,
        lines: linesBesides(old, c.section, c.key),
      });
      if (c.lines !== undefined) expect(text).toContain(c.lines);
      expect(text.startsWith('\uFEFF')).toBe(old.startsWith('\uFEFF'));
      // configparser reads the new value for that key and the old one for every other key.
      const expected = new Map(theirs.get(path));
      expected.set(`${c.section}/${c.key}`, c.value);
      expect({ file: c.file, read: configparser([path]).get(path) }).toEqual({
        file: c.file,
        read: expected,
      });
    }
    // And etcd still holds what configparser reads from the files: nothing came back changed.
    const after = configparser(paths);
    await new Promise((r) => setTimeout(r, 300)); // time for a wrong echo of its own writes to show
    const sorted = (m: Map<string, string> | undefined) =>
      [...(m ?? [])].sort(([a], [b]) => (a < b ? -1 : 1));
    const now = await etcdMaps(etcd, f.prefix);
    for (const [i, name] of names.entries())
      expect({ name, keys: sorted(now.get(name)) }).toEqual({
        name,
        keys: sorted(after.get(paths[i] as string)),
      });
  });
});
