/**
 * The INI dialect is what Python's configparser reads (DESIGN.md §1, issue
 * 11): for any file, link-etcd either reads exactly the (section, key) ->
 * value map that `ConfigParser(interpolation=None, strict=True)` with
 * `optionxform = str` reads (the file opened as `utf-8-sig`, universal
 * newlines), or refuses the file. Never a third outcome.
 *
 * The map: `[DEFAULT]` is `parser.defaults()`, every other section only its
 * own keys (`parser._sections`), so a default is not repeated in each
 * section; an empty [DEFAULT] leaves no trace in configparser and none here.
 *
 * Differential properties against the real configparser, asked through ONE
 * long-lived python3 process fed one JSON line per file over stdin (not a
 * process per case), so fast-check can shrink a failure to a few lines:
 * - reading: thousands of files from a grammar that covers indentation,
 *   continuation lines, blank and comment lines inside values, both
 *   delimiters, odd whitespace, unicode, CRLF, a BOM, duplicates and headers
 *   in odd places;
 * - writing: sequences of random edits (set, add, delete, multi-line
 *   values), each applied by link-etcd's editor; configparser reads the new
 *   value for each edited key and the old value for every other key, and
 *   every line outside the edited keys' values stays.
 * Skipped where python3 is missing (`.ci/run` installs it).
 */
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IniSyntaxError } from '../../src/errors.js';
import { applyIniChanges } from '../../src/ini/edit.js';
import { encodeValueLines } from '../../src/ini/escape.js';
import { type IniDocument, parseIni } from '../../src/ini/parse.js';
import { iniNameProblem } from '../../src/layout/ini-chars.js';

/** Reads one JSON-encoded text per line on stdin, answers one JSON line per text. */
const SERVER = String.raw`
import configparser, io, json, sys

def read(text):
    # The file opened with encoding='utf-8-sig': one leading BOM is not text.
    if text.startswith('\ufeff'):
        text = text[1:]
    cp = configparser.ConfigParser(interpolation=None, strict=True)
    cp.optionxform = str
    try:
        cp.read_file(io.StringIO(text, newline=None), source='x.conf')
    except configparser.Error as e:
        return {"ok": False, "error": type(e).__name__}
    sections = [[name, list(items.items())] for name, items in cp._sections.items()]
    defaults = list(cp.defaults().items())
    if defaults:
        sections.insert(0, [cp.default_section, defaults])
    return {"ok": True, "sections": sections}

while True:
    line = sys.stdin.buffer.readline()
    if not line:
        break
    sys.stdout.write(json.dumps(read(json.loads(line))) + "\n")
    sys.stdout.flush()
`;

/** More runs for a hunt: INI_DIFF_SCALE=20 npx vitest run test/unit/ini-configparser.test.ts */
const SCALE = Number(process.env.INI_DIFF_SCALE ?? 1);

const hasPython = spawnSync('python3', ['-c', 'import configparser'], { stdio: 'ignore' }).status === 0;

type Sections = [string, [string, string][]][];
type Read = { ok: false; error: string } | { ok: true; sections: Sections };

/** One python3 for the whole file: requests are answered in order. */
class ConfigParserOracle {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly waiting: Array<{ resolve: (r: Read) => void; reject: (e: Error) => void }> = [];
  private buffer = '';
  calls = 0;

  constructor() {
    this.child = spawn('python3', ['-c', SERVER], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (chunk: string) => {
      this.buffer += chunk;
      for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        this.waiting.shift()?.resolve(JSON.parse(line) as Read);
      }
    });
    let stderr = '';
    this.child.stderr.on('data', (chunk) => {
      stderr += String(chunk);
    });
    this.child.on('exit', (code) => {
      for (const w of this.waiting.splice(0)) w.reject(new Error(`python3 exited ${code}: ${stderr}`));
    });
  }

  read(text: string): Promise<Read> {
    this.calls++;
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.child.stdin.write(`${JSON.stringify(text)}\n`);
    });
  }

  close(): void {
    this.child.stdin.end();
  }
}

/** DEFAULT first (configparser keeps it apart), and only when it holds keys. */
function normalized(sections: Sections): Sections {
  const defaults = sections.filter(([name]) => name === 'DEFAULT');
  const others = sections.filter(([name]) => name !== 'DEFAULT');
  const keys = defaults.flatMap(([, entries]) => entries);
  return keys.length > 0 ? [['DEFAULT', keys], ...others] : others;
}

function sectionsOf(doc: IniDocument): Sections {
  return normalized([...doc.sections].map(([name, keys]) => [name, [...keys]]));
}

