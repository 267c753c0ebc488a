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
    ['a byte order mark', '\uFEFF[S]\nk = v\n', 1, /byte order mark/],
    ['a continuation line', '[S]\nk = v\n  more\n', 3, /continues the value of `k` \(line 2\)/],
    [
      'an indented key after a key (a continuation for configparser)',
      '[S]\nk = v\n; c\n\n  x = y\n',
      5,
      /continues the value of `k`/,
    ],
    ['`:` before `=`', '[S]\na: b = c\n', 2, /`:` before the first `=` after `a`/],
    ['`key: value`', '[S]\nk: v\n', 2, /expected `key = value`.*`:` is not a delimiter here/],
    ['text after a header', '[S] = x\n', 1, /text after the `\]`/],
    ['`]` in a section name', '[a]b]\n', 1, /holds `\]`/],
    ['spaces inside the brackets', '[ S ]\n', 1, /section \[S\] has spaces inside its brackets/],
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
    ['`key: value`', '[S]\npassword: hunter2\n'],
    ['a bare word', '[S]\nhunter2\n'],
    ['a continuation', '[S]\npassword =\n  hunter2\n'],
    ['`:` before `=`', '[S]\npassword: hunter2 = x\n'],
    ['a duplicate key', '[S]\npassword = hunter2\npassword = hunter2\n'],
    ['text after a header', '[S] hunter2\n'],
    ['a lone CR', '[S]\npassword = hunter2\rx\n'],
    ['a key before a section', 'password = hunter2\n'],
    ['a BOM', '\uFEFFpassword = hunter2\n'],
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

  it('takes __proto__ as a plain section name', () => {
    const doc = parseIni('[__proto__]\npolluted = yes\n', 'f');
    expect(doc.sections.get('__proto__')?.get('polluted')).toBe('yes');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
