/**
 * The characters the INI dialect cares about, as Python's configparser
 * (the reference reader, DESIGN.md §1) and JavaScript each see them.
 *
 * - Line ends. configparser reads a file in text mode with universal
 *   newlines: `\n`, `\r\n` and a lone `\r` end a line, nothing else. Our
 *   reader and editor split on `\n` only (a `\r` right before it belongs to
 *   the line end) and refuse a lone `\r`. JavaScript regexes treat `\r`,
 *   U+2028 and U+2029 as line terminators for `.`, `^` and `$` (multiline),
 *   and Python's `str.splitlines` also breaks at `\v`, `\f`, `\x1c`-`\x1e`
 *   and U+0085: no code here runs such a regex over a line, and a value
 *   holding any of these characters is written quoted (escape.ts).
 * - Whitespace. configparser strips keys and values with Python's
 *   `str.strip()`, whose whitespace is not JavaScript's: Python adds
 *   `\x1c`-`\x1f` and U+0085, JavaScript adds U+FEFF. The reader strips the
 *   way Python does, and the writer quotes a value with either kind at
 *   either end.
 */

/** Python's `str.isspace()` (and `\s` of its `re` on str), for one UTF-16 code unit. */
function isPySpaceCode(c: number): boolean {
  if (c <= 0x20) return (c >= 0x09 && c <= 0x0d) || c >= 0x1c;
  if (c < 0x85) return false;
  return (
    c === 0x85 ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000
  );
}

export function isPySpace(c: string): boolean {
  return c.length === 1 && isPySpaceCode(c.charCodeAt(0));
}

/** Python's `text.strip()`. */
export function pyStrip(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && isPySpaceCode(text.charCodeAt(start))) start++;
  while (end > start && isPySpaceCode(text.charCodeAt(end - 1))) end--;
  return start === 0 && end === text.length ? text : text.slice(start, end);
}

/** How far a line is indented, as configparser measures it (index of the first non-space character). */
export function indentOf(line: string): number {
  let i = 0;
  while (i < line.length && isPySpaceCode(line.charCodeAt(i))) i++;
  return i;
}

/**
 * Characters some reader of the file may take for a line break: universal
 * newlines (configparser), JavaScript's line terminators, and Python's
 * `str.splitlines` set. A value holding one is written quoted.
 */
export function hasLineBreak(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c >= 0x0a && c <= 0x0d) || (c >= 0x1c && c <= 0x1e) || c === 0x85 || c === 0x2028 || c === 0x2029)
      return true;
  }
  return false;
}

/** Whether both configparser and JavaScript read `text` back unchanged after trimming. */
export function isTrimmed(text: string): boolean {
  return text === pyStrip(text) && text === text.trim();
}

/**
 * Why `text` cannot stand on a line (as a value after `key = `, or a name)
 * and read back as itself, by configparser and by our reader: a `\n` or `\r`
 * (a line end), or whitespace at an end (stripped); undefined when it can.
 * U+2028 and the like are fine here: no reader of this dialect splits on them.
 */
export function rawTextProblem(text: string): string | undefined {
  if (text.includes('\n') || text.includes('\r')) return 'holds a line break (\\n or \\r)';
  if (pyStrip(text) !== text) return 'starts or ends with spaces (they are stripped on reading)';
  return undefined;
}

/**
 * Why `text` cannot be written as a value (after `key = `, its lines after
 * the first as continuation lines, indented deeper than the key) and read
 * back by configparser as itself; undefined when it can. A one-line text
 * follows `rawTextProblem`. A text with `\n` is read back exactly when every
 * line is stripped already (no whitespace at its ends), no line holds a
 * `\r`, no line after the first starts with `#` or `;` (configparser reads
 * it as a comment and drops it), and the last line is not empty
 * (configparser drops trailing blank lines). Empty lines inside are fine:
 * written as blank lines, they read back as empty lines of the value.
 */
export function valueTextProblem(text: string): string | undefined {
  if (!text.includes('\n')) return rawTextProblem(text);
  const parts = text.split('\n');
  for (const [i, part] of parts.entries()) {
    if (part.includes('\r')) return 'holds a carriage return (\\r)';
    if (pyStrip(part) !== part)
      return 'has a line that starts or ends with spaces (they are stripped on reading)';
    if (i > 0 && (part.startsWith('#') || part.startsWith(';')))
      return 'has a line after the first that starts with `#` or `;` (configparser reads a comment)';
  }
  if (parts[parts.length - 1] === '')
    return 'ends with a line break (configparser drops trailing blank lines)';
  return undefined;
}

/**
 * A name (section or key) as it may appear in an error message or a log:
 * control and line-break characters spelled as `\uXXXX` (no log injection,
 * no terminal escapes), and cut after 80 characters.
 */
export function shown(name: string): string {
  const cut = name.length > 80 ? `${name.slice(0, 80)}…` : name;
  let out = '';
  for (const c of cut) {
    const n = c.charCodeAt(0);
    const hidden =
      n < 0x20 ||
      (n >= 0x7f && n <= 0x9f) ||
      n === 0x2028 ||
      n === 0x2029 ||
      n === 0x200e ||
      n === 0x200f ||
      (n >= 0x202a && n <= 0x202e) ||
      (n >= 0x2066 && n <= 0x2069) ||
      n === 0xfeff;
    out += hidden ? `\\u${n.toString(16).padStart(4, '0')}` : c;
  }
  return out;
}

/**
 * Why `name` cannot be written as a section or key name and read back as
 * the same name, by configparser and by our reader; undefined when it can.
 * The editor refuses such names; the layout's key mapping should refuse them
 * first, with the same rule.
 */
export function iniNameProblem(name: string, what: 'section' | 'key'): string | undefined {
  if (name === '') return `empty ${what} name`;
  const raw = rawTextProblem(name);
  if (raw !== undefined) return `${what} name ${raw}`;
  if (what === 'section') {
    if (name.includes(']')) return 'section name holds `]`';
    // configparser would keep U+FEFF at an end of the name, but the reader refuses any space inside the brackets.
    if (name.trim() !== name) return 'section name starts or ends with spaces (U+FEFF counts)';
    return undefined;
  }
  if (name.includes('=') || name.includes(':'))
    return 'key name holds `=` or `:` (configparser splits at either)';
  if (/^[[;#]/.test(name)) return 'key name starts with `[`, `;` or `#`';
  return undefined;
}