function ours(text: string): Read & { message?: string } {
  try {
    return { ok: true, sections: sectionsOf(parseIni(text, 'x.conf')) };
  } catch (error) {
    if (error instanceof IniSyntaxError) return { ok: false, error: 'refused', message: error.message };
    throw error;
  }
}

// --- the grammar -----------------------------------------------------------

/** Characters that matter to one reader or another: Python's and JavaScript's whitespace, INI syntax, line breaks. */
const TRICKY = [
  ' ',
  '\t',
  '\x0b',
  '\x0c',
  '\x1c',
  '\x1f',
  '\x85',
  '\u00a0',
  '\u2028',
  '\u2029',
  '\u3000',
  '\ufeff',
  '\r',
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
  { arbitrary: fc.constantFrom(...TRICKY), weight: 3 },
  { arbitrary: fc.constantFrom('k', 'v', 'S', 'ü', '\u{1F600}'), weight: 2 },
  {
    arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }).filter((c) => c !== '\n'),
    weight: 1,
  },
);
const randomText = (maxLength: number) => fc.string({ unit, maxLength });

const space = fc.constantFrom('', '', ' ', '  ', '\t', '\x0c', '\x1c', '\u3000', '\u00a0', '\x85');
const indent = fc.oneof(
  { arbitrary: fc.constant(''), weight: 6 },
  { arbitrary: fc.constantFrom(' ', '  ', '    ', '\t', ' \t', '\x0c', '\x1c', '\u3000', '\x85'), weight: 4 },
);
const sectionName = fc.constantFrom('S', 'T', 'DEFAULT', 'a b', 'ünï', 'S2');
const oddSectionName = fc.constantFrom(
  ' S ',
  'S\t',
  'a]b',
  '',
  ']',
  '[S',
  '\u2028',
  'x=y',
  'default',
  'S\ufeff',
);
const keyName = fc.constantFrom('k', 'k2', 'K', 'key with space', 'ключ', 'a.b', 'DEFAULT', 'x[1]');
const oddKeyName = fc.constantFrom('[k', 'k\u2028', '\ufeffk', 'a b ', '"k"', 'k;c', '#k', ';k', '[k]x');
const valueText = fc.oneof(
  fc.constantFrom(
    '',
    'v',
    '1',
    'a b',
    'x = y',
    'a: b',
    '# not a comment',
    '; nor this',
    '"q"',
    '[T]',
    '"\\n"',
  ),
  randomText(6),
);
const entry = fc
  .tuple(
    fc.oneof({ arbitrary: keyName, weight: 4 }, { arbitrary: oddKeyName, weight: 1 }),
    space,
    fc.constantFrom('=', '=', ':'),
    space,
    valueText,
  )
  .map((parts) => parts.join(''));
const header = fc
  .tuple(
    fc.oneof({ arbitrary: sectionName, weight: 5 }, { arbitrary: oddSectionName, weight: 1 }),
    fc.constantFrom('', '', '', '', ' ', '\t', ' x', ' ; c', ']', ' = v'),
  )
  .map(([name, tail]) => `[${name}]${tail}`);
/** Text a continuation line holds, or a bare word where no value continues. */
const loose = fc.constantFrom(
  'more',
  'line two',
  '[T]',
  '[S]',
  'k = v',
  'k: v',
  'a = b: c',
  '=',
  ':',
  '= v',
  '[]',
);
const comment = fc.constantFrom('# c', '; c', '#', ';;', '# [S]', '#k = v', '; a\u2028b');
const content = fc.oneof(
  { arbitrary: entry, weight: 6 },
  { arbitrary: header, weight: 2 },
  { arbitrary: loose, weight: 2 },
  { arbitrary: comment, weight: 2 },
  { arbitrary: randomText(8), weight: 1 },
);
const line = fc.oneof(
  {
    arbitrary: fc
      .tuple(indent, content, fc.constantFrom('', '', '', ' ', '\t', '\x1c'))
      .map((p) => p.join('')),
    weight: 8,
  },
  { arbitrary: space, weight: 2 },
);
const eolMode = fc.constantFrom('\n', '\n', '\n', '\r\n', 'mixed');

