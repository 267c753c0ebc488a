/**
 * A bijection between etcd values and INI value text, so any value goes
 * etcd -> file -> etcd and file -> etcd -> file byte for byte.
 *
 * A value is written as is when INI reads it back unchanged: no leading or
 * trailing spaces (the reader trims), no line break. Any other value is
 * written as a JSON string literal, `"  padded  "` or `"two\nlines"`. On
 * reading, only such *needed* quotes are decoded: `name = "abc"` stays the
 * five characters `"abc"`, as Python's configparser reads it, because `abc`
 * would never have been quoted.
 */

/** Whether `value` has to be quoted to survive a write and a read. */
export function needsQuoting(value: string): boolean {
  return value !== value.trim() || /[\r\n]/.test(value) || isQuotedForm(value);
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
  return typeof inner === 'string' && JSON.stringify(inner) === text && needsQuoting(inner);
}

/** etcd value -> INI value text. */
export function encodeValue(value: string): string {
  return needsQuoting(value) ? JSON.stringify(value) : value;
}

/** INI value text (as the strict reader returns it, trimmed) -> etcd value. */
export function decodeValue(text: string): string {
  return isQuotedForm(text) ? (JSON.parse(text) as string) : text;
}
