import { describe, expect, it } from 'vitest';
import { ioFailure } from '../../src/files/io-failure.js';

const errno = (code: string, message: string) => Object.assign(new Error(message), { code });

describe('ioFailure: why a conf file was not written, as an operator reads it', () => {
  it('keeps the code and says what it means, without the descriptor path the write went through', () => {
    const said = ioFailure(errno('ENOTDIR', "ENOTDIR: not a directory, open '/proc/self/fd/23/w'"));
    expect(said).toMatch(/^ENOTDIR: a folder on its path is a file or a symlink/);
    expect(said).not.toContain('/proc/self/fd');
    expect(said.match(/ENOTDIR/g)).toHaveLength(1);
    expect(ioFailure(errno('ENOSPC', 'ENOSPC: no space left on device, write'))).toMatch(
      /^ENOSPC: no space left/,
    );
  });

  it('an unknown code: Node text without its code and path', () => {
    expect(
      ioFailure(errno('EXDEV', "EXDEV: cross-device link not permitted, rename '/proc/self/fd/9/a' -> 'b'")),
    ).toBe('EXDEV: cross-device link not permitted');
    expect(ioFailure(errno('EBADF', 'EBADF: bad file descriptor, fstat'))).toBe('EBADF: bad file descriptor');
  });
});
