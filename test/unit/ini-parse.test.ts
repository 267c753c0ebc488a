import { describe, expect, it } from 'vitest';
import { IniSyntaxError } from '../../src/errors.js';
import { parseIni } from '../../src/ini/parse.js';

describe('strict INI reading', () => {
  it('reads sections, keys and raw values, keeping every line', () => {
    const text = '; head\n[ETCD]\nhost = a;b # kept\n\n# c\nport=2379\r\n';
    const doc = parseIni(text, 'f.conf');
    expect(doc.sections.get('ETCD')).toEqual(
      new Map([
        ['host', 'a;b # kept'],
        ['port', '2379'],
      ]),
    );
    expect(doc.lines.map((l) => l.kind)).toEqual([
      'comment',
      'section',
      'entry',
      'blank',
      'comment',
      'entry',
    ]);
    expect(doc.lines.map((l) => l.raw).join('\n')).toBe(text.slice(0, -1));
  });

  it.each([
    ['a bare word', '[S]\nbare\n', 2, /expected `key = value`/],
    ['a key before any section', 'k = v\n', 1, /before any \[section\]/],
    ['a duplicate key', '[S]\nk=1\nk=2\n', 3, /appears twice/],
    ['a duplicate section', '[S]\n[S]\n', 2, /section \[S\] appears twice/],
    ['an empty key', '[S]\n= v\n', 2, /key is missing/],
    ['an empty section name', '[S]\n[]\n', 2, /empty section name `\[\]`/],
    [
      'a lone CR',
      '[S]\nk = a\rb\n',
      2,
      /a lone carriage return \(CR\).*configparser reads it as a line break/,
    ],
    ['a lone CR ending a line', '[S]\rk = v\n', 1, /a lone carriage return/],
    ['text after a header', '[S] = x\n', 1, /text after the `\]`/],
    ['`]` in a section name', '[a]b]\n', 1, /holds `\]`/],
    [
      'spaces inside the brackets',
      '[ S ]\n',
      1,
      /section \[S\] has spaces inside its brackets.*not supported/,
    ],
    [
      'a key twice in [DEFAULT], across its two headers',
      '[DEFAULT]\nk = 1\n[S]\n[DEFAULT]\nk = 2\n',
      5,
      /appears twice/,
    ],
    ['an empty key before `:`', '[S]\n: v\n', 2, /starts with `:`: the key is missing/],
    ['an indented line before any header', '  k = v\n', 1, /before any \[section\]/],
    [
      'an indented line right after a header (no value to continue)',
      '[S]\n  more\n',
      2,
      /expected `key = value`/,
    ],
    ['a second BOM', '\uFEFF\uFEFF[S]\n', 1, /before any key/],
    ['a bare word after a value, not indented', '[S]\nk = v\nmore\n', 3, /expected `key = value`/],
  ])('refuses %s with file and line', (_name, text, line, reason) => {
    const error = (() => {
      try {
        parseIni(text, '/etc/x.conf');
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(IniSyntaxError);
    expect((error as IniSyntaxError).line).toBe(line);
    expect((error as Error).message).toMatch(new RegExp(`^/etc/x.conf:${line}: `));
    expect((error as Error).message).toMatch(reason);
  });

  it.each([
    ['a bare word', '[S]\nhunter2\n'],
    ['a duplicate key', '[S]\npassword = hunter2\npassword = hunter2\n'],
    ['text after a header', '[S] hunter2\n'],
    ['a lone CR', '[S]\npassword = hunter2\rx\n'],
    ['a key before a section', 'password = hunter2\n'],
    ['`key: value` before a section', 'password: hunter2\n'],
    ['an empty key', '[S]\n: hunter2\n'],
  ])('never quotes a value or a line: %s', (_name, text) => {
    expect(() => parseIni(text, 'secret.conf')).toThrow(IniSyntaxError);
    try {
      parseIni(text, 'secret.conf');
    } catch (e) {
      expect((e as Error).message).toMatch(/^secret\.conf:\d+: /);
      expect((e as Error).message).not.toContain('hunter2');
    }
  });

  it('shows names with control or line-break characters escaped', () => {
    expect(() => parseIni('[S]\na\x1b[2J\u2028b = 1\na\x1b[2J\u2028b = 2\n', 'f')).toThrow(
      'f:3: `a\\u001b[2J\\u2028b` appears twice in section [S]',
    );
  });

  it('splits lines at \\n only: U+2028, U+2029, U+0085, \\v and \\f are characters of the line', () => {
    const doc = parseIni('[S]\nk = a\u2028[T]\u2029b = c\u0085\v\fd\n', 'f');
    expect([...doc.sections.keys()]).toEqual(['S']);
    expect(doc.sections.get('S')).toEqual(new Map([['k', 'a\u2028[T]\u2029b = c\u0085\v\fd']]));
    expect(doc.lines).toHaveLength(2);
  });

  it('strips keys and values as Python does (\\x1c-\\x1f and U+0085 are spaces, U+FEFF is not)', () => {
    const doc = parseIni('[S]\n\x1ck\x85 = \x1f v \u2028\nb = \ufeffx\ufeff\n', 'f');
    expect(doc.sections.get('S')).toEqual(
      new Map([
        ['k', 'v'],
        ['b', '\ufeffx\ufeff'],
      ]),
    );
  });

  it('reads indented keys that configparser does not take for continuations', () => {
    const doc = parseIni('[S]\n    a = 1\n  b = 2\n  [T]\n\tt = 3\n# x\n', 'f');
    expect(doc.sections.get('S')).toEqual(
      new Map([
        ['a', '1'],
        ['b', '2'],
      ]),
    );
    expect(doc.sections.get('T')?.get('t')).toBe('3');
  });

  it('reads continuation lines as configparser does: blank lines inside kept, comments skipped, trailing blanks dropped', () => {
    const text = '[S]\nk = first\n  second\n\n# not part of it\n\t[T] and k = v are text here\n\n\nnext: 1\n';
    const doc = parseIni(text, 'f');
    expect(doc.sections.get('S')).toEqual(
      new Map([
        ['k', 'first\nsecond\n\n[T] and k = v are text here'],
        ['next', '1'],
      ]),
    );
    expect(doc.lines.map((l) => l.kind)).toEqual([
      'section',
      'entry',
      'continuation',
      'blank',
      'comment',
      'continuation',
      'blank',
      'blank',
      'entry',
    ]);
    // The value's span ends at its last continuation line, not at the blank lines after it.
    expect(doc.lines[1]).toMatchObject({ kind: 'entry', key: 'k', end: 5 });
  });

  it('reads a value that starts on the next line (setup.cfg style) and one continued deeper than its key', () => {
    const doc = parseIni('[options]\ninstall_requires =\n    requests>=2\n    click\n  [S]\n', 'setup.cfg');
    expect(doc.sections.get('options')?.get('install_requires')).toBe('\nrequests>=2\nclick\n[S]');
    expect([...doc.sections.keys()]).toEqual(['options']);
  });

  it('measures indentation against the last key or header line, not the continuation lines', () => {
    const doc = parseIni('[S]\n  a = 1\n      deep\n   also\n  b = 2\n c = 3\n', 'f');
    expect(doc.sections.get('S')).toEqual(
      new Map([
        ['a', '1\ndeep\nalso'],
        ['b', '2'],
        ['c', '3'],
      ]),
    );
  });

  it('splits at the first `=` or `:`, and takes `key:` and `key =` as empty values', () => {
    const doc = parseIni('[S]\nurl: http://x:80/?a=b\na = b: c\nk :  v  \ne:\nf =\n', 'f');
    expect(doc.sections.get('S')).toEqual(
      new Map([
        ['url', 'http://x:80/?a=b'],
        ['a', 'b: c'],
        ['k', 'v'],
        ['e', ''],
        ['f', ''],
      ]),
    );
  });

  it('reads [DEFAULT] as a section of its own, merging a second [DEFAULT] header as configparser does', () => {
    const doc = parseIni('[DEFAULT]\na = 1\n[S]\nb = 2\n[DEFAULT]\nc = 3\n', 'f');
    expect([...doc.sections.keys()]).toEqual(['DEFAULT', 'S']);
    expect(doc.sections.get('DEFAULT')).toEqual(
      new Map([
        ['a', '1'],
        ['c', '3'],
      ]),
    );
    expect(doc.sections.get('S')).toEqual(new Map([['b', '2']]));
  });

  it('reads keys and sections with spaces inside, and unicode', () => {
    const doc = parseIni('[my section]\nkey with spaces = a value\nключ = значение\n', 'f');
    expect(doc.sections.get('my section')).toEqual(
      new Map([
        ['key with spaces', 'a value'],
        ['ключ', 'значение'],
      ]),
    );
  });

  it('skips a UTF-8 byte order mark at the start (configparser reading utf-8-sig), and says it was there', () => {
    const doc = parseIni('\uFEFF[S]\r\nk = v\r\n  w\r\n', 'f');
    expect(doc.bom).toBe(true);
    expect(doc.sections.get('S')?.get('k')).toBe('v\nw');
    expect(doc.lines[0]?.raw).toBe('[S]\r');
    expect(parseIni('[S]\n', 'f').bom).toBe(false);
  });

  it('says whether the last line ended with a line break', () => {
    expect(parseIni('[S]\nk = v', 'f').finalNewline).toBe(false);
    expect(parseIni('[S]\nk = v\n', 'f').finalNewline).toBe(true);
    expect(parseIni('', 'f').finalNewline).toBe(false);
  });

  it('takes __proto__ as a plain section name', () => {
    const doc = parseIni('[__proto__]\npolluted = yes\n', 'f');
    expect(doc.sections.get('__proto__')?.get('polluted')).toBe('yes');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
