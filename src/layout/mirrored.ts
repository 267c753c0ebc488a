/**
 * Which paths of the conf dir are mirrored: the one rule the scan, the file
 * watcher and the key mapping all ask, so they cannot disagree.
 */

/** Why a name is refused, or undefined when it is safe. */
export type Refusal = string | undefined;

export const hasControl = (text: string): boolean => {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
};

/** Linux NAME_MAX: a longer segment cannot be a file name. */
const MAX_SEGMENT_BYTES = 255;

/**
 * Which path segments are mirrored. `portable` (the default): ASCII letters,
 * digits, `.`, `_`, `-`, `+` and `@` only, names a shell, a glob or a
 * program's option parser cannot misread. `any` (the `allow_any_names`
 * setting): every name but the ones refused under both (control characters,
 * backslash, `.`, `..`, a leading dot or `-`, over 255 bytes).
 */
export type NamePolicy = 'portable' | 'any';

let policy: NamePolicy = 'portable';
const policyListeners = new Set<() => void>();

/** The policy the rule applies now. */
export function namePolicy(): NamePolicy {
  return policy;
}

/**
 * Sets the policy for the whole process (the scan, the watcher and the key
 * mapping ask the same module-level rule); caches of verdicts are dropped.
 */
export function setNamePolicy(next: NamePolicy): void {
  if (next !== 'portable' && next !== 'any') throw new TypeError(`unknown name policy \`${String(next)}\``);
  policy = next;
  for (const listener of policyListeners) listener();
}

/** Called whenever the policy is set: for caches of verdicts (the key mapping's). */
export function onNamePolicyChange(listener: () => void): void {
  policyListeners.add(listener);
}

const PORTABLE = /^[A-Za-z0-9._+@-]*$/;
const PORTABLE_CHAR = /[A-Za-z0-9._+@-]/;

/** `;` (U+003B), or only the code point where the character would not show or would break the quoting. */
function describeCharacter(c: string): string {
  const code = `U+${(c.codePointAt(0) as number).toString(16).toUpperCase().padStart(4, '0')}`;
  return /^[\p{L}\p{N}\p{P}\p{S}]$/u.test(c) && c !== '`' ? `\`${c}\` (${code})` : code;
}

/** A path segment safe to create on disk under the conf dir, under the current name policy. */
/**
 * etcd keys are bytes; the client decodes them with U+FFFD for what is not
 * UTF-8, and two keys differing only there would collapse into one name.
 */
export const NOT_UTF8 = 'not valid UTF-8 (or holds U+FFFD, its replacement character)';

export function segmentRefusal(segment: string): Refusal {
  if (segment === '') return 'empty path segment';
  if (segment === '.' || segment === '..') return `\`${segment}\` path segment`;
  if (segment.startsWith('.')) return 'segment starts with a dot (hidden files are not mirrored)';
  if (hasControl(segment)) return 'control character in a path segment';
  if (segment.includes('\uFFFD')) return NOT_UTF8;
  if (segment.includes('\\')) return 'backslash in a path segment';
  if (segment.startsWith('-')) return 'segment starts with `-` (a program would read it as an option)';
  if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES)
    return `path segment longer than ${MAX_SEGMENT_BYTES} bytes (the file system's limit)`;
  if (policy === 'portable' && !PORTABLE.test(segment)) {
    const bad = [...segment].find((c) => !PORTABLE_CHAR.test(c)) as string;
    return `character ${describeCharacter(bad)} is outside the portable set (letters, digits, . _ - + @); set allow_any_names to mirror it`;
  }
  return undefined;
}

/** Editors' and our own temp and backup files: never mirrored even when they end in `.conf`. */
const TEMP_NAME = /(^\.|~$|\.swp$|\.swx$|\.tmp$|\.bak$|\.orig$|^#.*#$|^\.#)/;

/**
 * A name as a case-insensitive or normalising file system may see it:
 * compatibility decomposition (fullwidth `ｌ`, Kelvin `K`), combining marks
 * and invisible (default-ignorable) code points dropped, lower case with the
 * dotless `ı` and the long `ſ` taken as `i` and `s`, recomposed, and
 * trailing spaces and dots stripped (as Windows and SMB do).
 */
export function foldName(name: string): string {
  return name
    .normalize('NFKD')
    .replace(/[\p{M}\p{Default_Ignorable_Code_Point}]/gu, '')
    .toLowerCase()
    .replace(/\u0131/g, 'i')
    .replace(/\u017f/g, 's')
    .normalize('NFKC')
    .replace(/[ .]+$/, '');
}

/**
 * `link/etcd/` holds the middleware's settings (a password, maybe) and the
 * daemon's: in any letter case or Unicode spelling, since a case-insensitive
 * volume (or a fullwidth `ｌｉｎｋ`) reaches the same folder. Refused under
 * every name policy.
 */
function isSettingsFolder(parts: readonly string[]): boolean {
  return (
    parts.length >= 2 && foldName(parts[0] as string) === 'link' && foldName(parts[1] as string) === 'etcd'
  );
}

/**
 * Whether a conf path (relative, `/`-separated) is mirrored: `**\/*.conf`,
 * never under `link/etcd/`, never a dot-file or a dot-folder, never an
 * editor's temp file.
 */
/** Longer or deeper conf paths are refused up front: no folder chain nobody can reach, no stall creating it. */
export const MAX_CONF_PATH_BYTES = 1024;
export const MAX_CONF_PATH_DEPTH = 32;

export function mirroredRefusal(confPath: string): Refusal {
  const parts = confPath.split('/');
  if (parts.length > MAX_CONF_PATH_DEPTH) return `conf path deeper than ${MAX_CONF_PATH_DEPTH} folders`;
  if (Buffer.byteLength(confPath) > MAX_CONF_PATH_BYTES)
    return `conf path longer than ${MAX_CONF_PATH_BYTES} bytes`;
  if (isSettingsFolder(parts)) return 'link/etcd/ holds link-etcd settings and is never mirrored';
  if (!confPath.endsWith('.conf')) return 'not a .conf file';
  for (const part of parts) {
    const refusal = segmentRefusal(part);
    if (refusal !== undefined) return refusal;
  }
  if (TEMP_NAME.test(parts[parts.length - 1] as string)) return 'an editor temp or backup file';
  return undefined;
}

export function isMirrored(confPath: string): boolean {
  return mirroredRefusal(confPath) === undefined;
}

/** Whether a folder (relative, `/`-separated) can hold no mirrored file: neither scanned nor watched. */
export function isSkippedFolder(relDir: string): boolean {
  if (relDir === '') return false;
  const parts = relDir.split('/');
  return isSettingsFolder(parts) || parts.some((part) => part.startsWith('.'));
}
