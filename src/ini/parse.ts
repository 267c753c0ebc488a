import { IniSyntaxError } from '../errors.js';

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

const SECTION = /^\s*\[([^\]]*)\]\s*$/;
const COMMENT = /^\s*[;#]/;

/**
 * Strict INI reading: every line must be a section header, a comment (`;` or
 * `#` first), a blank, or `key = value`. The lenient `ini` package turns a
 * bare word into `true`; pushing that to etcd would invent a value, so here it
 * is an error naming the file and line. Values are taken as written after
 * the first `=` (trimmed), with no inline comments, as Python's configparser does.
 */
export function parseIni(text: string, file: string): IniDocument {
  const lines: IniLine[] = [];
  const sections = new Map<string, Map<string, string>>();
  let current: { name: string; entries: Map<string, string> } | undefined;
  const rawLines = text.split('\n');
  // A final newline ends the last line; it does not start an empty one.
  if (rawLines.length > 0 && rawLines[rawLines.length - 1] === '') rawLines.pop();

  rawLines.forEach((rawWithCr, index) => {
    const line = index + 1;
    const raw = rawWithCr.endsWith('\r') ? rawWithCr.slice(0, -1) : rawWithCr;
    if (raw.trim() === '') {
      lines.push({ kind: 'blank', raw: rawWithCr, line });
      return;
    }
    if (COMMENT.test(raw)) {
      lines.push({ kind: 'comment', raw: rawWithCr, line });
      return;
    }
    const header = SECTION.exec(raw);
    if (header) {
      const name = (header[1] ?? '').trim();
      if (name === '') throw new IniSyntaxError(file, line, 'empty section name `[]`');
      if (sections.has(name)) throw new IniSyntaxError(file, line, `section [${name}] appears twice`);
      current = { name, entries: new Map() };
      sections.set(name, current.entries);
      lines.push({ kind: 'section', raw: rawWithCr, line, name });
      return;
    }
    const eq = raw.indexOf('=');
    if (eq < 0) {
      throw new IniSyntaxError(
        file,
        line,
        `expected \`key = value\`, a [section] or a comment, got \`${raw.trim()}\``,
      );
    }
    const key = raw.slice(0, eq).trim();
    if (key === '') throw new IniSyntaxError(file, line, 'a line starts with `=`: the key is missing');
    if (current === undefined) {
      throw new IniSyntaxError(file, line, `\`${key}\` comes before any [section] header`);
    }
    if (current.entries.has(key)) {
      throw new IniSyntaxError(file, line, `\`${key}\` appears twice in section [${current.name}]`);
    }
    const value = raw.slice(eq + 1).trim();
    current.entries.set(key, value);
    lines.push({ kind: 'entry', raw: rawWithCr, line, section: current.name, key, value });
  });
  return { lines, sections };
}
