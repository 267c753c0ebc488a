/**
 * The words a boolean setting or value may be written as: Python
 * configparser's `BOOLEAN_STATES`, in any case, blanks around them ignored.
 * middleware.conf, sync.conf and `bool` parameters all read them from here.
 */
export const TRUE_WORDS = ['1', 'yes', 'true', 'on'] as const;
export const FALSE_WORDS = ['0', 'no', 'false', 'off'] as const;

/** The same words, for error messages and docs. */
export const BOOLEAN_DESCRIPTION = 'true/false, yes/no, on/off, 1/0';

/** Lower-case word -> value; a Map, so `constructor` or `__proto__` is just an unknown word. */
const STATES: ReadonlyMap<string, boolean> = new Map<string, boolean>([
  ...TRUE_WORDS.map((w): [string, boolean] => [w, true]),
  ...FALSE_WORDS.map((w): [string, boolean] => [w, false]),
]);

/** `true` or `false` for one of the boolean words (any case, trimmed), `undefined` for anything else. */
export function parseBoolean(text: string): boolean | undefined {
  return STATES.get(text.trim().toLowerCase());
}
