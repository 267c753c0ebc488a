import { IniSyntaxError } from '../errors.js';
import { indentOf, pyStrip, shown } from '../layout/ini-chars.js';

/** One physical line of an INI file, classified. `raw` is kept byte for byte for format-preserving edits. */
export type IniLine =
  | { readonly kind: 'blank' | 'comment'; readonly raw: string; readonly line: number }
  | { readonly kind: 'section'; readonly raw: string; readonly line: number; readonly name: string }
  | {
      readonly kind: 'entry';
      readonly raw: string;
      readonly line: number;
      readonly section: string;
      readonly key: string;
      readonly value: string;
    };

export interface IniDocument {
  readonly lines: readonly IniLine[];
  /** Section -> key -> value, in file order. Maps, so `__proto__` is just a name. */
  readonly sections: ReadonlyMap<string, ReadonlyMap<string, string>>;
}

/**
 * Strict INI reading: a file means here exactly what Python's configparser
 * (`ConfigParser(interpolation=None, strict=True)`, keys keeping their case)
 * reads from it, or it is refused with `file:line: reason`.
 *
 * Every line must be a section header, a comment (`;` or `#` first), a blank,
 * or `key = value`. The lenient `ini` package turns a bare word into `true`;
 * pushing that to etcd would invent a value, so here it is an error. Values
 * are taken as written after the first `=`, stripped as Python strips them,
 * with no inline comments, as configparser does. Lines end at `\n` (a `\r`
 * right before it is part of the line end); U+2028, U+2029 and the like are
 * ordinary characters, as for configparser.
 *
 * Refused, because configparser would read them differently or not at all:
 * a lone `\r` (a line end for configparser), a byte order mark, an indented
 * line that configparser reads as the continuation of the value above it,
 * `:` before the first `=` (a delimiter for configparser), a header with
 * text after its `]`, a section name with `]` or spaces at its ends.
 *
 * Errors name the file, the line and the key or section when there is one,
 * never a value or the line's text: in some files a line is a password.
 */
export function parseIni(text: string, file: string): IniDocument {
  const lines: IniLine[] = [];
  const sections = new Map<string, Map<string, string>>();
  let current: { name: string; entries: Map<string, string> } | undefined;
  // configparser's continuation rule: a line indented deeper than the entry
  // (or header) before it continues that entry's value.
  let lastEntry: { key: string; line: number } | undefined;
  let indentLevel = 0;
  function fail(line: number, reason: string): never {
    throw new IniSyntaxError(file, line, reason);
  }
  if (text.startsWith('\uFEFF')) {
    fail(
      1,
      'a byte order mark (U+FEFF) starts the file: configparser reads it as part of the first line; save the file as UTF-8 without BOM',
    );
  }
  const rawLines = text.split('\n');
  // A final newline ends the last line; it does not start an empty one.
  if (rawLines.length > 0 && rawLines[rawLines.length - 1] === '') rawLines.pop();

  rawLines.forEach((rawWithCr, index) => {
    const line = index + 1;
    const raw = rawWithCr.endsWith('\r') ? rawWithCr.slice(0, -1) : rawWithCr;
    if (raw.includes('\r')) {
      fail(
        line,
        'a lone carriage return (CR) in the line: configparser reads it as a line break; save the file with \\n or \\r\\n line ends',
      );
    }
    const stripped = pyStrip(raw);
    if (stripped === '') {
      lines.push({ kind: 'blank', raw: rawWithCr, line });
      return;
    }
    if (stripped.startsWith(';') || stripped.startsWith('#')) {
      lines.push({ kind: 'comment', raw: rawWithCr, line });
      return;
    }
    const indent = indentOf(raw);
    if (lastEntry !== undefined && indent > indentLevel) {
      fail(
        line,
        `an indented line continues the value of \`${shown(lastEntry.key)}\` (line ${lastEntry.line}) for configparser; multi-line values are not read: unindent the line, or write the value on one line quoted, "first\\nsecond"`,
      );
    }
    indentLevel = indent;
    if (stripped === '[]') fail(line, 'empty section name `[]`');
    // configparser: `\[(?P<header>.+)\]` matched at the line's start, the name up to the last `]`.
    const close = stripped.lastIndexOf(']');
    if (stripped.startsWith('[') && close >= 2) {
      if (close !== stripped.length - 1) {
        fail(
          line,
          'text after the `]` of a [section] header: configparser reads the line as a header and drops the rest',
        );
      }
      const name = stripped.slice(1, close);
      if (name.includes(']')) fail(line, 'a section name holds `]`');
      if (pyStrip(name) !== name || name.trim() !== name) {
        fail(
          line,
          `section [${shown(pyStrip(name).trim())}] has spaces inside its brackets: configparser keeps them as part of the name; write [name]`,
        );
      }
      if (sections.has(name)) fail(line, `section [${shown(name)}] appears twice`);
      current = { name, entries: new Map() };
      sections.set(name, current.entries);
      lastEntry = undefined;
      lines.push({ kind: 'section', raw: rawWithCr, line, name });
      return;
    }
    const eq = raw.indexOf('=');
    const colon = raw.indexOf(':');
    if (colon >= 0 && (eq < 0 || colon < eq)) {
      const before = pyStrip(raw.slice(0, colon));
      fail(
        line,
        before === '' || eq < 0
          ? 'expected `key = value`, a [section] or a comment (the line is not shown: it may hold a secret); `:` is not a delimiter here: use `=`'
          : `\`:\` before the first \`=\` after \`${shown(before)}\`: configparser splits the line there; use \`key = value\` with no \`:\` in the key`,
      );
    }
    if (eq < 0) {
      fail(
        line,
        'expected `key = value`, a [section] or a comment (the line is not shown: it may hold a secret)',
      );
    }
    const key = pyStrip(raw.slice(0, eq));
    if (key === '') fail(line, 'a line starts with `=`: the key is missing');
    if (current === undefined) {
      fail(line, `\`${shown(key)}\` comes before any [section] header`);
    }
    if (current.entries.has(key)) {
      fail(line, `\`${shown(key)}\` appears twice in section [${shown(current.name)}]`);
    }
    const value = pyStrip(raw.slice(eq + 1));
    current.entries.set(key, value);
    lastEntry = { key, line };
    lines.push({ kind: 'entry', raw: rawWithCr, line, section: current.name, key, value });
  });
  return { lines, sections };
}
