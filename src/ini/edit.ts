import { LinkEtcdError } from '../errors.js';
import { indentOf, iniNameProblem, isPySpace, pyStrip, rawTextProblem, shown } from '../layout/ini-chars.js';
import type { IniDocument, IniLine } from './parse.js';

/** Set `key` in `section` to `value`, or remove it when `value` is undefined. */
export interface IniChange {
  readonly section: string;
  readonly key: string;
  /** Text to write after `key = `, as is: `encodeValue`'s output for an etcd value. */
  readonly value: string | undefined;
}

/**
 * A change the file could not hold: a name or value text that would read
 * back as something else (or break the line). Callers encode values and
 * check names first, so this is a last guard; it names the section and key,
 * never the value.
 */
export class IniEditError extends LinkEtcdError {
  constructor(section: string, key: string, reason: string) {
    super('BAD_VALUE', `cannot write [${shown(section)}] \`${shown(key)}\` to an INI file: ${reason}`);
  }
}

/** Why `text` cannot follow `key = ` on a line and be read back as itself, or undefined. */
function valueProblem(text: string): string | undefined {
  const problem = rawTextProblem(text);
  return problem === undefined ? undefined : `the value text ${problem}: encode it first`;
}

/** A deletion needs no check: a name the file cannot hold is not in it. */
function checkChange(c: IniChange): void {
  if (c.value === undefined) return;
  const problem =
    iniNameProblem(c.section, 'section') ?? iniNameProblem(c.key, 'key') ?? valueProblem(c.value);
  if (problem !== undefined) throw new IniEditError(c.section, c.key, problem);
}

/** A line without its `\r\n` / `\n` end, and the `\r` it had. */
function splitCr(raw: string): [body: string, cr: string] {
  return raw.endsWith('\r') ? [raw.slice(0, -1), '\r'] : [raw, ''];
}

/** The whitespace at the start of `text` (the reader strips it). */
function leadingSpace(text: string): string {
  let i = 0;
  while (i < text.length && isPySpace(text.charAt(i))) i++;
  return text.slice(0, i);
}

/** `key = ` of an entry line: everything up to its value. No regex: `.` and `$` stop at U+2028, U+2029 and `\r`. */
function entryHead(body: string): string {
  const eq = body.indexOf('=');
  return body.slice(0, eq + 1) + leadingSpace(body.slice(eq + 1));
}

/** The spacing a file uses around `=`, taken from its first entry: `key = value` unless it says otherwise. */
function separatorOf(lines: readonly IniLine[]): string {
  const first = lines.find((l): l is Extract<IniLine, { kind: 'entry' }> => l.kind === 'entry');
  if (first === undefined) return ' = ';
  const body = splitCr(first.raw)[0];
  // The reader's key is the text before `=` stripped: indentation, key, then the spacing.
  const sep = entryHead(body).slice(indentOf(body) + first.key.length);
  // Only plain spaces and tabs are copied to new lines.
  return /^[ \t]*=[ \t]*$/.test(sep) ? sep : ' = ';
}

/** An entry line with its value replaced; the key, the spacing and the line end stay. */
function rewriteValue(line: Extract<IniLine, { kind: 'entry' }>, value: string): string {
  if (value === line.value) return line.raw;
  const [body, cr] = splitCr(line.raw);
  return `${entryHead(body)}${value}${cr}`;
}

/** Leading whitespace of a line, copied to new lines so configparser does not read them as continuations. */
function indentText(raw: string): string {
  const body = splitCr(raw)[0];
  return body.slice(0, indentOf(body));
}

/**
 * Applies changes to a parsed INI file and returns the new text. Only the
 * lines of changed keys change: comments, blank lines, spacing and the order
 * of every other line stay byte for byte. A new key goes after the last key
 * of its section, a new section at the end of the file.
 *
 * Lines are the reader's lines (split at `\n` only), so a value or comment
 * holding U+2028, U+2029 or any other character stays on its line, and a
 * changed value always changes its line.
 */
export function applyIniChanges(doc: IniDocument, changes: readonly IniChange[]): string {
  for (const c of changes) checkChange(c);
  const sep = separatorOf(doc.lines);
  const bySection = new Map<string, Map<string, string | undefined>>();
  for (const c of changes) {
    let keys = bySection.get(c.section);
    if (keys === undefined) {
      keys = new Map();
      bySection.set(c.section, keys);
    }
    keys.set(c.key, c.value);
  }

  // Where each section's new keys go: after its last entry, else right after its header.
  const insertAfter = new Map<string, number>();
  doc.lines.forEach((line, i) => {
    if (line.kind === 'section') insertAfter.set(line.name, i);
    else if (line.kind === 'entry') insertAfter.set(line.section, i);
  });

  /**
   * Indentation for keys added after line `at`. After an entry: that entry's,
   * which the next header cannot exceed (configparser would have read the
   * header as a continuation). After a header (no continuation follows a
   * header): the next header's, so it does not become the new key's continuation.
   */
  const newKeyIndent = (at: number): string => {
    const after = doc.lines[at];
    if (after === undefined || after.kind === 'entry')
      return after === undefined ? '' : indentText(after.raw);
    const next = doc.lines.slice(at + 1).find((l) => l.kind === 'section' || l.kind === 'entry');
    const own = indentText(after.raw);
    const theirs = next === undefined ? '' : indentText(next.raw);
    return theirs.length > own.length ? theirs : own;
  };

  // Lines keep their own `\r` (a file may mix line ends); a new line takes the end of the line it follows.
  const out: string[] = [];
  const crOf = (raw: string | undefined) => (raw?.endsWith('\r') ? '\r' : '');
  doc.lines.forEach((line, i) => {
    const keys = line.kind === 'entry' ? bySection.get(line.section) : undefined;
    if (line.kind === 'entry' && keys?.has(line.key)) {
      const value = keys.get(line.key);
      keys.delete(line.key);
      if (value !== undefined) out.push(rewriteValue(line, value));
    } else out.push(line.raw);
    for (const [section, at] of insertAfter) {
      if (at !== i) continue;
      const indent = newKeyIndent(at);
      const cr = crOf(line.raw);
      for (const [key, value] of bySection.get(section) ?? []) {
        if (value !== undefined) out.push(`${indent}${key}${sep}${value}${cr}`);
      }
      bySection.delete(section);
    }
  });
  const cr = crOf(doc.lines[doc.lines.length - 1]?.raw);
  for (const [section, keys] of bySection) {
    const added = [...keys].filter(([, v]) => v !== undefined);
    if (added.length === 0) continue;
    if (out.length > 0 && pyStrip(out[out.length - 1] ?? '') !== '') out.push(cr);
    out.push(`[${section}]${cr}`);
    for (const [key, value] of added) out.push(`${key}${sep}${value}${cr}`);
  }
  return out.length === 0 ? '' : `${out.join('\n')}\n`;
}
