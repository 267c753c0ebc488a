import { stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/**
 * Like OpenSSH's StrictModes: when link-etcd runs as root, the conf dir and
 * every folder above it must be owned by root and writable by no one else
 * (a folder with the sticky bit, like /tmp, is fine above it: others cannot
 * rename what they do not own there). Otherwise anyone who can write there
 * acts with root's rights on whatever race link-etcd cannot close (see
 * docs/SECURITY.md). Returns why the conf dir is not safe, or undefined.
 */
export async function strictModesRefusal(
  confDir: string,
  uid: number | undefined = process.getuid?.(),
): Promise<string | undefined> {
  if (uid !== 0) return undefined;
  let dir = resolve(confDir);
  for (let first = true; ; first = false) {
    const info = await stat(dir).catch(() => undefined);
    if (info !== undefined) {
      const mode = info.mode & 0o7777;
      const othersWrite = (mode & 0o022) !== 0;
      const sticky = (mode & 0o1000) !== 0;
      if (info.uid !== 0) return `${dir} is owned by uid ${info.uid}, not root`;
      if (othersWrite && (first || !sticky))
        return `${dir} is writable by its group or others (mode ${mode.toString(8).padStart(4, '0')})`;
    }
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}
