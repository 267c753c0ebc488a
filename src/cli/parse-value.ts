import type { TreeInput } from '../middleware/tree.js';

/** `set`'s VALUE: a JSON object or array becomes a tree; anything else, `42` and `"x"` included, is text. */
export function parseCliValue(text: string): TreeInput {
  const trimmed = text.trim();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      const parsed: unknown = JSON.parse(trimmed);
      if (typeof parsed === 'object' && parsed !== null) return parsed as TreeInput;
    } catch {
      // Not JSON after all: text such as `[not json` is a legitimate value.
    }
  }
  return text;
}
