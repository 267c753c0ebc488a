/**
 * etcd -> file -> etcd at the INI level: a value set by a line edit reads
 * back exactly, and a second edit with another value always changes the file.
 *
 * Values range over all of Unicode except lone surrogates: etcd values are
 * bytes, and ours are JS strings decoded from UTF-8, which never hold a lone
 * surrogate (invalid UTF-8 is refused before it becomes a string). fast-check's
 * `binary` unit is exactly that range (0000-10FFFF without surrogate halves).
 * The characters that broke edits before (`\r`, `\n`, U+2028, U+2029, U+0085)
 * and INI's own syntax (`;`, `#`, `=`, `:`, `[`, quotes, backslashes, spaces)
 * are weighted heavily.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IniSyntaxError } from '../../src/errors.js';
import { applyIniChanges } from '../../src/ini/edit.js';
import { decodeValue, encodeValue, encodeValueLines, isContinuable } from '../../src/ini/escape.js';
import { type IniDocument, parseIni } from '../../src/ini/parse.js';

const TRICKY = [
  '\r',
  '\n',
  '\r\n',
  '\u2028',
  '\u2029',
  '\u0085',
  '\v',
  '\f',
  '\x1c',
  '\x1d',
  '\x1e',
  '\x1f',
  '\t',
  ' ',
  '\u00a0',
  '\u3000',
  '\ufeff',
  ';',
  '#',
  '=',
  ':',
  '[',
  ']',
  '"',
  "'",
  '\\',
  '\\n',
  '\\u2028',
  '\0',
  '\u{1F600}',
];

const unit = fc.oneof(
  { arbitrary: fc.constantFrom(...TRICKY), weight: 4 },
  { arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }), weight: 3 },
  { arbitrary: fc.constantFrom('a', 'b', 'x', '1'), weight: 2 },
);
/** Any etcd value, as a string: all of Unicode but lone surrogates. */
const value = fc.oneof(
  fc.string({ unit, maxLength: 12 }),
  // Lines, so that continuation lines are exercised: some fit them, some need the quoted form.
  fc
    .array(
      fc.oneof(fc.constantFrom('', 'a', 'b c', '[T]', '# x', ' pad'), fc.string({ unit, maxLength: 3 })),
      {
        minLength: 2,
        maxLength: 4,
      },
    )
    .map((lines) => lines.join('\n')),
  // JSON-looking values, so that the quoted form is exercised both ways.
  fc.string({ unit, maxLength: 6 }).map((s) => JSON.stringify(s)),
  fc.string({ unit, maxLength: 6 }).map((s) => `"${s}"`),
);

/** Files the edits start from: CRLF, U+2028 in comments, in raw values and in keys, odd spacing, indentation. */
const BASES = [
  '',
  '[S]\nk = old\n',
  '; head \u2028 comment\n[S]\r\nk=old\r\nother = a\u2028b\r\n',
  '[S]\n  k   =   old\n  x\u2029y = keep \u2029 me\n# tail\u2028\n',
  '[T]\nt = 1\n\n[S]\n\tother = \u0085kept\n',
  '[S]\nother = "\\u2028"\n',
  '[S]\r\n',
  '; only a comment\u2028 with a separator\n',
];

/** Line breaks to configparser (universal newlines), to JavaScript regexes, or to Python's str.splitlines. */
const LINE_BREAKS = ['\n', '\v', '\f', '\r', '\x1c', '\x1d', '\x1e', '\x85', '\u2028', '\u2029'];

const KEYS = ['k', 'new', 'K e y', 'ключ'];

const readBack = (text: string, section: string, key: string) => {
  const raw = parseIni(text, 'rt.conf').sections.get(section)?.get(key);
  return raw === undefined ? undefined : decodeValue(raw);
};

/** Every key's value except `skip`, decoded. */
const othersOf = (text: string, skip: { section: string; key: string }) => {
  const out: string[] = [];
  for (const [section, keys] of parseIni(text, 'rt.conf').sections) {
    for (const [key, raw] of keys) {
      if (section !== skip.section || key !== skip.key) out.push(`${section}/${key}=${JSON.stringify(raw)}`);
    }
  }
  return out;
};

