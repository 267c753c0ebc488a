/**
 * What an operator reads when a conf file cannot be written: the errno code
 * (greppable) and what it means here, without Node's message, which names
 * the descriptor path (`/proc/self/fd/23/w`) the write went through instead
 * of the file.
 */
const MEANINGS: Readonly<Record<string, string>> = {
  ENOSPC: 'no space left on the device: free some, and the write is tried again',
  EDQUOT: "the disk quota of link-etcd's user is exhausted",
  EROFS: 'the file system is read-only',
  EACCES: "permission denied: link-etcd's user cannot write in that folder",
  EPERM: "operation not permitted for link-etcd's user (an immutable file or folder?)",
  ENOTDIR:
    'a folder on its path is a file or a symlink now (never followed); it is written once that is a folder again',
  ELOOP: 'a folder on its path is a symlink (never followed)',
  EISDIR: 'a folder has its name',
  EMFILE: 'too many open files in this process (raise LimitNOFILE / ulimit -n)',
  ENFILE: 'too many open files on the system',
  EIO: 'an I/O error from the device',
};

export function ioFailure(error: NodeJS.ErrnoException & { code: string }): string {
  const meaning = MEANINGS[error.code];
  if (meaning !== undefined) return `${error.code}: ${meaning}`;
  // Node's message is "CODE: text, syscall 'path'": the text alone.
  const text = error.message.replace(/^[A-Z0-9_]+: /, '').replace(/, \w+( '.*')?$/, '');
  return `${error.code}: ${text}`;
}
