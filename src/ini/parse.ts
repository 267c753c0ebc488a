import { IniSyntaxError } from '../errors.js';
import { indentOf, pyStrip, shown } from '../layout/ini-chars.js';

/** configparser's `default_section`: read into `parser.defaults()`, mirrored here as a section of its own. */
export const DEFAULT_SECTION = 'DEFAULT';

/**
 * One physical line of an INI file, classified. `raw` is kept byte for byte
 * (with the `\r` of a `\r\n` end) for format-preserving edits.
 *
 * A value that spans lines is an `entry` line (the key and the value's first
 * line) followed by `continuation` lines; blank and comment lines may sit
 * between them. The entry's `end` is the index (in `lines`) of its value's
 * last continuation line, or its own index for a one-line value: blank and
 * comment lines inside that range belong to the value's span, blank lines
 * after it do not.
 */
export type IniLine =
  | { readonly kind: 'blank' | 'comment'; readonly raw: string; readonly line: number }
  | { readonly kind: 'section'; readonly raw: string; readonly line: number; readonly name: string }
  | {
      readonly kind: 'entry';
      readonly raw: string;
      readonly line: number;
      readonly section: string;
      readonly key: string;
      /** The whole value, as configparser reads it: its lines joined with `\n`. */
      readonly value: string;
      /** Index in `lines` of the value's last line (this line's own index for a one-line value). */
      readonly end: number;
    }
  | {
      readonly kind: 'continuation';
      readonly raw: string;
      readonly line: number;
      readonly section: string;
      readonly key: string;
    };