/** The file's lines without those of `key`'s value (its entry, continuation and blank lines between them). */
const linesBesides = (doc: IniDocument, section: string, key: string) => {
  let inside = -1;
  return doc.lines
    .filter((l, i) => {
      if (l.kind === 'entry' && l.section === section && l.key === key) inside = l.end;
      return i > inside || l.kind === 'comment';
    })
    .map((l) => l.raw);
};

describe('etcd -> file -> etcd through line edits (property)', () => {
  it('reads back exactly the value set, and a second, different value always changes the file', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...BASES),
        fc.constantFrom('S', 'NEW'),
        fc.constantFrom(...KEYS),
        value,
        value,
        (base, section, key, v1, v2) => {
          fc.pre(v1 !== v2);
          const doc0 = parseIni(base, 'rt.conf');
          const text1 = applyIniChanges(doc0, [{ section, key, value: encodeValueLines(v1) }]);
          expect(readBack(text1, section, key)).toBe(v1);
          expect(othersOf(text1, { section, key })).toEqual(othersOf(base, { section, key }));

          const text2 = applyIniChanges(parseIni(text1, 'rt.conf'), [
            { section, key, value: encodeValueLines(v2) },
          ]);
          expect(text2).not.toBe(text1);
          expect(readBack(text2, section, key)).toBe(v2);
          // The key's lines are the only ones that changed: all others byte for byte, in order.
          const besides1 = linesBesides(parseIni(text1, 'rt.conf'), section, key);
          const besides2 = linesBesides(parseIni(text2, 'rt.conf'), section, key);
          expect(besides2).toEqual(besides1);

          // Deleting it again gives back the other keys untouched.
          const text3 = applyIniChanges(parseIni(text2, 'rt.conf'), [{ section, key, value: undefined }]);
          expect(readBack(text3, section, key)).toBeUndefined();
          expect(othersOf(text3, { section, key })).toEqual(othersOf(base, { section, key }));
        },
      ),
      { numRuns: 4000 },
    );
  });

  it('the multi-line form of any value: lines broken at \\n only, each trimmed, decoding back (property)', () => {
    fc.assert(
      fc.property(value, (v) => {
        const text = encodeValueLines(v);
        if (!isContinuable(v)) expect(text).toBe(encodeValue(v));
        for (const line of text.split('\n')) {
          expect([...line].filter((c) => LINE_BREAKS.includes(c))).toEqual([]);
          expect(line).toBe(line.trim());
        }
        expect(decodeValue(text)).toBe(v);
      }),
      { numRuns: 4000 },
    );
  });

  it('the one-line form of any value is one line, trimmed, and decodes back (property)', () => {
    fc.assert(
      fc.property(value, (v) => {
        const text = encodeValue(v);
        expect([...text].filter((c) => LINE_BREAKS.includes(c))).toEqual([]);
        expect(text).toBe(text.trim());
        expect(decodeValue(text)).toBe(v);
      }),
      { numRuns: 4000 },
    );
  });
});

describe('the written form of a value with line breaks', () => {
  it.each([
    ['a\nb', 'a\nb'],
    ['\nfirst\nsecond', '\nfirst\nsecond'],
    ['a\n\nb', 'a\n\nb'],
    ['a\n[T]\nk = v', 'a\n[T]\nk = v'],
    ['a\n', '"a\\n"'],
    ['a\n ', '"a\\n "'],
    ['a\n b', '"a\\n b"'],
    [' a\nb', '" a\\nb"'],
    ['a\n#b', '"a\\n#b"'],
    ['a\n;b', '"a\\n;b"'],
    ['#a\nb', '#a\nb'],
    ['a\u2028\nb', '"a\\u2028\\nb"'],
    ['a\r\nb', '"a\\r\\nb"'],
    ['\n', '"\\n"'],
  ])('%j is written as %j', (value, text) => {
    expect(encodeValueLines(value)).toBe(text);
    expect(decodeValue(text)).toBe(value);
    // The one-line form is still read: as earlier versions wrote it, and as conflict records write it.
    expect(decodeValue(encodeValue(value))).toBe(value);
  });
});

