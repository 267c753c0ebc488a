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

/** A path segment safe to create on disk under the conf dir. */
export function segmentRefusal(segment: string): Refusal {
  if (segment === '') return 'empty path segment';
  if (segment === '.' || segment === '..') return `\`${segment}\` path segment`;
  if (segment.startsWith('.')) return 'segment starts with a dot (hidden files are not mirrored)';
  if (hasControl(segment)) return 'control character in a path segment';
  if (segment.includes('\\')) return 'backslash in a path segment';
  if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES)
    return `path segment longer than ${MAX_SEGMENT_BYTES} bytes`;
  return undefined;
}

/** Editors' and our own temp and backup files: never mirrored even when they end in `.conf`. */
const TEMP_NAME = /(^\.|~$|\.swp$|\.swx$|\.tmp$|\.bak$|\.orig$|^#.*#$|^\.#)/;

/**
 * `link/etcd/` holds the middleware's settings (a password, maybe) and the
 * daemon's: in any letter case or Unicode spelling, since a case-insensitive
 * volume (or a fullwidth `ｌｉｎｋ`) reaches the same folder.
 */
function isSettingsFolder(parts: readonly string[]): boolean {
  const fold = (part: string | undefined) => part?.normalize('NFKC').toLowerCase();
  return fold(parts[0]) === 'link' && fold(parts[1]) === 'etcd';
}

/**
 * Whether a conf path (relative, `/`-separated) is mirrored: `**\/*.conf`,
 * never under `link/etcd/`, never a dot-file or a dot-folder, never an
 * editor's temp file.
 */
export function mirroredRefusal(confPath: string): Refusal {
  const parts = confPath.split('/');
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
