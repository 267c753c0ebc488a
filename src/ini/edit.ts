import type { IniDocument, IniLine } from './parse.js';

/** Set `key` in `section` to `value`, or remove it when `value` is undefined. */
export interface IniChange {
  readonly section: string;
  readonly key: string;
  readonly value: string | undefined;
}

const ENTRY = /^(\s*)([^=]*?)(\s*=\s*)(.*?)(\r?)$/;

/** The spacing a file uses around `=`, taken from its first entry: `key = value` unless it says otherwise. */
function separatorOf(lines: readonly IniLine[]): string {
  const first = lines.find((l) => l.kind === 'entry');
  return first === undefined ? ' = ' : (ENTRY.exec(first.raw)?.[3] ?? ' = ');
}

function rewriteValue(raw: string, value: string): string {
  const m = ENTRY.exec(raw);
  if (m === null) return raw;
  return `${m[1]}${m[2]}${m[3]}${value}${m[5]}`;
}

/**
 * Applies changes to a parsed INI file and returns the new text. Only the
 * lines of changed keys change: comments, blank lines, spacing and the order
 * of every other line stay byte for byte. A new key goes after the last key
 * of its section, a new section at the end of the file.
 */
export function applyIniChanges(doc: IniDocument, changes: readonly IniChange[]): string {
  const eol = doc.lines[0]?.raw.endsWith('\r') ? '\r\n' : '\n';
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

  const out: string[] = [];
  const strip = (raw: string) => (raw.endsWith('\r') ? raw.slice(0, -1) : raw);
  doc.lines.forEach((line, i) => {
    if (line.kind === 'entry') {
      const keys = bySection.get(line.section);
      if (keys?.has(line.key)) {
        const value = keys.get(line.key);
        keys.delete(line.key);
        if (value !== undefined) out.push(strip(rewriteValue(line.raw, value)));
      } else out.push(strip(line.raw));
    } else out.push(strip(line.raw));
    for (const [section, at] of insertAfter) {
      if (at !== i) continue;
      for (const [key, value] of bySection.get(section) ?? []) {
        if (value !== undefined) out.push(`${key}${sep}${value}`);
      }
      bySection.delete(section);
    }
  });
  for (const [section, keys] of bySection) {
    const added = [...keys].filter(([, v]) => v !== undefined);
    if (added.length === 0) continue;
    if (out.length > 0 && out[out.length - 1]?.trim() !== '') out.push('');
    out.push(`[${section}]`);
    for (const [key, value] of added) out.push(`${key}${sep}${value}`);
  }
  return out.length === 0 ? '' : out.join(eol) + eol;
}
