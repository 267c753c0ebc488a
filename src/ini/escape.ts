import { hasLineBreak, isTrimmed, valueTextProblem } from '../layout/ini-chars.js';

/**
 * How etcd values are written into INI value text, and read back, so that
 * any value goes etcd -> file -> etcd byte for byte, and a Python reader
 * (configparser) sees either the value itself or its JSON-string form.
 *
 * Three written forms (`encodeValueLines`, used by file writes):
 * - **As is**, on the key's line, when every reader takes it back unchanged:
 *   no whitespace at either end (configparser strips Python's whitespace,
 *   which includes `\x1c`-`\x1f` and U+0085; JavaScript's includes U+FEFF:
 *   either kind counts) and no character any reader may take for a line
 *   break (`\n`, `\r`, `\v`, `\f`, `\x1c`-`\x1e`, U+0085, U+2028, U+2029;
 *   see ini-chars.ts). configparser reads the value.
 * - **Continuation lines**, when the value's only line breaks are `\n`, each
 *   of its lines passes the rule above (or is empty), no line after the
 *   first starts with `#` or `;`, and the last line is not empty
 *   (`isContinuable`): the first line after `key = `, the others indented
 *   deeper than the key, an empty one as a blank line. configparser reads
 *   the value.
 * - **Quoted**, for any other value: a JSON string literal, `"  padded  "`
 *   or `"two\nlines\n"`, in one canonical spelling: `JSON.stringify`, plus
 *   `\u0085`, `\u2028` and `\u2029` escaped (JSON.stringify leaves them raw;
 *   it already escapes every other character listed above). A quoted value
 *   is always printable ASCII punctuation around the value's own text, and
 *   never holds a line break. configparser reads the literal, quotes and
 *   backslashes included: a Python reader has to `json.loads` it.
 *
 * On reading, only *needed* quotes are decoded: `name = "abc"` stays the
 * five characters `"abc"`, as configparser reads it, because `abc` would
 * never have been quoted. A value that is itself such a literal is quoted
 * again. The quoted form of a value with line breaks that would now be
 * written as continuation lines (`"a\nb"`, as earlier versions and
 * `encodeValue` write it) is still decoded; it is rewritten as continuation
 * lines only when the value changes.
 */

/** Whether `value` has to be quoted to survive a write and a read. */
export function needsQuoting(value: string): boolean {
  return !isTrimmed(value) || hasLineBreak(value) || isQuotedForm(value);
}

/** The one quoted spelling of `value`. */
function quote(value: string): string {
  return JSON.stringify(value).replace(
    /[\x85\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** Whether INI text is a quoted value that `encodeValue` would have written. */
function isQuotedForm(text: string): boolean {
  if (text.length < 2 || !text.startsWith('"') || !text.endsWith('"')) return false;
  let inner: unknown;
  try {
    inner = JSON.parse(text);
  } catch {
    return false;
  }
  // Canonical only, so every value has exactly one spelling in a file.
  return typeof inner === 'string' && quote(inner) === text && needsQuoting(inner);
}

/** etcd value -> INI value text on one line: as is, or the quoted form. */
export function encodeValue(value: string): string {
  return needsQuoting(value) ? quote(value) : value;
}

/**
 * Whether a value with line breaks is written as configparser continuation
 * lines: only `\n` breaks it (no other character any reader may take for a
 * line break, see `hasLineBreak`), each of its lines is trimmed (Python's and
 * JavaScript's whitespace), no line after the first starts with `#` or `;`,
 * and the last line is not empty. configparser then reads exactly the value
 * back (ini-chars.ts `valueTextProblem`).
 */
export function isContinuable(value: string): boolean {
  return (
    value.includes('\n') &&
    valueTextProblem(value) === undefined &&
    value.split('\n').every((line) => isTrimmed(line) && !hasLineBreak(line))
  );
}

/**
 * etcd value -> INI value text as a file write uses it (`applyIniChanges`):
 * a value with line breaks that configparser reads back exactly from
 * continuation lines (`isContinuable`) is that text itself, written as the
 * key's line and continuation lines; any other value is `encodeValue`'s one
 * line. `decodeValue` takes either back.
 */
export function encodeValueLines(value: string): string {
  return isContinuable(value) ? value : encodeValue(value);
}

/**
 * INI value text (as the strict reader returns it: trimmed, lines joined
 * with `\n`) -> etcd value. A multi-line text is never a quoted form (a
 * quoted form has no raw line break), so it is the value itself.
 */
export function decodeValue(text: string): string {
  return isQuotedForm(text) ? (JSON.parse(text) as string) : text;
}
