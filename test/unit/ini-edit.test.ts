import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeFileAtomic } from '../../src/files/atomic-write.js';
import { applyIniChanges, type IniChange } from '../../src/ini/edit.js';
import { parseIni } from '../../src/ini/parse.js';

const FILE = `; My app
[MYCONF]
myparam   =   3
# keep me

other=x

[NET]
port = 80
`;

const edit = (text: string, changes: IniChange[]) => applyIniChanges(parseIni(text, 'f.conf'), changes);

describe('format-preserving INI edits', () => {
  it('changes nothing when there is nothing to change', () => {
    expect(edit(FILE, [])).toBe(FILE);
  });

  it('changes only the value of a changed key, keeping its spacing', () => {
    expect(edit(FILE, [{ section: 'MYCONF', key: 'myparam', value: '4' }])).toBe(
      FILE.replace('myparam   =   3', 'myparam   =   4'),
    );
  });

  it('adds a new key after the last key of its section and a new section at the end', () => {
    const out = edit(FILE, [
      { section: 'MYCONF', key: 'added', value: 'v' },
      { section: 'NEW', key: 'k', value: '1' },
    ]);
    expect(out).toBe(
      '; My app\n[MYCONF]\nmyparam   =   3\n# keep me\n\nother=x\nadded   =   v\n\n[NET]\nport = 80\n\n[NEW]\nk   =   1\n',
    );
  });

  it('removes a deleted key and only that line', () => {
    expect(edit(FILE, [{ section: 'MYCONF', key: 'other', value: undefined }])).toBe(
      FILE.replace('other=x\n', ''),
    );
  });

  it('keeps CRLF line endings', () => {
    const crlf = FILE.replace(/\n/g, '\r\n');
    expect(edit(crlf, [{ section: 'NET', key: 'port', value: '81' }])).toBe(
      crlf.replace('port = 80', 'port = 81'),
    );
  });

  it('writes a new file from nothing', () => {
    expect(edit('', [{ section: 'S', key: 'k', value: 'v' }])).toBe('[S]\nk = v\n');
  });
});

describe('atomic file writes', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'link-etcd-atomic-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('creates new files 0600, keeps an existing file mode, leaves no temp file', async () => {
    const file = join(dir, 'a.conf');
    expect(await writeFileAtomic(file, 'one\n')).toBeDefined();
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    await writeFile(file, 'x', { mode: 0o644 });
    const { chmod } = await import('node:fs/promises');
    await chmod(file, 0o640);
    expect(await writeFileAtomic(file, 'two\n')).toBeDefined();
    expect(await readFile(file, 'utf8')).toBe('two\n');
    expect((await stat(file)).mode & 0o777).toBe(0o640);
    expect(await readdir(dir)).toEqual(['a.conf']);
  });

  it('does not rewrite unchanged content', async () => {
    const file = join(dir, 'b.conf');
    await writeFileAtomic(file, 'same\n');
    const before = (await stat(file)).ino;
    expect(await writeFileAtomic(file, 'same\n')).toBeUndefined();
    expect((await stat(file)).ino).toBe(before);
  });
});