/** A file from `lines`: maybe a BOM, maybe a first header, line ends per mode, maybe a final newline. */
function fileOf(lineArb: fc.Arbitrary<string>, maxLines: number): fc.Arbitrary<string> {
  return fc
    .record({
      bom: fc.oneof(
        { arbitrary: fc.constant(false), weight: 9 },
        { arbitrary: fc.constant(true), weight: 1 },
      ),
      head: fc.constantFrom('[S]', '[S]', '[S]', '[DEFAULT]', ' [S]', 'k = v', ''),
      lines: fc.array(fc.tuple(lineArb, fc.constantFrom('\n', '\r\n')), { maxLength: maxLines }),
      eol: eolMode,
      last: fc.boolean(),
    })
    .map(({ bom, head, lines, eol, last }) => {
      const all: [string, string][] = head === '' ? lines : [[head, '\n'], ...lines];
      const end = (own: string) => (eol === 'mixed' ? own : eol);
      const text = all.map(([l, own], i) => (i < all.length - 1 || last ? l + end(own) : l)).join('');
      return (bom ? '\ufeff' : '') + text;
    });
}

const files = fileOf(line, 12);

// --- edits -------------------------------------------------------------------

/** Lines of an etcd value: some fit continuation lines, some force the quoted form. */
const valueLine = fc.oneof(
  { arbitrary: fc.constantFrom('', 'a', 'b c', '[T]', 'k = v', 'x: y', 'ü', '"q"'), weight: 6 },
  { arbitrary: fc.constantFrom(' a', 'a ', '#c', ';c', '\t', '\u2028', 'a\rb', '\ufeffa'), weight: 2 },
  { arbitrary: randomText(4), weight: 1 },
);
const etcdValue = fc.oneof(
  { arbitrary: valueText, weight: 2 },
  { arbitrary: fc.array(valueLine, { minLength: 2, maxLength: 5 }).map((ls) => ls.join('\n')), weight: 3 },
);

/** Files the edits start from: mostly valid, with continuation values, comments and blanks inside them. */
const baseLine = fc.oneof(
  {
    arbitrary: fc
      .tuple(
        indent,
        fc.oneof(
          {
            arbitrary: fc
              .tuple(keyName, space, fc.constantFrom('=', ':'), space, valueText)
              .map((p) => p.join('')),
            weight: 5,
          },
          { arbitrary: sectionName.map((n) => `[${n}]`), weight: 2 },
          { arbitrary: loose, weight: 3 },
          { arbitrary: comment, weight: 2 },
        ),
      )
      .map((p) => p.join('')),
    weight: 8,
  },
  { arbitrary: space, weight: 2 },
);
const baseFiles = fileOf(baseLine, 14).filter((text) => ours(text).ok);

/** Names an etcd key may carry: the editor is given only those `iniNameProblem` lets through, as the sync does. */
const oddName = fc.constantFrom(
  '\ufeffS',
  'S\ufeff',
  '\u00a0S',
  'a\u2028b',
  '[x',
  'x]',
  '[x]',
  '#k',
  'k=v',
  'k:v',
  'x\x85',
);
const edit = fc.record({
  section: fc.oneof(
    { arbitrary: fc.constantFrom('S', 'T', 'DEFAULT', 'a b', 'NEW'), weight: 9 },
    { arbitrary: oddName, weight: 1 },
  ),
  key: fc.oneof(
    { arbitrary: fc.constantFrom('k', 'k2', 'K', 'key with space', 'new', 'a.b'), weight: 9 },
    { arbitrary: oddName, weight: 1 },
  ),
  value: fc.option(etcdValue, { freq: 4 }),
});
/** A sequence of steps, each one or more edits applied in one write. */
const editSequence = fc.array(fc.array(edit, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 4 });

type Map2 = Map<string, Map<string, string>>;
const toMap = (sections: Sections): Map2 => new Map(sections.map(([n, keys]) => [n, new Map(keys)]));
const fromMap = (map: Map2): Sections => normalized([...map].map(([n, keys]) => [n, [...keys]]));
/** Sections by name: the order new sections are appended in is the order of the changes, not of the map. */
const byName = (sections: Sections): Sections =>
  [...sections].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

/**
 * The lines of `doc` outside the values of `touched` keys: an entry line,
 * its continuation lines and the blank lines between them are a value's
 * lines; comment lines between them are not (an edit keeps them).
 */
function untouchedLines(doc: IniDocument, touched: (section: string, key: string) => boolean): string[] {
  const out: string[] = [];
  let inside = -1;
  doc.lines.forEach((l, i) => {
    if (l.kind === 'entry' && touched(l.section, l.key)) {
      inside = l.end;
      return;
    }
    if (i <= inside && l.kind !== 'comment') return;
    out.push(l.raw);
  });
  return out;
}

if (!hasPython)
  console.warn('ini-configparser: python3 with configparser not found: the differential tests are skipped');
