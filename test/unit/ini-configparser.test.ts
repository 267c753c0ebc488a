/**
 * The INI dialect is what Python's configparser reads (DESIGN.md §1): a file
 * means in etcd exactly what configparser reads from it, or it is refused.
 * These tests ask the real configparser (`ConfigParser(interpolation=None,
 * strict=True)`, keys keeping their case, universal newlines as when it reads
 * a file) about generated files, in one python3 process per test. Skipped
 * where python3 is missing.
 */
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IniSyntaxError } from '../../src/errors.js';
import { applyIniChanges } from '../../src/ini/edit.js';
import { encodeValue } from '../../src/ini/escape.js';
import { parseIni } from '../../src/ini/parse.js';

const READER = `
import configparser, io, json, sys
out = []
for text in json.load(sys.stdin):
    cp = configparser.ConfigParser(interpolation=None, strict=True)
    cp.optionxform = str
    try:
        cp.read_file(io.StringIO(text, newline=None))
    except configparser.Error as e:
        out.append({"ok": False, "error": type(e).__name__})
        continue
    sections = [[name, list(items.items())] for name, items in cp._sections.items()]
    defaults = list(cp._defaults.items())
    if defaults:
        sections.insert(0, [cp.default_section, defaults])
    out.append({"ok": True, "sections": sections})
json.dump(out, sys.stdout)
`;

const hasPython = spawnSync('python3', ['-c', 'import configparser'], { stdio: 'ignore' }).status === 0;

type Read = { ok: false; error: string } | { ok: true; sections: [string, [string, string][]][] };

function configparser(texts: readonly string[]): Read[] {
  const run = spawnSync('python3', ['-c', READER], {
    input: JSON.stringify(texts),
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (run.status !== 0) throw new Error(`python3 failed: ${run.stderr}`);
  return JSON.parse(run.stdout) as Read[];
}

/**
 * Sections by name: configparser keeps DEFAULT apart from the others, so their order is not comparable.
 * (Its keys are also defaults for every other section there; here it is a section like the others.)
 */
function sorted(read: Read | undefined): Read | undefined {
  if (read === undefined || !read.ok) return read;
  // An empty [DEFAULT] leaves no trace in configparser.
  const sections = read.sections.filter(([name, keys]) => name !== 'DEFAULT' || keys.length > 0);
  return { ok: true, sections: sections.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) };
}

function ours(text: string): Read {
  try {
    const doc = parseIni(text, 'x.conf');
    return { ok: true, sections: [...doc.sections].map(([name, keys]) => [name, [...keys]]) };
  } catch (error) {
    if (error instanceof IniSyntaxError) return { ok: false, error: error.message };
    throw error;
  }
}

const LINES = [
  '[S]',
  '[T]',
  '[DEFAULT]',
  ' [S]',
  '\t[T]',
  '[ S ]',
  '[S] x',
  '[S] = v',
  '[a]b]',
  '[[a]',
  '[]',
  '[]]',
  '[a = b',
  '[S\u2028]',
  'k = v',
  'k=v',
  'k2 = v2',
  'K = V',
  'k:v',
  'k : v = w',
  'a = b: c',
  '  k = v',
  '\tk2 = v',
  '    k3 = deep',
  'k =',
  '= v',
  ': v',
  'key with space = x y',
  'k = v ; not a comment',
  'k = "q"',
  '\x1ck = v\x1c',
  'k = \x85v\x85',
  'k\u2028 = \u2028v\u2028',
  'k = \ufeffv\ufeff',
  '\ufeffk = v',
  'k = a\u2029b',
  'bare',
  'password: hunter2',
  '; c',
  '# c',
  '  ; indented comment',
  '',
  ' ',
  '\t',
  '\x1c',
  '\u3000',
  '\ufeff',
  '\x85',
  'k = a\rb',
];

const TRICKY = [
  '\u2028',
  '\u2029',
  '\x85',
  '\x1c',
  '\ufeff',
  ' ',
  '\t',
  '=',
  ':',
  ';',
  '#',
  '[',
  ']',
  '"',
  '\\',
];
const unit = fc.oneof(
  fc.constantFrom(...TRICKY),
  fc.constantFrom('k', 'v', 'S'),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }).filter((c) => c !== '\r' && c !== '\n'),
);
const line = fc.oneof(
  { arbitrary: fc.constantFrom(...LINES), weight: 6 },
  { arbitrary: fc.string({ unit, maxLength: 8 }), weight: 1 },
);
const file = fc
  .tuple(
    fc.array(line, { maxLength: 8 }),
    fc.constantFrom('\n', '\r\n'),
    fc.boolean(),
    fc.constantFrom('[S]', '[T]', ''),
  )
  .map(([lines, eol, last, head]) => [head, ...lines].join(eol) + (last ? eol : ''));

if (!hasPython)
  console.warn('ini-configparser: python3 with configparser not found: the differential tests are skipped');
describe.skipIf(!hasPython)('agreement with Python configparser (skipped without python3)', () => {
  it('a file we read, configparser reads the same way (sections, keys, values, order)', () => {
    const texts = fc.sample(file, 3000);
    const theirs = configparser(texts);
    let accepted = 0;
    texts.forEach((text, i) => {
      const mine = ours(text);
      if (!mine.ok) return;
      accepted++;
      expect({ text, read: sorted(theirs[i]) }).toEqual({ text, read: sorted(mine) });
    });
    // The generator is not so hostile that nothing is accepted.
    expect(accepted).toBeGreaterThan(300);
  });

  it('a file written by edits reads in configparser as the encoded values, every other key unchanged', () => {
    const base = fc.constantFrom(
      '',
      '[S]\nk = v\n',
      '[S]\n    a = 1\n    b = 2\n  [T]\n  t = 1\n',
      '[S]\n  [T]\n',
      '; c\u2028\n[S]\r\nx\u2028y = p\u2029q\r\n\r\n[T]\r\n',
      '[S]\n\tk=v\n# c\n',
    );
    const edit = fc.record({
      section: fc.constantFrom('S', 'T', 'NEW'),
      key: fc.constantFrom('k', 'a', 't', 'new', 'k 2'),
      value: fc.option(fc.string({ unit: fc.oneof(unit, fc.constantFrom('\r', '\n')), maxLength: 8 })),
    });
    const cases = fc.sample(fc.tuple(base, fc.array(edit, { maxLength: 4 })), 1500).map(([text, edits]) => {
      const changes = edits.map((e) => ({
        ...e,
        value: e.value === null ? undefined : encodeValue(e.value),
      }));
      return applyIniChanges(parseIni(text, 'x.conf'), changes);
    });
    const theirs = configparser(cases);
    cases.forEach((text, i) => {
      expect({ text, read: sorted(theirs[i]) }).toEqual({ text, read: sorted(ours(text)) });
    });
  });
});
