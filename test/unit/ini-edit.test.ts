import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  fillStaged,
  placedSignature,
  signatureOf,
  WRITTEN_OVER,
  writeFileAtomic,
} from '../../src/files/atomic-write.js';
import { applyIniChanges, type IniChange, IniEditError } from '../../src/ini/edit.js';
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

  it('changes a line whose old value holds U+2028, U+2029 or U+0085 (no silent revert)', () => {
    for (const c of ['\u2028', '\u2029', '\u0085']) {
      const text = `[S]\nk = a${c}b\nz = ${c}\n`;
      expect(edit(text, [{ section: 'S', key: 'k', value: 'new' }])).toBe(`[S]\nk = new\nz = ${c}\n`);
    }
  });

  it('keeps a line byte for byte when its value does not change', () => {
    const text = '[S]\nk =   v   \t\n';
    expect(edit(text, [{ section: 'S', key: 'k', value: 'v' }])).toBe(text);
  });

  it('keeps each line end of a file that mixes them; a new line takes the end of the line before it', () => {
    const text = '[S]\r\na = 1\nb = 2\r\n[T]\nt = 1\n';
    expect(
      edit(text, [
        { section: 'S', key: 'a', value: '9' },
        { section: 'S', key: 'c', value: '3' },
        { section: 'T', key: 'u', value: '2' },
      ]),
    ).toBe('[S]\r\na = 9\nb = 2\r\nc = 3\r\n[T]\nt = 1\nu = 2\n');
  });

  it('deletes without checking names: a name the file cannot hold is not in it', () => {
    expect(edit('[S]\nk = v\n', [{ section: 'S', key: 'a:b', value: undefined }])).toBe('[S]\nk = v\n');
  });

  it('writes a value text holding U+2028, \\v or U+0085 inside as given: it stays on its line for every reader', () => {
    const out = edit('[S]\nk = v\n', [{ section: 'S', key: 'k', value: 'a\u2028b\vc\u0085d' }]);
    expect(out).toBe('[S]\nk = a\u2028b\vc\u0085d\n');
    expect(parseIni(out, 'f').sections.get('S')?.get('k')).toBe('a\u2028b\vc\u0085d');
  });

  it('copies only spaces and tabs around `=` to new keys', () => {
    expect(edit('[S]\nk\u2028=\u2028v\n', [{ section: 'S', key: 'n', value: '1' }])).toBe(
      '[S]\nk\u2028=\u2028v\nn = 1\n',
    );
    expect(edit('[S]\nk\t=v\n', [{ section: 'S', key: 'n', value: '1' }])).toBe('[S]\nk\t=v\nn\t=1\n');
  });

  it('indents new keys so that configparser does not read them, or the next header, as a continuation', () => {
    // After an indented key: that key's indentation (the next header is no deeper).
    expect(edit('[S]\n    a = 1\n  [T]\n', [{ section: 'S', key: 'b', value: '2' }])).toBe(
      '[S]\n    a = 1\n    b = 2\n  [T]\n',
    );
    // Right after a header: as deep as the next header, which would otherwise continue the new key.
    expect(edit('[S]\n  [T]\n', [{ section: 'S', key: 'b', value: '2' }])).toBe('[S]\n  b = 2\n  [T]\n');
    expect(edit('  [S]\n[T]\n', [{ section: 'S', key: 'b', value: '2' }])).toBe('  [S]\n  b = 2\n[T]\n');
  });

  it('writes a value with line breaks as continuation lines, an empty line as a blank line', () => {
    expect(edit('[S]\nk = v\nz = 1\n', [{ section: 'S', key: 'k', value: 'a\n\nb' }])).toBe(
      '[S]\nk = a\n    b\nz = 1\n'.replace('a\n', 'a\n\n'),
    );
    // A value that starts with a line break (setup.cfg style): nothing after `=`.
    expect(edit('[S]\n', [{ section: 'S', key: 'deps', value: '\nrequests\nclick' }])).toBe(
      '[S]\ndeps =\n    requests\n    click\n',
    );
  });

  it('replaces every line of a multi-line value and nothing else, keeping the comments inside it', () => {
    const text = '[S]\nk = a\n  b\n\n# note\n  c\n\n; after\nz = 1\n';
    expect(edit(text, [{ section: 'S', key: 'k', value: 'x' }])).toBe(
      '[S]\nk = x\n# note\n\n; after\nz = 1\n',
    );
    // The old continuation lines' indentation is kept.
    expect(edit(text, [{ section: 'S', key: 'k', value: 'x\ny' }])).toBe(
      '[S]\nk = x\n  y\n# note\n\n; after\nz = 1\n',
    );
    expect(edit(text, [{ section: 'S', key: 'k', value: undefined }])).toBe(
      '[S]\n# note\n\n; after\nz = 1\n',
    );
    expect(edit(text, [{ section: 'S', key: 'k', value: 'a\nb\n\nc' }])).toBe(text);
  });

  it('spaces a value put after a bare `key =` as the file spaces its keys', () => {
    expect(edit('[S]\nk = v\ncmd =\n  a\n  b\n', [{ section: 'S', key: 'cmd', value: 'x' }])).toBe(
      '[S]\nk = v\ncmd = x\n',
    );
    expect(edit('[S]\nK=v\nCmd=\n  a\n', [{ section: 'S', key: 'Cmd', value: 'x' }])).toBe(
      '[S]\nK=v\nCmd=x\n',
    );
  });

  it('adds a key after the last value line of its section, as deep as that key', () => {
    expect(edit('[S]\n  k = a\n      b\n\n[T]\n', [{ section: 'S', key: 'n', value: 'x\ny' }])).toBe(
      '[S]\n  k = a\n      b\n  n = x\n      y\n\n[T]\n',
    );
  });

  it('keeps the delimiter and spacing of `key: value` lines, and uses the first one for new keys', () => {
    expect(
      edit('[S]\nk: v\n', [
        { section: 'S', key: 'k', value: 'w' },
        { section: 'S', key: 'n', value: '1' },
      ]),
    ).toBe('[S]\nk: w\nn: 1\n');
    expect(edit('[S]\nk : a = b\n', [{ section: 'S', key: 'k', value: 'c' }])).toBe('[S]\nk : c\n');
  });

  it('keeps a byte order mark and CRLF line ends, on continuation lines too', () => {
    expect(edit('\uFEFF[S]\r\nk = v\r\n', [{ section: 'S', key: 'k', value: 'a\n\nb' }])).toBe(
      '\uFEFF[S]\r\nk = a\r\n\r\n    b\r\n',
    );
    expect(edit('\uFEFF', [])).toBe('\uFEFF');
  });

  it('keeps a missing final newline when the last line stays', () => {
    expect(edit('[S]\nk = v\nz = 1', [{ section: 'S', key: 'k', value: 'w' }])).toBe('[S]\nk = w\nz = 1');
    expect(edit('[S]\nk = v', [{ section: 'S', key: 'k', value: 'w' }])).toBe('[S]\nk = w\n');
  });

  it('edits [DEFAULT] like any section, wherever its headers are', () => {
    const text = '[DEFAULT]\na = 1\n[S]\nb = 2\n[DEFAULT]\nc = 3\n';
    expect(
      edit(text, [
        { section: 'DEFAULT', key: 'a', value: '9' },
        { section: 'DEFAULT', key: 'd', value: '4' },
      ]),
    ).toBe('[DEFAULT]\na = 9\n[S]\nb = 2\n[DEFAULT]\nc = 3\nd = 4\n');
  });

  it.each([
    [
      'a value ending in a line break',
      { section: 'S', key: 'k', value: 'hunter2\n' },
      /ends with a line break/,
    ],
    ['a value line starting with `#`', { section: 'S', key: 'k', value: 'hunter2\n#x' }, /starts with `#`/],
    [
      'a value line with spaces',
      { section: 'S', key: 'k', value: 'hunter2\n x' },
      /starts or ends with spaces/,
    ],
    ['a value with a CR among lines', { section: 'S', key: 'k', value: 'hunter2\nx\ry' }, /carriage return/],
    ['a value with a CR', { section: 'S', key: 'k', value: 'hunter2\r[X]' }, /line break/],
    ['a value ending in U+2028', { section: 'S', key: 'k', value: 'hunter2\u2028' }, /spaces/],
    ['a value with spaces at an end', { section: 'S', key: 'k', value: 'hunter2\x1f' }, /spaces/],
    ['a key with `:`', { section: 'S', key: 'a:b', value: 'hunter2' }, /`=` or `:`/],
    ['a key starting with `[`', { section: 'S', key: '[a]b', value: 'hunter2' }, /starts with `\[`/],
    ['a section with `]`', { section: 'a]b', key: 'k', value: 'hunter2' }, /holds `\]`/],
    ['a section with a line break', { section: 'a\nb', key: 'k', value: 'hunter2' }, /line break/],
    // Found by the differential test: configparser reads `[\uFEFFS]`, but our reader refuses the brackets' spaces.
    [
      'a section starting with U+FEFF',
      { section: '\uFEFFS', key: 'k', value: 'hunter2' },
      /starts or ends with spaces/,
    ],
    ['a key with spaces at an end', { section: 'S', key: 'k\u0085', value: 'hunter2' }, /spaces/],
  ])('refuses %s, naming section and key but not the value', (_name, change, reason) => {
    expect(() => edit('[S]\nk = v\n', [change])).toThrow(IniEditError);
    expect(() => edit('[S]\nk = v\n', [change])).toThrow(reason);
    expect(() => edit('[S]\nk = v\n', [change])).not.toThrow(/hunter2/);
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

  it('returns the signature the file has once in place, so our own write is recognised without a read', async () => {
    const file = join(dir, 'c.conf');
    const { lstat } = await import('node:fs/promises');
    const written = await writeFileAtomic(file, 'one\n');
    // The rename changed the inode's ctime: a signature taken before it would never match.
    expect(written).toBe(signatureOf(await lstat(file)));
    const again = await writeFileAtomic(file, 'two\n', { mode: 0o640, known: true });
    expect(again).toBe(signatureOf(await lstat(file)));
  });

  it('an edit made in place between our rename and its signature is not taken for ours', async () => {
    // The window is microseconds wide in the daemon; here the "edit" lands between the staged
    // write and the signature by hand, through a second descriptor, as an editor would.
    const file = join(dir, 'd.conf');
    const { closeSync, openSync, writeSync } = await import('node:fs');
    const fd = openSync(file, 'w', 0o600);
    const staged = await fillStaged(fd, 'ours\n', 0o600, undefined);
    const editor = openSync(file, 'a');
    writeSync(editor, 'theirs\n');
    closeSync(editor);
    const signature = placedSignature(fd, staged);
    expect(signature).toBe(WRITTEN_OVER);
    expect(signature).not.toBe(signatureOf(await stat(file)));
  });

  it('does not rewrite unchanged content', async () => {
    const file = join(dir, 'b.conf');
    await writeFileAtomic(file, 'same\n');
    const before = (await stat(file)).ino;
    expect(await writeFileAtomic(file, 'same\n')).toBeUndefined();
    expect((await stat(file)).ino).toBe(before);
  });
});
