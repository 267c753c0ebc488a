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

  it('takes __proto__ as a plain section name', () => {
    const doc = parseIni('[__proto__]\npolluted = yes\n', 'f');
    expect(doc.sections.get('__proto__')?.get('polluted')).toBe('yes');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