describe('characters that are line breaks to some reader', () => {
  it.each([
    ['\r', '"a\\rb"'],
    ['\n', '"a\\nb"'],
    ['\u2028', '"a\\u2028b"'],
    ['\u2029', '"a\\u2029b"'],
    ['\u0085', '"a\\u0085b"'],
    ['\v', '"a\\u000bb"'],
    ['\f', '"a\\fb"'],
    ['\x1c', '"a\\u001cb"'],
    ['\x1e', '"a\\u001eb"'],
  ])('%j inside a value is written escaped, in quotes: %s', (c, text) => {
    expect(encodeValue(`a${c}b`)).toBe(text);
    expect(decodeValue(text)).toBe(`a${c}b`);
  });

  it.each([
    ['\x1f', '"\\u001fa"'],
    ['\ufeff', '"\ufeffa"'],
    ['\u00a0', '"\u00a0a"'],
  ])('%j at an end (Python or JavaScript strips it) is written in quotes: %s', (c, text) => {
    expect(encodeValue(`${c}a`)).toBe(text);
    expect(decodeValue(text)).toBe(`${c}a`);
  });

  it('keeps a quoted text that is not the canonical spelling as is', () => {
    // JSON.stringify leaves U+2028 raw; the canonical form escapes it, so this is a plain value.
    expect(decodeValue('"a\u2028b"')).toBe('"a\u2028b"');
    expect(encodeValue('"a\u2028b"')).toBe('"\\"a\\u2028b\\""');
  });

  it('a value written raw by an older version (U+2028 inside) is read, and a new value replaces the line', () => {
    const old = '[S]\nk = a\u2028b\nz = 1\n';
    expect(readBack(old, 'S', 'k')).toBe('a\u2028b');
    const next = applyIniChanges(parseIni(old, 'f.conf'), [
      { section: 'S', key: 'k', value: encodeValue('c') },
    ]);
    expect(next).toBe('[S]\nk = c\nz = 1\n');
  });

  it('an edit leaves lines holding U+2028 and U+2029 byte for byte', () => {
    const file =
      '; note\u2028[FAKE]\u2028injected = 1\n[S]\r\nk = v\r\nx\u2028y = p\u2029q \u2028\r\n# \u2029\r\n[T]\r\nt=\u2028\r\n';
    const out = applyIniChanges(parseIni(file, 'f.conf'), [
      { section: 'S', key: 'k', value: encodeValue('w\u2028') },
      { section: 'T', key: 'n', value: 'new' },
    ]);
    expect(out).toBe(
      file.replace('k = v', 'k = "w\\u2028"').replace('t=\u2028\r\n', 't=\u2028\r\nn = new\r\n'),
    );
    expect(parseIni(out, 'f.conf').sections.get('S')?.get('x\u2028y')).toBe('p\u2029q');
    expect([...parseIni(out, 'f.conf').sections.keys()]).toEqual(['S', 'T']);
  });

  it('a file with a lone CR is refused with its line, as configparser would split the line there', () => {
    for (const text of ['[S]\nk = a\rb\n', '[S]\r\nk = a\rb\r\n', '[S]\nk = v\r\r\n', '[S]\rk = v\n']) {
      const line = text.startsWith('[S]\r') && !text.startsWith('[S]\r\n') ? 1 : 2;
      expect(() => parseIni(text, 'cr.conf')).toThrow(IniSyntaxError);
      expect(() => parseIni(text, 'cr.conf')).toThrow(
        new RegExp(
          `^cr\\.conf:${line}: a lone carriage return \\(CR\\).*configparser reads it as a line break`,
        ),
      );
    }
  });
});
