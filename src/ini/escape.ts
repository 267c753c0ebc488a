import { hasLineBreak, isTrimmed } from '../layout/ini-chars.js';

/**
 * A bijection between etcd values and INI value text, so any value goes
 * etcd -> file -> etcd and file -> etcd -> file byte for byte.
 *
 * A value is written as is when every reader takes it back unchanged: no
 * whitespace at either end (configparser strips Python's whitespace, which
 * includes `\x1c`-`\x1f` and U+0085; JavaScript's includes U+FEFF: either
 * kind counts) and no character any reader may take for a line break (`\n`,
 * `\r`, `\v`, `\f`, `\x1c`-`\x1e`, U+0085, U+2028, U+2029; see chars.ts).
 * Any other value is written as a JSON string literal, `"  padded  "` or
 * `"two\nlines"`, in one canonical spelling: `JSON.stringify`, plus
 * `\u0085`, `\u2028` and `\u2029` escaped (JSON.stringify leaves them raw;
 * it already escapes every other character listed above). So a quoted value
 * is always printable ASCII punctuation around the value's own text, and
 * never holds a line break. On reading, only such *needed* quotes are
 * decoded: `name = "abc"` stays the five characters `"abc"`, as Python's
 * configparser reads it, because `abc` would never have been quoted.
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

/** etcd value -> INI value text. */
export function encodeValue(value: string): string {
  return needsQuoting(value) ? quote(value) : value;
}

/** INI value text (as the strict reader returns it, trimmed) -> etcd value. */
export function decodeValue(text: string): string {
  return isQuotedForm(text) ? (JSON.parse(text) as string) : text;
}