export interface IniDocument {
  readonly lines: readonly IniLine[];
  /** Section -> key -> value, in file order. Maps, so `__proto__` is just a name. */
  readonly sections: ReadonlyMap<string, ReadonlyMap<string, string>>;
  /** The file starts with a UTF-8 byte order mark (not part of `lines`; an edit keeps it). */
  readonly bom: boolean;
  /** The last line ends with a line break (an edit that leaves the last line keeps its absence). */
  readonly finalNewline: boolean;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type EntryLine = Mutable<Extract<IniLine, { kind: 'entry' }>>;

/**
 * Strict INI reading: a file means here exactly what Python's configparser
 * (`ConfigParser(interpolation=None, strict=True)` with `optionxform = str`,
 * the file opened with `encoding='utf-8-sig'`) reads from it, or it is
 * refused with `file:line: reason`. Never a third outcome: this is checked
 * against the real configparser by differential tests
 * (test/unit/ini-configparser.test.ts).
 *
 * configparser's rules, as Python 3.11 applies them (the differential tests
 * check them against whichever python3 runs them):
 * - A line is blank (only whitespace, Python's `str.isspace`), a comment
 *   (`;` or `#` first after whitespace, at any indentation), a continuation,
 *   a `[section]` header, or `key = value` / `key: value` (the first `=` or
 *   `:` splits; key and value stripped). No inline comments.
 * - A line indented deeper than the last entry or header line continues the
 *   value of the entry above it (never a header's). Its stripped text is the
 *   next line of the value, whatever it looks like (`[x]`, `a = b`). Blank
 *   lines in between add empty lines to the value; comment lines add
 *   nothing. The lines are joined with `\n` and trailing blank lines dropped.
 * - `[DEFAULT]` is configparser's default section: its keys are
 *   `parser.defaults()`, and it may appear more than once (its keys merge).
 *   It is read here as a section of its own; every other section holds only
 *   its own keys (`parser[section]` would also show the defaults).
 * - Refused as configparser refuses them: a key before any header, a line
 *   that is none of the above (a bare word), an empty key, `[]`, a key twice
 *   in a section, a section twice (but for DEFAULT).
 *
 * Also refused, because they are not supported here (configparser reads
 * them, but a mirror of them would not be faithful both ways): a lone `\r`
 * (a line end for configparser: save with `\n` or `\r\n`), a header with
 * text after its `]` (configparser drops the text), a section name holding
 * `]` or with whitespace at its ends.
 *
 * Lines end at `\n` (a `\r` right before it is part of the line end);
 * U+2028, U+2029, `\v`, `\f` and the like are ordinary characters of the
 * line, as for configparser. A UTF-8 byte order mark at the start is not
 * part of the text (configparser reading the file as `utf-8-sig`).
 *
 * Errors name the file, the line and the key or section when there is one,
 * never a value or the line's text: in some files a line is a password.
 */
export function parseIni(text: string, file: string): IniDocument {
  const lines: IniLine[] = [];
  const sections = new Map<string, Map<string, string>>();
  let current: { name: string; entries: Map<string, string> } | undefined;
  // configparser's `optname` (the entry a deeper line continues) with its value's lines so far.
  let open: { entry: EntryLine; parts: string[]; entries: Map<string, string> } | undefined;
  // configparser's `indent_level`: the indentation of the last entry or header line.
  let indentLevel = 0;
  function fail(line: number, reason: string): never {
    throw new IniSyntaxError(file, line, reason);
  }
  function close(): void {
    if (open === undefined) return;
    const { entry, parts, entries } = open;
    // `'\n'.join(lines).rstrip()`: every part is stripped already, so only trailing empty lines go.
    while (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
    entry.value = parts.join('\n');
    entries.set(entry.key, entry.value);
    open = undefined;
  }

  const bom = text.startsWith('\uFEFF');
  const rawLines = (bom ? text.slice(1) : text).split('\n');
  // A final newline ends the last line; it does not start an empty one.
  const finalNewline = rawLines.length > 1 && rawLines[rawLines.length - 1] === '';
  if (rawLines[rawLines.length - 1] === '') rawLines.pop();

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
      // A blank line adds an empty line to the value above; trailing ones are dropped at the end.
      open?.parts.push('');
      lines.push({ kind: 'blank', raw: rawWithCr, line });
      return;
    }
    if (stripped.startsWith(';') || stripped.startsWith('#')) {
      lines.push({ kind: 'comment', raw: rawWithCr, line });
      return;
    }
    const indent = indentOf(raw);
    if (open !== undefined && indent > indentLevel) {
      open.parts.push(stripped);
      open.entry.end = lines.length;
      lines.push({
        kind: 'continuation',
        raw: rawWithCr,
        line,
        section: open.entry.section,
        key: open.entry.key,
      });
      return;
    }
    close();
    indentLevel = indent;
    // configparser: `\[(?P<header>.+)\]` matched at the line's start, the name up to the last `]`.
    const end = stripped.lastIndexOf(']');
    if (stripped.startsWith('[') && end >= 2) {
      if (end !== stripped.length - 1) {
        fail(
          line,
          'text after the `]` of a [section] header: configparser reads the line as a header and drops the rest; not supported',
        );
      }
      const name = stripped.slice(1, end);
      if (name.includes(']')) fail(line, 'a section name holds `]`: not supported');
      if (pyStrip(name) !== name || name.trim() !== name) {
        fail(
          line,
          `section [${shown(pyStrip(name).trim())}] has spaces inside its brackets: configparser keeps them as part of the name; not supported: write [name]`,
        );
      }
      const seen = sections.get(name);
      if (seen !== undefined && name !== DEFAULT_SECTION)
        fail(line, `section [${shown(name)}] appears twice`);
      // [DEFAULT] may appear again: configparser merges it (a key twice in it is still an error).
      current = { name, entries: seen ?? new Map() };
      sections.set(name, current.entries);
      lines.push({ kind: 'section', raw: rawWithCr, line, name });
      return;
    }
    if (stripped === '[]') fail(line, 'empty section name `[]`');
    const eq = stripped.indexOf('=');
    const colon = stripped.indexOf(':');
    const delimiter = eq < 0 ? colon : colon < 0 ? eq : Math.min(eq, colon);
    if (delimiter < 0) {
      fail(
        line,
        current === undefined
          ? 'expected a [section] header or a comment before any key (the line is not shown: it may hold a secret)'
          : 'expected `key = value`, a [section] or a comment (the line is not shown: it may hold a secret)',
      );
    }
    const key = pyStrip(stripped.slice(0, delimiter));
    if (key === '') fail(line, `a line starts with \`${stripped.charAt(0)}\`: the key is missing`);
    if (current === undefined) {
      fail(line, `\`${shown(key)}\` comes before any [section] header`);
    }
    if (current.entries.has(key)) {
      fail(line, `\`${shown(key)}\` appears twice in section [${shown(current.name)}]`);
    }
    // The key takes its place in file order now; close() sets its value.
    current.entries.set(key, '');
    const entry: EntryLine = {
      kind: 'entry',
      raw: rawWithCr,
      line,
      section: current.name,
      key,
      value: '',
      end: lines.length,
    };
    open = { entry, parts: [pyStrip(stripped.slice(delimiter + 1))], entries: current.entries };
    lines.push(entry);
  });
  close();
  return { lines, sections, bom, finalNewline };
}
