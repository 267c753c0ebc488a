import { LinkEtcdError } from '../errors.js';
import {
  indentOf,
  iniNameProblem,
  isPySpace,
  pyStrip,
  shown,
  valueTextProblem,
} from '../layout/ini-chars.js';
import type { IniDocument, IniLine } from './parse.js';

/** Set `key` in `section` to `value`, or remove it when `value` is undefined. */
export interface IniChange {
  readonly section: string;
  readonly key: string;
  /**
   * The value as configparser is to read it back (escape.ts's `encodeValueLines`
   * or `encodeValue` output for an etcd value). A `\n` in it starts a
   * continuation line: the text must pass `valueTextProblem`.
   */
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

/** A deletion needs no check: a name the file cannot hold is not in it. */
function checkChange(c: IniChange): void {
  if (c.value === undefined) return;
  const valueProblem = valueTextProblem(c.value);
  const problem =
    iniNameProblem(c.section, 'section') ??
    iniNameProblem(c.key, 'key') ??
    (valueProblem === undefined ? undefined : `the value text ${valueProblem}: encode it first`);
  if (problem !== undefined) throw new IniEditError(c.section, c.key, problem);
}

type Entry = Extract<IniLine, { kind: 'entry' }>;

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

/** Where the key ends: the first `=` or `:` (configparser splits at the first of either). */
function delimiterAt(body: string): number {
  const eq = body.indexOf('=');
  const colon = body.indexOf(':');
  return eq < 0 ? colon : colon < 0 ? eq : Math.min(eq, colon);
}

/** `key = ` of an entry line: everything up to its value. No regex: `.` and `$` stop at U+2028, U+2029 and `\r`. */
function entryHead(body: string): string {
  const at = delimiterAt(body);
  return body.slice(0, at + 1) + leadingSpace(body.slice(at + 1));
}

/** The spacing a file uses around its delimiter, taken from its first entry: `key = value` unless it says otherwise. */
function separatorOf(lines: readonly IniLine[]): string {
  const first = lines.find((l): l is Entry => l.kind === 'entry');
  if (first === undefined) return ' = ';
  const body = splitCr(first.raw)[0];
  // The reader's key is the text before the delimiter stripped: indentation, key, then the spacing.
  const sep = entryHead(body).slice(indentOf(body) + first.key.length);
  // Only plain spaces and tabs are copied to new lines.
  return /^[ \t]*[=:][ \t]*$/.test(sep) ? sep : ' = ';
}

/** Leading whitespace of a line, copied to new lines so configparser does not read them as continuations. */
function indentText(raw: string): string {
  const body = splitCr(raw)[0];
  return body.slice(0, indentOf(body));
}

/** How deep the continuation lines of a value written after a key indented `keyIndent` go. */
const CONTINUATION = '    ';

/**
 * The lines of `head` + `value`: the value's first line after `head` (its
 * trailing spaces dropped when that line is empty), each further line on a
 * continuation line indented `more` (deeper than the key), an empty line as
 * a blank line (configparser reads it as an empty line of the value).
 */
function valueLines(head: string, value: string, more: string, cr: string): string[] {
  const [first = '', ...rest] = value.split('\n');
  let top = head;
  if (rest.length > 0 && first === '')
    while (top !== '' && isPySpace(top.charAt(top.length - 1))) top = top.slice(0, -1);
  return [`${top}${first}${cr}`, ...rest.map((part) => (part === '' ? cr : `${more}${part}${cr}`))];
}

/**
 * Applies changes to a parsed INI file and returns the new text. Only the
 * lines of changed keys change: comments, blank lines, spacing and the order
 * of every other line stay byte for byte, and so do the byte order mark and
 * the absence of a final newline. A new key goes after the last key of its
 * section (after its value's continuation lines), a new section at the end
 * of the file.
 *
 * A changed value replaces all of its lines (the entry line, its
 * continuation lines and the blank lines between them) and nothing else:
 * comment lines inside the old value's span stay, right after the new
 * value's lines (configparser skips them wherever they are). A value with
 * `\n` is written as continuation lines, indented as the old value's first
 * continuation line was (if that was spaces and tabs), else 4 spaces deeper
 * than the key.
 *
 * Lines are the reader's lines (split at `\n` only), so a value or comment
 * holding U+2028, U+2029 or any other character stays on its line, and a
 * changed value always changes its line.
 */
export function applyIniChanges(doc: IniDocument, changes: readonly IniChange[]): string {
  for (const c of changes) checkChange(c);
  const sep = separatorOf(doc.lines);
  const spacingAfter = sep.slice(delimiterAt(sep) + 1);
  const bySection = new Map<string, Map<string, string | undefined>>();
  for (const c of changes) {
    let keys = bySection.get(c.section);
    if (keys === undefined) {
      keys = new Map();
      bySection.set(c.section, keys);
    }
    keys.set(c.key, c.value);
  }

  /**
   * Where each section's new keys go, and how deep: after its last entry's
   * last value line, as deep as that entry's key (no deeper than any line
   * after it, which would otherwise continue the new key's value); else
   * right after its header (no continuation follows a header), as deep as
   * the next header or key when that one is deeper, so it does not become a
   * continuation of the new key.
   */
  const insertAfter = new Map<string, { at: number; indent: string }>();
  doc.lines.forEach((line, i) => {
    if (line.kind === 'entry') insertAfter.set(line.section, { at: line.end, indent: indentText(line.raw) });
    else if (line.kind === 'section' && bySection.has(line.name)) {
      const next = doc.lines.slice(i + 1).find((l) => l.kind === 'section' || l.kind === 'entry');
      const own = indentText(line.raw);
      const theirs = next === undefined ? '' : indentText(next.raw);
      insertAfter.set(line.name, { at: i, indent: theirs.length > own.length ? theirs : own });
    }
  });

  const insertions = new Map<number, Array<{ section: string; indent: string }>>();
  for (const [section, { at, indent }] of insertAfter) {
    const here = insertions.get(at) ?? [];
    here.push({ section, indent });
    insertions.set(at, here);
  }

  // Lines keep their own `\r` (a file may mix line ends); a new line takes the end of the line it follows.
  const out: string[] = [];
  const crOf = (raw: string | undefined) => (raw?.endsWith('\r') ? '\r' : '');
  // Inside a replaced value's span up to this index: only its comment lines are kept.
  let replacedUntil = -1;
  let keptComments: string[] = [];
  // Whether the last line out is the file's last line as it was (then its missing newline stays missing).
  let lastKept = false;
  doc.lines.forEach((line, i) => {
    lastKept = false;
    if (i <= replacedUntil) {
      if (line.kind === 'comment') keptComments.push(line.raw);
    } else if (line.kind === 'entry' && bySection.get(line.section)?.has(line.key)) {
      const keys = bySection.get(line.section) as Map<string, string | undefined>;
      const value = keys.get(line.key);
      keys.delete(line.key);
      if (value === line.value) {
        out.push(line.raw);
        lastKept = true;
      } else {
        replacedUntil = line.end;
        keptComments = [];
        if (value !== undefined) {
          const [body, cr] = splitCr(line.raw);
          const at = delimiterAt(body);
          // `key =` with nothing after it (a value that started on the next line): spaced as the file's new keys are.
          const head =
            pyStrip(body.slice(at + 1)) === '' ? body.slice(0, at + 1) + spacingAfter : entryHead(body);
          out.push(...valueLines(head, value, continuationIndent(doc, line, i), cr));
        }
      }
    } else {
      out.push(line.raw);
      lastKept = true;
    }
    if (i === replacedUntil) {
      out.push(...keptComments);
      keptComments = [];
    }
    for (const { section, indent } of insertions.get(i) ?? []) {
      const cr = crOf(line.raw);
      for (const [key, value] of bySection.get(section) ?? []) {
        if (value === undefined) continue;
        out.push(...valueLines(`${indent}${key}${sep}`, value, `${indent}${CONTINUATION}`, cr));
        lastKept = false;
      }
      bySection.delete(section);
    }
  });
  const cr = crOf(doc.lines[doc.lines.length - 1]?.raw);
  for (const [section, keys] of bySection) {
    const added = [...keys].filter((kv): kv is [string, string] => kv[1] !== undefined);
    if (added.length === 0) continue;
    if (out.length > 0 && pyStrip(out[out.length - 1] ?? '') !== '') out.push(cr);
    out.push(`[${section}]${cr}`);
    for (const [key, value] of added) out.push(...valueLines(`${key}${sep}`, value, CONTINUATION, cr));
    lastKept = false;
  }
  const bom = doc.bom ? '\uFEFF' : '';
  if (out.length === 0) return bom;
  const lastLineIsOriginal = lastKept && doc.lines.length > 0;
  return `${bom}${out.join('\n')}${lastLineIsOriginal && !doc.finalNewline ? '' : '\n'}`;
}

/** The indentation of `entry`'s continuation lines: its first one's when plain spaces and tabs, else 4 spaces deeper than the key. */
function continuationIndent(doc: IniDocument, entry: Entry, at: number): string {
  const first = doc.lines.slice(at + 1, entry.end + 1).find((l) => l.kind === 'continuation');
  const own = first === undefined ? '' : indentText(first.raw);
  return /^[ \t]+$/.test(own) ? own : `${indentText(entry.raw)}${CONTINUATION}`;
}