describe.skipIf(!hasPython)('agreement with Python configparser (skipped without python3)', () => {
  let oracle: ConfigParserOracle;
  beforeAll(() => {
    oracle = new ConfigParserOracle();
  });
  afterAll(() => oracle?.close());

  it('the oracle answers over one long-lived process', async () => {
    expect(await oracle.read('[S]\nk: v\n  more\n')).toEqual({
      ok: true,
      sections: [['S', [['k', 'v\nmore']]]],
    });
  });

  it('reads every file as configparser does, or refuses it (5,000 generated files)', async () => {
    let accepted = 0;
    let refused = 0;
    let multiLine = 0;
    await fc.assert(
      fc.asyncProperty(files, async (text) => {
        const mine = ours(text);
        const theirs = await oracle.read(text);
        if (!mine.ok) {
          refused++;
          // A refusal names the file and a line of it.
          expect(mine.message).toMatch(/^x\.conf:\d+: /);
          return;
        }
        accepted++;
        if (mine.sections.some(([, keys]) => keys.some(([, v]) => v.includes('\n')))) multiLine++;
        expect({ text, read: theirs.ok ? normalized(theirs.sections) : theirs }).toEqual({
          text,
          read: mine.sections,
        });
      }),
      { numRuns: 5000 * SCALE },
    );
    // The grammar is not so hostile that nothing is accepted, nor so tame that nothing is refused.
    expect(accepted).toBeGreaterThan(1500);
    expect(refused).toBeGreaterThan(500);
    expect(multiLine).toBeGreaterThan(300);
  });

  it('refuses no file configparser reads, but for what it documents as unsupported', async () => {
    // The refusals left are the chosen ones: lone CR, text after `]`, `]` or end spaces in a section name.
    const unsupported =
      /lone carriage return|text after the `\]`|section name holds `\]`|spaces inside its brackets/;
    await fc.assert(
      fc.asyncProperty(files, async (text) => {
        const mine = ours(text);
        if (mine.ok) return;
        const theirs = await oracle.read(text);
        if (theirs.ok)
          expect({ text, message: mine.message }).toEqual({
            text,
            message: expect.stringMatching(unsupported),
          });
      }),
      { numRuns: 1000 * SCALE },
    );
  });

  it('after random edits, configparser reads the new values and every other value unchanged (2,000 sequences)', async () => {
    let steps = 0;
    let continued = 0;
    await fc.assert(
      fc.asyncProperty(baseFiles, editSequence, async (base, sequence) => {
        const first = await oracle.read(base);
        expect({ base, first }).toMatchObject({ base, first: { ok: true } });
        if (!first.ok) return;
        const expected = toMap(first.sections);
        let text = base;
        for (const batch of sequence) {
          const doc = parseIni(text, 'x.conf');
          const changes = batch
            .filter(
              (e) =>
                e.value === null ||
                (iniNameProblem(e.key, 'key') === undefined &&
                  iniNameProblem(e.section, 'section') === undefined),
            )
            .map((e) => ({
              section: e.section,
              key: e.key,
              value: e.value === null ? undefined : encodeValueLines(e.value),
            }));
          const next = applyIniChanges(doc, changes);
          steps++;
          // One write applies the last change of each key.
          const last = new Map(changes.map((c) => [JSON.stringify([c.section, c.key]), c]));
          for (const c of last.values()) {
            if (c.value === undefined) {
              expected.get(c.section)?.delete(c.key);
              continue;
            }
            const keys = expected.get(c.section) ?? new Map<string, string>();
            expected.set(c.section, keys);
            keys.set(c.key, c.value);
            if (c.value.includes('\n')) continued++;
          }
          const theirs = await oracle.read(next);
          expect({
            text,
            changes,
            next,
            read: theirs.ok ? byName(normalized(theirs.sections)) : theirs,
          }).toEqual({
            text,
            changes,
            next,
            read: byName(fromMap(expected)),
          });
          expect({ next, read: ours(next) }).toEqual({ next, read: theirs });
          // Every line outside the edited values stays, in order; only new headers (and a blank before them) are added.
          const touched = (s: string, k: string) => changes.some((c) => c.section === s && c.key === k);
          const before = untouchedLines(doc, touched);
          const after = untouchedLines(parseIni(next, 'x.conf'), touched);
          const added = after.slice(before.length);
          expect({ text, changes, next, kept: after.slice(0, before.length) }).toEqual({
            text,
            changes,
            next,
            kept: before,
          });
          for (const l of added)
            expect({ next, added: l }).toEqual({ next, added: expect.stringMatching(/^(\[.*\])?\r?$/s) });
          text = next;
        }
      }),
      { numRuns: 2000 * SCALE },
    );
    expect(steps).toBeGreaterThan(4000);
    expect(continued).toBeGreaterThan(500);
  });
});
